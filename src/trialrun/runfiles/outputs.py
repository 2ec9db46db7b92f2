"""Writing what a command was asked for (an analysis, a report, a comparison,
an imported run) to a place that turns out to be unwritable.

``trialrun run`` treats a failed write as a failure while running (a
:class:`~trialrun.errors.RunWriteError`, exit 1, resumable). The other
commands write to a place the user chose (``--out``, ``--run-dir``, the run
directory given): a read-only or missing folder there is bad input, so it
ends in one :class:`~trialrun.errors.InputError` line naming the path (exit 2).

Example:
    >>> with writing_output(Path("/proc/no/such")):
    ...     Path("/proc/no/such").mkdir(parents=True)
    Traceback (most recent call last):
    ...
    trialrun.errors.InputError: cannot write /proc/no: No such file or directory
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trialrun.errors import InputError, RunWriteError


@contextmanager
def writing_output(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` (or a ``RunWriteError`` from the atomic writers)
    raised inside the block into one ``InputError`` naming the file or ``path``."""
    try:
        yield
    except RunWriteError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError):
            raise InputError(_line(cause, path)) from None
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(_line(exc, path)) from None


def _line(exc: OSError, path: Path) -> str:
    target = exc.filename if isinstance(exc.filename, str) and exc.filename else str(path)
    return f"cannot write {target}: {exc.strerror or exc}"
