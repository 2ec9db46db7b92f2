"""Wall-clock limits on calls into user code (a policy's ``act``, an env's ``step``).

A policy that never returns from ``act`` used to hang the whole run. Python
cannot kill a thread, and moving every policy call to a helper thread would
break policies bound to their thread (GL contexts, some simulators) and cost a
thread hand-off per step. So the call stays where it is and is interrupted.

Arming a limit only records the call and its deadline (no system call: the
rollout arms one or two limits per step). A watchdog thread sleeps until the
deadline of the call it sees; if that same call is still running then:

- **in the main thread** (the CLI, process-pool workers), it sends the thread
  a ``SIGALRM`` whose handler raises :class:`~trialrun.errors.CallTimeout`
  inside the call. The signal also interrupts a blocking ``sleep``, socket
  read or pipe wait.
- **in another thread** (a trainer evaluating from a thread, Ray tasks), it
  raises the timeout in that thread with ``PyThreadState_SetAsyncExc``. That
  lands at the next Python bytecode, so it stops Python loops, but not a call
  blocked in C.

Either way the job fails with "timeout" and the elapsed time, and the run
goes on with the next job. Code that swallows every exception (``except
BaseException: pass``) can defeat this; nothing in-process can prevent it.

Example:
    >>> import time
    >>> with TimeLimits() as limits:
    ...     limits.call(0.05, "policy.act", "act_timeout", time.sleep, 5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trialrun.errors.CallTimeout: timeout: policy.act did not return within 0.05 s (act_timeout); ...
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, NamedTuple, TypeVar

from trialrun.errors import CallTimeout

T = TypeVar("T")


class _AsyncTimeout(CallTimeout):
    """What the watchdog raises in another thread (an exception class with no
    arguments: ``PyThreadState_SetAsyncExc`` cannot pass a message)."""

    def __init__(self) -> None:
        super().__init__("timeout: a call into user code exceeded its time limit")


class _Call(NamedTuple):
    """One armed call (a tuple: arming happens every step and must cost next to nothing)."""

    what: str
    setting: str
    limit: float
    started: float
    deadline: float


_IDLE_POLL_S = 0.05
"""How often the watchdog looks again when no call is armed."""


class TimeLimits:
    """Arms a time limit around single calls made by the thread that entered
    it; use as a context manager (the watchdog starts on entry, and in the main
    thread the ``SIGALRM`` handler is installed and the previous one restored
    on exit)."""

    def __init__(self) -> None:
        self._in_main = threading.current_thread() is threading.main_thread()
        self._target = threading.get_ident()
        self._previous: Any = None
        self._current: _Call | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> TimeLimits:
        self._target = threading.get_ident()
        self._in_main = threading.current_thread() is threading.main_thread()
        if self._in_main:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name="trialrun-timeouts", daemon=True)
        self._watchdog.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._current = None
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
            self._watchdog = None
        if self._in_main:
            signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)

    def call(self, seconds: float, what: str, setting: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, failed with :class:`CallTimeout` after ``seconds``.

        ``what`` names the call and ``setting`` the limit in the message
        (``"policy.act"``, ``"act_timeout"``).
        """
        now = time.monotonic()
        call = _Call(what, setting, seconds, now, now + seconds)
        self._current = call
        try:
            return fn(*args)
        except _AsyncTimeout:
            raise self._timeout(call) from None
        finally:
            self._current = None

    def _watch(self) -> None:
        while not self._stop.is_set():
            call = self._current
            if call is None:
                self._stop.wait(_IDLE_POLL_S)
                continue
            remaining = call.deadline - time.monotonic()
            if remaining > 0:
                self._stop.wait(remaining)
                continue
            if self._current is not call:
                continue  # it returned in time; another call runs now
            if self._in_main:
                signal.pthread_kill(self._target, signal.SIGALRM)
            else:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._target), ctypes.py_object(_AsyncTimeout)
                )
            # One shot per call: wait for it to end before looking again.
            while self._current is call:
                if self._stop.wait(_IDLE_POLL_S):
                    return

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        call = self._current
        if call is not None and time.monotonic() >= call.deadline:
            raise self._timeout(call)
        if callable(self._previous):  # not ours (pytest-timeout, a user's alarm): theirs to handle
            self._previous(signum, frame)

    @staticmethod
    def _timeout(call: _Call) -> CallTimeout:
        elapsed = time.monotonic() - call.started
        return CallTimeout(
            f"timeout: {call.what} did not return within {call.limit:g} s ({call.setting}); "
            f"stopped after {elapsed:.2f} s"
        )
