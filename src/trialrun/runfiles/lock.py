"""One writer per run directory: an ``flock`` the kernel releases when the holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from trialrun.errors import RunDirBusy, RunWriteError
from trialrun.runfiles.names import LOCK_FILE


class RunDirLock:
    """An exclusive lock on a run directory for the time a run writes to it.

    Why: two processes appending to one ``episodes.jsonl`` (a resume started
    while the first run still goes on) would record the same episodes twice.
    The lock is an ``flock`` on a file in the run directory, so the kernel
    releases it when the holder dies, even by ``kill -9``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with RunDirLock(d):
        ...     try:
        ...         RunDirLock(d).acquire()
        ...     except RunDirBusy:
        ...         print("busy")
        busy
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunWriteError(f"cannot create {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"{self.path.parent} is in use by another trialrun process (pid {holder}); "
                "wait for it to finish or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so a finished run leaves no lock file.
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
