"""What per-episode videos cost: encoding on top of rendering, and memory.

1. **Overhead.** The same rollout (same slots, policy, ``num_envs``) runs two
   ways, interleaved over ``--rounds`` rounds (the order alternates):

   - **render**: every sub-env renders each camera's frame after each reset
     and step (the same :class:`trialrun.recording.capture.FrameSource` the
     recorder uses) and drops it: the cost of rendering alone;
   - **video**: the real recording path (``SlotWrapper`` + ``EpisodeRecorder``
     + ``VideoWriter``): render, pipe the frame to the encoder process, which
     encodes H.264 on another core, finish each mp4 at the episode's end.

   The table reports median seconds per side and the median of the per-round
   ratios video/render (target: at most 1.15, i.e. encoding adds at most 15%),
   and the same ratio of CPU seconds (this process plus its encoder process):
   what encoding costs in total, whether or not a core was free for it.

2. **Memory.** One fresh subprocess per episode count (4, 16, 64 recorded
   episodes of a fixed length) runs the recording rollout and reports its peak
   RSS (``ru_maxrss``) and the peak of Python-tracked allocations
   (``tracemalloc``; numpy frames are tracked), and the encoder process's
   peak RSS. Frames are streamed to the encoder through a bounded pipe, so
   all must stay flat as the number of episodes grows; the table also shows
   what holding the frames of all episodes would take.

Usage:
    python benchmarks/video.py               # full run (~5-6 min on 2 cores)
    python benchmarks/video.py --quick       # smoke run (~30 s)
    python benchmarks/video.py --only memory
    python benchmarks/video.py --only overhead --case CartPole --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

import trialrun.envs  # noqa: F401  (registers metaworld/<task>)
from trialrun._memory import peak_rss_mb
from trialrun.config import VideoConfig
from trialrun.envs.build import make_env
from trialrun.envs.slot_wrapper import SlotWrapper
from trialrun.plan import plan_job
from trialrun.policies.registry import build_policy
from trialrun.recording.capture import EpisodeRecorder, FrameSource
from trialrun.recording.encoder import encoder
from trialrun.recording.selection import VideoSelection
from trialrun.rollout import EpisodeResult, rollout

SEED = 2026


@dataclass(frozen=True)
class Case:
    label: str
    env_id: str
    policy: str
    cameras: tuple[str, ...]
    size: tuple[int, int]
    episodes: int
    num_envs: int
    max_steps: int


class RenderOnly(gym.Wrapper[Any, Any, Any, Any]):
    """Renders every camera after each reset and step, and drops the frames."""

    def __init__(self, env: gym.Env[Any, Any], cameras: list[str], size: tuple[int, int]) -> None:
        super().__init__(env)
        self.cameras = cameras
        self.size = size
        self.source: FrameSource | None = None
        self.frames = 0

    def reset(self, **kwargs: Any) -> Any:
        result = self.env.reset(**kwargs)
        if self.source is None:
            self.source = FrameSource(self.env, self.cameras, self.size)
        self.frames += len(self.source.render(self.env))
        return result

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        assert self.source is not None
        self.frames += len(self.source.render(self.env))
        return result

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        super().close()


def _render_mode(case: Case) -> str | None:
    return "rgb_array" if "default" in case.cameras else None


def _make_render_only(case: Case) -> SlotWrapper:
    env = make_env(case.env_id, {}, case.max_steps, render_mode=_render_mode(case))
    return SlotWrapper(RenderOnly(env, list(case.cameras), case.size), env_index=0)


def _make_plain(case: Case) -> SlotWrapper:
    env = make_env(case.env_id, {}, case.max_steps, render_mode=_render_mode(case))
    return SlotWrapper(env, env_index=0, recorder_factory=EpisodeRecorder)


def encoder_cpu_seconds() -> float:
    """CPU time (user + system) of this process's encoder process so far."""
    fields = Path(f"/proc/{encoder().proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoder_peak_rss_mb() -> float:
    """Peak resident memory (VmHWM) of this process's encoder process."""
    return peak_rss_mb(encoder().proc.pid)


def run_case(
    case: Case, side: str, workdir: Path, episodes: int | None = None
) -> tuple[float, float, int, int]:
    """One rollout; returns (wall seconds, CPU seconds of this process and its
    encoder process, steps, mp4 files written)."""
    count = episodes if episodes is not None else case.episodes
    slots = plan_job(SEED, "bench", count)
    lengths: list[int] = []
    video = None
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    if side == "video":
        config = VideoConfig(cameras=list(case.cameras), size=case.size, select="all")
        video = VideoSelection.for_job(config, "bench", run_dir)
        env_fn: Callable[[], SlotWrapper] = partial(_make_plain, case)
    else:
        env_fn = partial(_make_render_only, case)

    def on_episode(result: EpisodeResult) -> None:
        lengths.append(int(result.outcome["length"]))

    start = time.perf_counter()
    cpu_start = time.process_time() + encoder_cpu_seconds()
    rollout(
        slots,
        [env_fn] * case.num_envs,
        lambda ctx: build_policy(case.policy, {}, ctx),
        on_episode,
        env_id=case.env_id,
        video=video,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() + encoder_cpu_seconds() - cpu_start
    files = len(list(run_dir.rglob("*.mp4")))
    shutil.rmtree(run_dir, ignore_errors=True)
    if len(lengths) != count:
        raise RuntimeError(f"{case.label}: {len(lengths)} episodes instead of {count}")
    return seconds, cpu_seconds, sum(lengths), files


def overhead(cases: list[Case], rounds: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        run_case(case, "video", workdir, episodes=case.num_envs)  # warm-up: imports, GL contexts
        times: dict[str, list[float]] = {"render": [], "video": []}
        cpu: dict[str, list[float]] = {"render": [], "video": []}
        steps = files = 0
        for index in range(rounds):
            order = ("render", "video") if index % 2 == 0 else ("video", "render")
            for side in order:
                seconds, cpu_seconds, steps, written = run_case(case, side, workdir)
                times[side].append(seconds)
                cpu[side].append(cpu_seconds)
                if side == "video":
                    files = written
        ratios = [v / r for v, r in zip(times["video"], times["render"], strict=True)]
        cpu_ratios = [v / r for v, r in zip(cpu["video"], cpu["render"], strict=True)]
        rows.append(
            {
                "case": case.label,
                "steps": steps,
                "frames": (steps + case.episodes) * len(case.cameras),
                "mp4": files,
                "render_s": statistics.median(times["render"]),
                "video_s": statistics.median(times["video"]),
                "ratio": statistics.median(ratios),
                "ratios": ratios,
                "cpu_ratio": statistics.median(cpu_ratios),
            }
        )
    return rows


def memory_child(case_json: str, episodes: int) -> None:
    """Runs in a fresh process: record ``episodes`` episodes, print peaks as JSON."""
    case = Case(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(case_json).items()})
    workdir = Path(tempfile.mkdtemp())
    run_case(case, "video", workdir, episodes=1)  # imports, renderer and encoder set up before measuring
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    seconds, _, steps, files = run_case(case, "video", workdir, episodes=episodes)
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    encoder_rss = encoder_peak_rss_mb()
    shutil.rmtree(workdir, ignore_errors=True)
    print(
        json.dumps(
            {
                "episodes": episodes,
                "steps": steps,
                "mp4": files,
                "seconds": seconds,
                "peak_rss_mb": rss / 1024,
                "rss_growth_mb": (rss - base_rss) / 1024,
                "peak_traced_mb": peak_traced / 2**20,
                "encoder_peak_rss_mb": encoder_rss,
            }
        )
    )


def memory(case: Case, counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    case_json = json.dumps(case.__dict__)
    for count in counts:
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", case_json, str(count)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        width, height = case.size
        frames = row["steps"] + count
        row["all_frames_mb"] = frames * width * height * 3 * len(case.cameras) / 2**20
        rows.append(row)
    return rows


CARTPOLE = {"env_id": "CartPole-v1", "policy": "cartpole-balance", "cameras": ("default",)}
PICK_PLACE = {"env_id": "metaworld/pick-place-v3", "policy": "metaworld-expert"}


def cases(quick: bool) -> tuple[list[Case], Case]:
    """(overhead cases, memory case). Episode lengths are fixed by the policies:
    the LQR controller keeps CartPole up until ``max_steps``."""
    memory_case = Case(
        "CartPole default 224x224", size=(224, 224), episodes=0, num_envs=1, max_steps=100, **CARTPOLE
    )
    if quick:
        return [
            Case(
                "CartPole default 224x224", size=(224, 224), episodes=4, num_envs=2, max_steps=100, **CARTPOLE
            ),
            Case(
                "pick-place corner 224x224",
                cameras=("corner",),
                size=(224, 224),
                episodes=2,
                num_envs=2,
                max_steps=60,
                **PICK_PLACE,
            ),
        ], memory_case
    return [
        # pygame draws CartPole at 600x400 in ~1 ms: the cheapest renderer, so
        # the hardest case for the ratio (the frames are also scaled to 224x224).
        Case("CartPole default 224x224", size=(224, 224), episodes=16, num_envs=2, max_steps=200, **CARTPOLE),
        # Meta-World through MuJoCo's software renderer (EGL on llvmpipe here).
        Case("pick-place corner 224x224", cameras=("corner",), size=(224, 224), episodes=4, num_envs=2,
             max_steps=150, **PICK_PLACE),
        Case("pick-place corner+topview 128x128", cameras=("corner", "topview"), size=(128, 128), episodes=4,
             num_envs=2, max_steps=150, **PICK_PLACE),
    ], memory_case  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, quick 2)")
    parser.add_argument("--only", choices=["overhead", "memory"], default=None)
    parser.add_argument("--case", default=None, help="only the overhead cases whose label contains this")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "EPISODES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    overhead_cases, memory_case = cases(args.quick)
    if args.case is not None:
        overhead_cases = [c for c in overhead_cases if args.case in c.label]
    rounds = args.rounds or (2 if args.quick else 7)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    if args.only in (None, "overhead"):
        with tempfile.TemporaryDirectory() as tmp:
            rows = overhead(overhead_cases, rounds, Path(tmp))
        print(f"\nencoding on top of rendering ({rounds} interleaved rounds, medians; target ratio <= 1.15)")
        print("(cpu ratio: CPU seconds of this process and its encoder process, video/render)")
        print(
            f"{'case':36} {'frames':>7} {'mp4':>4} {'render s':>9} {'video s':>8} {'ratio':>6} "
            f"{'cpu ratio':>9}  per-round ratios"
        )
        for row in rows:
            per_round = " ".join(f"{r:.3f}" for r in row["ratios"])
            print(
                f"{row['case']:36} {row['frames']:>7} {row['mp4']:>4} {row['render_s']:>9.2f} "
                f"{row['video_s']:>8.2f} {row['ratio']:>6.3f} {row['cpu_ratio']:>9.3f}  {per_round}"
            )
    if args.only in (None, "memory"):
        counts = [4, 16] if args.quick else [4, 16, 64]
        rows = memory(memory_case, counts)
        steps = memory_case.max_steps
        print(f"\npeak memory against recorded episodes ({memory_case.label}, {steps} steps each)")
        print(
            f"{'episodes':>8} {'frames':>7} {'mp4':>4} {'peak RSS MB':>12} {'RSS growth MB':>14} "
            f"{'traced peak MB':>15} {'encoder peak RSS MB':>20} {'all frames would be MB':>23}"
        )
        for row in rows:
            print(
                f"{row['episodes']:>8} {row['steps'] + row['episodes']:>7} {row['mp4']:>4} "
                f"{row['peak_rss_mb']:>12.1f} {row['rss_growth_mb']:>14.1f} {row['peak_traced_mb']:>15.2f} "
                f"{row['encoder_peak_rss_mb']:>20.1f} {row['all_frames_mb']:>23.0f}"
            )


if __name__ == "__main__":
    main()
