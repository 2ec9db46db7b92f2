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

import logging
import multiprocessing
import re
import sys
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import CustomSpaceError
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.async_vector_env import AsyncState
from gymnasium.vector.utils import concatenate, iterate

logger = logging.getLogger(__name__)

StepResult = tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


_GL_DRIVER = re.compile(r"_dri\.so|libgallium|libOSMesa|libnvidia-glcore|libEGL_nvidia|libGLX_nvidia")
"""Libraries a process maps once it has a GL context (Mesa's drivers, OSMesa,
NVIDIA's), not merely once it has loaded libEGL (importing MuJoCo does that)."""

_FORKSERVER_PRELOAD = ["trialrun.rollout"]
"""Imported once by the fork server, so each worker forked from it starts with
Gymnasium and trialrun already imported."""


def gl_driver_loaded(maps: str | None = None) -> bool:
    """Whether this process (or the given ``/proc/<pid>/maps`` text) has a GL driver mapped."""
    if maps is None:
        try:
            with open("/proc/self/maps") as file:
                maps = file.read()
        except OSError:  # not Linux: the platform's default start method is not fork
            return False
    return _GL_DRIVER.search(maps) is not None


def async_start_method() -> str | None:
    """How the async vector env starts its workers: ``None`` (the platform's
    default: fork on Linux) unless this process holds a GL context, then
    ``"forkserver"``.

    Why: a forked copy of a GL context hangs the first time the worker renders
    (Mesa's EGL waits on a lock held by a thread the fork did not copy), which
    hung an ``async`` job with video run after anything had rendered in the
    same process. Workers forked from a fork server (a fresh process, started
    by fork+exec) have no GL state. Fork stays the default otherwise: a fork
    server re-imports the user's ``__main__`` in each worker, which a script
    without an ``if __name__ == "__main__":`` guard cannot survive, and envs
    registered at run time in the script are not registered there.
    """
    if not sys.platform.startswith("linux") or not gl_driver_loaded():
        return None
    multiprocessing.get_context("forkserver").set_forkserver_preload(_FORKSERVER_PRELOAD)
    logger.info(
        "async: this process holds a GL context (something rendered here); workers start from a "
        "fork server instead of a fork of this process, whose GL state would hang them"
    )
    return "forkserver"


_BATCHED_ACTIONS = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


class ActiveSubsetSyncVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` (autoreset disabled) whose idle sub-envs are not stepped.

    It also takes the short paths an evaluation loop can use: observations of
    a ``Box`` space are written row by row instead of re-concatenated, actions
    of array spaces are indexed instead of iterated, and :meth:`reset_slots`
    resets only the given sub-envs (Gymnasium's masked reset loops over all).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]]) -> None:
        super().__init__(env_fns, copy=False, autoreset_mode=AutoresetMode.DISABLED)
        self._rows = isinstance(self.single_observation_space, gym.spaces.Box)
        self._indexable_actions = isinstance(self.single_action_space, _BATCHED_ACTIONS)
        self._step_fns = [self._step_target(env) for env in self.envs]

    @staticmethod
    def _step_target(env: gym.Env[Any, Any]) -> Callable[[Any], Any]:
        # A SlotWrapper that records nothing hands out its inner env's step.
        target: Callable[[Any], Any] = getattr(env, "step_target", env.step)
        return target

    def _store(self, i: int, obs: Any) -> None:
        self._env_obs[i] = obs
        if self._rows:
            self._observations[i] = obs

    def _gather(self) -> Any:
        if not self._rows:
            self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        return self._observations

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        result = super().reset(seed=seed, options=options)
        self._step_fns = [self._step_target(env) for env in self.envs]
        return result

    def reset_slots(
        self, mask: np.ndarray, seeds: Sequence[int | None], options: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the sub-envs where ``mask`` is true with their own seeds."""
        infos: dict[str, Any] = {}
        for i in mask.nonzero()[0].tolist():
            env = self.envs[i]
            obs, info = env.reset(seed=seeds[i], options=options)
            self._step_fns[i] = self._step_target(env)
            self._store(i, obs)
            self._terminations[i] = self._truncations[i] = self._autoreset_envs[i] = False
            if info:
                infos = self._add_info(infos, info, i)
        return self._gather(), infos

    def step_active(self, actions: Any, active: np.ndarray) -> StepResult:
        """Step the sub-envs where ``active`` is true; others keep their last
        observation and report reward 0, not terminated, not truncated."""
        per_env = actions if self._indexable_actions else list(iterate(self.action_space, actions))
        infos: dict[str, Any] = {}
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        step_fns = self._step_fns
        for i in active.nonzero()[0].tolist():
            obs, rewards[i], terminations[i], truncations[i], env_info = step_fns[i](per_env[i])
            self._store(i, obs)
            if env_info:
                infos = self._add_info(infos, env_info, i)
        return self._gather(), rewards, terminations, truncations, infos


class ActiveSubsetAsyncVectorEnv(AsyncVectorEnv):
    """An ``AsyncVectorEnv`` (autoreset disabled) whose idle workers are not stepped.

    Observations travel through shared memory when the observation space
    allows it (Box, Discrete, Dict/Tuple of those ...). Spaces Gymnasium
    cannot lay out in shared memory (a ``Text`` mission in MiniGrid's Dict
    observation, a ``Graph``, a custom space) raise ``CustomSpaceError``
    there; those fall back to sending observations through the workers'
    pipes (``shared_memory=False``), which gives the same observations, only
    slower, and one log line says so.

    Workers are forked from this process, or from a fork server when this
    process holds a GL context (:func:`async_start_method` says why).

    Example:
        >>> import gymnasium as gym
        >>> vec = ActiveSubsetAsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
        >>> vec.shared_memory
        True
        >>> vec.close()
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]]) -> None:
        context = async_start_method()
        try:
            super().__init__(
                env_fns, shared_memory=True, copy=True, context=context, autoreset_mode="Disabled"
            )
        except ValueError as exc:
            if not isinstance(exc.__cause__, CustomSpaceError):
                raise
            # Raised before any worker started (only the probe env was built and closed).
            super().__init__(
                env_fns, shared_memory=False, copy=True, context=context, autoreset_mode="Disabled"
            )
            logger.info(
                "async: observation space %s cannot be placed in shared memory (it holds a %s space); "
                "observations are sent through the worker pipes instead (shared_memory=False)",
                _short(self.single_observation_space),
                _unshareable(self.single_observation_space),
            )
        self._last_obs: list[Any] = [None] * self.num_envs

    def reset_slots(
        self, mask: np.ndarray, seeds: Sequence[int | None], options: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the workers where ``mask`` is true (Gymnasium's masked reset)."""
        if self.shared_memory:
            return self.reset(seed=list(seeds), options={**options, "reset_mask": mask})
        # Without shared memory Gymnasium's masked reset batches every worker's
        # last observation, which a worker never reset does not have yet.
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise RuntimeError(f"reset_slots while waiting for {self._state.value}")
        infos: dict[str, Any] = {}
        for i, (obs, info) in self._call_each(
            mask, "reset", [{"seed": s, "options": options} for s in seeds]
        ):
            self._last_obs[i] = obs
            infos = self._add_info(infos, info, i)
        return deepcopy(self._batch_last_obs()), infos

    def _call_each(self, mask: np.ndarray, command: str, data: Sequence[Any]) -> list[tuple[int, Any]]:
        """Send ``command`` with ``data[i]`` to the workers where ``mask`` is
        true (they run in parallel) and collect ``(i, result)``; a worker's
        error is raised once all have answered."""
        indices = [int(i) for i in np.flatnonzero(mask)]
        for i in indices:
            self.parent_pipes[i].send((command, data[i]))
        results: list[tuple[int, Any]] = []
        successes = [True] * self.num_envs
        for i in indices:
            result, ok = self.parent_pipes[i].recv()
            successes[i] = ok
            if ok:
                results.append((i, result))
        self._raise_if_errors(successes)
        return results

    def _batch_last_obs(self) -> Any:
        """The batch of each worker's last observation (a worker that has none
        yet, idle since the start, shows the first worker's)."""
        fill = next(obs for obs in self._last_obs if obs is not None)
        rows = [fill if obs is None else obs for obs in self._last_obs]
        self.observations = concatenate(self.single_observation_space, rows, self.observations)
        return self.observations

    def step_active(self, actions: Any, active: np.ndarray) -> StepResult:
        """Step the workers where ``active`` is true (they run in parallel)."""
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise RuntimeError(f"step_active while waiting for {self._state.value}")
        per_env_actions = list(iterate(self.action_space, actions))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for i, result in self._call_each(active, "step", per_env_actions):
            self._last_obs[i] = result[0]
            rewards[i], terminations[i], truncations[i] = result[1], result[2], result[3]
            infos = self._add_info(infos, result[4], i)
        if not self.shared_memory:
            self._batch_last_obs()
        return deepcopy(self.observations), rewards, terminations, truncations, infos


def _short(space: gym.Space[Any], limit: int = 120) -> str:
    """A space's repr cut to one readable line (Dict spaces can be long)."""
    text = repr(space)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SHAREABLE = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def _unshareable(space: gym.Space[Any]) -> str:
    """The type name of the first sub-space without a shared-memory layout."""
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        for sub in space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces:
            if not isinstance(sub, _SHAREABLE):
                return _unshareable(sub)
    return type(space).__name__
