from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.envs.metaworld import METAWORLD_V3_TASKS, make_metaworld_env
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import run_evaluation
from trialrun.policies.metaworld_expert import expert_class_name
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.variations.metaworld import MetaWorldObjectRange


def test_every_v3_task_has_an_id_and_an_expert() -> None:
    import metaworld.policies
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert set(METAWORLD_V3_TASKS) == set(ALL_V3_ENVIRONMENTS)
    for task in METAWORLD_V3_TASKS:
        assert f"metaworld/{task}" in gym.registry
        assert hasattr(metaworld.policies, expert_class_name(task)), task


def test_reset_seed_is_honoured_and_global_numpy_state_untouched() -> None:
    env = gym.make("metaworld/pick-place-v3")
    state = np.random.get_state()[1].copy()
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=6)
    c, _ = env.reset(seed=5)
    assert (a == c).all() and not (a == b).all()
    assert (np.random.get_state()[1] == state).all()
    other = gym.make("metaworld/pick-place-v3")
    d, _ = other.reset(seed=5)
    assert (a == d).all()
    assert np.linalg.norm(a[36:39]) > 0  # the goal is observable


def test_fast_render_settings() -> None:
    env = make_metaworld_env("reach-v3")
    model = env.unwrapped.model
    assert model.vis.quality.offsamples == 0
    assert not model.light_castshadow.any() and not model.mat_reflectance.any()


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(
        ConfigError, match="unknown Meta-World task 'pick-plac-v3'; did you mean pick-place-v3"
    ):
        make_metaworld_env("pick-plac-v3")


def test_object_range_scales_the_start_box() -> None:
    env = gym.make("metaworld/push-v3")
    variation = MetaWorldObjectRange({"mode": "scale", "axes": "x"})
    variation.bind(env)
    space = env.unwrapped._random_reset_space
    nominal_low, nominal_high = space.low.copy(), space.high.copy()
    assert variation.apply(env, 0.0) == 0.0
    xs = {round(float(env.reset(seed=s)[0][4]), 6) for s in range(5)}
    assert len(xs) == 1  # x pinned to the centre of the box
    assert variation.apply(env, 2.0) == 2.0
    assert space.high[0] - space.low[0] == pytest.approx(2 * (nominal_high[0] - nominal_low[0]))
    assert (space.low[1:] == nominal_low[1:]).all()
    variation.restore(env)
    assert (space.low == nominal_low).all() and (space.high == nominal_high).all()


def test_expert_with_task_as_a_factor(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "mw",
            "seed": 3,
            "jobs": [
                {
                    "name": "tasks",
                    "env": "metaworld/pick-place-v3",
                    "policy": "metaworld-expert",
                    "episodes": 8,
                    "num_envs": 2,
                    "max_steps": 150,
                    "factors": {
                        "task": {
                            "variation": {"type": "env_kwarg", "key": "env_name"},
                            "sampler": {"type": "choice", "values": ["pick-place-v3", "push-v3"]},
                        },
                        "mass": {
                            "variation": {"type": "mujoco.body_mass", "body": "obj"},
                            "sampler": {"type": "constant", "value": 1.0},
                        },
                    },
                }
            ],
        }
    )
    result = run_evaluation(cfg, tmp_path / "run")
    assert result.exit_code == 0
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert {r.factors["task"] for r in records} == {"pick-place-v3", "push-v3"}
    assert all(r.outcome["success"] for r in records)
    assert all(r.outcome["length"] == 150 and r.outcome["truncated"] for r in records)
    assert all(0 < (r.outcome["time_to_success"] or 0) < 150 for r in records)
    specs = {s.name: s for s in read_manifest(tmp_path / "run").jobs["tasks"].factors}
    assert specs["task"].values == ["pick-place-v3", "push-v3"] and specs["task"].nominal == "pick-place-v3"


def test_heavy_objects_defeat_the_pick_place_expert(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "mw",
            "seed": 3,
            "jobs": [
                {
                    "name": "pp",
                    "env": "metaworld/pick-place-v3",
                    "policy": "metaworld-expert",
                    "episodes": 8,
                    "num_envs": 4,
                    "max_steps": 150,
                    "design": "grid",
                    "factors": {
                        "mass": {
                            "variation": {"type": "mujoco.body_mass", "body": "obj", "mode": "scale"},
                            "sampler": {"type": "choice", "values": [1.0, 100.0]},
                        }
                    },
                }
            ],
        }
    )
    run_evaluation(cfg, tmp_path / "run")
    success = {1.0: [], 100.0: []}  # type: dict[float, list[bool]]
    for rec in read_episodes(tmp_path / "run" / "episodes.jsonl"):
        success[float(rec.factors["mass"])].append(bool(rec.outcome["success"]))
    assert success[1.0] == [True] * 4
    assert success[100.0] == [False] * 4


def test_metaworld_max_steps_is_capped() -> None:
    cfg = parse_run_config(
        {
            "name": "mw",
            "jobs": [
                {
                    "name": "pp",
                    "env": "metaworld/reach-v3",
                    "policy": "metaworld-expert",
                    "episodes": 1,
                    "max_steps": 800,
                }
            ],
        }
    )
    with pytest.raises(
        ConfigError, match=r"field 'jobs.0.max_steps': Meta-World episodes are at most 500 steps, got 800"
    ):
        preflight(cfg)


def test_the_goal_is_drawn_where_this_episode_put_it_not_where_the_last_one_did() -> None:
    """A frame right after reset shows this episode's goal: a fresh env and one
    that ran another episode first give the same first image."""
    fresh = gym.make("metaworld/push-v3", render_mode="rgb_array", camera_name="corner", width=64, height=64)
    used = gym.make("metaworld/push-v3", render_mode="rgb_array", camera_name="corner", width=64, height=64)
    used.reset(seed=11)
    for _ in range(3):
        used.step(used.action_space.sample() * 0)
    fresh.reset(seed=12)
    used.reset(seed=12)
    base = used.unwrapped
    site = base.model.site("goal").id
    assert np.allclose(base.data.site_xpos[site], base._target_pos)  # type: ignore[attr-defined]
    assert np.array_equal(fresh.render(), used.render())
