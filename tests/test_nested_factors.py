"""Factors that reach nested settings: ``env_kwarg`` with a dotted key sets a
key inside a dict argument (highway-env's ``config``), ``attr`` with a dotted
name reaches a nested object (panda-gym's ``task.distance_threshold``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from cli_errors import run_error_lines
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.variations.classic import Attr
from trialrun.variations.env_kwarg import EnvKwargVariation
from trialrun.variations.factors import FactorSet

pytest.importorskip("highway_env")
pytest.importorskip("panda_gym")

HIGHWAY = "highway_env:highway-v0"
PUSH = "panda_gym:PandaPush-v3"
HIGHWAY_KEYS = (
    "action, centering_position, collision_reward, controlled_vehicles, duration, ego_spacing, "
    "high_speed_reward, initial_lane_id, lane_change_reward, lanes_count, manual_control, "
    "neighbour_vehicles_connected_lanes, normalize_reward, observation, offroad_terminal, "
    "offscreen_rendering, other_vehicles_type, policy_frequency, real_time_rendering, render_agent, "
    "reward_speed_range, right_lane_reward, scaling, screen_height, screen_width, show_trajectories, "
    "simulation_frequency, vehicles_count, vehicles_density"
)


def _factor(variation: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    return {"variation": variation, "sampler": {"type": "choice", "values": values}}


TRAFFIC = {
    "vehicles": _factor({"type": "env_kwarg", "key": "config.vehicles_count"}, [5, 10]),
    "lanes": _factor({"type": "env_kwarg", "key": "config.lanes_count"}, [2, 3]),
}


def _highway_job(factors: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "drive",
        "env": HIGHWAY,
        "policy": "random",
        "episodes": 4,
        "max_steps": 2,
        "design": "grid",
        "factors": factors,
        **extra,
    }


def _config(job: dict[str, Any]) -> Any:
    return parse_run_config({"name": "nested", "seed": 4, "jobs": [job]})


# --------------------------------------------------------------------------- env_kwarg, dotted


def test_dotted_keys_merge_over_the_env_defaults() -> None:
    job = _config(_highway_job(TRAFFIC)).jobs[0]
    kwargs = FactorSet(job).build_kwargs({"vehicles": 5, "lanes": 2})
    defaults = gym.make(HIGHWAY).unwrapped.config
    assert set(kwargs) == {"config"}
    assert kwargs["config"] == {**defaults, "vehicles_count": 5, "lanes_count": 2}


def test_dotted_keys_merge_over_the_jobs_own_dict() -> None:
    job = _config(_highway_job(TRAFFIC, env={"id": HIGHWAY, "kwargs": {"config": {"duration": 5}}})).jobs[0]
    kwargs = FactorSet(job).build_kwargs({"vehicles": 10, "lanes": 3})
    assert kwargs == {"config": {"duration": 5, "vehicles_count": 10, "lanes_count": 3}}
    assert job.env.kwargs == {"config": {"duration": 5}}  # not modified


def test_deeper_keys_are_merged_key_by_key() -> None:
    variation = EnvKwargVariation({"key": "config.observation.type"})
    assert variation.build_kwargs("OccupancyGrid") == {"config": {"observation": {"type": "OccupancyGrid"}}}
    env = gym.make(HIGHWAY, config={"observation": {"type": "TimeToCollision"}})
    variation.bind(env)
    assert variation.nominal() == "TimeToCollision"
    assert variation.apply(env, "TimeToCollision") == "TimeToCollision"


def test_the_built_env_uses_the_values_and_they_are_read_back(tmp_path: Path) -> None:
    cfg = _config(_highway_job(TRAFFIC))
    job = cfg.jobs[0]
    env = gym.make(HIGHWAY, **FactorSet(job).build_kwargs({"vehicles": 5, "lanes": 2}))
    env.reset(seed=0)
    assert len(env.unwrapped.road.vehicles) == 5 + 1  # the others and the ego vehicle
    assert len(env.unwrapped.road.network.graph["0"]["1"]) == 2
    assert EnvKwargVariation({"key": "config.vehicles_count"}).apply(env, 99) == 5  # read back, not echoed
    run_evaluation(cfg, tmp_path / "run")
    records = sorted(read_episodes(tmp_path / "run" / "episodes.jsonl"), key=lambda r: r.episode)
    assert [r.episode for r in records] == [0, 1, 2, 3]
    assert sorted((r.factors["vehicles"], r.factors["lanes"]) for r in records) == [
        (5, 2),
        (5, 3),
        (10, 2),
        (10, 3),
    ]
    specs = {s.name: s for s in read_manifest(tmp_path / "run").jobs["drive"].factors}
    assert (specs["vehicles"].nominal, specs["lanes"].nominal) == (50, 4)
    assert specs["vehicles"].applies_at == "build"


@pytest.mark.parametrize(
    "key,message",
    [
        (
            "config.vehicle_count",
            f"env_kwarg 'config.vehicle_count': unknown key 'vehicle_count' in HighwayEnv.config; keys: {HIGHWAY_KEYS}",
        ),
        (
            "config.observation.vehicles",
            "env_kwarg 'config.observation.vehicles': unknown key 'vehicles' in HighwayEnv.config.observation; keys: type",
        ),
        (
            "config.reward_speed_range.low",
            "env_kwarg 'config.reward_speed_range.low': 'config.reward_speed_range' is a list, not a dict, "
            "so it has no key 'low'",
        ),
        (
            "settings.speed",
            "env_kwarg 'settings.speed': HighwayEnv has no dict 'settings' (neither an attribute nor a make() "
            "argument) to set 'speed' in",
        ),
    ],
)
def test_bad_dotted_keys_give_one_clear_error(key: str, message: str) -> None:
    cfg = _config(_highway_job({"x": _factor({"type": "env_kwarg", "key": key}, [1])}))
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    assert str(info.value) == f"field 'jobs[drive].factors.x.variation': {message}"


def test_a_partial_dict_the_env_does_not_keep_accepts_new_keys() -> None:
    # dm_control's task_kwargs go to the task function; shimmy keeps no copy to check keys against.
    pytest.importorskip("shimmy")
    env = gym.make("shimmy:dm_control/cartpole-balance-v0", task_kwargs={"random": 3})
    variation = EnvKwargVariation({"key": "task_kwargs.random"})
    variation.bind(env)
    assert variation.nominal() == 3
    other = EnvKwargVariation({"key": "task_kwargs.time_limit"})
    other.bind(env)
    assert other.nominal() is None


# --------------------------------------------------------------------------- attr, dotted


def test_dotted_attr_reaches_the_task_and_is_read_back_and_restored() -> None:
    env = gym.make(PUSH)
    try:
        task = env.unwrapped.task
        threshold = Attr({"name": "task.distance_threshold"})
        threshold.bind(env)
        assert threshold.nominal() == 0.05
        achieved, desired = np.zeros(3), np.array([0.1, 0.0, 0.0])
        assert not task.is_success(achieved, desired)
        assert threshold.apply(env, 0.2) == 0.2
        assert task.distance_threshold == 0.2
        assert task.is_success(achieved, desired)  # the task now counts 10 cm as reached
        threshold.restore(env)
        assert task.distance_threshold == 0.05 and not task.is_success(achieved, desired)
        scaled = Attr({"name": "task.distance_threshold", "mode": "scale"})
        scaled.bind(env)
        assert scaled.apply(env, 3.0) == pytest.approx(3.0) and task.distance_threshold == pytest.approx(0.15)
    finally:
        env.close()


@pytest.mark.parametrize(
    "name,message",
    [
        (
            "tsk.distance_threshold",
            "unknown attribute 'tsk' of PandaPushEnv in 'tsk.distance_threshold'; public attributes: "
            "action_space, metadata, observation_space, render_distance, render_height, render_mode, "
            "render_pitch, render_roll, render_target_position, render_width, render_yaw, robot, sim, spec, task",
        ),
        (
            "task.distance_threshold.value",
            "'task.distance_threshold' is a float, not an object, so 'task.distance_threshold.value' cannot be "
            "reached",
        ),
        (
            "task.distance",
            "unknown attribute 'distance' of Push (at 'task.distance'); numeric attributes: "
            "distance_threshold, object_size",
        ),
        (
            "task.sim.gravity",
            "unknown attribute 'gravity' of PyBullet (at 'task.sim.gravity'); numeric attributes: "
            "connection_mode, n_substeps, timestep",
        ),
    ],
)
def test_bad_dotted_attr_names_give_one_clear_error(name: str, message: str) -> None:
    env = gym.make(PUSH)
    try:
        with pytest.raises(ConfigError) as info:
            Attr({"name": name}, field="f").bind(env)
        assert str(info.value) == f"field 'f': {message}"
    finally:
        env.close()


# --------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize(
    "job,message",
    [
        (
            _highway_job({"x": _factor({"type": "env_kwarg", "key": "config.vehicle_count"}, [1])}),
            "trialrun: error: field 'jobs[drive].factors.x.variation': env_kwarg 'config.vehicle_count': unknown key "
            f"'vehicle_count' in HighwayEnv.config; keys: {HIGHWAY_KEYS}",
        ),
        (
            {
                "name": "push",
                "env": PUSH,
                "policy": "random",
                "episodes": 1,
                "factors": {"t": _factor({"type": "attr", "name": "task.distance_threshold.value"}, [0.1])},
            },
            "trialrun: error: field 'jobs[push].factors.t.variation': 'task.distance_threshold' is a float, "
            "not an object, so 'task.distance_threshold.value' cannot be reached",
        ),
    ],
)
def test_bad_nested_targets_exit_2_with_one_line(tmp_path: Path, job: dict[str, Any], message: str) -> None:
    code, lines = run_error_lines(tmp_path, {"name": "bad", "jobs": [job]})
    assert code == 2
    # Preflight's errors name the run file.
    assert lines == [message.replace("trialrun: error: ", f"trialrun: error: {tmp_path / 'run.yaml'}: ", 1)]
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- what list variations shows


def test_nested_targets_are_listed() -> None:
    highway = gym.make(HIGHWAY)
    settings = {t.target: t.nominal for t in EnvKwargVariation.targets(highway)}
    assert settings["config.vehicles_count"] == 50 and settings["config.lanes_count"] == 4
    assert (
        "config.observation" not in settings and "config.other_vehicles_type" not in settings
    )  # not numbers
    push = gym.make(PUSH)
    try:
        attributes = {t.target: (t.nominal, t.note) for t in Attr.targets(push)}
        assert attributes["task.distance_threshold"] == (0.05, "of the env's task")
        assert not any(name.startswith(("spec.", "action_space.", "np_random.")) for name in attributes)
    finally:
        push.close()
