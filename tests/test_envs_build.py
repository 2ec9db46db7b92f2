"""Building envs from job configs (trialrun.envs.build): the env kwargs a
constructor does not take are refused before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from cli_errors import refused_lines
from test_env_ids import OFFICIAL_IDS
from trialrun.envs.build import check_env_kwargs, make_env
from trialrun.envs.namespaces import resolve_env_id
from trialrun.errors import ConfigError


class _TakesAnything(gym.Env):  # type: ignore[type-arg]
    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, **options: Any) -> None:
        self.options = options


def test_an_unknown_kwarg_names_what_the_constructor_takes() -> None:
    with pytest.raises(ConfigError) as info:
        check_env_kwargs(gym.spec("Pendulum-v1"), {"gg": 9.0}, field="jobs.0.env.kwargs")
    assert str(info.value) == (
        "field 'jobs.0.env.kwargs.gg': Pendulum-v1 takes no argument 'gg'; it takes: g, render_mode "
        "(and gymnasium.make's max_episode_steps, disable_env_checker); did you mean 'g'?"
    )
    with pytest.raises(ConfigError) as info:
        check_env_kwargs(gym.spec("CartPole-v1"), {"zzz": 1}, field="env.kwargs")
    assert str(info.value) == (
        "field 'env.kwargs.zzz': CartPole-v1 takes no argument 'zzz'; it takes: render_mode, "
        "sutton_barto_reward (and gymnasium.make's max_episode_steps, disable_env_checker)"
    )


def test_known_kwargs_make_kwargs_and_constructors_taking_anything_pass() -> None:
    check_env_kwargs(gym.spec("Pendulum-v1"), {"g": 3.7, "max_episode_steps": 50}, field="f")
    check_env_kwargs(gym.spec("CartPole-v1"), {"disable_env_checker": True, "render_mode": None}, field="f")
    gym.register("trialrun-test/TakesAnything-v0", entry_point=_TakesAnything)
    try:
        check_env_kwargs(gym.spec("trialrun-test/TakesAnything-v0"), {"whatever": 1}, field="f")
    finally:
        del gym.registry["trialrun-test/TakesAnything-v0"]


def test_the_official_ids_documented_kwargs_pass() -> None:
    for env_id, (kwargs, _) in OFFICIAL_IDS.items():
        check_env_kwargs(resolve_env_id(env_id, field="env.id"), kwargs, field="env.kwargs")
    make_env("Pendulum-v1", {"g": 3.7}, max_steps=5).close()


def test_a_typo_in_env_kwargs_stops_the_run_before_any_job_runs(tmp_path: Path) -> None:
    doc = {
        "name": "typo",
        "jobs": [
            {"name": "fine", "env": "CartPole-v1", "policy": "random", "episodes": 2, "success": "survived"},
            {
                "name": "typo",
                "env": {"id": "Pendulum-v1", "kwargs": {"gg": 9.0}},
                "policy": "zero",
                "episodes": 2,
            },
        ],
    }
    assert refused_lines(tmp_path, doc) == [
        f"trialrun: error: {tmp_path / 'run.yaml'}: field 'jobs.1.env.kwargs.gg': Pendulum-v1 takes no "
        "argument 'gg'; it takes: g, render_mode (and gymnasium.make's max_episode_steps, "
        "disable_env_checker); did you mean 'g'?"
    ]
