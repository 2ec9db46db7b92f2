"""The rollout's boundary with user code: time limits, action checks, and where the time goes.

:class:`GuardConfig` is what a job sets (``act_timeout``, ``episode_timeout``,
``on_nonfinite``, ``on_out_of_bounds``); :class:`Guard` is the runtime object
the rollout builds from it for one vector of sub-envs. Both rollouts (the
per-env loop and the batched one) call the policy and step the env through
it, so the same limits and checks hold whichever runs a job. It also clocks
both (two ``perf_counter`` reads per call), so each episode's record says how
long a step waited for the policy and for the env (``extra.timing``).

Example:
    >>> import numpy as np, gymnasium as gym
    >>> guard = Guard(GuardConfig(act_timeout=5), gym.spaces.Discrete(2), num_envs=2)
    >>> class Zero:
    ...     def act(self, obs): return np.zeros(len(obs), np.int64)
    >>> with guard:
    ...     guard.started(np.ones(2, bool))
    ...     guard.act(Zero(), np.zeros((2, 4)), np.ones(2, bool)).tolist()
    [0, 0]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np

from trialrun.boundary.actions import ActionCheck, OnNonfinite, OnOutOfBounds
from trialrun.boundary.timeouts import TimeLimits
from trialrun.errors import CallTimeout

T = TypeVar("T")

DEFAULT_ACT_TIMEOUT = 60.0
"""Seconds a policy's ``act`` or ``reset`` may take before its job fails."""


@dataclass(frozen=True)
class GuardConfig:
    """A job's limits on the code it runs (see ``docs/configuration.md``)."""

    act_timeout: float | None = DEFAULT_ACT_TIMEOUT
    """Seconds per policy call (``act``, ``reset``); None: no limit."""
    episode_timeout: float | None = None
    """Wall seconds per episode, env steps and policy calls together; None: no limit."""
    on_nonfinite: OnNonfinite = "fail"
    on_out_of_bounds: OnOutOfBounds = "warn"
    check_actions: bool = True
    """Check actions against the action space (off only to measure what the check costs)."""

    @classmethod
    def off(cls) -> GuardConfig:
        """No limits and no checks: the bare loop (``benchmarks/boundary.py`` compares against it)."""
        return cls(act_timeout=None, episode_timeout=None, check_actions=False)


class Guard:
    """Calls into the policy and the env for ``num_envs`` sub-envs, under the
    limits of ``config``; use as a context manager around the rollout."""

    def __init__(
        self, config: GuardConfig, action_space: gym.Space[Any], num_envs: int, *, where: str = ""
    ) -> None:
        self.config = config
        self.check = ActionCheck(
            action_space,
            num_envs,
            on_nonfinite=config.on_nonfinite,
            on_out_of_bounds=config.on_out_of_bounds,
            where=where,
        )
        self._check: Callable[[Any], Any] = self.check if config.check_actions else _unchecked
        self._limits = TimeLimits()
        self._act_limit = config.act_timeout
        self._episode_limit = config.episode_timeout
        # Monotonic start of each sub-env's running episode (inf: none runs there).
        self._started: list[float] = [math.inf] * num_envs
        self._episodes: list[int | None] = [None] * num_envs
        # Wall seconds spent in the policy's act and the env's step since the
        # rollout began, and their values when each sub-env's episode started.
        self.policy_seconds = 0.0
        self.env_seconds = 0.0
        self._policy_at = [0.0] * num_envs
        self._env_at = [0.0] * num_envs

    def __enter__(self) -> Guard:
        self._limits.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._limits.__exit__(kind, exc, tb)

    def started(self, mask: np.ndarray, episodes: Sequence[int | None] | None = None) -> None:
        """Episodes start in the sub-envs of ``mask`` (``episodes[i]`` names the
        slot for the timeout message)."""
        now = time.monotonic()
        for i in np.asarray(mask).nonzero()[0].tolist():
            self._started[i] = now
            self._policy_at[i] = self.policy_seconds
            self._env_at[i] = self.env_seconds
            if episodes is not None:
                self._episodes[i] = episodes[i]

    def timing(self, world: int, length: int) -> dict[str, float]:
        """Mean wall milliseconds per step the episode in ``world`` waited for
        the policy and for the env (the record's ``extra.timing``)."""
        steps = max(length, 1)
        return {
            "policy_ms": round((self.policy_seconds - self._policy_at[world]) * 1000.0 / steps, 4),
            "env_ms": round((self.env_seconds - self._env_at[world]) * 1000.0 / steps, 4),
        }

    def finished(self, worlds: Sequence[int]) -> None:
        """The episodes of ``worlds`` ended (their time no longer counts)."""
        for i in worlds:
            self._started[i] = math.inf

    def act(self, policy: Any, obs: Any, active: np.ndarray) -> Any:
        """The policy's checked actions for ``obs``."""
        start = time.perf_counter()
        if self._episode_limit is None:
            if self._act_limit is None:
                actions = policy.act(obs)
            else:
                actions = self._limits.call(self._act_limit, "policy.act", "act_timeout", policy.act, obs)
        else:
            actions = self._under_episode_limit(active, "policy.act", policy.act, obs)
        self.policy_seconds += time.perf_counter() - start
        return self._check(actions)

    def reset(self, policy: Any, mask: np.ndarray, seeds: Sequence[int | None]) -> None:
        """``policy.reset(mask, seeds)`` under ``act_timeout``."""
        if self._act_limit is None:
            policy.reset(mask, seeds)
        else:
            self._limits.call(self._act_limit, "policy.reset", "act_timeout", policy.reset, mask, seeds)

    def step(self, active: np.ndarray, step: Callable[..., T], *args: Any) -> T:
        """``step(*args)`` (the env's step), under the episode's remaining time."""
        start = time.perf_counter()
        try:
            if self._episode_limit is None:
                return step(*args)
            return self._under_episode_limit(active, "env.step", step, *args)
        finally:
            self.env_seconds += time.perf_counter() - start

    def _under_episode_limit(self, active: np.ndarray, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` stopped when the oldest running episode reaches
        ``episode_timeout`` (or, for a policy call, at ``act_timeout`` if that comes first)."""
        limit = self._episode_limit
        assert limit is not None  # callers check
        first = min(self._started)
        oldest = self._started.index(first)
        remaining = limit - (time.monotonic() - first)
        if remaining <= 0:
            raise self._episode_timeout(oldest, first, what)
        if what == "policy.act" and self._act_limit is not None and self._act_limit <= remaining:
            return self._limits.call(self._act_limit, what, "act_timeout", fn, *args)
        try:
            return self._limits.call(remaining, what, "episode_timeout", fn, *args)
        except CallTimeout:
            raise self._episode_timeout(oldest, first, what) from None

    def _episode_timeout(self, world: int, started: float, during: str) -> CallTimeout:
        limit = self._episode_limit
        return CallTimeout(
            f"timeout: episode {self._episodes[world]} ran for {time.monotonic() - started:.2f} s "
            f"(episode_timeout: {limit:g} s; stopped in {during})"
        )


def _unchecked(actions: Any) -> Any:
    return actions
