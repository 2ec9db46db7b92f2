"""InterruptWatch and as_job_failure: a real Ctrl+C stops the run, a sys.exit() in a policy fails its job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from trialrun.boundary.interrupts import InterruptWatch, as_job_failure
from trialrun.errors import UserCodeExit


def test_a_keyboard_interrupt_raised_by_code_is_not_real() -> None:
    with InterruptWatch() as watch:
        assert not watch.is_real_interrupt(KeyboardInterrupt())
        assert not watch.interrupted


def test_a_real_sigint_is_counted_and_still_raises() -> None:
    with InterruptWatch() as watch:
        with pytest.raises(KeyboardInterrupt) as err:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal arrives before this ends
        assert watch.is_real_interrupt(err.value)
    # a later watch starts from zero
    with InterruptWatch() as later:
        assert not later.interrupted


def test_the_previous_sigint_handler_is_restored_and_called() -> None:
    calls: list[int] = []

    def mine(signum: int, frame: object) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with InterruptWatch() as watch:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert watch.interrupted
        assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (SystemExit(3), "SystemExit(3)"),
        (SystemExit(None), "SystemExit(None)"),
        (SystemExit("bye"), "SystemExit('bye')"),
        (KeyboardInterrupt(), "KeyboardInterrupt()"),
        (GeneratorExit(), "GeneratorExit()"),
    ],
)
def test_non_exceptions_become_a_job_failure(exc: BaseException, shown: str) -> None:
    failure = as_job_failure(exc)
    assert isinstance(failure, UserCodeExit)
    assert str(failure) == f"the env or policy raised {shown}: it fails this job instead of ending the run"
    assert failure.__cause__ is exc


def test_ordinary_exceptions_are_unchanged() -> None:
    error = ValueError("x")
    assert as_job_failure(error) is error
