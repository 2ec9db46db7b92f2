"""Misbehaving policies and envs for the fault corpus (tests/test_policy_faults.py),
importable as ``faults:...`` in run configs (the tests directory is on
``sys.path`` and on the ``PYTHONPATH`` of child processes)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.policies.base import PolicyContext


class FaultyPolicy:
    """A 'zero' policy that misbehaves in ``act`` (or ``reset``) once it has
    been called ``after`` times; ``fault`` says how."""

    def __init__(
        self, context: PolicyContext, fault: str, after: int = 3, where: str = "act", pid_dir: str = ""
    ) -> None:
        self.space = context.action_space
        self.num_envs = context.num_envs
        self.fault = fault
        self.after = after
        self.where = where
        self.calls = 0
        if pid_dir:
            os.makedirs(pid_dir, exist_ok=True)
            with open(os.path.join(pid_dir, f"{os.getpid()}.pid"), "w") as f:
                f.write(str(os.getpid()))

    def _good(self, n: int) -> Any:
        if isinstance(self.space, gym.spaces.Discrete):
            return np.zeros(n, dtype=np.int64)
        return np.zeros((n, *self.space.shape), dtype=self.space.dtype)

    def act(self, obs: Any) -> Any:
        n = len(obs)
        if self.where == "act":
            self.calls += 1
            if self.calls > self.after:
                return misbehave(self.fault, n, self._good(n))
        return self._good(n)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        if self.where == "reset":
            self.calls += 1
            if self.calls > self.after:
                misbehave(self.fault, len(mask), None)


def misbehave(fault: str, n: int, good: Any) -> Any:
    """Do what ``fault`` names (raise, hang, or return a bad batch)."""
    if fault == "exit":
        sys.exit(3)
    if fault == "exit0":
        sys.exit(0)
    if fault == "keyboard":
        raise KeyboardInterrupt
    if fault == "memory":
        raise MemoryError("policy ran out of memory on purpose")
    if fault == "recursion":
        raise RecursionError("maximum recursion depth exceeded (on purpose)")
    if fault == "sleep":
        time.sleep(10_000)
    if fault == "spin":
        while True:
            pass
    if fault == "extra_rows":
        return np.zeros((n + 3, 7), dtype=np.float32)
    if fault == "flat":
        return np.zeros(n, dtype=np.float32)
    if fault == "nan":
        bad = np.array(good, dtype=np.float32)
        bad[0] = np.nan
        return bad
    if fault == "inf":
        bad = np.array(good, dtype=np.float32)
        bad[-1] = np.inf
        return bad
    if fault == "out_of_range":
        return np.full(n, 5, dtype=np.int64)
    if fault == "negative":
        return np.full(n, -1, dtype=np.int64)
    if fault == "float_for_discrete":
        return np.zeros(n, dtype=np.float64)
    if fault == "strings":
        return np.array(["left"] * n)
    if fault == "none":
        return None
    if fault == "ragged":
        return [[0.0]] * (n - 1) + [[0.0, 1.0]]
    if fault == "too_big":
        return np.full_like(good, 7.0)
    raise ValueError(f"unknown fault {fault!r}")


def exiting_factory(context: PolicyContext) -> Any:
    """A policy factory that calls sys.exit (say, argparse in a user's module)."""
    sys.exit(2)


class FaultyEnv(gym.Env):  # type: ignore[type-arg]
    """A CartPole-sized env that misbehaves in ``step`` (or ``reset``) after ``after`` steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fault: str = "none", after: int = 3, where: str = "step", horizon: int = 10) -> None:
        self.fault = fault
        self.after = after
        self.where = where
        self.horizon = horizon
        self.steps = 0
        self.total_steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.steps = 0
        if self.where == "reset" and self.fault != "none" and self.total_steps >= self.after:
            misbehave(self.fault, 1, None)
        return np.zeros(4, np.float32), {}

    def step(self, action: Any) -> Any:
        self.steps += 1
        self.total_steps += 1
        reward = 1.0
        if self.where == "step" and self.total_steps > self.after:
            if self.fault == "nan_reward":
                reward = float("nan")
            elif self.fault == "inf_reward":
                reward = float("inf")
            elif self.fault != "none":
                misbehave(self.fault, 1, None)
        return np.zeros(4, np.float32), reward, False, self.steps >= self.horizon, {}


gym.register("faults/Faulty-v0", entry_point=FaultyEnv)
