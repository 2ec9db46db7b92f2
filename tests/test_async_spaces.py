"""``vectorization: async`` on observation spaces that shared memory cannot hold.

MiniGrid's observation is a Dict with a ``mission`` Text space, which
Gymnasium cannot lay out in shared memory; the async vector env falls back to
sending observations through the worker pipes and says so in one log line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.envs.vector import ActiveSubsetAsyncVectorEnv
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes

pytest.importorskip("minigrid")

MINIGRID = "minigrid:MiniGrid-Empty-5x5-v0"


def _run(tmp_path: Path, vectorization: str) -> list[Any]:
    cfg = parse_run_config(
        {
            "name": f"grid-{vectorization}",
            "seed": 3,
            "jobs": [
                {
                    "name": "empty",
                    "env": MINIGRID,
                    "policy": "random",
                    "episodes": 7,
                    "num_envs": 3,
                    "max_steps": 40,
                    "vectorization": vectorization,
                }
            ],
        }
    )
    run_dir = tmp_path / vectorization
    run_evaluation(cfg, run_dir)
    return sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)


def test_async_minigrid_job_completes_and_equals_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="trialrun.envs.vector"):
        async_records = _run(tmp_path, "async")
    sync_records = _run(tmp_path, "sync")
    assert [r.episode for r in async_records] == list(range(7))
    assert [r.episode for r in sync_records] == list(range(7))
    assert [(r.seed, r.outcome) for r in async_records] == [(r.seed, r.outcome) for r in sync_records]
    notes = [r.getMessage() for r in caplog.records if "shared memory" in r.getMessage()]
    assert len(notes) == 1
    assert "(it holds a MissionSpace space)" in notes[0] and "shared_memory=False" in notes[0]


def test_unshareable_space_falls_back_and_resets_by_mask() -> None:
    vec = ActiveSubsetAsyncVectorEnv([lambda: gym.make(MINIGRID)] * 2)
    try:
        assert vec.shared_memory is False
        obs, _ = vec.reset_slots(np.array([True, True]), [1, 2], {})
        assert obs["mission"] == ("get to the green goal square",) * 2
        obs, rewards, *_ = vec.step_active(np.array([1, 0]), np.array([True, False]))  # 1: turn right
        assert obs["direction"].tolist() == [1, 0] and rewards.tolist() == [0.0, 0.0]
        obs, _ = vec.reset_slots(np.array([True, False]), [1, None], {})
        assert obs["direction"].tolist() == [0, 0]
    finally:
        vec.close()


def test_shareable_space_keeps_shared_memory() -> None:
    vec = ActiveSubsetAsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    try:
        assert vec.shared_memory is True
    finally:
        vec.close()
