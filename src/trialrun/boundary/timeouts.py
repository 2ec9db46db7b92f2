"""Wall-clock limits on calls into user code (a policy's ``act``, an env's ``step``).

A policy that never returns from ``act`` used to hang the whole run. Python
cannot kill a thread, and moving every policy call to a helper thread would
break policies bound to their thread (GL contexts, some simulators) and cost a
thread hand-off per step. So the call stays where it is and is interrupted:

- **in the main thread** (the CLI, process-pool workers): ``setitimer`` arms a
  ``SIGALRM`` that raises :class:`~trialrun.errors.CallTimeout` inside the
  call. The signal also interrupts a blocking ``sleep``, socket read or pipe
  wait. Arming and disarming costs two system calls (about 1 us per step).
- **in another thread** (a trainer evaluating from a thread): a watchdog
  thread raises the timeout in the calling thread with
  ``PyThreadState_SetAsyncExc``. That lands at the next Python bytecode, so it
  stops Python loops and returns from C calls, but not a call blocked in C.

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
from typing import Any, TypeVar

from trialrun.errors import CallTimeout

T = TypeVar("T")


class _AsyncTimeout(CallTimeout):
    """What the watchdog raises in another thread (an exception class with no
    arguments: ``PyThreadState_SetAsyncExc`` cannot pass a message)."""

    def __init__(self) -> None:
        super().__init__("timeout: a call into user code exceeded its time limit")


class TimeLimits:
    """Arms a time limit around single calls; use as a context manager (the
    ``SIGALRM`` handler is installed on entry and the previous one restored on
    exit)."""

    def __init__(self) -> None:
        self._in_main = threading.current_thread() is threading.main_thread()
        self._previous: Any = None
        self._watchdog: _Watchdog | None = None
        self._what = ""
        self._setting = ""
        self._limit = 0.0
        self._armed_at = 0.0

    def __enter__(self) -> TimeLimits:
        if self._in_main:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def call(self, seconds: float, what: str, setting: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, failed with :class:`CallTimeout` after ``seconds``.

        ``what`` names the call and ``setting`` the limit in the message
        (``"policy.act"``, ``"act_timeout"``).
        """
        self._what, self._setting, self._limit = what, setting, seconds
        self._armed_at = time.monotonic()
        if self._in_main:
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-6))
            try:
                return fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        if self._watchdog is None:
            self._watchdog = _Watchdog(threading.get_ident())
        self._watchdog.arm(self._armed_at + seconds)
        try:
            return fn(*args)
        except _AsyncTimeout:
            raise self._timeout() from None
        finally:
            self._watchdog.disarm()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        raise self._timeout()

    def _timeout(self) -> CallTimeout:
        elapsed = time.monotonic() - self._armed_at
        return CallTimeout(
            f"timeout: {self._what} did not return within {self._limit:g} s ({self._setting}); "
            f"stopped after {elapsed:.2f} s"
        )


class _Watchdog:
    """A daemon thread that raises :class:`_AsyncTimeout` in one thread when its deadline passes."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._deadline: float | None = None
        self._stopped = False
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="trialrun-timeouts", daemon=True).start()

    def arm(self, deadline: float) -> None:
        with self._cond:
            self._deadline = deadline
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._deadline = None
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._target), ctypes.py_object(_AsyncTimeout)
                )
