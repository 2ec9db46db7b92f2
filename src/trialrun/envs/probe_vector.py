"""The native batched version of ``trialrun/SeedProbe-v0``: one object, many worlds.

Why it exists: to check the batched (``vectorization: native``) loop end to end
the way :mod:`trialrun.envs.probe` checks the per-env loop. Each world's
episode length and success are the same pure functions of its reset seed as
in :class:`~trialrun.envs.probe.SeedProbeEnv`, computed for all worlds with
numpy (no per-world Python on the step path), and it can behave like either
family of batched simulator:

- ``autoreset_mode="disabled"`` (the default): ``reset(seed=[...],
  options={"reset_mask": mask})`` resets exactly the masked worlds with their
  own seeds, as ManiSkill's ``reset(seed=..., options={"env_idx": ...})`` and
  per-world PRNG keys in JAX do (exact mode);
- ``autoreset_mode="next_step"``: ``reset(seed=s)`` resets every world from one
  generator and a finished world restarts by itself at the next step with a
  seed drawn from that shared generator, as Gymnasium's ``CartPoleVectorEnv``,
  PufferLib and Isaac Lab do (wave mode).

Example:
    >>> env = SeedProbeVectorEnv(num_envs=3)
    >>> obs, _ = env.reset(seed=[5, 6, 7])
    >>> obs[:, 2].tolist() == [float(probe_length(s)) for s in (5, 6, 7)]
    True
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from trialrun.envs.probe import MAX_PROBE_LENGTH, probe_length, probe_success


class SeedProbeVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` SeedProbe worlds stepped as one batch."""

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: str = "disabled",
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        modes = {"disabled": AutoresetMode.DISABLED, "next_step": AutoresetMode.NEXT_STEP}
        if autoreset_mode not in modes:
            raise ValueError(f"autoreset_mode must be 'disabled' or 'next_step', got {autoreset_mode!r}")
        mode = modes[autoreset_mode]
        self.num_envs = num_envs
        self.metadata = {"autoreset_mode": mode, "render_modes": ["rgb_array"]}
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = gym.spaces.Box(0.0, float(2**20), shape=(3,), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._seeds = np.zeros(num_envs, dtype=np.int64)
        self._length = np.ones(num_envs, dtype=np.int64)
        self._success = np.zeros(num_envs, dtype=bool)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._done = np.zeros(num_envs, dtype=bool)
        self._shared = np.random.default_rng()

    @property
    def world_seeds(self) -> np.ndarray:
        """The seed each world's current episode started from (a copy)."""
        seeds: np.ndarray = self._seeds.copy()
        return seeds

    def _start(self, worlds: np.ndarray, seeds: list[int]) -> None:
        for i, seed in zip(worlds.tolist(), seeds, strict=True):
            self._seeds[i] = seed
            self._length[i] = probe_length(seed)
            self._success[i] = probe_success(seed)
        self._t[worlds] = 0
        self._done[worlds] = False

    def _obs(self) -> np.ndarray:
        return np.stack([self._seeds % 2**20, self._t, self._length - self._t], axis=1).astype(np.float32)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        mask = (options or {}).get("reset_mask")
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            if mask is not None or isinstance(seed, list):
                raise TypeError(
                    "this SeedProbeVectorEnv resets all worlds together from one seed (next_step)"
                )
            self._shared = np.random.default_rng(seed)
            worlds = np.arange(self.num_envs)
            self._start(worlds, self._shared.integers(0, 2**31, size=self.num_envs).tolist())
        else:
            seeds = seed if isinstance(seed, list) else [seed] * self.num_envs
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list of length {len(seeds)} for {self.num_envs} worlds")
            worlds = np.flatnonzero(mask) if mask is not None else np.arange(self.num_envs)
            chosen = [seeds[i] for i in worlds.tolist()]
            self._start(
                worlds, [int(s) if s is not None else int(self._shared.integers(0, 2**31)) for s in chosen]
            )
        success = np.zeros(self.num_envs, dtype=bool)
        return self._obs(), {"success": success, "_success": np.ones(self.num_envs, dtype=bool)}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        restart = self._done.copy() if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP else None
        if restart is None and self._done.any():
            raise RuntimeError("SeedProbeVectorEnv stepped a finished world (reset it first)")
        self._t += 1
        done = self._t >= self._length
        rewards = np.ones(self.num_envs, dtype=np.float64)
        success = done & self._success
        if restart is not None and restart.any():
            worlds = np.flatnonzero(restart)
            self._start(worlds, self._shared.integers(0, 2**31, size=worlds.size).tolist())
            rewards[restart] = 0.0
            done[restart] = False
            success[restart] = False
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = ~done & (self._t >= self.max_episode_steps)
            if restart is not None:
                truncated[restart] = False
        terminated = done.copy()
        self._done = done | truncated
        return (
            self._obs(),
            rewards,
            terminated,
            truncated,
            {"success": success, "_success": np.ones(self.num_envs, dtype=bool)},
        )

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One 64x64 image per world: grey level = steps taken, red = steps left
        (so a video shows which episode and step it is; tests read it back)."""
        if self.render_mode != "rgb_array":
            return None
        images = np.zeros((self.num_envs, 64, 64, 3), dtype=np.uint8)
        images[:, :, :, 1] = np.minimum(self._t, 255).astype(np.uint8)[:, None, None]
        images[:, :, :, 0] = np.minimum(self._length - self._t, 255).clip(0).astype(np.uint8)[:, None, None]
        return tuple(images)


__all__ = ["MAX_PROBE_LENGTH", "SeedProbeVectorEnv"]
