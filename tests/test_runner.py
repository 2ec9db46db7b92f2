from __future__ import annotations

import errno
import io
import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trialrun.config import parse_run_config
from trialrun.envs.probe import probe_length, probe_success
from trialrun.errors import ConfigError, InputError
from trialrun.execution.runner import JobSink, ManifestWriter, RunResult, run_evaluation
from trialrun.plan import slot_for
from trialrun.runfiles import EpisodeLogWriter, RunWriteError, read_episodes, read_manifest, read_summary
from trialrun.runfiles.schema import EpisodeRecord, JobManifest, JobState, Manifest
from trialrun.stats import OutcomeTally


def _config(**overrides: Any) -> Any:
    doc: dict[str, Any] = {
        "name": "probe-run",
        "seed": 5,
        "jobs": [
            {
                "name": "probe",
                "env": "trialrun/SeedProbe-v0",
                "policy": "random",
                "episodes": 30,
                "num_envs": 4,
            },
            {
                "name": "cartpole",
                "env": "CartPole-v1",
                "policy": "cartpole-balance",
                "episodes": 6,
                "num_envs": 3,
                "max_steps": 60,
                "success": "survived",
            },
        ],
    }
    doc.update(overrides)
    return parse_run_config(doc)


def _identity(path: Path) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r.job,
            r.episode,
            r.seed,
            json.dumps(r.factors, sort_keys=True),
            json.dumps(r.outcome, sort_keys=True),
        )
        for r in read_episodes(path)
    )


def test_run_writes_all_files_with_exact_records(tmp_path: Path) -> None:
    result = run_evaluation(_config(), tmp_path / "run")
    assert result.exit_code == 0
    assert result.statuses == {"probe": "completed", "cartpole": "completed"}
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert len(records) == 36
    probe = [r for r in records if r.job == "probe"]
    assert sorted(r.episode for r in probe) == list(range(30))
    for r in probe:
        assert r.seed == slot_for(5, "probe", r.episode).seed
        assert r.outcome["length"] == probe_length(r.seed)
        assert r.outcome["success"] is probe_success(r.seed)
        assert r.run == "probe-run" and r.schema_version == 1
    cartpole = [r for r in records if r.job == "cartpole"]
    assert [r.outcome["length"] for r in cartpole] == [60] * 6
    assert all(r.outcome["success"] for r in cartpole)

    manifest = read_manifest(tmp_path / "run")
    assert manifest.jobs["probe"].status == "completed" and manifest.jobs["probe"].completed == 30
    assert manifest.config["jobs"][0]["num_envs"] == 4
    assert manifest.versions["gymnasium"] and manifest.versions["python"]
    assert manifest.started_at <= (manifest.ended_at or "")
    summary = read_summary(tmp_path / "run")
    expected_rate = sum(probe_success(r.seed) for r in probe) / 30
    assert summary.jobs["probe"].success_rate == pytest.approx(expected_rate)
    assert summary.jobs["cartpole"].success_rate == 1.0
    assert summary.overall.episodes == 36


def test_two_runs_give_identical_records(tmp_path: Path) -> None:
    run_evaluation(_config(), tmp_path / "a")
    run_evaluation(_config(), tmp_path / "b")
    assert _identity(tmp_path / "a" / "episodes.jsonl") == _identity(tmp_path / "b" / "episodes.jsonl")
    # Equal but for the wall-clock step timings (like the records' timestamps).
    clocks = {"policy_seconds", "env_seconds"}
    summaries = [read_summary(tmp_path / name) for name in ("a", "b")]
    a, b = (
        s.model_dump(exclude={"jobs": {name: clocks for name in s.jobs}, "overall": clocks})
        for s in summaries
    )
    assert a == b
    job = (
        summaries[0].jobs["probe"] if "probe" in summaries[0].jobs else next(iter(summaries[0].jobs.values()))
    )
    assert job.policy_seconds is not None and job.env_seconds is not None and job.env_seconds > 0


def test_a_failing_job_is_isolated(tmp_path: Path) -> None:
    cfg = _config(
        jobs=[
            {"name": "first", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 5},
            {
                "name": "explodes",
                "env": "trialrun/SeedProbe-v0",
                "policy": {"type": "helpers:ExplodingPolicy", "kwargs": {"after": 45}},
                "episodes": 20,
            },
            {"name": "diverges", "env": "helpers:helpers/Broken-v0", "policy": "zero", "episodes": 2},
            {"name": "last", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 5},
        ]
    )
    result = run_evaluation(cfg, tmp_path / "run")
    assert result.exit_code == 1
    assert result.statuses == {
        "first": "completed",
        "explodes": "failed",
        "diverges": "failed",
        "last": "completed",
    }
    manifest = read_manifest(tmp_path / "run")
    failed = manifest.jobs["explodes"]
    assert failed.error == "RuntimeError: policy exploded on purpose"
    assert failed.traceback is not None
    assert failed.traceback.startswith("Traceback (most recent call last):")
    assert 'in act\n    raise RuntimeError("policy exploded on purpose")' in failed.traceback
    assert 0 < failed.completed < 20  # episodes that ended before the failure are kept
    assert manifest.jobs["diverges"].error == "ValueError: the simulator diverged on purpose"
    summary = read_summary(tmp_path / "run")
    assert summary.jobs["explodes"].status == "failed"
    assert summary.jobs["explodes"].episodes == failed.completed


def test_resume_runs_only_missing_slots_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = _config()
    run_evaluation(cfg, tmp_path / "full")
    partial = tmp_path / "partial"
    run_evaluation(cfg, partial)
    lines = (partial / "episodes.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:7] + lines[20:25]
    (partial / "episodes.jsonl").write_text("".join(kept) + lines[30][: len(lines[30]) // 2])  # torn tail
    result = run_evaluation(cfg, partial, resume=True)
    assert result.exit_code == 0
    text = (partial / "episodes.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 36
    assert _identity(partial / "episodes.jsonl") == _identity(tmp_path / "full" / "episodes.jsonl")
    again = run_evaluation(cfg, partial, resume=True)  # nothing left to do
    assert again.exit_code == 0 and len(read_episodes(partial / "episodes.jsonl")) == 36


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    run_evaluation(_config(), tmp_path / "run")
    with pytest.raises(ConfigError, match="the config differs from the one the run was started with"):
        run_evaluation(_config(seed=6), tmp_path / "run", resume=True)


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    run_evaluation(_config(), tmp_path / "run")
    with pytest.raises(InputError, match="already holds a run; use --resume"):
        run_evaluation(_config(), tmp_path / "run")


class _FillingFile(io.BytesIO):
    """Accepts ``capacity`` lines, then fails like a full disk (the episode
    log writes bytes, unbuffered)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def write(self, data: Any) -> int:
        if self.getvalue().count(b"\n") >= self.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_write_failure_is_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    monkeypatch.setattr("trialrun.runfiles.episodes.open", lambda *a, **k: _FillingFile(4), raising=False)
    with pytest.raises(RunWriteError, match="No space left on device"):
        run_evaluation(_config(), run_dir)
    manifest = read_manifest(run_dir)
    assert manifest.jobs["probe"].status == "failed"
    assert manifest.jobs["probe"].error == "stopped: a run file could not be written (see the run's output)"
    assert manifest.jobs["probe"].traceback is None


def test_an_unknown_video_camera_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "r",
            "jobs": [
                {"name": "ok", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 2},
                {
                    "name": "cam",
                    "env": "metaworld/reach-v3",
                    "policy": "zero",
                    "episodes": 1,
                    "video": {"cameras": ["corrner"]},
                },
            ],
        }
    )
    with pytest.raises(ConfigError) as info:
        run_evaluation(cfg, tmp_path / "run")
    assert str(info.value) == (
        "field 'jobs.1.video.cameras': unknown camera 'corrner'; this env's cameras: default, topview, "
        "corner, corner2, corner3, corner4, behindGripper, gripperPOV"
    )
    assert not (tmp_path / "run").exists()


def test_a_run_directory_in_use_is_refused(tmp_path: Path) -> None:
    from trialrun.runfiles import LOCK_FILE, RunDirBusy, RunDirLock

    run_evaluation(_config(), tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released and removed at the end
    with RunDirLock(tmp_path / "run"), pytest.raises(RunDirBusy) as info:
        run_evaluation(_config(), tmp_path / "run", resume=True)
    assert str(info.value) == (
        f"{tmp_path / 'run'} is in use by another trialrun process (pid {os.getpid()}); "
        "wait for it to finish or stop it before resuming"
    )
    assert len(read_episodes(tmp_path / "run" / "episodes.jsonl")) == 36  # nothing was appended


# --------------------------------------------------------------------------- memory at scale


class _StopAfter:
    """A progress observer that fails the job (an error raised from its
    ``emit``) once ``count`` episodes have been recorded."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0

    def job_started(self, job: str, planned: int, done: int) -> None:
        """Nothing to show."""

    def job_phase(self, job: str, phase: str) -> None:
        """Nothing to show."""

    def episode_finished(self, record: EpisodeRecord) -> None:
        self.seen += 1
        if self.seen == self.count:
            raise RuntimeError(f"stop after {self.count}")

    def job_finished(self, job: str, status: JobState, error: str | None) -> None:
        """Nothing to show."""


def _probe(episodes: int, num_envs: int, vectorization: str) -> Any:
    job: dict[str, Any] = {"name": "probe", "env": "trialrun/SeedProbe-v0", "policy": "random"}
    job |= {"episodes": episodes, "num_envs": num_envs, "vectorization": vectorization}
    return parse_run_config({"name": "big", "seed": 1, "jobs": [job]})


def _traced_peak(run: Callable[[], RunResult]) -> tuple[RunResult, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("vectorization", "num_envs"), [("native", 64), ("sync", 4)])
def test_a_million_episode_job_reads_its_plan_a_block_at_a_time(
    tmp_path: Path, vectorization: str, num_envs: int
) -> None:
    # An eager plan holds a Slot per episode (~250 MB here) before the first
    # step; the lazy one a block of PLAN_BLOCK. What remains per episode is
    # the summary's tally (9 bytes an episode: 9 MB).
    result, peak = _traced_peak(
        lambda: run_evaluation(
            _probe(10**6, num_envs, vectorization), tmp_path / "run", observer=_StopAfter(300)
        )
    )
    assert result.statuses == {"probe": "failed"} and result.errors == {
        "probe": "RuntimeError: stop after 300"
    }
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert len(records) == 300 and len({r.episode for r in records}) == 300
    assert all(r.seed == slot_for(1, "probe", r.episode).seed for r in records)
    assert peak < 24 * 2**20, peak


def test_resume_reads_the_records_on_disk_one_at_a_time(tmp_path: Path) -> None:
    cfg = _probe(20_000, 64, "native")
    run_evaluation(cfg, tmp_path / "run", observer=_StopAfter(1))
    log = tmp_path / "run" / "episodes.jsonl"
    # The first step's block of episodes is on disk (written before the observer raised).
    record = json.loads(log.read_text().splitlines()[0])
    with log.open("w") as f:  # 19,900 episodes on disk (parsed all at once: ~50 MB)
        for k in range(19_900):
            f.write(json.dumps({**record, "episode": k}) + "\n")
    result, peak = _traced_peak(lambda: run_evaluation(cfg, tmp_path / "run", resume=True))
    assert result.exit_code == 0
    records = read_episodes(log)
    assert len(records) == 20_000 and {r.episode for r in records} == set(range(20_000))
    assert peak < 6 * 2**20, peak


class _OnDisk:
    """An observer that takes blocks and checks, as each arrives, that every
    record it reports is already in ``episodes.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blocks: list[list[int]] = []

    def job_started(self, job: str, planned: int, done: int) -> None:
        """Nothing to show."""

    def job_phase(self, job: str, phase: str) -> None:
        """Nothing to show."""

    def episode_finished(self, record: EpisodeRecord) -> None:
        raise AssertionError("an observer with episodes_finished gets blocks")

    def episodes_finished(self, job: str, records: list[EpisodeRecord]) -> None:
        on_disk = {json.loads(line)["episode"] for line in self.path.read_text().splitlines()}
        assert job == "probe" and {r.episode for r in records} <= on_disk
        self.blocks.append([r.episode for r in records])

    def job_finished(self, job: str, status: JobState, error: str | None) -> None:
        """Nothing to show."""


def test_a_step_s_episodes_are_written_as_one_block_and_reported_after_it_is_on_disk(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    observer = _OnDisk(run_dir / "episodes.jsonl")
    result = run_evaluation(_probe(40, 8, "sync"), run_dir, observer=observer)
    assert result.exit_code == 0
    reported = [episode for block in observer.blocks for episode in block]
    assert sorted(reported) == list(range(40))
    assert max(len(block) for block in observer.blocks) > 1 and len(observer.blocks) < 40
    assert [r.episode for r in read_episodes(run_dir / "episodes.jsonl")] == reported


def test_a_block_drops_the_episodes_already_recorded_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def record(episode: int, length: int) -> EpisodeRecord:
        return EpisodeRecord(job="j", episode=episode, seed=1, outcome={"return": 1.0, "length": length})

    path = tmp_path / "episodes.jsonl"
    tally = OutcomeTally(4)
    state = JobManifest(name="j", planned=4)
    manifest = Manifest(run="r", seed=1, config={}, started_at="t", jobs={"j": state})
    with EpisodeLogWriter(path) as log:
        sink = JobSink("j", log, tally, None, state, None, ManifestWriter(tmp_path / "m.json", manifest))
        sink.many([record(0, 3), record(1, 3)], ["{line 0}", "{line 1}"])
        sink.many([record(1, 9), record(2, 3), record(2, 9)])  # 1 is on disk; 2 comes twice
        sink(record(3, 3))
    assert path.read_text().splitlines() == [
        "{line 0}",
        "{line 1}",
        record(2, 3).to_json_line(),
        record(3, 3).to_json_line(),
    ]
    assert len(tally) == 4 and tally.length_total == 12
    # The manifest was due once (never written before): after the first block.
    assert json.loads((tmp_path / "m.json").read_text())["jobs"]["j"]["completed"] == 2
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring a second result for (j, 1)",
        "ignoring a second result for (j, 2)",
    ]
