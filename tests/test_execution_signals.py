"""A real Ctrl+C stops a run cleanly and resumably; helper processes die with a
driver killed by ``kill -9`` (issue 15). Real ``trialrun run`` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from helpers import subprocess_env
from trialrun.runfiles import read_episodes, read_manifest, read_summary


def _write_run(tmp_path: Path, jobs: list[dict[str, Any]]) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "signals", "seed": 4, "jobs": jobs}))
    return path


def _slow_job(name: str, episodes: int, **policy: Any) -> dict[str, Any]:
    return {
        "name": name,
        "env": "CartPole-v1",
        "policy": {"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.005, **policy}},
        "episodes": episodes,
        "max_steps": 20,
    }


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trialrun", "run", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_ctrl_c_marks_the_job_interrupted_writes_the_summary_and_resume_finishes(tmp_path: Path) -> None:
    run_file = _write_run(tmp_path, [_slow_job("long", 400), _slow_job("later", 3)])
    run_dir = tmp_path / "out"
    proc = _start([str(run_file), "--run-dir", str(run_dir), "--no-report", "--quiet"], tmp_path)
    _wait_for(lambda: _lines(run_dir / "episodes.jsonl") >= 5)
    proc.send_signal(signal.SIGINT)  # what Ctrl+C delivers to the driver
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().endswith(
        f"interrupted; the episodes recorded so far are kept. Continue with: trialrun run --resume {run_dir}"
    )
    manifest = read_manifest(run_dir)
    assert (manifest.jobs["long"].status, manifest.jobs["later"].status) == ("interrupted", "pending")
    assert (
        manifest.jobs["long"].error == "interrupted by the user (Ctrl+C); trialrun run --resume continues it"
    )
    recorded = _lines(run_dir / "episodes.jsonl")
    assert 5 <= recorded < 400
    summary = read_summary(run_dir)
    assert summary.jobs["long"].status == "interrupted"
    assert summary.jobs["long"].episodes == manifest.jobs["long"].completed == recorded

    resumed = subprocess.run(
        [sys.executable, "-m", "trialrun", "run", "--resume", str(run_dir), "--no-report", "--quiet"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    records = read_episodes(run_dir / "episodes.jsonl")
    keys = [(r.job, r.episode) for r in records]
    assert len(keys) == len(set(keys)) == 403
    assert {name: job.status for name, job in read_manifest(run_dir).jobs.items()} == {
        "long": "completed",
        "later": "completed",
    }


def test_ctrl_c_to_the_process_group_stops_process_workers_too(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    run_file = _write_run(tmp_path, [_slow_job("long", 400, pid_dir=str(pid_dir))])
    run_file.write_text(run_file.read_text().replace("helpers:SlowPolicy", "helpers:PidFilePolicy"))
    run_dir = tmp_path / "out"
    proc = _start(
        [str(run_file), "--run-dir", str(run_dir), "--no-report", "--quiet", "--executor", "process"],
        tmp_path,
    )
    _wait_for(lambda: _lines(run_dir / "episodes.jsonl") >= 5)
    workers = [int(p.stem) for p in pid_dir.glob("*.pid")]
    assert workers
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl+C reaches every process of the group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert read_manifest(run_dir).jobs["long"].status == "interrupted"
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=15)


def _hung_job(pid_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "hangs",
        "env": "CartPole-v1",
        "policy": {
            "type": "faults:FaultyPolicy",
            "kwargs": {"fault": "sleep", "after": 2, "pid_dir": str(pid_dir)},
        },
        "episodes": 20,
        "act_timeout": None,  # hung for ever: only the driver's death can end it
        **extra,
    }


def test_process_workers_hung_in_a_policy_die_with_a_killed_driver(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    run_file = _write_run(tmp_path, [_hung_job(pid_dir)])
    proc = _start(
        [str(run_file), "--run-dir", str(tmp_path / "out"), "--no-report", "-q", "--executor", "process"],
        tmp_path,
    )
    _wait_for(lambda: len(list(pid_dir.glob("*.pid"))) == 2)
    workers = [int(p.stem) for p in pid_dir.glob("*.pid")]
    time.sleep(0.5)  # both are inside the hung act() now
    assert all(_alive(pid) for pid in workers)
    proc.kill()  # kill -9 of the driver
    proc.wait(timeout=10)
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=10)


def _encoder_pids(parent: int) -> list[int]:
    pids = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                continue
            if b"trialrun.recording.encoder" in command:
                pids.append(child)
    return pids


def test_the_video_encoder_dies_with_a_killed_driver(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    job = _hung_job(pid_dir, env="InvertedPendulum-v5", video={"select": "all"})
    job["policy"]["kwargs"]["after"] = 40  # films 40 steps, then hangs mid-episode
    run_file = _write_run(tmp_path, [job])
    proc = _start([str(run_file), "--run-dir", str(tmp_path / "out"), "--no-report", "-q"], tmp_path)
    encoders: list[int] = []

    def encoder_started() -> bool:
        encoders[:] = _encoder_pids(proc.pid)
        return bool(encoders)

    _wait_for(encoder_started)
    _wait_for(lambda: len(list(pid_dir.glob("*.pid"))) == 1)
    proc.kill()
    proc.wait(timeout=10)
    _wait_for(lambda: not any(_alive(pid) for pid in encoders), timeout=10)
    assert (
        json.loads((tmp_path / "out" / "manifest.json").read_text())["jobs"]["hangs"]["status"] == "running"
    )
