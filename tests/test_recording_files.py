from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError

from trialrun.runfiles import (
    EpisodeLogWriter,
    RunFileError,
    read_episodes,
    read_manifest,
    repair_torn_tail,
    write_json_atomic,
)
from trialrun.runfiles.episodes import parse_record_block, validate_records
from trialrun.runfiles.schema import EpisodeRecord


def _record(k: int) -> EpisodeRecord:
    return EpisodeRecord(
        run="r",
        job="j",
        episode=k,
        seed=100 + k,
        env_index=0,
        factors={"mass": 1.5, "task": "push-v3"},
        outcome={"success": True, "return": 2.5, "length": 3, "time_to_success": None},
        started_at="2026-11-21T19:00:01.123Z",
        ended_at="2026-11-21T19:00:01.541Z",
    )


def test_record_round_trip_uses_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    with EpisodeLogWriter(path) as log:
        log.append(_record(0))
        log.append(_record(1))
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == [
        "schema",
        "run",
        "job",
        "episode",
        "seed",
        "env_index",
        "factors",
        "outcome",
        "video",
        "started_at",
        "ended_at",
        "extra",
    ]
    assert first["schema"] == 1 and first["factors"] == {"mass": 1.5, "task": "push-v3"}
    assert read_episodes(path) == [_record(0), _record(1)]


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "episodes.jsonl"
    whole = _record(0).to_json_line() + "\n"
    path.write_text(whole + _record(1).to_json_line()[:40])
    assert [r.episode for r in read_episodes(path)] == [0]
    assert "ignoring torn last line 2" in caplog.text
    assert repair_torn_tail(path) == 40
    assert path.read_text() == whole
    assert repair_torn_tail(path) == 0


def test_a_bad_complete_line_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    bad = json.loads(_record(1).to_json_line())
    bad["episode"] = -3
    path.write_text(_record(0).to_json_line() + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(
        RunFileError, match=r"episodes.jsonl:2: field 'episode': Input should be greater than or equal to 0"
    ):
        read_episodes(path)
    with pytest.raises(RunFileError, match="no such episodes file"):
        read_episodes(tmp_path / "missing.jsonl")


def test_atomic_json_leaves_no_temp_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "m.json", {"a": [1, 2]})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others, like any file
    write_json_atomic(tmp_path / "m.json", {"a": [3]})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [3]}
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "m.json", {"a": float("nan")})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [3]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_manifest_errors_name_the_field(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"run": "x"}')
    with pytest.raises(RunFileError, match=r"manifest.json: field 'seed': Field required"):
        read_manifest(tmp_path)


class _CountingFile:
    """Counts the writes and flushes that reach a log's file; ``short`` makes
    the first write take only that many bytes (as write(2) may)."""

    def __init__(self, inner: object, short: int | None = None) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.short = short

    def write(self, data: bytes) -> int:
        self.calls.append("write")
        if self.short is not None:
            data, self.short = bytes(data[: self.short]), None
        return self.inner.write(data)  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> None:
        self.calls.append("flush")
        self.inner.flush()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_a_block_of_records_is_one_unbuffered_write_and_reads_back_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    with EpisodeLogWriter(path) as log:
        counting = _CountingFile(log._file)
        log._file = counting  # type: ignore[assignment]
        log.append_many([_record(k) for k in range(5)])
        log.append_lines([])  # an empty block writes nothing
        log.append(_record(5))
        assert counting.calls == ["write", "write"]
        # Unbuffered: the block is in the file before the writer returns.
        assert len(path.read_text().splitlines()) == 6
        # A short write is completed by a second one.
        log._file = counting = _CountingFile(counting.inner, short=10)  # type: ignore[assignment]
        log.append(_record(6))
        assert counting.calls == ["write", "write"] and len(path.read_text().splitlines()) == 7
    assert path.read_text() == "".join(_record(k).to_json_line() + "\n" for k in range(7))
    assert read_episodes(path) == [_record(k) for k in range(7)]


def test_a_block_of_lines_is_validated_in_one_call_and_a_bad_one_is_refused() -> None:
    lines = [_record(k).to_json_line() for k in range(3)]
    records, parsed = parse_record_block("".join(f"{line}\n" for line in lines))
    assert records == [_record(k) for k in range(3)] and parsed == lines
    assert parse_record_block("") == ([], [])
    with pytest.raises(ValueError, match=r"^a block of records must end in a newline$"):
        parse_record_block(lines[0])
    with pytest.raises(ValueError, match=r"^a block of records holds an empty line$"):
        parse_record_block(f"{lines[0]}\n\n{lines[1]}\n")
    bad = lines[1].replace('"episode":1', '"episode":-1')
    with pytest.raises(ValidationError) as info:
        parse_record_block(f"{lines[0]}\n{bad}\n")
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [((1, "episode"), "greater_than_equal")]


class _CollectorProbe(Mapping[str, object]):
    """A record's fields that note whether the collector ran while they were read."""

    def __init__(self, fields: dict[str, object], seen: list[bool]) -> None:
        self.fields = fields
        self.seen = seen

    def __getitem__(self, key: str) -> object:
        self.seen.append(gc.isenabled())
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)


def test_a_large_block_is_validated_with_the_collector_paused_and_left_as_it_was() -> None:
    fields = _record(0).model_dump()
    seen: list[bool] = []
    assert validate_records([_CollectorProbe(fields, seen)] * 64) == [_record(0)] * 64
    assert set(seen) == {False} and gc.isenabled()
    seen.clear()
    assert len(validate_records([_CollectorProbe(fields, seen)] * 63)) == 63  # small: not worth it
    assert set(seen) == {True}
    with pytest.raises(ValidationError):
        validate_records([{**fields, "seed": -1}] * 64)
    assert gc.isenabled()  # re-enabled after a bad block too
    gc.disable()
    try:
        assert len(validate_records([fields] * 64)) == 64
        assert not gc.isenabled()  # a caller's disabled collector stays disabled
    finally:
        gc.enable()
