from __future__ import annotations

import json
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.variations.designs import random_values_for_slot
from trialrun.variations.factors import FactorSet, group_slots

LENGTH = {
    "variation": {"type": "attr", "name": "length"},
    "sampler": {"type": "uniform", "low": 0.3, "high": 1.5},
}
GRAVITY = {
    "variation": {"type": "attr", "name": "gravity"},
    "sampler": {"type": "choice", "values": [5.0, 9.8, 20.0]},
}


def _config(factors: dict[str, Any], **job: Any) -> Any:
    body = {
        "name": "cp",
        "env": "CartPole-v1",
        "policy": "cartpole-balance",
        "episodes": 24,
        "num_envs": 4,
        "success": "survived",
        "max_steps": 100,
        "factors": factors,
        **job,
    }
    return parse_run_config({"name": "sweep", "seed": 9, "jobs": [body]})


def test_recorded_factors_are_the_applied_values(tmp_path: Path) -> None:
    cfg = _config({"length": LENGTH, "gravity": GRAVITY})
    run_evaluation(cfg, tmp_path / "run")
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    planned = {s.episode: s.factors for s in FactorSet(cfg.jobs[0]).slots(cfg.seed)}
    assert len(records) == 24
    for rec in records:
        assert rec.factors == pytest.approx(planned[rec.episode])
        env = gym.make("CartPole-v1").unwrapped
        assert rec.factors["gravity"] in (5.0, 9.8, 20.0)
        assert 0.3 <= rec.factors["length"] <= 1.5
        env.close()
    assert len({r.factors["length"] for r in records}) == 24  # every sub-env got its own values


def test_every_episode_starts_from_nominal_plus_its_own_factors(tmp_path: Path) -> None:
    # With only one factor varied, CartPole's other constants must stay nominal in
    # every episode; an episode at nominal length replays identically whatever ran before.
    cfg = _config({"length": LENGTH}, episodes=12, num_envs=3)
    run_evaluation(cfg, tmp_path / "a")
    solo = _config({"length": LENGTH}, episodes=12, num_envs=1)
    run_evaluation(solo, tmp_path / "b")

    def outcomes(path: Path) -> dict[int, Any]:
        return {r.episode: (r.factors, r.outcome) for r in read_episodes(path / "episodes.jsonl")}

    assert outcomes(tmp_path / "a") == outcomes(tmp_path / "b")


def test_same_config_same_factors_and_outcomes(tmp_path: Path) -> None:
    cfg = _config({"length": LENGTH, "gravity": GRAVITY}, design="lhs")
    run_evaluation(cfg, tmp_path / "a")
    run_evaluation(cfg, tmp_path / "b")

    def key(path: Path) -> list[str]:
        return sorted(
            json.dumps([r.episode, r.seed, r.factors, r.outcome], sort_keys=True)
            for r in read_episodes(path / "episodes.jsonl")
        )

    assert key(tmp_path / "a") == key(tmp_path / "b")


def test_factors_change_the_outcome(tmp_path: Path) -> None:
    cfg = _config(
        {
            "length": {
                "variation": {"type": "attr", "name": "length"},
                "sampler": {"type": "choice", "values": [0.5, 4.0]},
            }
        },
        episodes=16,
        max_steps=500,
    )
    run_evaluation(cfg, tmp_path / "run")
    by_length: dict[float, list[bool]] = {}
    for rec in read_episodes(tmp_path / "run" / "episodes.jsonl"):
        by_length.setdefault(float(rec.factors["length"]), []).append(bool(rec.outcome["success"]))
    assert all(by_length[0.5]) and len(by_length[0.5]) > 0
    assert not any(by_length[4.0]) and len(by_length[4.0]) > 0


def test_grid_design_runs_the_exact_product(tmp_path: Path) -> None:
    factors = {
        "length": {**LENGTH, "sampler": {"type": "uniform", "low": 0.4, "high": 0.8, "levels": 3}},
        "gravity": GRAVITY,
    }
    cfg = _config(factors, design="grid", episodes=18)
    run_evaluation(cfg, tmp_path / "run")
    points = [
        (round(float(r.factors["length"]), 6), r.factors["gravity"])
        for r in read_episodes(tmp_path / "run" / "episodes.jsonl")
    ]
    expected = {(round(x, 6), g) for x in (0.4, 0.6, 0.8) for g in (5.0, 9.8, 20.0)}
    assert set(points) == expected
    assert all(points.count(p) == 2 for p in expected)


def test_manifest_holds_factor_specs(tmp_path: Path) -> None:
    run_evaluation(_config({"length": LENGTH, "gravity": GRAVITY}), tmp_path / "run")
    specs = {s.name: s for s in read_manifest(tmp_path / "run").jobs["cp"].factors}
    assert specs["length"].kind == "continuous" and (specs["length"].low, specs["length"].high) == (0.3, 1.5)
    assert specs["length"].nominal == 0.5 and specs["length"].units == "m"
    assert specs["length"].variation == {"type": "attr", "name": "length", "mode": "set"}
    assert specs["length"].applies_at == "reset"
    assert specs["gravity"].kind == "categorical" and specs["gravity"].values == [5.0, 9.8, 20.0]


def test_env_kwarg_factors_group_slots_and_rebuild_the_env(tmp_path: Path) -> None:
    factors = {
        "g": {
            "variation": {"type": "env_kwarg", "key": "g"},
            "sampler": {"type": "choice", "values": [2.0, 10.0, 30.0]},
        }
    }
    cfg = parse_run_config(
        {
            "name": "r",
            "seed": 1,
            "jobs": [
                {
                    "name": "pend",
                    "env": "Pendulum-v1",
                    "policy": "pendulum-swingup",
                    "episodes": 15,
                    "num_envs": 2,
                    "success": {"min_return": -400},
                    "factors": factors,
                    "design": "grid",
                }
            ],
        }
    )
    job = cfg.jobs[0]
    groups = group_slots(FactorSet(job), FactorSet(job).slots(cfg.seed))
    assert len(groups) == 3 and sum(len(g) for g in groups.values()) == 15
    run_evaluation(cfg, tmp_path / "run")
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert sorted(r.episode for r in records) == list(range(15))
    spec = read_manifest(tmp_path / "run").jobs["pend"].factors[0]
    assert (spec.applies_at, spec.nominal) == ("build", 10.0)
    by_g = {g: [r.outcome["return"] for r in records if r.factors["g"] == g] for g in (2.0, 10.0, 30.0)}
    assert all(by_g.values())
    assert np.mean(by_g[10.0]) != np.mean(by_g[30.0])


@pytest.mark.parametrize(
    "factors,message",
    [
        (
            {
                "m": {
                    "variation": {"type": "attr", "name": "length"},
                    "sampler": {"type": "uniform", "low": 2, "high": 1},
                }
            },
            "field 'jobs.0.factors.m.sampler",
        ),
        (
            {
                "m": {
                    "variation": {"type": "mujoco.body_mass", "body": "pole"},
                    "sampler": {"type": "constant", "value": 1},
                }
            },
            "variation 'mujoco.body_mass' needs a MuJoCo env",
        ),
        (
            {"m": {"variation": {"type": "warp_drive"}, "sampler": {"type": "constant", "value": 1}}},
            "field 'jobs[cp].factors.m.variation.type': unknown variation type 'warp_drive'; registered types: ",
        ),
        (
            {"m": {"variation": {"type": "mujoco.body_mas"}, "sampler": {"type": "constant", "value": 1}}},
            "or name your own as 'package.module:ClassName'; did you mean 'mujoco.body_mass'",
        ),
        (
            {
                "m": {
                    "variation": {"type": "attr", "name": "lenght"},
                    "sampler": {"type": "constant", "value": 1},
                }
            },
            "field 'jobs[cp].factors.m.variation",
        ),
        (
            {"m": {"variation": {"name": "length"}, "sampler": {"type": "constant", "value": 1}}},
            "a variation needs a 'type'",
        ),
    ],
)
def test_bad_factor_specs_give_clear_errors(factors: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        preflight(_config(factors))
    assert message in str(info.value)


def test_unknown_body_lists_the_bodies() -> None:
    cfg = parse_run_config(
        {
            "name": "r",
            "jobs": [
                {
                    "name": "hc",
                    "env": "HalfCheetah-v5",
                    "policy": "zero",
                    "episodes": 1,
                    "factors": {
                        "m": {
                            "variation": {"type": "mujoco.body_mass", "body": "torsoo"},
                            "sampler": {"type": "constant", "value": 2.0},
                        }
                    },
                }
            ],
        }
    )
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    assert "unknown body 'torsoo'" in str(info.value)
    assert "torso" in str(info.value) and "bthigh" in str(info.value)


def test_a_random_design_plans_a_million_episodes_without_a_dict_per_episode() -> None:
    # The random design's values of slot k depend on k alone: the plan
    # computes them a block at a time (an eager list: ~250 MB here).
    job = parse_run_config(
        {
            "name": "r",
            "seed": 3,
            "jobs": [
                {
                    "name": "j",
                    "env": "CartPole-v1",
                    "policy": "zero",
                    "episodes": 10**6,
                    "factors": {
                        "length": {
                            "variation": {"type": "attr", "name": "length"},
                            "sampler": {"type": "uniform", "low": 0.4, "high": 0.6},
                        },
                        "mass": {
                            "variation": {"type": "attr", "name": "masspole"},
                            "sampler": {"type": "loguniform", "low": 0.05, "high": 0.5},
                        },
                    },
                }
            ],
        }
    ).jobs[0]
    factor_set = FactorSet(job)
    tracemalloc.start()
    try:
        plan = factor_set.slots(3)
        sub = plan.without(np.ones(10, dtype=bool))[500_000:500_100]
        values = [slot.factors for slot in sub]
        last = plan[10**6 - 1].factors
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert values == [random_values_for_slot(factor_set.samplers, 3, "j", k) for k in range(500_010, 500_110)]
    assert last == random_values_for_slot(factor_set.samplers, 3, "j", 10**6 - 1)
    assert pickle.loads(pickle.dumps(sub))[7].factors == values[7]
    assert peak < 4 * 2**20, peak
