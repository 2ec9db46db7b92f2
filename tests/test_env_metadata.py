"""Honest metadata (issue 13, part 6): every env trialrun registers passes
Gymnasium's checker, the manifest records the env's, the policy's and the
simulator's package versions, ``list envs`` shows what can be built as
``module:attr``, ``list variations`` leaves out counters and private state."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import trialrun.envs  # noqa: F401  (registers trialrun's ids)
from helpers import subprocess_env
from trialrun.cli import app
from trialrun.cli.listing import entry_point_name, is_private_or_counter, only_raises
from trialrun.config import parse_run_config
from trialrun.execution.metadata import config_packages

TRIALRUN_IDS = sorted(
    env_id
    for env_id, spec in gym.registry.items()
    if isinstance(spec.entry_point, str) and spec.entry_point.startswith("trialrun.")
)

# Warnings about what trialrun does not control: gym.make's wrappers around the
# env (check_env wants the bare env but the seeding wrapper is part of ours), and
# Meta-World's unbounded object dims and goal coordinates a task fixes.
_NOT_OURS = (
    "is different from the unwrapped version",
    "Box observation space minimum value is -infinity",
    "Box observation space maximum value is infinity",
    "Box observation space maximum and minimum values are equal",
)


def test_trialrun_registers_the_50_metaworld_ids_and_the_seed_probe() -> None:
    assert len(TRIALRUN_IDS) == 51
    assert sum(env_id.startswith("metaworld/") for env_id in TRIALRUN_IDS) == 50
    assert "trialrun/SeedProbe-v0" in TRIALRUN_IDS


@pytest.mark.parametrize("env_id", TRIALRUN_IDS)
def test_every_env_trialrun_registers_passes_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    others = [str(w.message) for w in caught if not any(text in str(w.message) for text in _NOT_OURS)]
    assert others == []
    if env_id.startswith("metaworld/"):
        # The goal dims are bounded by the task's goal space, not low == high == 0.
        space, goal = env.observation_space, env.unwrapped.goal_space
        assert np.array_equal(space.low[-3:], goal.low) and np.array_equal(space.high[-3:], goal.high)
        assert (space.high[-3:] > space.low[-3:]).any()
    env.close()


def test_manifest_records_the_env_package_and_the_simulator(tmp_path: Path) -> None:
    doc = {
        "name": "versions",
        "jobs": [{"name": "push", "env": "PandaPush-v3", "policy": "random", "episodes": 1, "max_steps": 2}],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trialrun",
            "run",
            str(tmp_path / "run.yaml"),
            "--run-dir",
            str(tmp_path / "r"),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    versions = json.loads((tmp_path / "r" / "manifest.json").read_text())["versions"]
    assert versions["panda-gym"] == metadata.version("panda-gym")
    assert versions["pybullet"] == metadata.version("pybullet")
    assert "highway-env" not in versions  # not used by this run, so not imported


def test_config_packages_name_the_env_and_policy_distributions() -> None:
    config = parse_run_config(
        {
            "name": "x",
            "jobs": [
                {"name": "a", "env": "highway-v0", "policy": "stable_baselines3.ppo:PPO", "episodes": 1},
                {"name": "b", "env": "minigrid:MiniGrid-Empty-5x5-v0", "policy": "random", "episodes": 1},
            ],
        }
    )
    import highway_env  # noqa: F401  (registers highway-v0)

    assert config_packages(config) == ["highway-env", "stable-baselines3", "minigrid"]


def test_entry_points_print_as_module_attr_and_raise_only_entries_are_found() -> None:
    import metaworld  # noqa: F401
    import shimmy  # noqa: F401
    from gymnasium.envs import _raise_mujoco_py_error  # type: ignore[attr-defined]

    assert only_raises(_raise_mujoco_py_error)
    assert not only_raises(gym.registry["CartPole-v1"].entry_point)
    assert not only_raises(gym.registry["Meta-World/MT1"].entry_point)
    assert not only_raises(gym.registry["dm_control/cartpole-balance-v0"].entry_point)
    assert entry_point_name(gym.registry["dm_control/cartpole-balance-v0"]) == (
        "shimmy.registration:_make_dm_control_suite_env"
    )
    assert entry_point_name(gym.registry["Meta-World/MT10"]) == "vector: metaworld:<lambda>"
    assert (
        entry_point_name(gym.registry["CartPole-v1"]) == "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
    )


def test_list_envs_shows_no_function_reprs_and_no_raise_only_entries() -> None:
    removed = "TrialrunTest/Removed-v0"

    def _removed(*args: object, **kwargs: object) -> None:
        raise ImportError("this env was removed")

    gym.register(removed, entry_point=_removed)
    try:
        result = CliRunner().invoke(app, ["list", "envs"])
    finally:
        del gym.registry[removed]
    assert result.exit_code == 0, result.output
    assert "<function" not in result.output and "functools.partial" not in result.output
    assert removed not in result.output
    ids = {line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│")}
    # Official ids of the installed packages are listed without importing anything first.
    assert {"Meta-World/MT1", "highway-v0", "PandaPush-v3", "FetchPush-v4", "MiniGrid-Empty-5x5-v0"} <= ids
    assert "dm_control/cartpole-balance-v0" in ids


def test_list_variations_omits_counters_and_private_state() -> None:
    assert is_private_or_counter("curr_path_length") and is_private_or_counter("num_resets")
    assert is_private_or_counter("_last_rand_vec") and is_private_or_counter("task._secret")
    assert not is_private_or_counter("max_path_length") and not is_private_or_counter("obj_init_angle")
    result = CliRunner().invoke(app, ["list", "variations", "metaworld/reach-v3"])
    assert result.exit_code == 0, result.output
    attrs = [line.split("│")[2].strip() for line in result.output.splitlines() if line.startswith("│ attr ")]
    assert attrs == [
        "TARGET_RADIUS",
        "action_rot_scale",
        "action_scale",
        "frame_skip",
        "height",
        "maxReachDist",
        "max_path_length",
        "obj_init_angle",
        "width",
    ]
    assert "2 counter(s) and private attribute(s) omitted" in result.output


def test_settings_dict_keys_are_listed_whatever_their_name() -> None:
    # highway-env's vehicle count is a setting of its config dict, not a counter.
    assert not is_private_or_counter("config.vehicles_count", "env_kwarg")
    assert is_private_or_counter("config._cache", "env_kwarg")
    assert is_private_or_counter("vehicles_count", "attr")
