"""Building environments from job configs.

Example:
    >>> env = make_env("CartPole-v1", {}, max_steps=10)
    >>> env.spec.max_episode_steps
    10
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from trialrun._signatures import keywords_of
from trialrun.envs.namespaces import resolve_env_id
from trialrun.envs.seeding import honour_reset_seed
from trialrun.errors import ConfigError, did_you_mean


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


MAKE_KWARGS = ("max_episode_steps", "disable_env_checker")
"""What ``gymnasium.make`` itself takes; every other kwarg goes to the env's constructor."""


def check_env_kwargs(
    spec: gym.envs.registration.EnvSpec, kwargs: Mapping[str, Any], field: str, *, vector: bool = False
) -> None:
    """Refuse a kwarg the env's constructor does not take (a typo would
    otherwise fail the job after earlier jobs ran, as a ``TypeError`` from
    inside ``gymnasium.make``), naming the arguments it does take. ``vector``:
    check against the vector entry point (a native job's batched env) instead.
    A constructor that takes ``**kwargs``, or whose signature cannot be read,
    accepts anything.

    Example:
        >>> check_env_kwargs(gym.spec("Pendulum-v1"), {"gg": 9.0}, field="jobs.0.env.kwargs")
        Traceback (most recent call last):
        ...
        trialrun.errors.ConfigError: field 'jobs.0.env.kwargs.gg': Pendulum-v1 takes no argument 'gg'; \
it takes: g, render_mode (and gymnasium.make's max_episode_steps, disable_env_checker); did you mean 'g'?

    Raises:
        ConfigError: naming ``field.<kwarg>``.
    """
    entry = spec.vector_entry_point if vector else spec.entry_point
    if entry is None:
        return
    try:
        creator = entry if callable(entry) else load_env_creator(entry)
    except Exception:  # a broken entry point fails when the env is built, saying why
        return
    taken = keywords_of(creator)
    if taken is None:
        return
    also = () if vector else MAKE_KWARGS
    unknown = taken.unknown(set(kwargs) - set(also))
    if unknown:
        names = sorted(set(taken.names) - {"num_envs"})
        what = f"{spec.id}'s vector entry point" if vector else spec.id
        besides = f" (and gymnasium.make's {', '.join(also)})" if also else ""
        raise ConfigError(
            f"{what} takes no argument '{unknown[0]}'; it takes: {', '.join(names) or 'none'}"
            f"{besides}{did_you_mean(unknown[0], names)}",
            field=f"{field}.{unknown[0]}",
        )


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
