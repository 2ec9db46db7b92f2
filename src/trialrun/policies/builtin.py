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
    start, so a slot's actions do not depend on which sub-env runs it.

    For ``Discrete`` and bounded float ``Box`` spaces, actions are drawn in
    blocks (one generator call per block instead of one ``Space.sample`` per
    step), which keeps a random baseline from costing more than the simulator.
    """

    _BLOCK = 32

    def __init__(self, context: PolicyContext) -> None:
        self.num_envs = context.num_envs
        space = context.action_space
        self._space = space
        self._fast = isinstance(space, gym.spaces.Discrete) or (
            isinstance(space, gym.spaces.Box)
            and space.is_bounded("both")
            and np.issubdtype(space.dtype, np.floating)
        )
        self._spaces = [copy.deepcopy(space) for _ in range(context.num_envs)]
        self._rngs = [np.random.default_rng() for _ in range(context.num_envs)]
        self._blocks: list[np.ndarray] = [np.empty(0)] * context.num_envs
        self._pos = [self._BLOCK] * context.num_envs

    def _draw_block(self, rng: np.random.Generator) -> np.ndarray:
        space = self._space
        if isinstance(space, gym.spaces.Discrete):
            return np.asarray(space.start + rng.integers(space.n, size=self._BLOCK), dtype=space.dtype)
        assert isinstance(space, gym.spaces.Box)
        draws = rng.uniform(space.low, space.high, size=(self._BLOCK, *space.shape))
        return draws.astype(space.dtype)

    def act(self, obs: Any) -> Any:
        if not self._fast:
            actions = [space.sample() for space in self._spaces]
            return np.stack(actions) if isinstance(actions[0], np.ndarray | np.generic | int) else actions
        out = np.empty((self.num_envs, *tuple(self._space.shape or ())), dtype=self._space.dtype)
        for i in range(self.num_envs):
            if self._pos[i] >= self._BLOCK:
                self._blocks[i] = self._draw_block(self._rngs[i])
                self._pos[i] = 0
            out[i] = self._blocks[i][self._pos[i]]
            self._pos[i] += 1
        return out

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        for i in np.flatnonzero(mask):
            seed = None if seeds is None else seeds[int(i)]
            if self._fast:
                self._rngs[i] = np.random.default_rng(seed)
                self._pos[i] = self._BLOCK
            else:
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
