from __future__ import annotations

import json
import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trialrun.config import RunConfig, parse_run_config
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.runner import run_evaluation
from trialrun.execution.sharding import default_shard_size, job_shards, make_shards
from trialrun.plan import episode_indices, plan_job, slot_for
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.runfiles.schema import EpisodeRecord

SWEEP = {
    "l": {
        "variation": {"type": "attr", "name": "length"},
        "sampler": {"type": "uniform", "low": 0.3, "high": 2.5},
    }
}


def _config(**extra_jobs: Any) -> RunConfig:
    return parse_run_config(
        {
            "name": "exec",
            "seed": 3,
            "jobs": [
                {
                    "name": "probe",
                    "env": "trialrun/SeedProbe-v0",
                    "policy": "random",
                    "episodes": 30,
                    "num_envs": 3,
                },
                {
                    "name": "sweep",
                    "env": "CartPole-v1",
                    "policy": "cartpole-balance",
                    "episodes": 10,
                    "num_envs": 2,
                    "success": "survived",
                    "max_steps": 200,
                    "factors": SWEEP,
                },
            ],
        }
    )


def identity(run_dir: Path) -> list[tuple[Any, ...]]:
    """Records without timestamps and env_index: what must not depend on the executor."""
    return sorted(
        (
            r.job,
            r.episode,
            r.seed,
            json.dumps(r.factors, sort_keys=True),
            json.dumps(r.outcome, sort_keys=True),
        )
        for r in read_episodes(run_dir / "episodes.jsonl")
    )


def test_shards_are_contiguous_and_cover_every_slot() -> None:
    slots = plan_job(0, "j", 23)
    shards = make_shards(slots, 5, first_id=7)
    assert [s.shard_id for s in shards] == [7, 8, 9, 10, 11]
    assert [[x.episode for x in s.slots] for s in shards][-1] == [20, 21, 22]
    assert [x for s in shards for x in s.slots] == slots
    assert default_shard_size(100, 2, 4) == 17 and default_shard_size(10, 2, 4) == 4
    with pytest.raises(ValueError):
        make_shards(slots, 0)


def test_a_shard_of_a_million_episode_plan_is_sent_as_its_runs() -> None:
    shards = job_shards(plan_job(0, "j", 10**6), workers=2, num_envs=8, shard_size=None)
    assert [len(s.slots) for s in shards] == [166_667] * 5 + [166_665]
    shard = shards[1]
    assert shard.describe() == "shard 1 (episodes 166667..333333, 166667 slots)"
    assert shard.remaining is shard.slots
    for episode in range(166_667, 167_667):
        shard.received.add(episode)
    shard.received.add(300_000)
    remaining = shard.remaining
    assert len(remaining) == 166_667 - 1001 and len(shard.received) == 1001
    assert remaining[0] == slot_for(0, "j", 167_667) and 300_000 not in episode_indices(remaining)
    # What the driver pickles to a worker: the shard's runs, not its slots.
    assert len(pickle.dumps(remaining)) < 600


def test_process_executor_gives_the_local_records(tmp_path: Path) -> None:
    cfg = _config()
    run_evaluation(cfg, tmp_path / "local")
    seen: list[str] = []

    class Observer:
        def job_started(self, job: str, planned: int, done: int) -> None: ...
        def episode_finished(self, record: EpisodeRecord) -> None:
            seen.append(record.job)

        def job_finished(self, job: str, status: str, error: str | None) -> None: ...

    with ProcessExecutor(workers=2, shard_size=4) as executor:
        result = run_evaluation(cfg, tmp_path / "process", executor=executor, observer=Observer())
        assert executor.started_workers == 2
    assert result.exit_code == 0
    assert identity(tmp_path / "process") == identity(tmp_path / "local")
    assert len(seen) == 40  # one progress stream fed by all workers
    text = (tmp_path / "process" / "episodes.jsonl").read_text()
    assert all(json.loads(line) for line in text.splitlines())  # lines never interleave


def _kill_first_worker_after(run_dir: Path, pid_dir: Path, min_records: int) -> threading.Thread:
    def killer() -> None:
        deadline = time.monotonic() + 120
        episodes = run_dir / "episodes.jsonl"
        while time.monotonic() < deadline:
            pids = sorted(pid_dir.glob("*.pid")) if pid_dir.exists() else []
            if pids and episodes.exists() and episodes.read_text().count("\n") >= min_records:
                os.kill(int(pids[0].read_text()), signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def _slow_config(pid_dir: Path, episodes: int = 24) -> RunConfig:
    return parse_run_config(
        {
            "name": "kill",
            "seed": 5,
            "jobs": [
                {
                    "name": "slow",
                    "env": "trialrun/SeedProbe-v0",
                    "episodes": episodes,
                    "num_envs": 2,
                    "policy": {
                        "type": "helpers:PidFilePolicy",
                        "kwargs": {"pid_dir": str(pid_dir), "delay": 0.005},
                    },
                },
                {"name": "after", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 6},
            ],
        }
    )


def test_a_killed_worker_has_its_shard_finished_elsewhere(tmp_path: Path) -> None:
    cfg = _slow_config(tmp_path / "pids")
    run_evaluation(_slow_config(tmp_path / "pids-ref"), tmp_path / "reference")
    killer = _kill_first_worker_after(tmp_path / "run", tmp_path / "pids", min_records=3)
    with ProcessExecutor(workers=2, shard_size=12, max_retries=1) as executor:
        result = run_evaluation(cfg, tmp_path / "run", executor=executor)
        started = executor.started_workers
    killer.join(timeout=5)
    assert result.statuses == {"slow": "completed", "after": "completed"}
    assert started == 3  # the dead worker was replaced
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert sorted((r.job, r.episode) for r in records) == sorted(
        [("slow", k) for k in range(24)] + [("after", k) for k in range(6)]
    )  # no duplicates, nothing missing
    assert identity(tmp_path / "run") == identity(tmp_path / "reference")


def test_a_job_fails_when_its_retries_are_spent(tmp_path: Path) -> None:
    cfg = _slow_config(tmp_path / "pids")
    killer = _kill_first_worker_after(tmp_path / "run", tmp_path / "pids", min_records=1)
    with ProcessExecutor(workers=1, shard_size=24, max_retries=0) as executor:
        result = run_evaluation(cfg, tmp_path / "run", executor=executor)
    killer.join(timeout=5)
    assert result.statuses == {"slow": "failed", "after": "completed"}
    error = read_manifest(tmp_path / "run").jobs["slow"].error or ""
    assert error.startswith(
        "WorkersExhausted: workers died 1 times running shard 0 (episodes 0..23, 24 slots)"
    )
    assert "giving up after --max-retries 0" in error
    # Resume (with any executor) completes the job with exactly the planned episodes.
    resumed = run_evaluation(cfg, tmp_path / "run", resume=True)
    assert resumed.exit_code == 0
    assert len(read_episodes(tmp_path / "run" / "episodes.jsonl")) == 30


def test_workers_are_recycled_after_n_shards(tmp_path: Path) -> None:
    cfg = _config()
    run_evaluation(cfg, tmp_path / "local")
    with ProcessExecutor(workers=2, shard_size=5, max_shards_per_worker=1) as executor:
        result = run_evaluation(cfg, tmp_path / "recycled", executor=executor)
        started = executor.started_workers
    assert result.exit_code == 0
    assert started == 8  # 6 probe shards + 2 sweep shards, one worker each
    assert identity(tmp_path / "recycled") == identity(tmp_path / "local")


def test_an_env_error_in_a_worker_fails_only_its_job(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "err",
            "jobs": [
                {"name": "bad", "env": "helpers:helpers/Broken-v0", "policy": "zero", "episodes": 4},
                {"name": "good", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 8},
            ],
        }
    )
    with ProcessExecutor(workers=2) as executor:
        result = run_evaluation(cfg, tmp_path / "run", executor=executor)
    assert result.statuses == {"bad": "failed", "good": "completed"}
    bad = read_manifest(tmp_path / "run").jobs["bad"]
    assert bad.error == "ShardFailed: ValueError: the simulator diverged on purpose"
    assert (
        bad.traceback is not None and 'raise ValueError("the simulator diverged on purpose")' in bad.traceback
    )
