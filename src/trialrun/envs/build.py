"""Building environments from job configs.

Example:
    >>> env = make_env("CartPole-v1", {}, max_steps=10)
    >>> env.spec.max_episode_steps
    10
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any

import gymnasium as gym

from trialrun.errors import ConfigError


def ensure_headless_rendering() -> None:
    """Default ``MUJOCO_GL`` to EGL when unset: there is no display on the
    machines evaluations run on, and MuJoCo reads it once, at import."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def check_env_id(env_id: str, field: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (importing ``module`` of
    ``module:Env-v0`` first), or a ConfigError with close matches."""
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import module '{module}' for env '{env_id}': {exc}", field=field
            ) from None
    try:
        return gym.spec(name)
    except gym.error.Error:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown environment '{env_id}'{hint} (see 'trialrun list envs')", field=field
        ) from None


def make_env(
    env_id: str,
    kwargs: dict[str, Any],
    max_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env[Any, Any]:
    """``gymnasium.make`` with the job's kwargs and time limit."""
    ensure_headless_rendering()
    make_kwargs = dict(kwargs)
    if max_steps is not None:
        make_kwargs["max_episode_steps"] = max_steps
    if render_mode is not None:
        make_kwargs["render_mode"] = render_mode
    return gym.make(env_id, **make_kwargs)
