"""Isaac Lab (``ManagerBasedRLEnv``) as a wave-mode :class:`~trialrun.envs.batched.BatchedEnv`.

Follows ``isaaclab/envs/manager_based_rl_env.py`` and ``manager_based_env.py``
(isaac-sim/IsaacLab, read at commits fe626787 and af79d0ec):

- ``reset(seed=s)`` calls the *global* ``seed(s)`` (torch, numpy, random,
  Replicator) and then ``_reset_idx`` on every world: there is no per-world
  seed, so this adapter is wave mode only;
- ``step(action)`` computes rewards and ``terminated`` / ``time_outs``, then
  resets the worlds that ended (``_reset_idx(reset_env_ids)``) and returns the
  *post-reset* observations with the rewards and flags of the step just taken;
- ``extras["log"]`` is rebuilt at each reset with scalars averaged or counted
  over the worlds that reset, so it holds no per-world success. Success comes
  from a termination term (``termination_manager.get_term(name)``, which keeps
  the values of the last ``compute()``, i.e. the terminal step, through the
  reset) or from a per-world tensor the task puts in ``extras[key]``.

Observations pass through untouched (a dict of tensors on the sim device);
``to_actions`` converts the policy's actions if needed (Isaac Lab's ``step``
calls ``action.to(device)``, so it wants a torch tensor).

Example:
    >>> from types import SimpleNamespace
    >>> import gymnasium as gym
    >>> sim = SimpleNamespace(num_envs=4, single_observation_space=gym.spaces.Box(-1, 1, (3,)),
    ...                       single_action_space=gym.spaces.Box(-1, 1, (2,)))
    >>> env = IsaacLabBatchedEnv(sim, success_term="success")
    >>> env.mode, env.num_worlds
    ('wave', 4)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trialrun.envs.adapters._arrays import no_exact_mode, to_numpy, world_flags
from trialrun.envs.batched import ResetMode


class IsaacLabBatchedEnv:
    """Wave mode over an Isaac Lab env (``gym.make`` result or the unwrapped env).

    Args:
        env: the Isaac Lab env; ``env.unwrapped`` is used for ``num_envs``,
            the single spaces and the termination manager.
        success_term: name of a termination term whose per-world value at the
            terminal step is the success (e.g. ``"success"``).
        success_key: or a key of ``extras`` holding a per-world success tensor.
        to_actions: converts the policy's action batch before ``step``
            (e.g. ``lambda a: torch.as_tensor(a, device=env.unwrapped.device)``).
    """

    mode: ResetMode = "wave"

    def __init__(
        self,
        env: Any,
        *,
        success_term: str | None = None,
        success_key: str | None = None,
        to_actions: Callable[[Any], Any] | None = None,
    ) -> None:
        if success_term is not None and success_key is not None:
            raise ValueError("give success_term or success_key, not both")
        self.env = env
        self.base = getattr(env, "unwrapped", env)
        self.num_worlds = int(self.base.num_envs)
        self.single_observation_space = self.base.single_observation_space
        self.single_action_space = self.base.single_action_space
        self.success_term, self.success_key = success_term, success_key
        self.to_actions = to_actions

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        raise no_exact_mode("Isaac Lab")

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        obs, extras = self.env.reset(seed=seed)
        return obs, dict(extras)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.to_actions is not None:
            actions = self.to_actions(actions)
        obs, rewards, terminated, time_outs, extras = self.env.step(actions)
        n = self.num_worlds
        term = world_flags(terminated, n, "terminated")
        trunc = world_flags(time_outs, n, "time_outs")
        infos: dict[str, Any] = {}
        success = self._success(extras, term | trunc)
        if success is not None:
            infos = {"success": success, "_success": np.ones(n, dtype=bool)}
        return obs, to_numpy(rewards).astype(np.float64).reshape(-1), term, trunc, infos

    def close(self) -> None:
        self.env.close()

    def _success(self, extras: dict[str, Any], ended: np.ndarray) -> np.ndarray | None:
        if self.success_term is not None:
            manager = self.base.termination_manager
            if self.success_term not in manager.active_terms:
                raise KeyError(
                    f"Isaac Lab env has no termination term '{self.success_term}' "
                    f"(its terms: {list(manager.active_terms)})"
                )
            value = manager.get_term(self.success_term)
            return world_flags(value, self.num_worlds, f"termination term '{self.success_term}'")
        if self.success_key is None:
            return None
        if self.success_key not in extras:
            if not ended.any():  # read when an episode ends, before the next reset overwrites it
                return None
            raise KeyError(
                f"Isaac Lab extras have no key '{self.success_key}' at the step where worlds "
                f"{ended.nonzero()[0].tolist()[:8]} ended (extras keys: {sorted(extras)}); "
                "extras['log'] holds per-reset averages, not per-world values: use success_term "
                "with a termination term name, or a task that writes a per-world tensor to extras"
            )
        return world_flags(extras[self.success_key], self.num_worlds, f"extras['{self.success_key}']")
