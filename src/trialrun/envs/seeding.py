"""Whether an env's episodes follow from their reset seed, and making them so where we know how.

trialrun records one seed per episode and replays an episode by resetting
with it again; that is only honest when ``reset(seed=s)`` really decides the
episode. Some envs ignore the seed (Meta-World's own ids: their reset draws
from a generator only ``env.unwrapped.seed(s)`` resets), and a run of them
would finish, record seeds, and not replay. So:

- :func:`honour_reset_seed` seeds envs known to need it their own way
  (Meta-World: through :class:`~trialrun.envs.metaworld.MetaWorldSeeding`, as
  the bundled ``metaworld/*`` ids do); every env trialrun builds goes through it.
- :func:`check_seeding` resets an env with seeds a, b, a and says whether
  the two a-observations agree, plus what makes an env differ between
  processes although it agrees within one (Meta-World's benchmark ids built
  without ``seed``).

Example:
    >>> import gymnasium as gym
    >>> check = check_seeding(gym.make("CartPole-v1"), {})
    >>> check.reproducible, check.seed_changes_start, check.seeded_by
    (True, True, None)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.envs.metaworld import MetaWorldSeeding, is_metaworld_env

SEED_A = 20_261_130
SEED_B = 7
"""The two seeds of the check (any two distinct seeds do)."""

METAWORLD_SEEDED_BY = "env.unwrapped.seed(s) before each reset (Meta-World ignores reset(seed=...))"


@dataclass(frozen=True)
class SeedCheck:
    """What :func:`check_seeding` found."""

    reproducible: bool
    """Two resets with one seed gave the same observation, and nothing else is known to differ."""
    seed_changes_start: bool
    """Resets with two different seeds gave different observations (False for an env with one start)."""
    seeded_by: str | None
    """How trialrun seeds this env when ``reset(seed=...)`` alone does not (None: it does)."""
    problem: str | None
    """Why the episodes would not be reproducible (None when they would)."""
    field: str
    """The job field the problem belongs to, relative to the job (``env.id``, ``env.kwargs.seed``)."""
    milliseconds: float
    """Wall time of the three resets."""


def _wrappers(env: gym.Env[Any, Any]) -> list[gym.Env[Any, Any]]:
    chain = [env]
    while isinstance(env, gym.Wrapper):
        env = env.env
        chain.append(env)
    return chain


def seeded_by(env: gym.Env[Any, Any]) -> str | None:
    """How trialrun seeds ``env`` beyond ``reset(seed=...)`` (None: nothing)."""
    if any(isinstance(layer, MetaWorldSeeding) for layer in _wrappers(env)):
        return METAWORLD_SEEDED_BY
    return None


def honour_reset_seed(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """``env``, wrapped so that ``reset(seed=s)`` decides the episode when it
    is known to ignore the seed (any Meta-World env not already wrapped: its
    official ``Meta-World/*`` ids); other envs are returned unchanged."""
    if is_metaworld_env(env) and seeded_by(env) is None:
        return MetaWorldSeeding(env)
    return env


def same_observation(a: Any, b: Any) -> bool:
    """Whether two observations are equal: arrays element by element (NaN
    equals NaN), dicts key by key, tuples and lists item by item."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or set(a) != set(b):
            return False
        return all(same_observation(a[key], b[key]) for key in a)
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        if not (isinstance(a, tuple | list) and isinstance(b, tuple | list)) or len(a) != len(b):
            return False
        return all(same_observation(x, y) for x, y in zip(a, b, strict=True))
    left, right = np.asarray(a), np.asarray(b)
    try:
        return bool(np.array_equal(left, right, equal_nan=True))
    except TypeError:  # strings and objects have no NaN
        return bool(np.array_equal(left, right))


def build_randomness(env: gym.Env[Any, Any], kwargs: Mapping[str, Any]) -> str | None:
    """Why building ``env`` again (in a worker, for a replay) would give a
    different env although its resets agree within this process; None when
    nothing such is known.

    Meta-World's benchmark ids (``Meta-World/MT1`` ...) draw their task set
    from numpy's global random state unless they get ``seed``.
    """
    spec = env.spec
    if spec is None or spec.namespace != "Meta-World":
        return None
    if {**spec.kwargs, **kwargs}.get("seed") is not None:
        return None
    return (
        f"'{spec.id}' draws its tasks from numpy's global random state when built without a seed, "
        "so every process and every replay would get other tasks: set env.kwargs.seed (any integer)"
    )


def check_seeding(env: gym.Env[Any, Any], kwargs: Mapping[str, Any]) -> SeedCheck:
    """Reset ``env`` with seeds a, b, a: the episodes are reproducible when
    both a-observations are equal and :func:`build_randomness` knows of
    nothing else. ``kwargs`` are the job's env kwargs. Leaves ``env`` reset."""
    start = time.perf_counter()
    first, _ = env.reset(seed=SEED_A)
    other, _ = env.reset(seed=SEED_B)
    again, _ = env.reset(seed=SEED_A)
    milliseconds = (time.perf_counter() - start) * 1000
    agree = same_observation(first, again)
    problem, field = None, "env.id"
    if not agree:
        problem = (
            f"two resets with seed {SEED_A} gave different observations: the env ignores reset(seed=...)"
        )
    else:
        problem = build_randomness(env, kwargs)
        field = "env.kwargs.seed" if problem else field
    return SeedCheck(
        reproducible=problem is None,
        seed_changes_start=not same_observation(first, other),
        seeded_by=seeded_by(env),
        problem=problem,
        field=field,
        milliseconds=milliseconds,
    )
