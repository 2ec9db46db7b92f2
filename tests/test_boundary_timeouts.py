"""TimeLimits: a call into user code that runs too long is stopped, in the main thread and in others."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from trialrun.boundary.timeouts import TimeLimits
from trialrun.errors import CallTimeout


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_blocking_sleep_in_the_main_thread_is_stopped_with_its_elapsed_time() -> None:
    start = time.monotonic()
    with TimeLimits() as limits, pytest.raises(CallTimeout) as err:
        limits.call(0.2, "policy.act", "act_timeout", time.sleep, 30)
    took = time.monotonic() - start
    assert 0.19 < took < 5
    message = str(err.value)
    assert message.startswith(
        "timeout: policy.act did not return within 0.2 s (act_timeout); stopped after 0.2"
    )
    assert message.endswith(" s")


def test_a_busy_python_loop_is_stopped() -> None:
    with TimeLimits() as limits, pytest.raises(CallTimeout, match=r"env\.step did not return within 0\.1 s"):
        limits.call(0.1, "env.step", "episode_timeout", _busy, 30)


def test_a_fast_call_returns_its_value_and_touches_no_process_timer() -> None:
    before = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout may have one armed
    with TimeLimits() as limits:
        assert limits.call(0.05, "policy.act", "act_timeout", lambda x: x + 1, 41) == 42
        time.sleep(0.15)  # nothing fires after the call returned
    after = signal.getitimer(signal.ITIMER_REAL)
    assert (before[0] > 0) == (after[0] > 0) and after[1] == before[1]


def test_an_alarm_that_is_not_ours_goes_to_the_previous_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        with TimeLimits() as limits:
            limits.call(5, "policy.act", "act_timeout", signal.raise_signal, signal.SIGALRM)
        assert seen == [signal.SIGALRM]
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_the_previous_alarm_handler_is_restored() -> None:
    def mine(signum: int, frame: Any) -> None:
        """A user's own alarm handler (it only has to be a distinct object)."""

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        with TimeLimits() as limits:
            limits.call(1, "policy.act", "act_timeout", lambda: None)
            assert signal.getsignal(signal.SIGALRM) is not mine
        assert signal.getsignal(signal.SIGALRM) is mine
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_in_another_thread_the_watchdog_stops_a_python_loop() -> None:
    outcome: list[BaseException | None] = []

    def evaluate() -> None:
        with TimeLimits() as limits:
            try:
                limits.call(0.2, "policy.act", "act_timeout", _busy, 30)
                outcome.append(None)
            except CallTimeout as exc:
                outcome.append(exc)
            # the limits still work after a timeout, and a fast call is not hit
            assert limits.call(2, "policy.act", "act_timeout", lambda: 7) == 7

    thread = threading.Thread(target=evaluate)
    start = time.monotonic()
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert time.monotonic() - start < 10
    assert len(outcome) == 1 and isinstance(outcome[0], CallTimeout)
    assert str(outcome[0]).startswith("timeout: policy.act did not return within 0.2 s (act_timeout)")
