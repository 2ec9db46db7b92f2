"""``episodes.jsonl``: append-only, one record per line, read back typed.

The file may end in a torn line when a process was killed mid-write; readers
ignore that line and :func:`repair_torn_tail` cuts it off before a resumed run
appends.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from pydantic import TypeAdapter, ValidationError

from trialrun.errors import RunFileError, RunWriteError, first_error
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)


MAX_RECORD_BYTES = 1024 * 1024
"""Longest line of ``episodes.jsonl`` read (1 MiB; a record is about 500 bytes):
a corrupt file without newlines is refused instead of read whole into memory."""


def check_regular_file(path: Path, what: str) -> None:
    """Raise :class:`RunFileError` unless ``path`` is a regular file: missing,
    a directory or a device each get their own words (never a traceback)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise RunFileError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise RunFileError(f"{path}: is not a regular file (a device, pipe or socket)")


def iter_episode_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of complete lines; a torn last line (no
    trailing newline) is skipped with a warning, as a killed writer leaves one.

    Raises:
        RunFileError: a line that is not UTF-8 or longer than
            :data:`MAX_RECORD_BYTES`, naming the file and the line.
    """
    with open(path, "rb") as f:
        number = 0
        while raw := f.readline(MAX_RECORD_BYTES + 1):
            number += 1
            if not raw.endswith(b"\n"):
                if len(raw) > MAX_RECORD_BYTES:
                    raise RunFileError(f"{path}:{number}: line longer than {MAX_RECORD_BYTES} bytes")
                logger.warning("%s: ignoring torn last line %d (%d bytes)", path, number, len(raw))
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RunFileError(
                    f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if line.strip():
                yield number, line


def nonfinite_field(record: EpisodeRecord) -> str | None:
    """The first outcome or factor of ``record`` holding NaN or +-inf (``outcome.return``), or None.

    trialrun writes ``null`` for a value that is not finite (and flags the
    episode), so such a number comes from elsewhere; statistics over it would
    be NaN (or raise), so readers refuse it naming the field.
    """
    for group, values in (("outcome", record.outcome), ("factors", record.factors)):
        for key, value in values.items():
            if type(value) is float and not math.isfinite(value):
                return f"{group}.{key}"
    return None


def read_episodes(path: Path) -> list[EpisodeRecord]:
    """All complete records of an ``episodes.jsonl``.

    Raises:
        RunFileError: the file is missing or not a regular file, or a complete
            line is not a valid record (naming the line and the field): not
            UTF-8, not JSON, a wrong type, or a number that is not finite.
    """
    return list(iter_episodes(path))


def iter_episodes(path: Path) -> Iterator[EpisodeRecord]:
    """The complete records of an ``episodes.jsonl`` one at a time, checked as
    :func:`read_episodes` checks them (for readers that keep only a few).

    Raises:
        RunFileError: as :func:`read_episodes`, when the bad line is reached.
    """
    return (record for record, _ in iter_episode_texts(path))


def iter_episode_texts(path: Path) -> Iterator[tuple[EpisodeRecord, str]]:
    """:func:`iter_episodes` with each record's line (a reader that keeps
    many records can keep their text, a fraction of a parsed record's memory)."""
    path = Path(path)
    check_regular_file(path, "episodes file")
    try:
        for number, line in iter_episode_lines(path):
            try:
                record = EpisodeRecord.model_validate_json(line)
            except ValidationError as exc:
                raise RunFileError(f"{path}:{number}: {describe_validation_error(exc, '(line)')}") from None
            bad = nonfinite_field(record)
            if bad is not None:
                value = _lookup(record, bad)
                raise RunFileError(
                    f"{path}:{number}: field '{bad}': {value} is not a finite number "
                    "(a record holds a finite number or null)"
                )
            yield record, line
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _lookup(record: EpisodeRecord, dotted: str) -> object:
    group, key = dotted.split(".", 1)
    values: dict[str, object] = dict(record.outcome) if group == "outcome" else dict(record.factors)
    return values[key]


def describe_validation_error(exc: ValidationError, default_field: str) -> str:
    """``field 'a.b': message`` of the first error; a line or file that is not
    JSON at all (truncated, binary) says so instead of naming a field."""
    err = exc.errors()[0]
    if err["type"] == "json_invalid":
        return f"not valid JSON (truncated or corrupt): {err['msg'].removeprefix('Invalid JSON: ')}"
    field, message = first_error(exc, default_field)
    return f"field '{field}': {message}"


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line off ``path``; return the number of bytes removed.

    Reads only the tail of the file (back to its last newline).

    Raises:
        RunFileError: ``path`` is a directory or not a regular file.
        RunWriteError: the file cannot be opened for writing or cut.
    """
    path = Path(path)
    if not path.exists():
        return 0
    check_regular_file(path, "episodes file")
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            keep = _after_last_newline(f, size)
            if keep == size:
                return 0
            f.truncate(keep)
    except OSError as exc:
        raise RunWriteError(f"cannot repair the torn last line of {path}: {exc.strerror or exc}") from exc
    removed = size - keep
    logger.warning("%s: removed a torn last line of %d bytes", path, removed)
    return removed


def _after_last_newline(f: BinaryIO, size: int, block: int = 65536) -> int:
    """The offset just after the last ``\\n`` of a file of ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        chunk = f.read(end - start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


RECORD_LIST = TypeAdapter(list[EpisodeRecord])
"""Validates many records in one call (compiled once): a block of records
costs one pass through pydantic's core instead of one call per record."""


_PAUSE_GC_FROM = 64
"""Blocks of at least this many records are validated with the collector paused."""


def validate_records(data: str | Sequence[Mapping[str, object]], count: int = 0) -> list[EpisodeRecord]:
    """A block of records validated in one call: ``data`` is a JSON array of
    records or a list of plain dicts (field names, not aliases, or either);
    ``count`` is the number of records in a JSON array (when known).

    Calls the compiled validator directly (``TypeAdapter.validate_*`` adds a
    microsecond of Python per call, as much as a small block's validation).
    A large block is validated with the cyclic garbage collector paused: a
    thousand records make ~10,000 containers that all stay alive until the
    call returns, and the collector would walk them again and again (a third
    of the time at 1024 records; they hold no reference cycles).

    Raises:
        pydantic.ValidationError: a record is not valid (its location starts
            with the record's index in the block).
    """
    validator = RECORD_LIST.validator
    size = count if isinstance(data, str) else len(data)
    paused = size >= _PAUSE_GC_FROM and gc.isenabled()
    if paused:
        gc.disable()
    try:
        if isinstance(data, str):
            records: list[EpisodeRecord] = validator.validate_json(data)
        else:
            records = validator.validate_python(data)
        return records
    finally:
        if paused:
            gc.enable()


def record_lines(records: Sequence[EpisodeRecord]) -> list[str]:
    """Each record as its ``episodes.jsonl`` line (no newline), as
    :meth:`EpisodeRecord.to_json_line` writes it."""
    return [record.to_json_line() for record in records]


def parse_record_block(text: str) -> tuple[list[EpisodeRecord], list[str]]:
    """The records of a block of JSON lines (each ending in ``\\n``), validated
    in one call, and the lines themselves (which may then be appended as
    they are: each is a valid record's JSON).

    Why: a worker sends the records of one step as one block; parsing and
    validating them one line at a time costs most of the driver's time per
    record.

    Raises:
        ValueError: the block does not end in a newline, or a line is empty.
        pydantic.ValidationError: a line is not a valid record (the error's
            location starts with the line's index in the block).
    """
    if not text:
        return [], []
    if not text.endswith("\n"):
        raise ValueError("a block of records must end in a newline")
    lines = text[:-1].split("\n")
    if not all(lines):
        raise ValueError("a block of records holds an empty line")
    # JSON strings cannot hold a raw newline, so the lines are exactly the records.
    records = validate_records("[" + ",".join(lines) + "]", len(lines))
    return records, lines


class EpisodeLogWriter:
    """Appends records, one per line, and flushes them, so a finished episode
    is on disk as soon as it ends (never buffered for the whole run).

    :meth:`append_lines` writes a block of records (those that ended in one
    step, or arrived in one message from a worker) with one write and one
    flush: the block is on disk before any of its records is reported.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            # Unbuffered bytes: a block is one write(2) straight from its encoded
            # text, without a text layer and a buffer to copy it through first.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise RunWriteError(f"cannot open {self.path} for appending: {exc}") from exc

    def append(self, record: EpisodeRecord) -> None:
        """Append one record (a block of one)."""
        self.append_lines([record.to_json_line()])

    def append_many(self, records: Sequence[EpisodeRecord]) -> None:
        """Append ``records`` as one block (one write, one flush)."""
        self.append_lines(record_lines(records))

    def append_lines(self, lines: Sequence[str]) -> None:
        """Append already serialized records (no newlines) as one block."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        try:
            written = self._file.write(data)
            while written < len(data):  # a short write (a signal, a full disk): the rest, or the error
                written += self._file.write(memoryview(data)[written:])
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
