"""Test-only policies, outcome terms and envs, importable as ``helpers:...`` in
configs (the tests directory is put on ``sys.path`` and ``PYTHONPATH``)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from trialrun.policies.base import PolicyContext

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def subprocess_env() -> dict[str, str]:
    """Environment for a child ``trialrun`` process that can import ``helpers``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MUJOCO_GL", "egl")
    return env


class SlowPolicy:
    """Acts like 'zero' but sleeps, so a run lasts long enough to be killed."""

    def __init__(self, context: PolicyContext, delay: float = 0.01) -> None:
        self.num_envs = context.num_envs
        self.delay = delay

    def act(self, obs: Any) -> np.ndarray:
        time.sleep(self.delay)
        return np.zeros(len(obs), dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        pass


class SlowBalancePolicy:
    """Balances CartPole (the bundled ``cartpole-balance``) but sleeps at every
    step, so that a killed run's episodes are surely in flight: the step loop,
    not a writer or the machine's load, sets the pace."""

    def __init__(self, context: PolicyContext, delay: float = 0.002) -> None:
        from trialrun.policies import build_policy

        self.inner = build_policy("cartpole-balance", {}, context)
        self.delay = delay

    def act(self, obs: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.act(obs)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        self.inner.reset(mask, seeds)


class BlockSink:
    """An ``on_episode`` that also takes a step's episodes at once (the
    runner's kind), keeping each block; a call for one episode fails."""

    def __init__(self) -> None:
        self.blocks: list[list[Any]] = []

    def __call__(self, result: Any) -> None:
        raise AssertionError("a sink with many() gets the step's episodes at once")

    def many(self, results: list[Any]) -> None:
        self.blocks.append(list(results))


class ExplodingPolicy:
    """Raises after ``after`` calls to act()."""

    def __init__(self, context: PolicyContext, after: int = 5) -> None:
        self.after = after
        self.calls = 0

    def act(self, obs: Any) -> np.ndarray:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("policy exploded on purpose")
        return np.zeros(len(obs), dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        pass


class StepCountingPolicy:
    """A stand-in for a recurrent policy: keeps a per-sub-env step counter that
    must match the probe env's own step counter (obs[1]) if, and only if,
    reset(mask) clears exactly the sub-envs that start a new episode."""

    instances: ClassVar[list[StepCountingPolicy]] = []

    def __init__(self, context: PolicyContext) -> None:
        self.counters = np.zeros(context.num_envs, dtype=np.int64)
        self.mismatches = 0
        self.resets = 0
        StepCountingPolicy.instances.append(self)

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        running = obs[:, 2] > 0  # idle sub-envs (no slot left) show their final obs
        self.mismatches += int(np.sum((self.counters != obs[:, 1].astype(np.int64)) & running))
        self.counters += 1
        return np.zeros(len(obs), dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        self.counters[mask] = 0
        self.resets += int(np.sum(mask))


def plain_function_policy(obs: Any) -> np.ndarray:
    """A stateless callable used as ``helpers:plain_function_factory``."""
    return np.ones(len(obs), dtype=np.int64)


def plain_function_factory() -> Any:
    return plain_function_policy


class MaxRewardTerm:
    """A custom outcome term: the largest single-step reward of the episode."""

    def __init__(self, name: str = "max_reward") -> None:
        self.name = name
        self.best = np.zeros(0)

    def allocate(self, num_envs: int) -> None:
        self.best = np.full(num_envs, -np.inf)

    def start(self, env_mask: np.ndarray) -> None:
        self.best[env_mask] = -np.inf

    def step(self, active, rewards, terminated, truncated, infos) -> None:  # type: ignore[no-untyped-def]
        self.best[active] = np.maximum(self.best[active], rewards[active])

    def value(self, env_index: int) -> float:
        return float(self.best[env_index])


class StepsAboveTerm:
    """A custom outcome term with a required setting: how many steps of the
    episode had a reward above ``threshold``."""

    def __init__(self, threshold: float, name: str = "steps_above") -> None:
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        self.threshold = threshold
        self.name = name
        self.count = np.zeros(0, dtype=np.int64)

    def allocate(self, num_envs: int) -> None:
        self.count = np.zeros(num_envs, dtype=np.int64)

    def start(self, env_mask: np.ndarray) -> None:
        self.count[env_mask] = 0

    def step(self, active, rewards, terminated, truncated, infos) -> None:  # type: ignore[no-untyped-def]
        self.count[active & (rewards > self.threshold)] += 1

    def value(self, env_index: int) -> int:
        return int(self.count[env_index])


class CountingWrapper(gym.Wrapper):  # type: ignore[type-arg]
    """Counts resets and steps across all instances (per process)."""

    resets = 0
    steps = 0

    def reset(self, **kwargs: Any) -> Any:
        CountingWrapper.resets += 1
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        CountingWrapper.steps += 1
        return self.env.step(action)


class BrokenEnv(gym.Env):  # type: ignore[type-arg]
    """Raises on the third step."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        if self.t >= 3:
            raise ValueError("the simulator diverged on purpose")
        return np.zeros(2, np.float32), 0.0, False, False, {}


gym.register(id="helpers/Broken-v0", entry_point="helpers:BrokenEnv")


def unbuildable_batched_env(num_envs: int, **kwargs: Any) -> Any:
    """A vector entry point whose simulator cannot start (no GPU, a licence server down...)."""
    raise RuntimeError("no CUDA device is available")


gym.register(
    id="helpers/UnbuildableBatched-v0",
    entry_point="helpers:BrokenEnv",
    vector_entry_point="helpers:unbuildable_batched_env",
)


class PidFilePolicy(SlowPolicy):
    """A slow 'zero' policy that writes the PID of the process running it to
    ``pid_dir`` (so a test can kill the worker mid-shard)."""

    def __init__(self, context: PolicyContext, pid_dir: str, delay: float = 0.01) -> None:
        super().__init__(context, delay)
        os.makedirs(pid_dir, exist_ok=True)
        with open(os.path.join(pid_dir, f"{os.getpid()}.pid"), "w") as f:
            f.write(str(os.getpid()))


def record_identity(path: Any, *, keep_world: bool = True) -> list[str]:
    """Each record of ``path`` (an ``episodes.jsonl``) without its timestamps
    and step timings (and without the world that ran it unless
    ``keep_world``), as sorted JSON lines: what must be equal between two runs
    of the same plan."""
    import json

    from trialrun.runfiles import read_episodes

    drop: dict[str, Any] = {"started_at": True, "ended_at": True, "extra": {"timing"}}
    if not keep_world:
        drop["env_index"] = True
    return sorted(
        json.dumps(rec.model_dump(mode="json", by_alias=True, exclude=drop), sort_keys=True)
        for rec in read_episodes(path)
    )
