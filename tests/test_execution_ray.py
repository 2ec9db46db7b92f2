from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import subprocess_env
from test_execution_process import SWEEP, _kill_first_worker_after, _slow_config, identity
from trialrun.config import parse_run_config
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.ray_executor import RayExecutor
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes

THREE_KINDS = {
    "name": "same",
    "seed": 21,
    "jobs": [
        {"name": "plain", "env": "trialrun/SeedProbe-v0", "policy": "random", "episodes": 16, "num_envs": 3},
        {
            "name": "sweep",
            "env": "CartPole-v1",
            "policy": "cartpole-balance",
            "episodes": 8,
            "num_envs": 2,
            "success": "survived",
            "max_steps": 150,
            "factors": SWEEP,
            "design": "lhs",
        },
        {
            "name": "metaworld",
            "env": "metaworld/push-v3",
            "policy": "metaworld-expert",
            "episodes": 4,
            "num_envs": 2,
            "max_steps": 40,
            "factors": {
                "mass": {
                    "variation": {"type": "mujoco.body_mass", "body": "obj"},
                    "sampler": {"type": "loguniform", "low": 0.5, "high": 50},
                }
            },
        },
    ],
}


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    executor = RayExecutor(workers=2, shard_size=3, max_retries=1)
    yield executor
    executor.close()


def test_local_process_and_ray_give_the_same_records(tmp_path: Path, ray_executor: RayExecutor) -> None:
    cfg = parse_run_config(THREE_KINDS)
    assert run_evaluation(cfg, tmp_path / "local").exit_code == 0
    with ProcessExecutor(workers=2, shard_size=3) as process:
        assert run_evaluation(cfg, tmp_path / "process", executor=process).exit_code == 0
    assert run_evaluation(cfg, tmp_path / "ray", executor=ray_executor).exit_code == 0
    reference = identity(tmp_path / "local")
    assert len(reference) == 28
    assert identity(tmp_path / "process") == reference
    assert identity(tmp_path / "ray") == reference


def test_a_killed_ray_worker_has_its_shard_rerun(tmp_path: Path, ray_executor: RayExecutor) -> None:
    cfg = _slow_config(tmp_path / "pids", episodes=12)
    run_evaluation(_slow_config(tmp_path / "pids-ref", episodes=12), tmp_path / "reference")
    killer = _kill_first_worker_after(tmp_path / "run", tmp_path / "pids", min_records=2)
    result = run_evaluation(cfg, tmp_path / "run", executor=ray_executor)
    killer.join(timeout=5)
    assert result.statuses == {"slow": "completed", "after": "completed"}
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert len(records) == len({(r.job, r.episode) for r in records}) == 18
    assert identity(tmp_path / "run") == identity(tmp_path / "reference")


def test_ray_workers_are_recycled(tmp_path: Path) -> None:
    # max_calls needs its own remote function options, so a second executor
    # (reusing the running Ray instance) is used here.
    cfg = _slow_config(tmp_path / "pids", episodes=8)
    with RayExecutor(workers=2, shard_size=2, max_shards_per_worker=1) as executor:
        result = run_evaluation(cfg, tmp_path / "run", executor=executor)
    assert result.exit_code == 0
    # Four shards of the policy-recording job, each in a fresh worker process.
    assert len(list((tmp_path / "pids").glob("*.pid"))) == 4


def test_missing_ray_extra_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: r\njobs: [{name: a, env: CartPole-v1, policy: zero, episodes: 1}]\n")
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from trialrun.cli import main\n"
        f"sys.argv = ['trialrun', 'run', {str(cfg)!r}, '--executor', 'ray', '-o', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2
    assert "the ray executor needs Ray; install it with: pip install 'trialrun[ray]'" in " ".join(
        proc.stderr.split()
    )
    assert "Traceback" not in proc.stderr


def test_native_jobs_give_the_local_records_on_ray(tmp_path: Path, ray_executor: RayExecutor) -> None:
    cfg = parse_run_config(
        {
            "name": "native",
            "seed": 3,
            "jobs": [
                {
                    "name": "exact",
                    "env": "trialrun/SeedProbe-v0",
                    "policy": "random",
                    "episodes": 20,
                    "num_envs": 4,
                    "vectorization": "native",
                },
                {
                    "name": "wave",
                    "env": {"id": "CartPole-v1"},
                    "policy": "random",
                    "episodes": 20,
                    "num_envs": 4,
                    "vectorization": "native",
                },
            ],
        }
    )
    assert run_evaluation(cfg, tmp_path / "local").exit_code == 0
    assert run_evaluation(cfg, tmp_path / "ray", executor=ray_executor).exit_code == 0
    reference = identity(tmp_path / "local")
    assert len(reference) == 40
    assert identity(tmp_path / "ray") == reference
    waves = {
        (r.episode, r.env_index, r.extra["wave"]["seed"])
        for r in read_episodes(tmp_path / "ray" / "episodes.jsonl")
        if r.job == "wave"
    }
    assert waves == {
        (r.episode, r.env_index, r.extra["wave"]["seed"])
        for r in read_episodes(tmp_path / "local" / "episodes.jsonl")
        if r.job == "wave"
    }


def test_faults_in_ray_tasks_fail_only_their_job(tmp_path: Path, ray_executor: RayExecutor) -> None:
    # Ray runs a shard in a thread of its worker: the time limit comes from the
    # watchdog there (a Python loop), and sys.exit() fails the job, not the worker.
    def faulty(name: str, **policy: object) -> dict[str, object]:
        return {
            "name": name,
            "env": "CartPole-v1",
            "policy": {"type": "faults:FaultyPolicy", "kwargs": policy},
            "episodes": 4,
            "act_timeout": 1,
        }

    config = parse_run_config(
        {
            "name": "ray-faults",
            "jobs": [
                faulty("exits", fault="exit"),
                faulty("spins", fault="spin"),
                {"name": "healthy", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 6},
            ],
        }
    )
    result = run_evaluation(config, tmp_path / "run", executor=ray_executor)
    assert result.statuses == {"exits": "failed", "spins": "failed", "healthy": "completed"}
    assert result.errors["exits"].endswith(
        "UserCodeExit: the env or policy raised SystemExit(3): it fails this job instead of ending the run"
    )
    assert (
        "CallTimeout: timeout: policy.act did not return within 1 s (act_timeout)" in result.errors["spins"]
    )
