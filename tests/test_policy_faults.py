"""The fault corpus: policies and envs that misbehave fail their own job, with
one clear error, and the run goes on (issue 15). Every case runs a faulty job
and then a healthy one, and checks the statuses, the error, the manifest and
the summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from trialrun.config import parse_run_config
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.runner import Executor, run_evaluation
from trialrun.runfiles import read_episodes, read_manifest, read_summary

CARTPOLE = "CartPole-v1"
PENDULUM = "Pendulum-v1"
FAULTY_ENV = "faults:faults/Faulty-v0"

# (case id, env id, env kwargs, policy kwargs (None: 'zero'), job settings, the job's error starts with)
FAILING: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, dict[str, Any], str]] = [
    ("act-sys-exit", CARTPOLE, {}, {"fault": "exit"}, {},
     "UserCodeExit: the env or policy raised SystemExit(3): it fails this job instead of ending the run"),
    ("act-sys-exit-0", CARTPOLE, {}, {"fault": "exit0"}, {}, "UserCodeExit: the env or policy raised SystemExit(0)"),
    ("act-keyboard-interrupt", CARTPOLE, {}, {"fault": "keyboard"}, {},
     "UserCodeExit: the env or policy raised KeyboardInterrupt()"),
    ("reset-sys-exit", CARTPOLE, {}, {"fault": "exit", "where": "reset", "after": 1}, {},
     "UserCodeExit: the env or policy raised SystemExit(3)"),
    ("reset-keyboard-interrupt", CARTPOLE, {}, {"fault": "keyboard", "where": "reset", "after": 1}, {},
     "UserCodeExit: the env or policy raised KeyboardInterrupt()"),
    ("act-memory-error", CARTPOLE, {}, {"fault": "memory"}, {}, "MemoryError: policy ran out of memory on purpose"),
    ("act-recursion-error", CARTPOLE, {}, {"fault": "recursion"}, {}, "RecursionError: maximum recursion depth"),
    ("act-hangs-in-sleep", CARTPOLE, {}, {"fault": "sleep"}, {"act_timeout": 0.5},
     "CallTimeout: timeout: policy.act did not return within 0.5 s (act_timeout); stopped after 0.5"),
    ("act-hangs-in-a-loop", CARTPOLE, {}, {"fault": "spin"}, {"act_timeout": 0.5},
     "CallTimeout: timeout: policy.act did not return within 0.5 s (act_timeout)"),
    ("reset-hangs", CARTPOLE, {}, {"fault": "sleep", "where": "reset", "after": 1}, {"act_timeout": 0.5},
     "CallTimeout: timeout: policy.reset did not return within 0.5 s (act_timeout)"),
    ("extra-rows", PENDULUM, {}, {"fault": "extra_rows"}, {},
     "ActionError: job 'faulty': the policy returned actions of shape (5, 7); the env needs (2, 1): one row "
     "per sub-env, each of shape (1,) for Box(-2.0, 2.0, (1,), float32)"),
    ("flat-batch-for-a-box", PENDULUM, {}, {"fault": "flat"}, {},
     "ActionError: job 'faulty': the policy returned actions of shape (2,); the env needs (2, 1)"),
    ("nan-action", PENDULUM, {}, {"fault": "nan"}, {},
     "ActionError: job 'faulty': the policy returned non-finite actions (NaN or inf) for sub-env(s) [0]"),
    ("inf-action", PENDULUM, {}, {"fault": "inf"}, {},
     "ActionError: job 'faulty': the policy returned non-finite actions (NaN or inf) for sub-env(s) [1]"),
    ("discrete-out-of-range", CARTPOLE, {}, {"fault": "out_of_range"}, {},
     "ActionError: job 'faulty': the policy returned action 5 outside Discrete(2) (allowed: 0..1)"),
    ("discrete-negative", CARTPOLE, {}, {"fault": "negative"}, {},
     "ActionError: job 'faulty': the policy returned action -1 outside Discrete(2)"),
    ("float-for-discrete", CARTPOLE, {}, {"fault": "float_for_discrete"}, {},
     "ActionError: job 'faulty': the policy returned actions of dtype float64; Discrete(2) needs integer"),
    ("string-actions", CARTPOLE, {}, {"fault": "strings"}, {},
     "ActionError: job 'faulty': the policy returned actions of dtype <U4"),
    ("none-actions", CARTPOLE, {}, {"fault": "none"}, {},
     "ActionError: job 'faulty': the policy returned actions of shape (); the env needs (2,)"),
    ("ragged-actions", PENDULUM, {}, {"fault": "ragged"}, {},
     "ActionError: job 'faulty': the policy returned actions numpy cannot read as an array"),
    ("out-of-bounds-fail", PENDULUM, {}, {"fault": "too_big"}, {"on_out_of_bounds": "fail"},
     "ActionError: job 'faulty': the policy returned actions outside Box(-2.0, 2.0, (1,), float32) (by up to 5)"),
    ("factory-sys-exit", CARTPOLE, {}, {"__type": "faults:exiting_factory"}, {},
     "UserCodeExit: the env or policy raised SystemExit(2)"),
    ("env-step-sys-exit", FAULTY_ENV, {"fault": "exit"}, None, {}, "UserCodeExit: the env or policy raised SystemExit(3)"),
    ("env-step-keyboard-interrupt", FAULTY_ENV, {"fault": "keyboard"}, None, {},
     "UserCodeExit: the env or policy raised KeyboardInterrupt()"),
    ("env-reset-sys-exit", FAULTY_ENV, {"fault": "exit", "where": "reset", "after": 5}, None, {},
     "UserCodeExit: the env or policy raised SystemExit(3)"),
    ("env-step-hangs", FAULTY_ENV, {"fault": "sleep"}, None, {"episode_timeout": 0.5},
     "CallTimeout: timeout: episode 0 ran for 0.5"),
    ("env-step-loops", FAULTY_ENV, {"fault": "spin"}, None, {"episode_timeout": 0.5},
     "CallTimeout: timeout: episode 0 ran for 0.5"),
    ("async-env-step-hangs", FAULTY_ENV, {"fault": "sleep"}, None, {"episode_timeout": 1, "vectorization": "async"},
     "CallTimeout: timeout: episode 0 ran for 1.0"),
]  # fmt: skip


def _job(
    name: str, env: str, env_kwargs: dict[str, Any], policy: dict[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    if policy is None:
        policy_doc: dict[str, Any] = {"type": "zero"}
    elif "__type" in policy:
        policy_doc = {"type": policy["__type"]}
    else:
        policy_doc = {"type": "faults:FaultyPolicy", "kwargs": policy}
    return {
        "name": name,
        "env": {"id": env, "kwargs": env_kwargs},
        "policy": policy_doc,
        "episodes": 4,
        "num_envs": 2,
        "max_steps": 20,
        **extra,
    }


def _run(tmp_path: Path, faulty: dict[str, Any], executor: Executor | None = None) -> Any:
    config = parse_run_config(
        {
            "name": "faults",
            "seed": 1,
            "jobs": [faulty, _job("healthy", "trialrun/SeedProbe-v0", {}, None, max_steps=None)],
        }
    )
    return run_evaluation(config, tmp_path / "run", executor=executor)


@pytest.mark.parametrize(
    ("env", "env_kwargs", "policy", "settings", "error"),
    [case[1:] for case in FAILING],
    ids=[case[0] for case in FAILING],
)
def test_a_fault_fails_its_job_and_the_run_goes_on(
    tmp_path: Path, env: str, env_kwargs: dict[str, Any], policy: dict[str, Any] | None,
    settings: dict[str, Any], error: str,
) -> None:  # fmt: skip
    result = _run(tmp_path, _job("faulty", env, env_kwargs, policy, **settings))
    assert result.statuses == {"faulty": "failed", "healthy": "completed"}
    assert result.exit_code == 1
    assert result.errors["faulty"].startswith(error), result.errors["faulty"]
    manifest = read_manifest(tmp_path / "run")
    assert manifest.jobs["faulty"].status == "failed"
    assert manifest.jobs["faulty"].error == result.errors["faulty"]
    assert manifest.jobs["healthy"].completed == 4
    assert manifest.ended_at is not None
    summary = read_summary(tmp_path / "run")
    assert summary.jobs["faulty"].status == "failed"
    assert summary.jobs["healthy"].episodes == 4


def test_nan_actions_with_on_nonfinite_warn_complete_and_flag_the_rewards(tmp_path: Path) -> None:
    faulty = _job("faulty", PENDULUM, {}, {"fault": "nan", "after": 0}, on_nonfinite="warn")
    result = _run(tmp_path, faulty)
    assert result.statuses == {"faulty": "completed", "healthy": "completed"}
    records = [r for r in read_episodes(tmp_path / "run" / "episodes.jsonl") if r.job == "faulty"]
    assert len(records) == 4
    # The policy's NaN goes to sub-env 0 only, and Pendulum integrates it into NaN rewards.
    flagged = sorted(r.env_index for r in records if r.outcome.get("nonfinite_reward") is True)
    assert flagged == [0, 0]
    assert all(r.outcome["return"] is None for r in records if r.env_index == 0)
    assert all(isinstance(r.outcome["return"], float) for r in records if r.env_index == 1)
    assert read_summary(tmp_path / "run").jobs["faulty"].invalid_returns == 2


def test_nan_rewards_are_flagged_in_the_records_and_counted_in_the_summary(tmp_path: Path) -> None:
    # 10-step episodes on 2 sub-envs; rewards turn NaN after the 25th env step in each sub-env.
    faulty = _job("faulty", FAULTY_ENV, {"fault": "nan_reward", "after": 15}, None, episodes=6)
    result = _run(tmp_path, faulty)
    assert result.statuses["faulty"] == "completed"
    records = sorted(
        (r for r in read_episodes(tmp_path / "run" / "episodes.jsonl") if r.job == "faulty"),
        key=lambda r: r.episode,
    )
    flagged = [r.episode for r in records if r.outcome.get("nonfinite_reward")]
    clean = [r for r in records if "nonfinite_reward" not in r.outcome]
    assert flagged == [2, 3, 4, 5]  # each sub-env's 2nd and 3rd episodes
    assert [r.outcome["return"] for r in clean] == [10.0, 10.0]
    summary = read_summary(tmp_path / "run").jobs["faulty"]
    assert (summary.invalid_returns, summary.return_mean) == (4, 10.0)


def test_out_of_bounds_clip_completes(tmp_path: Path) -> None:
    faulty = _job("faulty", PENDULUM, {}, {"fault": "too_big", "after": 0}, on_out_of_bounds="clip")
    assert _run(tmp_path, faulty).statuses == {"faulty": "completed", "healthy": "completed"}


PROCESS_CASES = [
    "act-sys-exit",
    "act-keyboard-interrupt",
    "act-hangs-in-sleep",
    "extra-rows",
    "env-step-hangs",
]


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_faults_in_process_workers_fail_their_job_with_the_same_error(tmp_path: Path, case: str) -> None:
    _, env, env_kwargs, policy, settings, error = next(c for c in FAILING if c[0] == case)
    with ProcessExecutor(workers=2) as executor:
        result = _run(tmp_path, _job("faulty", env, env_kwargs, policy, **settings), executor)
    assert result.statuses == {"faulty": "failed", "healthy": "completed"}
    # The worker's error, as the driver's ShardFailed carries it (a shard's first episode may be any).
    got = re.sub(r"episode \d+ ran", "episode 0 ran", result.errors["faulty"])
    assert got.startswith(f"ShardFailed: {error}"), result.errors["faulty"]
    assert read_manifest(tmp_path / "run").jobs["faulty"].traceback is not None
