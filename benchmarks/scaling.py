"""Scaling benchmark: Meta-World pick-place on 1 and 2 workers (process and Ray),
and how many records per second the driver can absorb.

    python benchmarks/scaling.py                  # ~3-5 minutes on 2 cores
    python benchmarks/scaling.py --quick          # smoke run
    python benchmarks/scaling.py --records-only   # only the driver's record rate

Prints episodes/s per executor and worker count, the speed-up of 2 workers over
1 for each executor, and the driver's record rate: records from a worker, a
block at a time (the episodes that ended in one step travel as one message),
parsed and validated in one call, counted in the job's tally and appended
with one write and one flush, which is all the driver does per episode; for
blocks of 1, 46 and 1024 records. Run it on an otherwise idle machine: other
load on the cores shows up as lost speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from trialrun.config import parse_run_config
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.ray_executor import RayExecutor
from trialrun.execution.runner import JobSink, LocalExecutor, ManifestWriter, run_evaluation
from trialrun.runfiles import EpisodeLogWriter
from trialrun.runfiles.episodes import parse_record_block
from trialrun.runfiles.schema import EpisodeRecord, JobManifest, Manifest
from trialrun.stats import OutcomeTally

RECORD_BLOCKS = (1, 46, 1024)
"""Records per block: one (the sync path's usual step), 46 (CartPole's
1024-world vector env ends ~46 episodes a step), 1024 (a step that ends
every world)."""


def sweep_config(episodes: int, max_steps: int) -> dict:  # type: ignore[type-arg]
    return {
        "name": "scaling",
        "seed": 1,
        "jobs": [
            {
                "name": "pick-place",
                "env": "metaworld/pick-place-v3",
                "policy": "metaworld-expert",
                "episodes": episodes,
                "num_envs": 2,
                "max_steps": max_steps,
                "factors": {
                    "mass": {
                        "variation": {"type": "mujoco.body_mass", "body": "obj"},
                        "sampler": {"type": "loguniform", "low": 0.1, "high": 100},
                    }
                },
            }
        ],
    }


def timed_run(executor: object, episodes: int, max_steps: int, root: Path, label: str) -> float:
    cfg = parse_run_config(sweep_config(episodes, max_steps))
    start = time.perf_counter()
    result = run_evaluation(cfg, root / label, executor=executor)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"{label}: run failed: {result.errors}")
    return episodes / elapsed


def driver_record_rate(count: int, root: Path, block: int) -> float:
    """Records per second through the driver's path for records from a
    worker: a block of ``block`` JSON lines (one step's episodes, one
    message) -> validated in one call -> counted in the job's tally and
    appended with one write and one flush (:class:`JobSink`, what the runner
    does with every block)."""
    record = EpisodeRecord(
        run="scaling",
        job="pick-place",
        episode=0,
        seed=123,
        factors={"mass": 12.5, "friction": 0.4, "light": 1.1, "range": 0.7},
        outcome={
            "success": True,
            "success_at_end": True,
            "return": 412.5,
            "length": 87,
            "terminated": False,
            "truncated": True,
            "time_to_success": 53,
        },
        started_at="2026-11-21T19:00:01.123Z",
        ended_at="2026-11-21T19:00:01.541Z",
    )
    lines = [record.model_copy(update={"episode": k}).to_json_line() for k in range(count)]
    wire = ["".join(f"{line}\n" for line in lines[k : k + block]) for k in range(0, count, block)]
    state = JobManifest(name="pick-place", planned=count)
    manifest = Manifest(run="scaling", seed=1, config={}, started_at="t", jobs={"pick-place": state})
    start = time.perf_counter()
    with EpisodeLogWriter(root / f"rate-{block}.jsonl") as log:
        sink = JobSink(
            "pick-place",
            log,
            OutcomeTally(count),
            None,
            state,
            None,
            ManifestWriter(root / "m.json", manifest),
        )
        for text in wire:
            sink.many(*parse_record_block(text))
    return count / (time.perf_counter() - start)


def executor_rates(quick: bool, root: Path) -> dict[str, float]:
    """Episodes/s of Meta-World pick-place per executor and worker count (printed)."""
    episodes, max_steps = (8, 60) if quick else (96, 150)
    rates: dict[str, float] = {}
    rates["local, 1 process"] = timed_run(LocalExecutor(), episodes, max_steps, root, "local")
    for workers in (1, 2):
        with ProcessExecutor(workers=workers) as executor:
            timed_run(
                executor, 2 * workers, 20, root, f"p{workers}-warm"
            )  # worker start-up is not the subject
            rates[f"process, {workers} worker(s)"] = timed_run(
                executor, episodes, max_steps, root, f"p{workers}"
            )
    for workers in (1, 2):
        with RayExecutor(workers=workers) as executor:
            timed_run(executor, 2, 20, root, f"r{workers}-warm")  # Ray start-up is not the subject
            rates[f"ray, {workers} worker(s)"] = timed_run(executor, episodes, max_steps, root, f"r{workers}")

    print(f"Meta-World pick-place, {episodes} episodes of up to {max_steps} steps, mass factor")
    print(f"{'executor':<24}{'episodes/s':>12}")
    for label, rate in rates.items():
        print(f"{label:<24}{rate:>12.2f}")
    ratios = {
        "process 2 vs 1 workers": rates["process, 2 worker(s)"] / rates["process, 1 worker(s)"],
        "ray 2 vs 1 workers": rates["ray, 2 worker(s)"] / rates["ray, 1 worker(s)"],
        "process 2 workers vs local": rates["process, 2 worker(s)"] / rates["local, 1 process"],
    }
    for label, ratio in ratios.items():
        print(f"speed-up, {label:<28}{ratio:.2f}x")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--records-only", action="store_true", help="only the driver's record rate (no executors)"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trialrun-scaling-"))
    rates = {} if args.records_only else executor_rates(args.quick, root)
    count = 5_000 if args.quick else 50_000
    record_rates = {}
    for block in RECORD_BLOCKS:
        record_rates[block] = statistics.median(driver_record_rate(count, root, block) for _ in range(3))
        print(
            f"driver record rate, blocks of {block:>4}: {record_rates[block]:>9,.0f} records/s "
            f"({count} records parsed, validated, tallied, appended; median of 3)"
        )
    print(json.dumps({"episodes_per_s": rates, "driver_records_per_s": record_rates}))


if __name__ == "__main__":
    main()
