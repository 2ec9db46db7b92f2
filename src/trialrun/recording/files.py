"""Reading and writing the files of a run directory.

``episodes.jsonl`` is append-only and may end in a torn line when a process was
killed mid-write; readers ignore that line and :func:`repair_torn_tail` cuts it
off before a resumed run appends. ``manifest.json`` and ``summary.json`` are
replaced atomically (temp file + rename), so a reader never sees half a file.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json_atomic(d / "x.json", {"a": 1})
    >>> (d / "x.json").read_text()
    '{\\n  "a": 1\\n}\\n'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trialrun.errors import InputError, first_error
from trialrun.recording.schema import EpisodeRecord, Manifest, Summary

logger = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.json"


class RunFileError(Exception):
    """A run file is missing, unreadable or not in the expected format."""


class RunDirBusy(InputError):
    """Another process holds the run directory's lock."""


class RunWriteError(Exception):
    """Writing a run file failed (disk full, permissions...). Nothing about the
    episodes' outcomes is implied: the rollout itself did not fail."""


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask() is process-wide, so calling it while other
# threads create files would race.
_UMASK = _read_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a
    rename, so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp makes the file owner-only; run files are meant to be shared.
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RunWriteError(f"cannot write {path}: {exc}") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN refused)."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def iter_episode_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of complete lines; a torn last line (no
    trailing newline) is skipped with a warning, as a killed writer leaves one."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                logger.warning("%s: ignoring torn last line %d (%d bytes)", path, number, len(line))
                return
            if line.strip():
                yield number, line


def read_episodes(path: Path) -> list[EpisodeRecord]:
    """All complete records of an ``episodes.jsonl``.

    Raises:
        RunFileError: the file is missing, or a complete line is not a valid
            record (naming the line and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path}: no such episodes file")
    records = []
    for number, line in iter_episode_lines(path):
        try:
            records.append(EpisodeRecord.model_validate_json(line))
        except ValidationError as exc:
            field, message = first_error(exc, "(line)")
            raise RunFileError(f"{path}:{number}: field '{field}': {message}") from None
    return records


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line off ``path``; return the number of bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
    removed = len(data) - keep
    logger.warning("%s: removed a torn last line of %d bytes", path, removed)
    return removed


LOCK_FILE = ".trialrun.lock"


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


class EpisodeLogWriter:
    """Appends one record per line and flushes it, so a finished episode is on
    disk as soon as it ends (never buffered for the whole run)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise RunWriteError(f"cannot open {self.path} for appending: {exc}") from exc

    def append(self, record: EpisodeRecord) -> None:
        try:
            self._file.write(record.to_json_line() + "\n")
            self._file.flush()
        except OSError as exc:
            raise RunWriteError(f"cannot append to {self.path}: {exc}") from exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            raise RunWriteError(f"cannot close {self.path}: {exc}") from exc

    def __enter__(self) -> EpisodeLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_model(path: Path, model: type[Manifest] | type[Summary]) -> Any:
    if not path.is_file():
        raise RunFileError(f"{path}: no such file")
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        field, message = first_error(exc, "(file)")
        raise RunFileError(f"{path}: field '{field}': {message}") from None


def read_manifest(run_dir: Path) -> Manifest:
    """The run's manifest (raises :class:`RunFileError` naming the problem)."""
    result: Manifest = _read_model(Path(run_dir) / MANIFEST_FILE, Manifest)
    return result


def read_summary(run_dir: Path) -> Summary:
    """The run's summary (raises :class:`RunFileError` naming the problem)."""
    result: Summary = _read_model(Path(run_dir) / SUMMARY_FILE, Summary)
    return result
