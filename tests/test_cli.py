from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import subprocess_env
from trialrun.runfiles import read_episodes, read_manifest

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]


def _trialrun(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRIALRUN, *args], capture_output=True, text=True, env=subprocess_env(), cwd=cwd, timeout=timeout
    )


def _write(path: Path, doc: dict) -> Path:  # type: ignore[type-arg]
    path.write_text(yaml.safe_dump(doc))
    return path


PROBE_RUN = {
    "name": "cli-probe",
    "seed": 1,
    "jobs": [
        {"name": "probe", "env": "trialrun/SeedProbe-v0", "policy": "random", "episodes": 12, "num_envs": 3}
    ],
}


def test_run_creates_a_timestamped_run_dir_and_prints_a_table(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "run.yaml", PROBE_RUN)
    proc = _trialrun("run", str(cfg), "-o", str(tmp_path / "runs"), "--set", "jobs.0.episodes=9")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("cli-probe-") and run_dir.name.endswith("Z")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "episodes.jsonl",
        "manifest.json",
        "report",
        "summary.json",
    ]
    assert (run_dir / "report" / "index.html").is_file()  # built at the end of the run
    assert len(read_episodes(run_dir / "episodes.jsonl")) == 9
    assert "success [95% CI]" in proc.stdout and "9/9" in proc.stdout
    assert "probe" in proc.stderr  # the progress bar


def test_quiet_and_exact_run_dir(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "run.yaml", PROBE_RUN)
    proc = _trialrun("run", str(cfg), "--run-dir", str(tmp_path / "exact"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert len(read_episodes(tmp_path / "exact" / "episodes.jsonl")) == 12


def test_failed_job_exits_1(tmp_path: Path) -> None:
    doc = {
        **PROBE_RUN,
        "jobs": [
            *PROBE_RUN["jobs"],
            {"name": "bad", "env": "helpers:helpers/Broken-v0", "policy": "zero", "episodes": 1},
        ],
    }
    proc = _trialrun("run", str(_write(tmp_path / "run.yaml", doc)), "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    assert "job 'bad' failed: ValueError: the simulator diverged on purpose" in proc.stderr.replace("\n", " ")
    assert read_manifest(tmp_path / "r").jobs["probe"].status == "completed"


def _with_policy(policy: dict[str, Any]) -> dict[str, Any]:
    return {**PROBE_RUN, "jobs": [{**PROBE_RUN["jobs"][0], "policy": policy}]}


@pytest.mark.parametrize(
    "doc,args,message",
    [
        (
            {**PROBE_RUN, "jobs": [{**PROBE_RUN["jobs"][0], "episods": 3}]},
            [],
            "field 'jobs.0.episods': unknown key 'episods'",
        ),
        (
            {**PROBE_RUN, "jobs": [{**PROBE_RUN["jobs"][0], "env": "NoSuchEnv-v0"}]},
            [],
            "field 'jobs.0.env.id': unknown environment 'NoSuchEnv-v0'",
        ),
        (
            PROBE_RUN,
            ["--set", "jobs.0.num_envs=lots"],
            "field 'jobs.0.num_envs': Input should be a valid integer",
        ),
        (PROBE_RUN, ["--set", "seed"], "override 'seed' is not of the form key=value"),
        # Policy settings are checked before anything runs (no connection is tried).
        (
            _with_policy({"type": "openpi", "url": "ws://127.0.0.1:9", "max_connections": 0}),
            [],
            "run.yaml: field 'jobs.0.policy.max_connections': max_connections must be an integer in 1..1024, got 0",
        ),
        (
            _with_policy({"type": "openpi", "url": "ws://127.0.0.1:9", "kwargs": {"max_conections": 4}}),
            [],
            "run.yaml: field 'jobs.0.policy.kwargs.max_conections': policy 'openpi' has no setting "
            "'max_conections'; its settings: api_key, ca_file, max_connections, obs_map, replan_steps, "
            "timeout, url; did you mean 'max_connections'?",
        ),
        (
            _with_policy({"type": "gr00t", "port": 70000}),
            [],
            "run.yaml: field 'jobs.0.policy.port': port must be an integer in 1..65535, got 70000",
        ),
        (
            _with_policy({"type": "sb3"}),
            [],
            "run.yaml: field 'jobs.0.policy.path': a 'sb3' policy needs a file: set 'path'",
        ),
        (
            {**PROBE_RUN, "jobs": [{**PROBE_RUN["jobs"][0], "policy": "randm"}]},
            [],
            "run.yaml: field 'jobs.0.policy.type': unknown policy 'randm'; registered policies: ",
        ),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(
    tmp_path: Path, doc: dict, args: list[str], message: str
) -> None:  # type: ignore[type-arg]
    cfg = _write(tmp_path / "run.yaml", doc)
    proc = _trialrun("run", str(cfg), "-o", str(tmp_path / "runs"), *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    flat = " ".join(proc.stderr.split())
    assert flat.startswith("trialrun: error: ")
    assert message in flat
    if message.startswith("run.yaml: "):
        # Preflight's errors name the file too, as the parser's do.
        assert flat.startswith(f"trialrun: error: {cfg}: field ")
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_key_is_the_error_reported_not_the_key_it_leaves_missing(tmp_path: Path) -> None:
    job = {key: value for key, value in PROBE_RUN["jobs"][0].items() if key != "episodes"}
    cfg = _write(tmp_path / "run.yaml", {**PROBE_RUN, "jobs": [{**job, "epsiodes": 3}]})
    proc = _trialrun("run", str(cfg), "-o", str(tmp_path / "runs"))
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert flat.startswith(
        f"trialrun: error: {cfg}: field 'jobs.0.epsiodes': unknown key 'epsiodes'; allowed keys: "
    )
    assert flat.endswith("; did you mean 'episodes'? (and 1 more problem(s))")


def test_missing_file_and_bad_usage(tmp_path: Path) -> None:
    proc = _trialrun("run", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml: no such file" in " ".join(proc.stderr.split())
    proc = _trialrun("run", "--no-such-flag", "x.yaml")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "Traceback" not in proc.stderr
    proc = _trialrun("run", str(tmp_path), "--resume")
    assert proc.returncode == 2 and "manifest.json: no such file" in " ".join(proc.stderr.split())


def test_list_commands() -> None:
    envs = _trialrun("list", "envs", "CartPole")
    assert envs.returncode == 0 and "CartPole-v1" in envs.stdout and "Pendulum" not in envs.stdout
    policies = _trialrun("list", "policies")
    for name in ("random", "zero", "cartpole-balance", "pendulum-swingup"):
        assert name in policies.stdout


def test_resume_after_kill_9_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    doc = {
        "name": "killed",
        "seed": 4,
        "jobs": [
            {
                "name": "slow",
                "env": "trialrun/SeedProbe-v0",
                "episodes": 60,
                "num_envs": 3,
                "policy": {"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.004}},
            },
            {"name": "after", "env": "CartPole-v1", "policy": "random", "episodes": 10, "num_envs": 2},
        ],
    }
    cfg = _write(tmp_path / "run.yaml", doc)
    reference = _trialrun("run", str(cfg), "--run-dir", str(tmp_path / "reference"), "-q")
    assert reference.returncode == 0, reference.stderr

    run_dir = tmp_path / "killed"
    child = subprocess.Popen(
        [*TRIALRUN, "run", str(cfg), "--run-dir", str(run_dir), "-q"],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    episodes = run_dir / "episodes.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if episodes.exists() and episodes.read_text().count("\n") >= 15:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done_before = episodes.read_text().count("\n")
    assert 15 <= done_before < 70
    assert read_manifest(run_dir).jobs["slow"].status == "running"

    resumed = _trialrun("run", "--resume", str(run_dir), "-q")
    assert resumed.returncode == 0, resumed.stderr

    def identity(path: Path) -> list[tuple[object, ...]]:
        return sorted(
            (r.job, r.episode, r.seed, json.dumps(r.outcome, sort_keys=True)) for r in read_episodes(path)
        )

    assert len(read_episodes(episodes)) == 70
    assert identity(episodes) == identity(tmp_path / "reference" / "episodes.jsonl")
    manifest = read_manifest(run_dir)
    assert {j.status for j in manifest.jobs.values()} == {"completed"}
    assert json.loads((run_dir / "summary.json").read_text())["overall"]["episodes"] == 70


def test_list_variations_for_an_env() -> None:
    proc = _trialrun("list", "variations", "metaworld/pick-place-v3")
    assert proc.returncode == 0, proc.stderr
    rows = [" ".join(line.replace("│", " ").split()) for line in proc.stdout.splitlines()]
    assert "mujoco.body_mass obj 0.75 kg subtree mass 0.75 kg" in rows
    assert any(r.startswith("mujoco.geom_friction objGeom 1 ") for r in rows)
    assert any(r.startswith("metaworld.object_range object 1 x") for r in rows)
    types = _trialrun("list", "variations")
    for name in ("attr", "env_kwarg", "mujoco.body_mass", "mujoco.light", "metaworld.goal_range"):
        assert name in types.stdout
    bad = _trialrun("list", "variations", "NoSuch-v0")
    assert bad.returncode == 2 and "unknown environment 'NoSuch-v0'" in " ".join(bad.stderr.split())


def test_resume_while_the_run_goes_on_is_refused(tmp_path: Path) -> None:
    doc = {
        "name": "busy",
        "seed": 4,
        "jobs": [
            {
                "name": "slow",
                "env": "trialrun/SeedProbe-v0",
                "episodes": 400,
                "num_envs": 2,
                "policy": {"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.01}},
            }
        ],
    }
    cfg = _write(tmp_path / "run.yaml", doc)
    run_dir = tmp_path / "run"
    child = subprocess.Popen(
        [*TRIALRUN, "run", str(cfg), "--run-dir", str(run_dir), "-q"],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "episodes.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _trialrun("run", "--resume", str(run_dir), "-q")
        assert second.returncode == 2
        assert f"is in use by another trialrun process (pid {child.pid})" in " ".join(second.stderr.split())
    finally:
        child.kill()
        child.wait(timeout=30)
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    assert len({json.loads(line)["episode"] for line in lines if line}) == len([x for x in lines if x])
