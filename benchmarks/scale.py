"""Memory and time at a batched simulator's episode counts (issue 21, last part).

Every case runs in its own subprocess; its peak RSS is the child's own
``VmHWM``, read from ``/proc/self/status`` by the child as it exits (a tiny
wrapper runs the CLI in-process), so one case's memory never hides another's.
Not ``ru_maxrss`` from ``os.wait4``: Linux keeps the high-water mark across
``exec``, so a child of a 600 MB parent would report at least 600 MB.

- **run**: ``trialrun run --no-report`` of ``trialrun/SeedProbe-v0`` with
  ``vectorization: native``, 1024 worlds and the random policy, at 10k and
  1M episodes. Target: peak RSS at 1M <= 1.2x that at 10k.
- **report**: ``trialrun report`` of a synthetic run (two jobs, two factors)
  written straight to ``episodes.jsonl``, then the page opened in headless
  Chromium from ``file://``, timed until the first page of the table is shown
  (``#episode-app[data-ready]``). Target: under 3 s at 1M.
- **analyze**: ``trialrun analyze`` of the same synthetic runs at 100k and 1M
  (their report removed first: ``analyze`` rebuilds an existing report, which
  the report case measures): seconds and peak RSS. Target: bounded memory at
  1M (at most MAX_ROWS episodes a job are read: a seeded subsample, noted in
  the output).

Usage:
    python benchmarks/scale.py                 # every case, 10k/100k/1M (~15 min on 2 busy cores)
    python benchmarks/scale.py --quick         # 10k/20k/50k, a smoke run (~2 min)
    python benchmarks/scale.py --only run      # one group: run, report or analyze

The machine load (``os.getloadavg``) is printed with the results: on a shared
machine the times move with it, the memory does not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from trialrun.runfiles import write_json_atomic
from trialrun.runfiles.schema import FactorSpec, JobManifest, Manifest

T0 = "2026-11-21T19:00:00.000Z"


HWM_MARK = "trialrun-scale VmHWM MB:"

# Runs the CLI in this (child) process and prints its own peak RSS as it exits
# (``atexit`` also runs after the CLI's ``sys.exit``).
CLI_WRAPPER = f"""
import atexit, sys
from trialrun._memory import peak_rss_mb
atexit.register(lambda: print("{HWM_MARK}", peak_rss_mb(), flush=True))
sys.argv = ["trialrun", *sys.argv[1:]]
from trialrun.cli import main
main()
"""


def child(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` (a :func:`trialrun` command line); return (wall seconds,
    the child's own peak RSS in MB, its output)."""
    env = {**os.environ, "MUJOCO_GL": "egl", "SDL_VIDEODRIVER": "dummy"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{text[-3000:]}")
    marks = [line for line in text.splitlines() if line.startswith(HWM_MARK)]
    if not marks:
        raise SystemExit(f"{' '.join(cmd)} did not print its peak memory:\n{text[-3000:]}")
    return seconds, float(marks[-1].split()[-1]), text


def trialrun(*args: str) -> list[str]:
    """``trialrun ARGS`` run through :data:`CLI_WRAPPER` (prints the child's VmHWM)."""
    return [sys.executable, "-c", CLI_WRAPPER, *args]


# --------------------------------------------------------------------------- run


def run_case(root: Path, episodes: int) -> tuple[float, float]:
    config = {
        "name": "scale",
        "seed": 3,
        "jobs": [
            {
                "name": "probe",
                "env": "trialrun/SeedProbe-v0",
                "policy": "random",
                "episodes": episodes,
                "num_envs": 1024,
                "vectorization": "native",
            }
        ],
    }
    path = root / f"run-{episodes}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_dir = root / f"run-{episodes}"
    seconds, rss, _ = child(trialrun("run", str(path), "--run-dir", str(run_dir), "--no-report", "-q"))
    shutil.rmtree(run_dir)
    return seconds, rss


# --------------------------------------------------------------------------- synthetic runs

SPECS = [
    FactorSpec(name="mass", kind="continuous", low=0.1, high=10.0, scale="log", units="kg"),
    FactorSpec(name="friction", kind="continuous", low=0.0, high=2.0),
]


def synthetic_run(run_dir: Path, episodes: int) -> Path:
    """A finished run of two jobs (half the episodes each) with two factors
    whose success depends on friction, written without the runner."""
    run_dir.mkdir(parents=True)
    half = episodes // 2
    jobs = {
        name: JobManifest(
            name=name,
            status="completed",
            planned=half,
            completed=half,
            factors=SPECS,
            started_at=T0,
            ended_at=T0,
        )
        for name in ("pick", "push")
    }
    manifest = Manifest(
        run="scale",
        seed=1,
        config={"name": "scale", "seed": 1, "jobs": [{"name": n} for n in jobs]},
        versions={},
        host="bench",
        python=sys.version.split()[0],
        platform=sys.platform,
        command=["benchmarks/scale.py"],
        started_at=T0,
        ended_at=T0,
        jobs=jobs,
    )
    write_json_atomic(run_dir / "manifest.json", manifest.model_dump(mode="json", by_alias=True))
    rng = random.Random(0)
    with open(run_dir / "episodes.jsonl", "w", encoding="utf-8") as f:
        for name in jobs:
            for k in range(half):
                mass = 0.1 * 100 ** rng.random()
                friction = 2 * rng.random()
                success = rng.random() < (0.9 - 0.4 * (friction < 0.4))
                length = rng.randrange(20, 500)
                f.write(
                    f'{{"schema":1,"run":"scale","job":"{name}","episode":{k},"seed":{rng.getrandbits(32)},'
                    f'"env_index":{k % 1024},"factors":{{"mass":{mass!r},"friction":{friction!r}}},'
                    f'"outcome":{{"success":{"true" if success else "false"},"return":{length * 0.5!r},'
                    f'"length":{length},"terminated":{"true" if success else "false"},'
                    f'"truncated":{"false" if success else "true"}}},"video":{{}},'
                    f'"started_at":"{T0}","ended_at":"2026-11-21T19:00:01.000Z","extra":{{}}}}\n'
                )
    return run_dir


def open_seconds(index: Path) -> float:
    """Seconds from navigation to the first page of the table in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        start = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("#episode-app[data-ready]", state="attached", timeout=120_000)
        seconds = time.perf_counter() - start
        rows = page.locator("#episodes-table tbody tr[data-row]").count()
        browser.close()
    if errors or rows == 0:
        raise SystemExit(f"{index}: the page did not show its table: {errors or 'no rows'}")
    return seconds


def report_case(run_dir: Path) -> tuple[float, float, float, float]:
    """(build seconds, build peak RSS MB, page size MB, open seconds)."""
    seconds, rss, _ = child(trialrun("report", str(run_dir)))
    index = run_dir / "report" / "index.html"
    size = index.stat().st_size / 1e6
    return seconds, rss, size, open_seconds(index)


def analyze_case(run_dir: Path) -> tuple[float, float]:
    # `trialrun analyze` rebuilds a run's existing report: measure the analysis alone.
    shutil.rmtree(run_dir / "report", ignore_errors=True)
    seconds, rss, _ = child(trialrun("analyze", str(run_dir)))
    return seconds, rss


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", choices=["run", "report", "analyze"], action="append")
    args = parser.parse_args()
    groups = set(args.only or ["run", "report", "analyze"])
    small, mid, large = (10_000, 20_000, 50_000) if args.quick else (10_000, 100_000, 1_000_000)
    results: dict[str, object] = {"load_before": os.getloadavg()}
    root = Path(tempfile.mkdtemp(prefix="trialrun-scale-"))
    try:
        if "run" in groups:
            base = run_case(root, small)
            big = run_case(root, large)
            ratio = big[1] / base[1]
            print(f"run {small:>9,}: {base[0]:7.1f} s, peak RSS {base[1]:7.1f} MB")
            print(f"run {large:>9,}: {big[0]:7.1f} s, peak RSS {big[1]:7.1f} MB")
            verdict = "met" if ratio <= 1.2 else "NOT met"
            print(f"  RSS {large:,} / {small:,} = {ratio:.2f} (target <= 1.2): {verdict}")
            results["run"] = {"small": [small, *base], "large": [large, *big], "ratio": ratio}
        runs = {}
        if groups & {"report", "analyze"}:
            for n in (mid, large):
                t = time.perf_counter()
                runs[n] = synthetic_run(root / f"synthetic-{n}", n)
                print(f"synthetic run of {n:,} episodes written in {time.perf_counter() - t:.1f} s")
        if "report" in groups:
            for n, run_dir in runs.items():
                build_s, build_rss, size, opened = report_case(run_dir)
                print(
                    f"report {n:>9,}: build {build_s:6.1f} s (peak RSS {build_rss:7.1f} MB), "
                    f"index.html {size:5.2f} MB, opens in Chromium in {opened:5.2f} s"
                    + (f" (target < 3 s: {'met' if opened < 3 else 'NOT met'})" if n == large else "")
                )
                results[f"report_{n}"] = [build_s, build_rss, size, opened]
        if "analyze" in groups:
            for n, run_dir in runs.items():
                seconds, rss = analyze_case(run_dir)
                print(f"analyze {n:>9,}: {seconds:6.1f} s, peak RSS {rss:7.1f} MB")
                results[f"analyze_{n}"] = [seconds, rss]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    before, after = results["load_before"], results["load_after"]
    print(f"load average before {before}, after {after} on {os.cpu_count()} cores")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
