"""MuJoCo variations on dm_control suite tasks through shimmy: the model is
found through ``env.unwrapped.physics`` (dm_control's wrappers hold the raw
``MjModel``/``MjData`` as ``.ptr``) and behaves as with Gymnasium's own
MuJoCo envs: applied, read back, changes the dynamics, restored exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.variations.base import require_mujoco
from trialrun.variations.factors import FactorSet
from trialrun.variations.mujoco import BodyMass, GeomFriction, Gravity

pytest.importorskip("shimmy")
pytest.importorskip("dm_control")

CARTPOLE = "shimmy:dm_control/cartpole-balance-v0"


@pytest.fixture
def env() -> Any:
    env = gym.make(CARTPOLE)
    yield env
    env.close()


def _cart_positions(env: Any) -> list[float]:
    """Cart position over 30 steps of full force from one seeded start."""
    env.reset(seed=0)
    positions = []
    for _ in range(30):
        obs, *_ = env.step(np.array([1.0]))
        positions.append(float(obs["position"][0]))
    return positions


def test_the_model_is_found_through_physics(env: Any) -> None:
    model, data = require_mujoco(env, "mujoco.body_mass")
    physics = env.unwrapped.physics
    assert model is physics.model.ptr and data is physics.data.ptr


def test_pole_mass_is_read_back_changes_the_dynamics_and_is_restored(env: Any) -> None:
    physics = env.unwrapped.physics
    nominal_masses = physics.model.body_mass.copy()
    nominal = _cart_positions(env)
    mass = BodyMass({"body": "pole_1", "mode": "set"})
    mass.bind(env)
    assert (mass.nominal(), mass.units) == (pytest.approx(0.1), "kg")
    assert mass.apply(env, 0.5) == pytest.approx(0.5, rel=1e-12)
    assert physics.model.body_mass[2] == pytest.approx(0.5, rel=1e-12)  # what dm_control itself sees
    heavy = _cart_positions(env)
    assert abs(heavy[-1] - nominal[-1]) > 0.02  # a heavier pole drags the cart back
    mass.restore(env)
    assert np.array_equal(physics.model.body_mass, nominal_masses)
    assert _cart_positions(env) == nominal  # bit for bit


def test_other_mujoco_variations_work_through_physics(env: Any) -> None:
    physics = env.unwrapped.physics
    gravity = Gravity({"mode": "scale"})
    gravity.bind(env)
    assert gravity.apply(env, 0.5) == pytest.approx(0.5)
    assert physics.model.opt.gravity[2] == pytest.approx(-4.905)
    gravity.restore(env)
    assert physics.model.opt.gravity[2] == pytest.approx(-9.81)
    friction = GeomFriction({"geom": "floor", "mode": "scale"})
    friction.bind(env)
    nominal = float(physics.named.model.geom_friction["floor", 0])
    assert friction.apply(env, 2.0) == pytest.approx(2.0)
    assert physics.named.model.geom_friction["floor", 0] == pytest.approx(2 * nominal)
    friction.restore(env)
    assert physics.named.model.geom_friction["floor", 0] == nominal


def test_a_run_records_the_pole_mass_read_back(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "dmc",
            "seed": 2,
            "jobs": [
                {
                    "name": "cartpole",
                    "env": CARTPOLE,
                    "policy": "zero",
                    "episodes": 4,
                    "num_envs": 2,
                    "max_steps": 20,
                    "factors": {
                        "pole_mass": {
                            "variation": {"type": "mujoco.body_mass", "body": "pole_1"},
                            "sampler": {"type": "choice", "values": [0.5, 3.0]},
                        }
                    },
                }
            ],
        }
    )
    run_evaluation(cfg, tmp_path / "run")
    records = sorted(read_episodes(tmp_path / "run" / "episodes.jsonl"), key=lambda r: r.episode)
    planned = {s.episode: s.factors for s in FactorSet(cfg.jobs[0]).slots(cfg.seed)}
    assert [r.episode for r in records] == [0, 1, 2, 3]
    for record in records:
        assert record.factors["pole_mass"] == pytest.approx(planned[record.episode]["pole_mass"], rel=1e-12)
        assert record.outcome["length"] == 20
    spec = read_manifest(tmp_path / "run").jobs["cartpole"].factors[0]
    assert (spec.nominal, spec.units, spec.applies_at) == (1.0, "x", "reset")
