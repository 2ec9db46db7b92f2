"""trialrun's rollout overhead against a plain Gymnasium ``SyncVectorEnv`` loop.

Runs, in one process and with the same env id, random policy, ``num_envs`` and
episode count:

- **baseline**: ``gymnasium.vector.SyncVectorEnv`` (default NEXT_STEP
  autoreset) over ``gymnasium.make(env_id)`` sub-envs, a seeded
  ``action_space.sample()`` policy, stepping until that many episodes have
  completed. Only real env steps count (the autoreset steps that NEXT_STEP
  spends on resets are not env steps).
- **rollout**: ``trialrun.rollout.rollout`` over the planned slots, with the
  built-in ``random`` policy (the plan is made before the clock starts).
- **run_evaluation**: the full ``trialrun.execution.runner.run_evaluation``
  path (plan, rollout, ``episodes.jsonl``, manifest, summary) into a temp dir.

Every timing covers building the vector env through closing it. The three
sides are interleaved over ``--rounds`` rounds (the order alternates between
rounds) so machine noise hits them alike; the table reports median steps/s
and the median of the per-round ratios trialrun/baseline (wall clock,
``time.perf_counter``; the target is judged on it). On a shared machine the
``cpu ratio`` column (the same ratio from ``time.process_time``, i.e. steps
per CPU-second of this process) is less disturbed by other tenants.

Usage:
    python benchmarks/overhead.py            # full run (~3 min)
    python benchmarks/overhead.py --quick    # smoke run (a few seconds)
    python benchmarks/overhead.py --rounds 5 --only CartPole-v1
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.plan import plan_job
from trialrun.policies.registry import build_policy
from trialrun.rollout import EpisodeResult, rollout

SEED = 12345
SIDES = ("baseline", "rollout", "run_evaluation")


@dataclass(frozen=True)
class BenchConfig:
    env_id: str
    num_envs: int
    episodes: int
    target: float
    max_steps: int | None = None

    @property
    def label(self) -> str:
        limit = f", max_steps={self.max_steps}" if self.max_steps else ""
        return f"{self.env_id} x{self.num_envs} envs, {self.episodes} eps{limit}"


@dataclass(frozen=True)
class Measurement:
    steps: int
    episodes: int
    seconds: float
    cpu_seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.seconds

    @property
    def steps_per_cpu_s(self) -> float:
        return self.steps / self.cpu_seconds


class Clock:
    """Wall (perf_counter) and process CPU time since construction."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self, steps: int, episodes: int) -> Measurement:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return Measurement(steps, episodes, wall, cpu)


Results = dict[str, list[Measurement]]


def _make_kwargs(cfg: BenchConfig) -> dict[str, Any]:
    return {} if cfg.max_steps is None else {"max_episode_steps": cfg.max_steps}


def run_baseline(cfg: BenchConfig, _workdir: Path) -> Measurement:
    """A plain Gymnasium loop: SyncVectorEnv with NEXT_STEP autoreset."""
    clock = Clock()
    envs = gym.vector.SyncVectorEnv(
        [partial(gym.make, cfg.env_id, **_make_kwargs(cfg)) for _ in range(cfg.num_envs)]
    )
    envs.action_space.seed(SEED)
    envs.reset(seed=SEED)
    pending_reset = np.zeros(cfg.num_envs, dtype=bool)
    steps = 0
    episodes = 0
    while episodes < cfg.episodes:
        _, _, terminated, truncated, _ = envs.step(envs.action_space.sample())
        # Sub-envs flagged on the previous step were reset by this step, not stepped.
        steps += cfg.num_envs - int(pending_reset.sum())
        pending_reset = terminated | truncated
        episodes += int(pending_reset.sum())
    envs.close()
    return clock.stop(steps, episodes)


def run_rollout(cfg: BenchConfig, _workdir: Path) -> Measurement:
    """The bare trialrun rollout loop over planned slots."""
    slots = plan_job(SEED, "bench", cfg.episodes)
    lengths: list[int] = []

    def on_episode(result: EpisodeResult) -> None:
        lengths.append(result.outcome["length"])

    clock = Clock()
    rollout(
        slots,
        [partial(gym.make, cfg.env_id, **_make_kwargs(cfg)) for _ in range(cfg.num_envs)],
        lambda ctx: build_policy("random", {}, ctx),
        on_episode,
        env_id=cfg.env_id,
    )
    return clock.stop(sum(lengths), len(lengths))


def run_full(cfg: BenchConfig, workdir: Path) -> Measurement:
    """The full run_evaluation path: plan, rollout, episodes.jsonl, manifest, summary."""
    job: dict[str, Any] = {
        "name": "bench",
        "env": cfg.env_id,
        "policy": "random",
        "episodes": cfg.episodes,
        "num_envs": cfg.num_envs,
    }
    if cfg.max_steps is not None:
        job["max_steps"] = cfg.max_steps
    config = parse_run_config({"name": "overhead", "seed": SEED, "jobs": [job]})
    run_dir = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    clock = Clock()
    result = run_evaluation(config, run_dir)
    measurement = clock.stop(0, 0)
    if result.exit_code != 0:
        raise RuntimeError(f"run_evaluation failed: {result.errors}")
    lengths = [
        json.loads(line)["outcome"]["length"]
        for line in (run_dir / "episodes.jsonl").read_text().splitlines()
        if line.strip()
    ]
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    return Measurement(sum(lengths), len(lengths), measurement.seconds, measurement.cpu_seconds)


RUNNERS: dict[str, Callable[[BenchConfig, Path], Measurement]] = {
    "baseline": run_baseline,
    "rollout": run_rollout,
    "run_evaluation": run_full,
}


def configurations(quick: bool) -> list[BenchConfig]:
    if quick:
        return [
            BenchConfig("CartPole-v1", 16, 300, target=0.90),
            BenchConfig("HalfCheetah-v5", 4, 4, target=0.97, max_steps=200),
        ]
    return [
        # Random CartPole episodes last ~22 steps: 30000 episodes ~ 660k steps,
        # a few seconds per side on one core.
        BenchConfig("CartPole-v1", 16, 30000, target=0.90),
        # HalfCheetah episodes are 1000 steps: 64 episodes = 64k steps.
        BenchConfig("HalfCheetah-v5", 4, 64, target=0.97),
    ]


def benchmark(cfg: BenchConfig, rounds: int, workdir: Path) -> Results:
    results: Results = {side: [] for side in SIDES}
    warm = BenchConfig(cfg.env_id, cfg.num_envs, cfg.num_envs, cfg.target, max_steps=cfg.max_steps or 50)
    for side in SIDES:  # imports, first env build, caches: not timed
        RUNNERS[side](warm, workdir)
    for r in range(rounds):
        order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
        for side in order:
            m = RUNNERS[side](cfg, workdir)
            results[side].append(m)
            print(
                f"  round {r + 1}/{rounds} {side:<15} {m.steps:>8} steps {m.episodes:>6} eps "
                f"{m.seconds:7.3f} s (cpu {m.cpu_seconds:7.3f} s) {m.steps_per_s:>10.0f} steps/s",
                flush=True,
            )
    return results


def report(all_results: list[tuple[BenchConfig, Results]], rounds: int) -> None:
    width = max(len("configuration"), *(len(cfg.label) for cfg, _ in all_results))
    header = (
        f"{'configuration':<{width}} {'side':<15} {'steps/s':>10} {'eps/s':>9} "
        f"{'ratio':>6} {'min..max':>11} {'cpu ratio':>9} {'target':>7}  met"
    )
    print()
    print(
        f"Median over {rounds} interleaved round(s); "
        "ratio = median of the per-round trialrun/baseline steps/s"
    )
    print(header)
    print("-" * len(header))
    for cfg, results in all_results:
        base = results["baseline"]
        for side in SIDES:
            ms = results[side]
            sps = statistics.median(m.steps_per_s for m in ms)
            eps = statistics.median(m.episodes_per_s for m in ms)
            if side == "baseline":
                print(f"{cfg.label:<{width}} {side:<15} {sps:>10.0f} {eps:>9.1f} {'1.000':>6}")
                continue
            ratios = [m.steps_per_s / b.steps_per_s for m, b in zip(ms, base, strict=True)]
            ratio = statistics.median(ratios)
            cpu_ratio = statistics.median(
                m.steps_per_cpu_s / b.steps_per_cpu_s for m, b in zip(ms, base, strict=True)
            )
            spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
            met = "yes" if ratio >= cfg.target else "NO"
            print(
                f"{'':<{width}} {side:<15} {sps:>10.0f} {eps:>9.1f} {ratio:>6.3f} "
                f"{spread:>11} {cpu_ratio:>9.3f} {cfg.target:>7.2f}  {met}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 5, 1 with --quick)"
    )
    parser.add_argument("--only", default=None, help="run only the configurations whose env id contains this")
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    logging.basicConfig(level=logging.ERROR)  # the CartPole/HalfCheetah "no success key" warning

    print(
        f"trialrun overhead benchmark: python {platform.python_version()}, "
        f"gymnasium {gym.__version__}, numpy {np.__version__}, {platform.machine()}"
    )
    configs = [c for c in configurations(args.quick) if args.only is None or args.only in c.env_id]
    all_results = []
    with tempfile.TemporaryDirectory(prefix="trialrun-overhead-") as tmp:
        for cfg in configs:
            print(f"\n{cfg.label}")
            all_results.append((cfg, benchmark(cfg, rounds, Path(tmp))))
    report(all_results, rounds)


if __name__ == "__main__":
    main()
