"""Gymnasium vector envs that can step only some of their sub-envs.

Why: an evaluation must run each planned episode exactly once. Near the end of
a job fewer episodes remain than there are sub-envs; a plain vector env would
step the idle ones anyway, which either runs extra (unrecorded) episodes or
steps an env past its end (Meta-World raises after its path length). These
subclasses keep Gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` (autoreset
disabled, resets by mask) and add :meth:`step_active`, which steps only the
sub-envs whose ``active`` flag is set and leaves the others untouched.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> vec = ActiveSubsetSyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    >>> obs, _ = vec.reset(seed=[1, 2])
    >>> obs, rew, term, trunc, info = vec.step_active(np.array([0, 1]), np.array([True, False]))
    >>> rew.tolist()
    [1.0, 0.0]
    >>> vec.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.async_vector_env import AsyncState
from gymnasium.vector.utils import concatenate, iterate

StepResult = tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


class ActiveSubsetSyncVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` (autoreset disabled) whose idle sub-envs are not stepped."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]]) -> None:
        super().__init__(env_fns, copy=False, autoreset_mode=AutoresetMode.DISABLED)

    def step_active(self, actions: Any, active: np.ndarray) -> StepResult:
        """Step the sub-envs where ``active`` is true; others keep their last
        observation and report reward 0, not terminated, not truncated."""
        per_env_actions = list(iterate(self.action_space, actions))
        infos: dict[str, Any] = {}
        self._rewards[:] = 0.0
        for i in np.flatnonzero(active):
            (
                self._env_obs[i],
                self._rewards[i],
                self._terminations[i],
                self._truncations[i],
                env_info,
            ) = self.envs[i].step(per_env_actions[i])
            infos = self._add_info(infos, env_info, i)
        idle = ~np.asarray(active, dtype=bool)
        self._terminations[idle] = False
        self._truncations[idle] = False
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        return (
            self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )


class ActiveSubsetAsyncVectorEnv(AsyncVectorEnv):
    """An ``AsyncVectorEnv`` (autoreset disabled) whose idle workers are not stepped."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]]) -> None:
        super().__init__(env_fns, shared_memory=True, copy=True, autoreset_mode="Disabled")
        self._last_obs: list[Any] = [None] * self.num_envs

    def step_active(self, actions: Any, active: np.ndarray) -> StepResult:
        """Step the workers where ``active`` is true (they run in parallel)."""
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise RuntimeError(f"step_active while waiting for {self._state.value}")
        per_env_actions = list(iterate(self.action_space, actions))
        indices = [int(i) for i in np.flatnonzero(active)]
        for i in indices:
            self.parent_pipes[i].send(("step", per_env_actions[i]))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        successes = [True] * self.num_envs
        for i in indices:
            result, ok = self.parent_pipes[i].recv()
            successes[i] = ok
            if ok:
                self._last_obs[i] = result[0]
                rewards[i], terminations[i], truncations[i] = result[1], result[2], result[3]
                infos = self._add_info(infos, result[4], i)
        self._raise_if_errors(successes)
        if not self.shared_memory:
            self.observations = concatenate(self.single_observation_space, self._last_obs, self.observations)
        return deepcopy(self.observations), rewards, terminations, truncations, infos
