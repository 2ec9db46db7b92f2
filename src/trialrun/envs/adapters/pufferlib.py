"""PufferLib vector envs as a wave-mode :class:`~trialrun.envs.batched.BatchedEnv`.

Follows ``pufferlib/vector.py`` and ``pufferlib/emulation.py`` (PufferAI/PufferLib,
``VERSION = '1.0.1'`` in setup.py, read at commit 91460f7):

- ``async_reset(seed)`` resets every env, env ``i`` with ``seed + i``
  (``make_seeds``); the following ``recv()`` returns its observations;
- ``send(actions)`` then ``recv()`` steps; ``recv`` returns
  ``(obs, rewards, terminals, truncations, infos, env_ids, masks)`` with one
  row per *agent slot*. An env whose last step set ``done`` (emulation sets it
  from ``terminated``) is reset by ``send`` instead of stepped, with no seed
  (it continues its own generator): worlds restart by themselves, so this is
  wave mode only;
- ``infos`` is a list of the non-empty info dicts the envs returned, in env
  order, with no env index. This adapter pairs them with the worlds that
  ended at that step, in world order, when they contain ``success_key``
  (exactly one per ended world, or a clear error).

Each agent slot is one world. ``recv`` must return the whole batch in order
(``batch_size == num_envs``, the default; an asynchronous env pool that
returns part of the agents is refused).

Example:
    >>> from types import SimpleNamespace
    >>> import gymnasium as gym
    >>> vec = SimpleNamespace(num_agents=6, single_observation_space=gym.spaces.Box(-1, 1, (3,)),
    ...                       single_action_space=gym.spaces.Discrete(2))
    >>> env = PufferLibBatchedEnv(vec)
    >>> env.mode, env.num_worlds
    ('wave', 6)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trialrun.envs.adapters._arrays import no_exact_mode, to_numpy, world_flags
from trialrun.envs.batched import ResetMode
from trialrun.errors import ConfigError


class PufferLibBatchedEnv:
    """Wave mode over ``pufferlib.vector.Serial`` / ``Multiprocessing``
    (``async_reset`` / ``send`` / ``recv``)."""

    mode: ResetMode = "wave"

    def __init__(self, vecenv: Any, *, success_key: str = "success") -> None:
        self.vecenv = vecenv
        self.num_worlds = int(vecenv.num_agents)
        batch = int(getattr(vecenv, "agents_per_batch", self.num_worlds))
        if batch != self.num_worlds:
            raise ConfigError(
                f"PufferLib vecenv returns {batch} of its {self.num_worlds} agents per recv (an env pool); "
                "build it with batch_size == num_envs so every recv holds every world",
                field="native_mode",
            )
        self.single_observation_space = vecenv.single_observation_space
        self.single_action_space = vecenv.single_action_space
        self.success_key = success_key

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        raise no_exact_mode("PufferLib")

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        self.vecenv.async_reset(seed)
        obs, *_ = self._recv()
        return obs, {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.vecenv.send(actions)
        obs, rewards, terminals, truncations, infos = self._recv()
        n = self.num_worlds
        term = world_flags(terminals, n, "terminals")
        trunc = world_flags(truncations, n, "truncations")
        ended = np.flatnonzero(term | trunc)
        episode = [i for i in infos if isinstance(i, dict) and self.success_key in i]
        if not episode:
            return obs, to_numpy(rewards).astype(np.float64).reshape(-1), term, trunc, {}
        if len(episode) != ended.size:
            raise ValueError(
                f"PufferLib returned {len(episode)} info dicts with '{self.success_key}' for the "
                f"{ended.size} worlds that ended at this step ({ended.tolist()[:8]}); its infos carry no "
                "world index, so they are paired with the ended worlds in order and must be one per world"
            )
        success = np.zeros(n, dtype=bool)
        present = np.zeros(n, dtype=bool)
        for world, info in zip(ended.tolist(), episode, strict=True):
            success[world], present[world] = bool(to_numpy(info[self.success_key]).any()), True
        infos_out = {self.success_key: success, "_" + self.success_key: present}
        return obs, to_numpy(rewards).astype(np.float64).reshape(-1), term, trunc, infos_out

    def _recv(self) -> tuple[Any, Any, Any, Any, list[Any]]:
        obs, rewards, terminals, truncations, infos, env_ids, _masks = self.vecenv.recv()
        ids = to_numpy(env_ids).reshape(-1)
        if ids.shape != (self.num_worlds,) or not (ids == np.arange(self.num_worlds)).all():
            raise RuntimeError(
                f"PufferLib recv returned agents {ids.tolist()[:8]}..., "
                f"expected all {self.num_worlds} in order"
            )
        return obs, rewards, terminals, truncations, list(infos or [])

    def close(self) -> None:
        self.vecenv.close()
