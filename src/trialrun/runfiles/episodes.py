"""``episodes.jsonl``: append-only, one record per line, read back typed.

The file may end in a torn line when a process was killed mid-write; readers
ignore that line and :func:`repair_torn_tail` cuts it off before a resumed run
appends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from trialrun.errors import RunFileError, RunWriteError, first_error
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)


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
    try:
        for number, line in iter_episode_lines(path):
            try:
                records.append(EpisodeRecord.model_validate_json(line))
            except ValidationError as exc:
                field, message = first_error(exc, "(line)")
                raise RunFileError(f"{path}:{number}: field '{field}': {message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read: {exc}") from None
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
