"""trialrun.recording.trajectory_writer (the writer process), its server side and
trialrun.execution.held_records: files written by another process, records
that name them only once they are on disk, with every executor."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.errors import RunWriteError
from trialrun.execution.held_records import HeldRecords
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.ray_executor import RayExecutor
from trialrun.execution.runner import run_evaluation
from trialrun.recording import trajectory, trajectory_writer
from trialrun.recording.trajectory_writer import TrajectoryWriter
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.runfiles.schema import EpisodeRecord

SETTINGS = {"episode": 3, "seed": 9, "job": "j", "env_id": "E", "factors": {"mass": 2.5}}


def _job(**overrides: Any) -> dict[str, Any]:
    job = {
        "name": "cp",
        "env": "CartPole-v1",
        "policy": "cartpole-balance",
        "episodes": 12,
        "num_envs": 2,
        "max_steps": 60,
        "success": "survived",
        "factors": {
            "l": {
                "variation": {"type": "attr", "name": "length"},
                "sampler": {"type": "uniform", "low": 0.3, "high": 2.5},
            }
        },
        "trajectories": {"select": "all"},
    }
    job.update(overrides)
    return job


def _run(run_dir: Path, executor: Any = None, **overrides: Any) -> Any:
    config = parse_run_config({"name": "w", "seed": 7, "jobs": [_job(**overrides)]})
    return run_evaluation(config, run_dir, executor=executor)


def _contents(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Every record's trajectory, read back: datasets and attributes by episode."""
    out: dict[int, dict[str, Any]] = {}
    for record in read_episodes(run_dir / "episodes.jsonl"):
        assert record.trajectory == f"trajectories/cp/ep{record.episode}.h5"
        with h5py.File(run_dir / record.trajectory) as f:
            demo = f["data/demo_0"]
            items: dict[str, Any] = {"attrs": {k: str(v) for k, v in demo.attrs.items()}}
            demo.visititems(
                lambda name, item, items=items: (
                    items.__setitem__(name, item[()].tolist()) if isinstance(item, h5py.Dataset) else None
                )
            )
            assert demo.attrs["num_samples"] == record.outcome["length"] == len(items["actions"])
        out[record.episode] = items
    return out


def test_the_writer_process_writes_the_recorders_layout_and_answers_each_file(tmp_path: Path) -> None:
    writer = TrajectoryWriter()
    try:
        good = writer.open(tmp_path / "ep3.h5", "trajectories/j/ep3.h5", SETTINGS)
        observations = {"state": np.arange(8.0).reshape(4, 2)}
        writer.append(good, observations, {"actions": np.array([1, 0, 1]), "rewards": np.ones(3)})
        writer.close(good, 3)
        # A value h5py cannot store: the error comes back as the answer for that file.
        bad = writer.open(tmp_path / "ep4.h5", "trajectories/j/ep4.h5", {**SETTINGS, "episode": 4})
        writer.append(bad, observations, {"actions": np.array([{"a": 1}] * 3, dtype=object)})
        writer.close(bad, 3)
        dropped = writer.open(tmp_path / "ep5.h5", "trajectories/j/ep5.h5", {**SETTINGS, "episode": 5})
        assert (tmp_path / ".ep5.h5.part").exists() or writer.waiting("trajectories/j/ep5.h5")
        writer.abort(dropped)
        writer.sync()
        assert writer.take("trajectories/j/ep3.h5") == ("", False)
        error = writer.take("trajectories/j/ep4.h5")
        assert error is not None and error[0].startswith("TypeError: ") and error[1] is False
        assert writer.take("trajectories/j/ep3.h5") is None  # taken once
        assert not writer.waiting("trajectories/j/ep5.h5")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ep3.h5"]
        with h5py.File(tmp_path / "ep3.h5") as f:
            demo = f["data/demo_0"]
            assert demo["obs/state"][()].tolist() == [[0, 1], [2, 3], [4, 5]]
            assert demo["next_obs/state"][()].tolist() == [[2, 3], [4, 5], [6, 7]]
            assert demo["actions"][()].tolist() == [1, 0, 1]
            assert dict(demo.attrs) == {
                "episode": 3,
                "seed": 9,
                "job": "j",
                "factors": '{"mass": 2.5}',
                "factor.mass": 2.5,
                "num_samples": 3,
            }
            assert f["data"].attrs["total"] == 3
        assert writer.peak_rss_mb() > 10
    finally:
        writer.shutdown()
    assert writer.proc.returncode == 0


def test_a_block_larger_than_the_pipe_arrives_whole(tmp_path: Path) -> None:
    writer = TrajectoryWriter()
    try:
        images = np.random.default_rng(0).integers(0, 256, (65, 96, 96, 3), dtype=np.uint8)  # 1.8 MB
        file_id = writer.open(tmp_path / "ep0.h5", "ep0.h5", {**SETTINGS, "episode": 0})
        for _ in range(3):
            writer.append(file_id, {"default_image": images}, {"rewards": np.zeros(64)})
        writer.close(file_id, 192)
        writer.sync()
        assert writer.take("ep0.h5") == ("", False)
        with h5py.File(tmp_path / "ep0.h5") as f:
            stored = f["data/demo_0/next_obs/default_image"][()]
        assert stored.shape == (192, 96, 96, 3)
        assert np.array_equal(stored[128:], images[1:])
    finally:
        writer.shutdown()


class _Writer:
    """A writer whose answers the test gives."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str, bool]] = {}
        self.sent = {"a.h5", "b.h5", "c.h5"}

    def waiting(self, name: str) -> bool:
        return name in self.sent

    def take(self, name: str) -> tuple[str, bool] | None:
        answer = self.answers.pop(name, None)
        if answer is not None:
            self.sent.discard(name)
        return answer

    def sync(self) -> None:
        for name in self.sent:
            self.answers.setdefault(name, ("", False))


def _record(episode: int, trajectory: str | None) -> EpisodeRecord:
    return EpisodeRecord.model_validate(
        {
            "run": "r",
            "job": "j",
            "episode": episode,
            "seed": 1,
            "env_index": 0,
            "factors": {},
            "outcome": {"success": False, "return": 1.0, "length": 1},
            "trajectory": trajectory,
            "started_at": "2026-01-01T00:00:00.000Z",
            "ended_at": "2026-01-01T00:00:00.000Z",
        }
    )


def test_records_wait_for_their_files_and_leave_in_order() -> None:
    emitted: list[int] = []
    writer = _Writer()
    held = HeldRecords(lambda record: emitted.append(record.episode), writer)  # type: ignore[arg-type]
    held(_record(0, "a.h5"))
    held(_record(1, "b.h5"))
    held(_record(2, None))  # no file: written at once
    held(_record(3, "elsewhere.h5"))  # written by its recorder itself: at once
    assert emitted == [2, 3]
    writer.answers["b.h5"] = ("", False)  # b is written before a: it still waits for a
    held(_record(4, "c.h5"))
    assert emitted == [2, 3]
    writer.answers["a.h5"] = ("", False)
    held(_record(5, None))
    assert emitted == [2, 3, 5, 0, 1]
    held.finish()
    assert emitted == [2, 3, 5, 0, 1, 4]


def test_a_file_the_writer_cannot_write_fails_with_its_reason_and_keeps_no_record() -> None:
    emitted: list[int] = []
    writer = _Writer()
    held = HeldRecords(lambda record: emitted.append(record.episode), writer)  # type: ignore[arg-type]
    held(_record(0, "a.h5"))
    held(_record(1, "b.h5"))
    writer.answers.update(
        {"a.h5": ("OSError: [Errno 28] No space left on device", True), "b.h5": ("", False)}
    )
    with pytest.raises(RunWriteError) as info:  # the file system's: it stops the run
        held(_record(2, None))
    assert str(info.value) == (
        "job 'j': cannot write the trajectory of episode 0 (a.h5): OSError: [Errno 28] No space left on device"
    )
    assert emitted == [2, 1]
    held(_record(3, "c.h5"))
    writer.answers["c.h5"] = ("TypeError: Object dtype dtype('O') has no native HDF5 equivalent", False)
    with pytest.raises(ValueError) as value:  # a value h5py cannot store: it fails the job
        held.finish()
    assert str(value.value) == (
        "job 'j': cannot write the trajectory of episode 3 (c.h5): "
        "TypeError: Object dtype dtype('O') has no native HDF5 equivalent"
    )
    assert emitted == [2, 1]


def _in_process_writes_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing a trajectory file in this process raises: a run that succeeds
    wrote them in its writer process."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a trajectory file was written in the rollout's process")

    monkeypatch.setattr(trajectory, "EpisodeFile", refuse)


def test_sync_and_native_jobs_write_through_the_writer_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference"
    assert _run(reference).exit_code == 0  # first, the files as they are
    _in_process_writes_fail(monkeypatch)
    assert _run(tmp_path / "sync").exit_code == 0
    assert _contents(tmp_path / "sync") == _contents(reference)
    assert len(_contents(reference)) == 12
    native = _run(tmp_path / "native", vectorization="native", factors={})
    assert native.exit_code == 0, native.errors
    assert sorted(_contents(tmp_path / "native")) == list(range(12))
    # failures | successes are written here: their files are deleted or re-simulated at once.
    quota = _run(tmp_path / "quota", trajectories={"select": "successes", "episodes": 2})
    assert quota.exit_code == 1
    error = read_manifest(tmp_path / "quota").jobs["cp"].error or ""
    assert "a trajectory file was written in the rollout's process" in error


def test_async_workers_write_their_own_files(tmp_path: Path) -> None:
    assert _run(tmp_path / "sync").exit_code == 0
    assert _run(tmp_path / "async", vectorization="async").exit_code == 0
    assert _contents(tmp_path / "async") == _contents(tmp_path / "sync")


def test_process_and_ray_executors_give_the_same_trajectories(tmp_path: Path) -> None:
    assert _run(tmp_path / "local").exit_code == 0
    reference = _contents(tmp_path / "local")
    with ProcessExecutor(workers=2, shard_size=5) as process:
        assert _run(tmp_path / "process", process).exit_code == 0
    assert _contents(tmp_path / "process") == reference
    with RayExecutor(workers=2, shard_size=5) as ray:
        assert _run(tmp_path / "ray", ray).exit_code == 0
    assert _contents(tmp_path / "ray") == reference


def test_a_killed_writer_fails_the_job_with_the_reason_and_records_name_only_written_files(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    episodes = run_dir / "episodes.jsonl"
    killed: list[int] = []

    def kill_the_writer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            writer = trajectory_writer._writer
            if writer is not None and episodes.exists() and episodes.read_text().count("\n") >= 3:
                os.kill(writer.proc.pid, signal.SIGKILL)
                killed.append(writer.proc.pid)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_the_writer)
    killer.start()
    # Long episodes, so the writer dies while the job still runs.
    # A writer that cannot write stops the run, as any run file that cannot be written does.
    with pytest.raises(RunWriteError) as info:
        _run(run_dir, episodes=40, max_steps=500, factors={})
    killer.join()
    assert killed
    assert str(info.value).startswith("the trajectory writer process stopped (exit code -9) with ")
    assert "trajectory file(s) unwritten: trajectories/cp/ep" in str(info.value)
    error = read_manifest(run_dir).jobs["cp"].error
    assert error == "stopped: a run file could not be written (see the run's output)"
    records = read_episodes(episodes)
    assert 3 <= len(records) < 40
    for record in records:  # every record's file is complete
        with h5py.File(run_dir / str(record.trajectory)) as f:
            assert f["data/demo_0"].attrs["num_samples"] == record.outcome["length"] == 500
    # Resume, in this process, starts a new writer and completes the job: one
    # complete file per record, nothing else left in the folder.
    config = parse_run_config(
        {"name": "w", "seed": 7, "jobs": [_job(episodes=40, max_steps=500, factors={})]}
    )
    assert run_evaluation(config, run_dir, resume=True).exit_code == 0
    assert trajectory_writer._writer is not None and trajectory_writer._writer.proc.pid != killed[0]
    records = read_episodes(episodes)
    assert sorted(r.episode for r in records) == list(range(40))
    directory = run_dir / "trajectories" / "cp"
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"ep{k}.h5" for k in range(40))
    for record in records:
        with h5py.File(run_dir / str(record.trajectory)) as f:
            assert f["data/demo_0"].attrs["num_samples"] == record.outcome["length"] == 500
