"""Telling a real Ctrl+C from a ``KeyboardInterrupt`` or ``SystemExit`` that user code raised.

Job isolation catches what a job's env or policy raises so the other jobs
still run. ``SystemExit`` and ``KeyboardInterrupt`` are not ``Exception``\\ s,
so a policy calling ``sys.exit()`` used to end the whole run with the
manifest stuck at "running". Catching ``BaseException`` fixes that but would
also swallow the user's own Ctrl+C. :class:`InterruptWatch` counts the SIGINTs
this process really receives while a run goes on; a ``KeyboardInterrupt``
seen while none arrived was raised by code, and fails only its job.

Example:
    >>> with InterruptWatch() as watch:
    ...     try:
    ...         raise SystemExit(3)          # a policy calling sys.exit(3)
    ...     except BaseException as exc:
    ...         watch.is_real_interrupt(exc), str(as_job_failure(exc))
    (False, 'the env or policy raised SystemExit(3): it fails this job instead of ending the run')
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from trialrun.errors import UserCodeExit

_received = 0  # SIGINTs delivered to this process since it started (only ever increases)


def _count_sigint(previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> Any:
        global _received
        _received += 1
        if callable(previous):
            return previous(signum, frame)
        raise KeyboardInterrupt

    return handler


class InterruptWatch:
    """Counts real SIGINTs while entered (main thread only; elsewhere every
    ``KeyboardInterrupt`` comes from code, since Python delivers signals to
    the main thread)."""

    def __init__(self) -> None:
        self._start = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> InterruptWatch:
        self._start = _received
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:  # an ignored Ctrl+C stays ignored
                self._previous = previous
                signal.signal(signal.SIGINT, _count_sigint(previous))
                self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    @property
    def interrupted(self) -> bool:
        """Whether a real SIGINT arrived since the watch was entered."""
        return _received > self._start

    def is_real_interrupt(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the user's Ctrl+C (stop the run) rather than something code raised."""
        return isinstance(exc, KeyboardInterrupt) and self.interrupted


def as_job_failure(exc: BaseException) -> Exception:
    """``exc`` as the exception a job fails with: ``SystemExit``,
    ``KeyboardInterrupt`` and other non-``Exception`` errors raised by code
    become a :class:`~trialrun.errors.UserCodeExit`; others are unchanged."""
    if isinstance(exc, Exception):
        return exc
    shown = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}()"
    failure = UserCodeExit(f"the env or policy raised {shown}: it fails this job instead of ending the run")
    failure.__cause__ = exc
    return failure
