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

_MASK64 = (1 << 64) - 1


# One odd increment for every slot: PCG64 streams that share the increment are
# the same 2**128-long cycle entered at unrelated points, which never meet
# within an episode's draws.
_PCG64_INCREMENT = (0xDA3E39CB94B95BDB << 64) | 0x9E3779B97F4A7C15


def pcg64_state(seed: int) -> dict[str, Any]:
    """A ``PCG64`` bit-generator state whose 128-bit position is spread from
    ``seed`` with SplitMix64 (the usual seeder for small seeds).

    Why not ``np.random.default_rng(seed)``: building a ``SeedSequence`` and a
    new generator costs ~6 us, a third of the env time of a random CartPole
    episode, and the random policy re-seeds at every episode. Assigning this
    state to an existing generator costs ~2 us. Slot policy seeds are already
    well-mixed ``SeedSequence`` output, so nothing is lost.

    Example:
        >>> a, b = np.random.PCG64(), np.random.PCG64()
        >>> a.state, b.state = pcg64_state(5), pcg64_state(5)
        >>> int(a.random_raw()) == int(b.random_raw()), pcg64_state(5) == pcg64_state(6)
        (True, False)
    """
    x = seed & _MASK64
    words = []
    for _ in range(2):
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append(z ^ (z >> 31))
    return {
        "bit_generator": "PCG64",
        "state": {"state": (words[0] << 64) | words[1], "inc": _PCG64_INCREMENT},
        "has_uint32": 0,
        "uinteger": 0,
    }


class RandomPolicy:
    """Uniform random actions from the action space, drawn from a generator per
    sub-env that is re-seeded with the slot's policy seed at every episode
    start, so a slot's actions do not depend on which sub-env runs it.

    For ``Discrete`` and bounded float ``Box`` spaces, each sub-env draws its
    actions in blocks (one generator call per block instead of one
    ``Space.sample`` per step) and ``act`` picks one row per sub-env with a
    single indexing operation, which keeps a random baseline from costing more
    than the simulator. Other spaces fall back to a seeded ``Space.sample``.
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
        # One seedable copy per sub-env, only where actions come from space.sample()
        # (deep-copying 1024 spaces costs ~0.5 s at a native job's start).
        self._spaces = [] if self._fast else [copy.deepcopy(space) for _ in range(context.num_envs)]
        self._bit_generators = [np.random.PCG64() for _ in range(context.num_envs)]
        self._rngs = [np.random.Generator(bg) for bg in self._bit_generators]
        shape = tuple(space.shape or ())
        self._blocks = np.zeros((context.num_envs, self._BLOCK, *shape), dtype=space.dtype)
        self._pos = np.full(context.num_envs, self._BLOCK, dtype=np.intp)
        self._rows = np.arange(context.num_envs)

    def _refill(self, i: int) -> None:
        space = self._space
        rng = self._rngs[i]
        if isinstance(space, gym.spaces.Discrete):
            # Raw 64-bit draws modulo n: the bias is n / 2**64, and it costs a third of integers().
            raw = self._bit_generators[i].random_raw(self._BLOCK)
            self._blocks[i] = raw % int(space.n) + int(space.start)
        else:
            assert isinstance(space, gym.spaces.Box)
            self._blocks[i] = rng.uniform(space.low, space.high, size=(self._BLOCK, *space.shape))
        self._pos[i] = 0

    def act(self, obs: Any) -> Any:
        if not self._fast:
            actions = [space.sample() for space in self._spaces]
            return np.stack(actions) if isinstance(actions[0], np.ndarray | np.generic | int) else actions
        pos = self._pos
        if pos.max() >= self._BLOCK:
            for i in (pos >= self._BLOCK).nonzero()[0].tolist():
                self._refill(i)
        out = self._blocks[self._rows, pos]
        pos += 1
        return out

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        for i in np.asarray(mask).nonzero()[0].tolist():
            seed = None if seeds is None else seeds[i]
            if self._fast:
                if seed is None:
                    self._bit_generators[i].state = np.random.PCG64().state
                else:
                    self._bit_generators[i].state = pcg64_state(seed)
                self._refill(i)
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
