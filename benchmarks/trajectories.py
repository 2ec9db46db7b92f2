"""What recording trajectories holds in memory: it must not grow with the
number or the length of the recorded episodes.

One fresh subprocess per case runs a Pendulum-v1 job (the ``zero`` policy:
no episode ends before ``max_steps``) with ``trajectories: {select: all,
cameras: [default], size: [96, 96]}`` and reports its peak RSS
(``ru_maxrss``) and the peak of Python-tracked allocations (``tracemalloc``;
numpy arrays are tracked). Steps are buffered 256 at a time and appended to
the HDF5 file, so both peaks must stay flat from 4 to 16 episodes and from 250
to 2,000 steps; the table also shows what holding one episode's images
(observation and next observation) would take, and the bytes written.

Usage:
    python benchmarks/trajectories.py     # about 1-2 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [(4, 250), (16, 250), (4, 2000)]
SIZE = 96

CHILD = """
import json, os, resource, sys, tracemalloc
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
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "traced_mb": peak / 2**20, "written_mb": written / 2**20}))
"""


def main() -> None:
    print(f"Pendulum-v1, camera 'default' at {SIZE}x{SIZE}, one subprocess per case, {os.cpu_count()} cores")
    header = f"{'peak RSS MB':>12} {'traced MB':>10} {'one episode held MB':>20} {'written MB':>11}"
    print(f"{'episodes':>8} {'steps':>6} {header}")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (episodes, steps) in enumerate(CASES):
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
                f"{episodes:>8} {steps:>6} {numbers['rss_mb']:>12.0f} {numbers['traced_mb']:>10.1f} "
                f"{held:>20.0f} {numbers['written_mb']:>11.1f}"
            )


if __name__ == "__main__":
    main()
