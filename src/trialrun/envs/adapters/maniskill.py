"""ManiSkill3 (``BaseEnv``, GPU sim) as an exact-mode :class:`~trialrun.envs.batched.BatchedEnv`.

Follows ``mani_skill/envs/sapien_env.py`` (haosulab/ManiSkill, read at commit
3958362e) and ``mani_skill/vector/wrappers/gymnasium.py`` (commit 2109ab6e):

- ``reset(seed=[s_0, ..., s_{n-1}], options={"env_idx": idx})`` resets only
  the worlds in ``idx``; the seed list is indexed by world (its length is
  ``num_envs``: it becomes the per-world episode seeds and ``_batched_episode_rng``),
  so this adapter passes every world's current seed and changes only those of
  the worlds it resets;
- ``BaseEnv.step`` never resets: ``terminated`` is ``info["success"] | info["fail"]``,
  ``truncated`` is all false unless a time-limit wrapper sets it, and
  ``info["success"]`` is a per-world bool tensor. The rollout resets each
  finished world at once, so no finished world is stepped.

``ManiSkillVectorEnv(auto_reset=True)`` restarts finished worlds itself with
no seed: pass it with ``auto_reset=False`` (or pass the base env) instead.

Caveat from the same file: while ``_initialize_episode`` runs, torch's global
RNG is seeded with the *first* entry of the seed list (world 0's seed). A task
that randomizes its initial state with ``torch.rand`` (rather than
``_batched_episode_rng``) therefore draws the worlds reset together from one
stream: exact per-world reproducibility holds for tasks that use
``_batched_episode_rng``.

Example:
    >>> from types import SimpleNamespace
    >>> import gymnasium as gym
    >>> sim = SimpleNamespace(num_envs=4, single_observation_space=gym.spaces.Box(-1, 1, (3,)),
    ...                       single_action_space=gym.spaces.Box(-1, 1, (2,)))
    >>> env = ManiSkillBatchedEnv(sim)
    >>> env.mode, env.num_worlds
    ('exact', 4)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trialrun.envs.adapters._arrays import to_numpy, world_flags
from trialrun.envs.batched import ResetMode
from trialrun.errors import ConfigError


class ManiSkillBatchedEnv:
    """Exact mode over a ManiSkill3 env: partial resets with per-world seeds.

    Args:
        env: ``gym.make(env_id, num_envs=N, ...)`` (or its ``unwrapped`` base
            env, or a ``ManiSkillVectorEnv`` built with ``auto_reset=False``).
        success_key: the ``info`` key holding per-world success.
        to_actions: converts the policy's action batch before ``step``
            (ManiSkill accepts numpy arrays and tensors, so usually not needed).
    """

    mode: ResetMode = "exact"

    def __init__(
        self, env: Any, *, success_key: str = "success", to_actions: Callable[[Any], Any] | None = None
    ) -> None:
        if getattr(env, "auto_reset", False):
            raise ConfigError(
                "ManiSkillVectorEnv with auto_reset=True restarts finished worlds itself without seeds; "
                "build it with auto_reset=False (or pass the env from gym.make) for exact mode",
                field="native_mode",
            )
        self.env = env
        base = getattr(env, "unwrapped", env)
        self.num_worlds = int(base.num_envs)
        self.single_observation_space = base.single_observation_space
        self.single_action_space = base.single_action_space
        self.success_key = success_key
        self.to_actions = to_actions
        self._seeds = np.zeros(self.num_worlds, dtype=np.int64)

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        idx = np.flatnonzero(mask)
        for i in idx.tolist():
            seed = seeds[i]
            if seed is not None:
                self._seeds[i] = int(seed)
        obs, info = self.env.reset(seed=self._seeds.tolist(), options={"env_idx": idx.tolist()})
        return obs, dict(info)

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        """Every world, with the seeds ManiSkill derives from one int seed
        (``seed`` for world 0, ``RandomState(seed).randint(2**31)`` draws for the others)."""
        rest = np.random.RandomState(seed).randint(2**31, size=self.num_worlds - 1)
        self._seeds = np.concatenate(([seed], rest)).astype(np.int64)
        obs, info = self.env.reset(seed=self._seeds.tolist())
        return obs, dict(info)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.to_actions is not None:
            actions = self.to_actions(actions)
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        n = self.num_worlds
        infos = dict(info)
        if self.success_key in infos:
            infos[self.success_key] = world_flags(infos[self.success_key], n, f"info['{self.success_key}']")
            infos["_" + self.success_key] = np.ones(n, dtype=bool)
        rew = to_numpy(rewards).astype(np.float64).reshape(-1)
        return (
            obs,
            rew,
            world_flags(terminated, n, "terminated"),
            world_flags(truncated, n, "truncated"),
            infos,
        )

    def close(self) -> None:
        self.env.close()
