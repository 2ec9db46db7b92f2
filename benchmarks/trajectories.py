"""What recording trajectories costs: time next to the same job without, and memory.

1. **Overhead.** The same job runs with and without ``trajectories: {select:
   all}`` (state observations, actions, rewards of every episode), interleaved
   over ``--rounds`` rounds: CartPole-v1 x16 (the LQR controller, 500-step
   episodes) and HalfCheetah-v5 x4 (random actions, 1,000 steps). The table
   prints median seconds, the median of the per-round ratios with/without
   (target: at most 1.2) and the ratio of the fastest runs (less sensitive to
   other processes on a shared machine: the fastest run is the least
   disturbed). The files are written by the trajectory writer process
   (``trialrun.recording.trajectory_writer``), on another core: the ratio
   needs a free one (run it under ``flock /tmp/cpu.lock`` on a shared machine
   and read the load it prints).

2. **Memory.** One fresh subprocess per case runs a Pendulum-v1 job (the
   ``zero`` policy: every episode lasts ``max_steps``) recording 4 and then 64
   episodes of 500 steps, with a 64x64 ``default`` camera in the observations,
   and reports its peak RSS (``VmHWM``; a child's ``ru_maxrss`` would start at
   its parent's), that of its trajectory writer process, and the peak of
   Python-tracked allocations (``tracemalloc``; numpy arrays are tracked).
   Steps are buffered in blocks of about 4 MB and appended to the HDF5 file,
   so the peaks must stay flat;
   a 2,000-step case shows the same for the length of an episode.

Usage:
    python benchmarks/trajectories.py              # about 3-4 minutes on 2 cores
    python benchmarks/trajectories.py --rounds 1 --only overhead
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation

OVERHEAD_CASES: dict[str, dict[str, Any]] = {
    "CartPole x16": {"env": "CartPole-v1", "policy": "cartpole-balance", "episodes": 16, "max_steps": 500},
    "HalfCheetah x4": {"env": "HalfCheetah-v5", "policy": "random", "episodes": 4, "max_steps": 1000},
}
MEMORY_CASES = [(4, 500), (64, 500), (4, 2000)]
SIZE = 64

CHILD = """
import json, os, sys, tracemalloc
from pathlib import Path
os.environ.setdefault("MUJOCO_GL", "egl"); os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
episodes, steps, size, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
config = parse_run_config({"name": "bench", "seed": 1, "jobs": [{
    "name": "pendulum", "env": "Pendulum-v1", "policy": "zero", "episodes": episodes, "max_steps": steps,
    "trajectories": {"select": "all", "cameras": ["default"], "size": [size, size]}}]})
tracemalloc.start()
result = run_evaluation(config, out)
peak = tracemalloc.get_traced_memory()[1]
assert result.exit_code == 0, result.errors
written = sum(p.stat().st_size for p in (out / "trajectories" / "pendulum").glob("*.h5"))
from trialrun._memory import peak_rss_mb
from trialrun.recording import trajectory_writer
writer = trajectory_writer._writer
print(json.dumps({"rss_mb": peak_rss_mb(), "writer_mb": writer.peak_rss_mb() if writer is not None else 0.0,
                  "traced_mb": peak / 2**20, "written_mb": written / 2**20}))
"""


def _timed(case: dict[str, Any], record: bool, root: Path) -> float:
    job = {"name": "j", "num_envs": 1, **case}
    if record:
        job["trajectories"] = {"select": "all"}
    config = parse_run_config({"name": "bench", "seed": 2, "jobs": [job]})
    run_dir = Path(tempfile.mkdtemp(dir=root)) / "run"
    start = time.perf_counter()
    result = run_evaluation(config, run_dir)
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"{case}: {result.errors}")
    return seconds


def overhead(rounds: int) -> None:
    print(f"1. overhead, {rounds} round(s), interleaved")
    print(f"{'case':<16} {'without s':>10} {'with s':>8} {'with/without':>13} {'fastest ratio':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, case in OVERHEAD_CASES.items():
            _timed(case, True, root)  # warm-up: imports, the env, h5py
            without: list[float] = []
            with_: list[float] = []
            for index in range(rounds):
                for record in (False, True) if index % 2 == 0 else (True, False):
                    (with_ if record else without).append(_timed(case, record, root))
            ratios = [w / o for w, o in zip(with_, without, strict=True)]
            print(
                f"{name:<16} {statistics.median(without):>10.2f} {statistics.median(with_):>8.2f} "
                f"{statistics.median(ratios):>13.2f} {min(with_) / min(without):>14.2f}"
            )


def memory() -> None:
    print(f"2. memory: Pendulum-v1, 'default' camera at {SIZE}x{SIZE}, one subprocess per case")
    header = f"{'peak RSS MB':>12} {'writer MB':>10} {'traced MB':>10} {'one episode held MB':>20}"
    header += f" {'written MB':>11}"
    print(f"{'episodes':>8} {'steps':>6} {header}")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (episodes, steps) in enumerate(MEMORY_CASES):
            out = Path(tmp) / f"run{index}"
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(episodes), str(steps), str(SIZE), str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            numbers = json.loads(done.stdout.strip().splitlines()[-1])
            held = 2 * steps * SIZE * SIZE * 3 / 2**20
            print(
                f"{episodes:>8} {steps:>6} {numbers['rss_mb']:>12.0f} {numbers['writer_mb']:>10.0f} "
                f"{numbers['traced_mb']:>10.1f} "
                f"{held:>20.0f} {numbers['written_mb']:>11.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["overhead", "memory"])
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    if args.only in (None, "overhead"):
        overhead(args.rounds)
    if args.only in (None, "memory"):
        memory()


if __name__ == "__main__":
    main()
