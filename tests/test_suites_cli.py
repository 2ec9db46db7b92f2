"""``trialrun suite``: the command a subprocess evaluator runs, and a user's way
to evaluate a checkpoint on a suite by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from helpers import subprocess_env
from trialrun.cli import app
from trialrun.runfiles import read_episodes, read_manifest


def _suites(tmp_path: Path, evaluators: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "suites.yaml"
    doc = {"output_dir": str(tmp_path / "evals"), "loggers": ["jsonl"], "evaluators": evaluators, **top}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


PROBE = {"name": "probe", "env": "trialrun/SeedProbe-v0", "episodes": 5, "num_envs": 2}
CART = {"name": "cart", "env": "CartPole-v1", "episodes": 3, "max_steps": 25, "success": "survived"}


def test_suite_runs_every_enabled_evaluator_and_logs(tmp_path: Path) -> None:
    path = _suites(
        tmp_path,
        {
            "base": {"interval": 5},
            "probe": {"inherits": "base", "jobs": [PROBE]},
            "cart": {"inherits": "base", "jobs": [CART]},
            "off": {"enabled": False, "jobs": [PROBE]},
        },
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trialrun.cli",
            "suite",
            str(path),
            "--policy",
            "zero",
            "--epoch",
            "7",
            "--global-step",
            "7000",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    evals = tmp_path / "evals"
    assert sorted(p.name for p in evals.iterdir()) == ["cart", "metrics.jsonl", "probe"]
    assert len(read_episodes(evals / "probe" / "epoch7" / "episodes.jsonl")) == 5
    assert len(read_episodes(evals / "cart" / "epoch7" / "episodes.jsonl")) == 3
    lines = [json.loads(line) for line in (evals / "metrics.jsonl").read_text().splitlines()]
    assert [(line["evaluator"], line["step"], line["epoch"]) for line in lines] == [
        ("probe", 7000, 7),
        ("cart", 7000, 7),
    ]
    assert "success [95% CI]" in proc.stdout and "probe" in proc.stdout and "cart" in proc.stdout
    assert f"probe: {evals / 'probe' / 'epoch7'}" in proc.stdout
    manifest = read_manifest(evals / "cart" / "epoch7")
    assert manifest.config["jobs"][0]["policy"] == {"type": "zero", "kwargs": {}}


def test_suite_named_evaluator_exact_run_dir_quiet_and_no_log(tmp_path: Path) -> None:
    path = _suites(tmp_path, {"probe": {"jobs": [PROBE]}, "cart": {"jobs": [CART]}})
    result = CliRunner().invoke(
        app,
        [
            "suite",
            str(path),
            "--name",
            "cart",
            "--policy",
            "cartpole-balance",
            "--run-dir",
            str(tmp_path / "exact"),
            "--no-log",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    records = read_episodes(tmp_path / "exact" / "episodes.jsonl")
    assert [r.outcome["length"] for r in records] == [25, 25, 25]
    assert not (tmp_path / "evals").exists()  # no loggers, no other evaluator


def test_suite_exits_1_when_an_evaluator_fails(tmp_path: Path) -> None:
    path = _suites(
        tmp_path,
        {
            "broken": {"jobs": [{"name": "b", "env": "helpers/Broken-v0", "episodes": 2}]},
            "ok": {"jobs": [PROBE]},
        },
    )
    import helpers  # noqa: F401  (registers helpers/Broken-v0 in this process)

    result = CliRunner().invoke(app, ["suite", str(path), "--policy", "zero", "--epoch", "1"])
    assert result.exit_code == 1
    assert (
        "evaluator 'broken' failed: job 'b' failed: ValueError: the simulator diverged on purpose"
        in result.stderr
    )
    assert len(read_episodes(tmp_path / "evals" / "ok" / "epoch1" / "episodes.jsonl")) == 5


@pytest.mark.parametrize(
    ("evaluators", "args", "expected"),
    [
        (
            {"a": {"jobs": [PROBE]}},
            ["--name", "nope"],
            "field '--name': unknown evaluator 'nope'; evaluators: a",
        ),
        (
            {"base": {"interval": 2}, "a": {"inherits": "base", "jobs": [PROBE]}},
            ["--name", "base"],
            "field '--name': evaluator 'base' is a template",
        ),
        (
            {"a": {"inherits": "b", "jobs": [PROBE]}, "b": {"inherits": "a", "jobs": [PROBE]}},
            [],
            "field 'evaluators.b.inherits': evaluator inheritance cycle: a -> b -> a",
        ),
        (
            {"a": {"jobs": [PROBE]}},
            ["--policy", "missing/model.zip"],
            "no such checkpoint file or directory: missing/model.zip",
        ),
        ({"a": {"jobs": [PROBE]}}, ["--policy", "no-such-policy"], "unknown policy 'no-such-policy'"),
        (
            {"a": {"jobs": [PROBE]}, "b": {"jobs": [PROBE]}},
            ["--run-dir", "x"],
            "--run-dir needs exactly one --name EVALUATOR",
        ),
        ({"a": {"jobs": [PROBE]}}, [], "job(s) probe name no policy and none was passed"),
        (
            {"a": {"jobs": [{**PROBE, "env": "NoSuchEnv-v0"}]}},
            ["--policy", "zero"],
            "suites.yaml: field 'evaluators.a.jobs.0.env.id': unknown environment 'NoSuchEnv-v0'",
        ),
        # A setting of the policy passed with --policy is named as that option's.
        (
            {"a": {"jobs": [PROBE]}},
            ["--policy", "{type: openpi, url: 'ws://127.0.0.1:9', max_connections: 0}"],
            "trialrun: error: --policy: field 'max_connections': max_connections must be an integer "
            "in 1..1024, got 0",
        ),
        # ... and one written in the suites file as the evaluator's.
        (
            {
                "a": {
                    "jobs": [{**PROBE, "policy": {"type": "remote", "url": "ws://127.0.0.1:9", "timeout": 0}}]
                }
            },
            [],
            "suites.yaml: field 'evaluators.a.jobs.0.policy.timeout': timeout must be a number of seconds > 0, "
            "got 0",
        ),
    ],
)
def test_suite_bad_input_exits_2_with_one_message(
    tmp_path: Path, evaluators: dict[str, Any], args: list[str], expected: str
) -> None:
    path = _suites(tmp_path, evaluators)
    result = CliRunner().invoke(app, ["suite", str(path), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("trialrun: error: ")
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "evals").exists()
