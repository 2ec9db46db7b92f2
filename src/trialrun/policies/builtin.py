"""Built-in baseline policies: ``random`` and ``zero``.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> ctx = PolicyContext("CartPole-v1", 2, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), {})
    >>> policy = RandomPolicy(ctx)
    >>> policy.reset(np.array([True, True]), seeds=[5, 5])
    >>> a = policy.act(np.zeros((2, 4)))
    >>> bool(a[0] == a[1])   # same seed, same draw, whichever sub-env
    True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.policies.base import PolicyContext


class RandomPolicy:
    """Uniform random actions from the action space, drawn from a generator per
    sub-env that is re-seeded with the slot's policy seed at every episode
    start, so a slot's actions do not depend on which sub-env runs it."""

    def __init__(self, context: PolicyContext) -> None:
        self.num_envs = context.num_envs
        self._spaces = [copy.deepcopy(context.action_space) for _ in range(context.num_envs)]

    def act(self, obs: Any) -> Any:
        actions = [space.sample() for space in self._spaces]
        return np.stack(actions) if isinstance(actions[0], np.ndarray | np.generic | int) else actions

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        for i in np.flatnonzero(mask):
            seed = None if seeds is None else seeds[i]
            self._spaces[i].seed(seed)


class ZeroPolicy:
    """The zero action (for Discrete spaces: action ``start``). A useful floor:
    how well does doing nothing score?"""

    def __init__(self, context: PolicyContext) -> None:
        space = context.action_space
        if isinstance(space, gym.spaces.Discrete):
            single: Any = np.int64(space.start)
        elif isinstance(space, gym.spaces.Box):
            single = np.clip(np.zeros(space.shape, dtype=space.dtype), space.low, space.high)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            single = np.asarray(space.start, dtype=space.dtype)
        elif isinstance(space, gym.spaces.MultiBinary):
            single = np.zeros(space.shape, dtype=space.dtype)
        else:
            raise TypeError(f"'zero' policy does not support action space {space}")
        self._batch = np.stack([np.asarray(single)] * context.num_envs)

    def act(self, obs: Any) -> Any:
        return self._batch.copy()

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""
