from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trialrun.runfiles import (
    EpisodeLogWriter,
    RunFileError,
    read_episodes,
    read_manifest,
    repair_torn_tail,
    write_json_atomic,
)
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
