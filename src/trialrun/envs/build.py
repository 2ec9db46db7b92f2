"""Building environments from job configs.

Example:
    >>> env = make_env("CartPole-v1", {}, max_steps=10)
    >>> env.spec.max_episode_steps
    10
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym

from trialrun.envs.namespaces import resolve_env_id
from trialrun.envs.seeding import honour_reset_seed


def ensure_headless_rendering() -> None:
    """Default ``MUJOCO_GL`` to EGL when unset: there is no display on the
    machines evaluations run on, and MuJoCo reads it once, at import."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def check_env_id(env_id: str, field: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``: ``module:Env-v0`` imports ``module``
    first, an id of a known env package imports that package
    (:mod:`trialrun.envs.namespaces`); a ConfigError names close matches."""
    ensure_headless_rendering()  # the package imported may import MuJoCo
    return resolve_env_id(env_id, field)


def make_env(
    env_id: str,
    kwargs: dict[str, Any],
    max_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env[Any, Any]:
    """``gymnasium.make`` with the job's kwargs and time limit, after importing
    the package that registers ``env_id`` (in every process that builds one:
    workers and replays too), with ``reset(seed=...)`` made to work for envs
    known to ignore it (:func:`trialrun.envs.seeding.honour_reset_seed`)."""
    ensure_headless_rendering()
    resolve_env_id(env_id, field="env.id")
    make_kwargs = dict(kwargs)
    if max_steps is not None:
        make_kwargs["max_episode_steps"] = max_steps
    if render_mode is not None:
        make_kwargs["render_mode"] = render_mode
    return honour_reset_seed(gym.make(env_id, **make_kwargs))
