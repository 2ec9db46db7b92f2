"""Trajectories of natively batched jobs (``vectorization: native`` with ``trajectories``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import trialrun.envs  # noqa: F401  (registers the probe's vector entry point)
from cli_errors import run_error_lines
from trialrun.config import parse_run_config
from trialrun.envs.batched import GymnasiumBatchedEnv
from trialrun.envs.probe import probe_length
from trialrun.execution.preflight import _keeps_terminal_obs
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord


def _probe_job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "probe",
        "env": "trialrun/SeedProbe-v0",
        "policy": "zero",
        "episodes": 10,
        "num_envs": 4,
        "vectorization": "native",
        "trajectories": {"select": "first", "episodes": 4, "info_keys": ["success"]},
    }
    job.update(overrides)
    return job


def _run(run_dir: Path, *jobs: dict[str, Any]) -> list[EpisodeRecord]:
    config = parse_run_config({"name": "steps", "seed": 4, "jobs": list(jobs)})
    result = run_evaluation(config, run_dir)
    assert result.exit_code == 0, result.errors
    return sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        demo = f["data/demo_0"]
        return {
            "obs": demo["obs/state"][:],
            "next_obs": demo["next_obs/state"][:],
            "actions": demo["actions"][:],
            "rewards": demo["rewards"][:],
            "dones": demo["dones"][:],
            **({"success": demo["info/success"][:]} if "info/success" in demo else {}),
            "seed": np.array(demo.attrs["seed"]),
        }


def test_exact_mode_records_each_worlds_own_rows_whatever_num_envs(tmp_path: Path) -> None:
    by_worlds = {}
    for num_envs in (1, 4):
        run = tmp_path / f"run{num_envs}"
        records = _run(run, _probe_job(num_envs=num_envs))
        kept = [r for r in records if r.trajectory]
        assert [r.episode for r in kept] == [0, 1, 2, 3]
        by_worlds[num_envs] = {r.episode: _arrays(run / str(r.trajectory)) for r in kept}
        for record in kept:
            assert record.trajectory == f"trajectories/probe/ep{record.episode}.h5"
            data = by_worlds[num_envs][record.episode]
            length = probe_length(record.seed)
            assert len(data["rewards"]) == record.outcome["length"] == length
            # The probe's observation is (seed mod 2**20, steps taken, steps left): rows of this world only.
            assert data["obs"][:, 1].tolist() == list(range(length))
            assert data["next_obs"][:, 2].tolist() == [length - t for t in range(1, length + 1)]
            assert set(data["obs"][:, 0].tolist()) == {record.seed % 2**20}
            assert data["rewards"].tolist() == [1.0] * length
            assert data["dones"].tolist() == [0] * (length - 1) + [1]
            assert data["success"][-1] == record.outcome["success"]
            assert int(data["seed"]) == record.seed
    for episode, data in by_worlds[1].items():
        for key, array in data.items():
            assert np.array_equal(array, by_worlds[4][episode][key]), (episode, key)


def test_wave_mode_ends_each_trajectory_on_its_terminal_observation(tmp_path: Path) -> None:
    job = {
        "name": "cart",
        "env": "CartPole-v1",
        "policy": "random",
        "episodes": 8,
        "num_envs": 8,
        "vectorization": "native",
        "success": "survived",
        "trajectories": {"select": "all"},
    }
    records = _run(tmp_path / "run", job)
    assert all(r.trajectory for r in records)
    for record in records:
        data = _arrays(tmp_path / "run" / str(record.trajectory))
        assert len(data["actions"]) == record.outcome["length"]
        assert data["rewards"].sum() == pytest.approx(record.outcome["return"])
        assert np.array_equal(data["obs"][1:], data["next_obs"][:-1])
        last = data["next_obs"][-1]
        if record.outcome["terminated"]:  # CartPole's own termination: the pole or cart out of range
            assert abs(last[0]) > 2.4 or abs(last[2]) > 12 * 2 * np.pi / 360


def test_only_envs_that_keep_the_terminal_observation_can_record() -> None:
    def make() -> gym.Env[Any, Any]:
        return gym.make("CartPole-v1")

    same_step = GymnasiumBatchedEnv(SyncVectorEnv([make, make], autoreset_mode=AutoresetMode.SAME_STEP))
    next_step = GymnasiumBatchedEnv(SyncVectorEnv([make, make], autoreset_mode=AutoresetMode.NEXT_STEP))
    try:
        assert not _keeps_terminal_obs(same_step)
        assert _keeps_terminal_obs(next_step)
    finally:
        same_step.close()
        next_step.close()


def test_cameras_in_a_native_jobs_trajectories_are_refused(tmp_path: Path) -> None:
    job = _probe_job(trajectories={"cameras": ["default"]})
    code, lines = run_error_lines(tmp_path, {"name": "bad", "jobs": [job]})
    assert code == 2
    message = " ".join(" ".join(lines).split())
    assert "field 'jobs.0.trajectories.cameras': a native job's trajectories hold no camera images" in message
