"""What the boundary with user code costs the rollout: time limits and action checks.

Runs ``trialrun.rollout.rollout`` on the same planned slots, env, random policy
and ``num_envs`` three ways, interleaved over ``--rounds`` rounds (the order
rotates between rounds, so machine noise hits them alike):

- **off**: ``GuardConfig.off()``: no time limits, no action check (the bare loop);
- **default**: what every job gets: ``act_timeout`` 60 s (two ``setitimer``
  calls per step) and the action check (shape, dtype, range, NaN/inf);
- **+episode_timeout**: the default plus ``episode_timeout`` (one more timer
  arm per step for the env step, and the oldest running episode per step).

It prints median env steps per second and the median of the per-round ratios
against ``off`` (wall clock and process CPU time). Issue 15's target: the
default costs at most 2% (ratio >= 0.98). On a shared 2-core machine the
end-to-end ratios move by several percent from round to round, so a second
table measures the guard alone: microseconds per ``Guard.act`` + ``Guard.step``
with a policy and env that do nothing, against the microseconds of one real
vector step of each case (``off`` side): their quotient is the cost the
end-to-end ratio cannot resolve.

Usage:
    python benchmarks/boundary.py            # full run (~3 min)
    python benchmarks/boundary.py --quick    # smoke run (a few seconds)
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np

from trialrun.boundary import Guard, GuardConfig
from trialrun.plan import plan_job
from trialrun.policies.registry import build_policy
from trialrun.rollout import EpisodeResult, rollout

SEED = 7
SIDES: dict[str, GuardConfig] = {
    "off": GuardConfig.off(),
    "default": GuardConfig(),
    "+episode_timeout": GuardConfig(episode_timeout=3600),
}


@dataclass(frozen=True)
class Case:
    env_id: str
    num_envs: int
    episodes: int
    max_steps: int | None = None

    @property
    def label(self) -> str:
        limit = f", max_steps={self.max_steps}" if self.max_steps else ""
        return f"{self.env_id} x{self.num_envs}, {self.episodes} eps{limit}"


def measure(case: Case, limits: GuardConfig) -> tuple[float, float]:
    """Env steps per wall second and per CPU second of one rollout."""
    slots = plan_job(SEED, "bench", case.episodes)
    lengths: list[int] = []

    def on_episode(result: EpisodeResult) -> None:
        lengths.append(result.outcome["length"])

    kwargs = {} if case.max_steps is None else {"max_episode_steps": case.max_steps}
    wall, cpu = time.perf_counter(), time.process_time()
    rollout(
        slots,
        [partial(gym.make, case.env_id, **kwargs) for _ in range(case.num_envs)],
        lambda ctx: build_policy("random", {}, ctx),
        on_episode,
        env_id=case.env_id,
        limits=limits,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = sum(lengths)
    return steps / wall, steps / cpu


def guard_us(case: Case, limits: GuardConfig, calls: int = 100_000) -> float:
    """Microseconds per step of the guard alone (a policy and a step that do nothing)."""
    env = gym.make(case.env_id)
    space = env.action_space
    env.close()
    actions = np.stack([space.sample() for _ in range(case.num_envs)])
    obs = np.zeros((case.num_envs, 1))
    active = np.ones(case.num_envs, dtype=bool)

    class Still:
        def act(self, _obs: object) -> np.ndarray:
            return actions

    def step() -> None:
        return None

    policy = Still()
    with Guard(limits, space, case.num_envs) as guard:
        guard.started(active)
        start = time.perf_counter()
        for _ in range(calls):
            guard.act(policy, obs, active)
            guard.step(active, step)
        return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small episode counts, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cases = (
        [Case("CartPole-v1", 16, 1500), Case("Pendulum-v1", 8, 16)]
        if args.quick
        else [
            Case("CartPole-v1", 16, 20000),
            Case("Pendulum-v1", 8, 400),
            Case("HalfCheetah-v5", 4, 24, max_steps=1000),
        ]
    )
    rounds = args.rounds or (2 if args.quick else 5)
    machine = platform.processor() or platform.machine()
    print(f"# boundary cost: {platform.node()}, {machine}, {rounds} rounds")
    print(f"{'case':46} {'side':18} {'steps/s':>10} {'ratio (wall)':>13} {'ratio (cpu)':>12}")
    step_us: dict[str, float] = {}
    names = list(SIDES)
    for case in cases:
        measure(case, SIDES["off"])  # warm-up: imports, env registration, caches
        wall: dict[str, list[float]] = {side: [] for side in SIDES}
        cpu: dict[str, list[float]] = {side: [] for side in SIDES}
        for r in range(rounds):
            for side in names[r % len(names) :] + names[: r % len(names)]:
                w, c = measure(case, SIDES[side])
                wall[side].append(w)
                cpu[side].append(c)
        step_us[case.label] = case.num_envs / statistics.median(wall["off"]) * 1e6
        for side in names:
            ratio_wall = statistics.median(w / o for w, o in zip(wall[side], wall["off"], strict=True))
            ratio_cpu = statistics.median(c / o for c, o in zip(cpu[side], cpu["off"], strict=True))
            print(
                f"{case.label:46} {side:18} {statistics.median(wall[side]):10.0f} "
                f"{ratio_wall:13.3f} {ratio_cpu:12.3f}"
            )

    print()
    print(f"{'case':46} {'side':18} {'guard us/step':>14} {'env us/step':>12} {'cost':>8}")
    for case in cases:
        bare = guard_us(case, SIDES["off"])
        for side in names[1:]:
            extra = guard_us(case, SIDES[side]) - bare
            print(
                f"{case.label:46} {side:18} {extra:14.2f} {step_us[case.label]:12.1f} "
                f"{extra / step_us[case.label]:8.2%}"
            )


if __name__ == "__main__":
    main()
