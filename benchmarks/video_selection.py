"""What ``select: failures`` costs: filming every episode live against
re-simulating only the kept ones from their actions.

The same CartPole jobs (12 episodes of up to 500 steps, ``num_envs: 1``, the
default 224x224 camera) run four ways, interleaved over ``--rounds`` rounds:

- **none**: no ``video``;
- **first**: ``video: {episodes: 4, select: first}`` (4 episodes filmed live);
- **live**: ``video: {episodes: 4, select: failures}`` filmed the old way
  (every episode recorded while places are free, unwanted videos deleted),
  forced by switching off the action log;
- **replay**: the same ``select: failures``, as trialrun runs it: actions
  kept, wanted episodes re-simulated and filmed when they end.

Two policies: the LQR controller (``cartpole-balance``: no episode fails, so
no video is kept, and ``live`` films all 12 episodes for nothing) and
``random`` (every episode fails within a few dozen steps; 4 are kept both
ways). The table prints median wall seconds and the ratios replay/live and
replay/none.

Usage:
    python benchmarks/video_selection.py            # 3 rounds (~3 min on 2 cores)
    python benchmarks/video_selection.py --rounds 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.recording.selection import VideoSelection

WAYS = ("none", "first", "live", "replay")
POLICIES = {"lqr": "cartpole-balance", "random": "random"}


def _job(policy: str, way: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "cp",
        "env": "CartPole-v1",
        "policy": POLICIES[policy],
        "episodes": 12,
        "num_envs": 1,
        "max_steps": 500,
        "success": "survived",
    }
    if way == "first":
        job["video"] = {"episodes": 4, "select": "first"}
    elif way in ("live", "replay"):
        job["video"] = {"episodes": 4, "select": "failures"}
    return job


def _run(policy: str, way: str, root: Path) -> tuple[float, int]:
    """Wall seconds of one run, and the number of videos it kept."""
    config = parse_run_config({"name": "bench", "seed": 3, "jobs": [_job(policy, way)]})
    keeps_actions = VideoSelection.keeps_actions
    if way == "live":
        VideoSelection.keeps_actions = lambda self: False  # type: ignore[method-assign]
    try:
        run_dir = Path(tempfile.mkdtemp(dir=root))
        start = time.perf_counter()
        result = run_evaluation(config, run_dir / "run")
        seconds = time.perf_counter() - start
    finally:
        VideoSelection.keeps_actions = keeps_actions  # type: ignore[method-assign]
    if result.exit_code != 0:
        raise SystemExit(f"{policy}/{way} failed: {result.errors}")
    videos = run_dir / "run" / "videos" / "cp"
    kept = sum(1 for p in videos.glob("*.mp4")) if videos.is_dir() else 0
    return seconds, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores; rounds: {args.rounds}")
    times: dict[tuple[str, str], list[float]] = {}
    kept: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _run("random", "none", root)  # warm-up: imports, the encoder, pygame
        for round_index in range(args.rounds):
            order = WAYS if round_index % 2 == 0 else tuple(reversed(WAYS))
            for policy in POLICIES:
                for way in order:
                    seconds, videos = _run(policy, way, root)
                    times.setdefault((policy, way), []).append(seconds)
                    kept[(policy, way)] = videos
    print()
    header = " ".join(f"{way + ' s (kept)':>16}" for way in WAYS)
    print(f"{'policy':<8} {header}  replay/live  replay/none")
    for policy in POLICIES:
        med = {way: statistics.median(times[(policy, way)]) for way in WAYS}
        cells = " ".join(f"{med[way]:>9.2f} ({kept[(policy, way)]:>2})   " for way in WAYS)
        live, none = med["replay"] / med["live"], med["replay"] / med["none"]
        print(f"{policy:<8} {cells} {live:>10.2f}  {none:>10.2f}")


if __name__ == "__main__":
    main()
