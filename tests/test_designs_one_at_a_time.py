"""The one_at_a_time and combined designs: the exact slots, the nominal block,
nominal values in the records (reset-time and build-time factors), and a
bad episode count refused (exit 2)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cli_errors import run_error_lines
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes
from trialrun.variations.designs import factor_values, one_at_a_time_block
from trialrun.variations.samplers import ChoiceSampler, ConstantSampler, LogUniformSampler, UniformSampler

SAMPLERS = {
    "mass": UniformSampler(low=0.5, high=1.5, levels=3),
    "task": ChoiceSampler(values=["push", "pick"]),
    "gain": ConstantSampler(value=2.0),
    "friction": LogUniformSampler(low=0.1, high=10),
}


def test_each_factor_varies_alone_over_its_levels_beside_a_nominal_block() -> None:
    rows = factor_values(SAMPLERS, "one_at_a_time", run_seed=3, job="j", episodes=24, grid_default_levels=3)
    # 3 varied factors (gain is constant) -> 4 interleaved blocks of 6 slots.
    assert [one_at_a_time_block(k, 3) for k in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert all(row["gain"] == 2.0 for row in rows)
    blocks = [rows[b::4] for b in range(4)]
    assert blocks[0] == [{"gain": 2.0}] * 6
    assert [sorted(r) for r in blocks[1]] == [["gain", "mass"]] * 6
    assert [sorted(r) for r in blocks[2]] == [["gain", "task"]] * 6
    assert [sorted(r) for r in blocks[3]] == [["friction", "gain"]] * 6
    assert [r["mass"] for r in blocks[1]] == [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]
    assert Counter(r["task"] for r in blocks[2]) == {"push": 3, "pick": 3}
    assert [r["friction"] for r in blocks[3]] == pytest.approx([0.1, 1.0, 10.0] * 2)
    assert list(rows[1]) == ["mass", "gain"]  # config order
    # No randomness: the run seed and job name change nothing.
    assert rows == factor_values(SAMPLERS, "one_at_a_time", 99, "other", 24, grid_default_levels=3)


def test_uneven_levels_are_warned_about_and_the_first_levels_get_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="trialrun.variations.designs"):
        rows = factor_values({"mass": SAMPLERS["mass"]}, "one_at_a_time", 0, "j", 8)
    assert [r.get("mass") for r in rows] == [None, 0.5, None, 1.0, None, 1.5, None, 0.5]
    assert caplog.messages == [
        "job 'j': one_at_a_time blocks of 4 episodes do not divide evenly over the levels of mass (3 levels); "
        "the first levels get one episode more"
    ]


def test_episodes_must_fill_the_blocks() -> None:
    with pytest.raises(ConfigError) as err:
        factor_values(SAMPLERS, "one_at_a_time", 0, "j", 10)
    assert str(err.value) == (
        "field 'design': one_at_a_time design has 4 blocks (nominal + 3 varied factor(s)); "
        "episodes must be a multiple of 4 (got 10; use 8 or 12)"
    )


def test_combined_is_the_random_design() -> None:
    combined = factor_values(SAMPLERS, "combined", 5, "j", 20)
    assert combined == factor_values(SAMPLERS, "random", 5, "j", 20)
    assert all(sorted(r) == sorted(SAMPLERS) for r in combined)
    assert len({r["mass"] for r in combined}) == 20


def _job(design: str, episodes: int) -> dict[str, Any]:
    return {
        "name": "cp",
        "env": "CartPole-v1",
        "policy": "zero",
        "episodes": episodes,
        "num_envs": 2,
        "max_steps": 5,
        "design": design,
        "factors": {
            "length": {
                "variation": {"type": "attr", "name": "length", "mode": "set"},
                "sampler": {"type": "uniform", "low": 0.25, "high": 1.0, "levels": 2},
            },
            "noise": {
                "variation": {"type": "obs_noise"},
                "sampler": {"type": "choice", "values": [0.1, 0.3]},
            },
            "reward": {
                "variation": {"type": "env_kwarg", "key": "sutton_barto_reward"},
                "sampler": {"type": "choice", "values": [False, True]},
            },
        },
    }


def test_records_hold_the_nominal_values_of_the_factors_left_out(tmp_path: Path) -> None:
    config = parse_run_config({"name": "oat", "seed": 4, "jobs": [_job("one_at_a_time", 16)]})
    result = run_evaluation(config, tmp_path / "oat")
    assert result.exit_code == 0, result.errors
    records = sorted(read_episodes(tmp_path / "oat" / "episodes.jsonl"), key=lambda r: r.episode)
    nominal = {"length": 0.5, "noise": 0.0, "reward": False}
    expected = [
        nominal,
        {**nominal, "length": 0.25},
        {**nominal, "noise": 0.1},
        {**nominal, "reward": False},
        nominal,
        {**nominal, "length": 1.0},
        {**nominal, "noise": 0.3},
        {**nominal, "reward": True},
    ]
    assert [r.factors for r in records] == expected * 2
    # The build-time factor left out builds CartPole with its default reward (1 per step).
    assert [r.outcome["return"] for r in records] == [0.0 if r.factors["reward"] else 5.0 for r in records]


def test_a_bad_episode_count_exits_2_through_the_cli(tmp_path: Path) -> None:
    code, lines = run_error_lines(tmp_path, {"name": "oat", "jobs": [_job("one_at_a_time", 10)]})
    assert code == 2
    assert len(lines) == 1 and "one_at_a_time design has 4 blocks" in lines[0], lines
    assert "episodes must be a multiple of 4 (got 10; use 8 or 12)" in lines[0]
