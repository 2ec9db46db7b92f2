"""A shard's per-job pieces built from the config (trialrun.execution.shard):
custom outcome terms, built in preflight, so a bad one stops the run first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli_errors import refused_lines
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes


def _run(outcomes: list[dict[str, Any]], episodes: int = 6) -> dict[str, Any]:
    job = {
        "name": "cart",
        "env": "CartPole-v1",
        "policy": "random",
        "episodes": episodes,
        "num_envs": 3,
        "success": "survived",
        "outcomes": outcomes,
    }
    return {"name": "terms", "seed": 5, "jobs": [job]}


def test_a_custom_term_from_the_config_is_in_every_record(tmp_path: Path) -> None:
    config = parse_run_config(_run([{"type": "helpers:StepsAboveTerm", "kwargs": {"threshold": 0.5}}]))
    result = run_evaluation(config, tmp_path / "run")
    assert result.exit_code == 0
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert len(records) == 6
    # CartPole pays 1.0 a step: every step is above 0.5, none above 1.5.
    assert [r.outcome["steps_above"] for r in records] == [r.outcome["length"] for r in records]
    renamed = parse_run_config(
        _run([{"type": "helpers:StepsAboveTerm", "name": "over", "kwargs": {"threshold": 1.5}}], episodes=3)
    )
    run_evaluation(renamed, tmp_path / "renamed")
    assert [r.outcome["over"] for r in read_episodes(tmp_path / "renamed" / "episodes.jsonl")] == [0, 0, 0]


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (
            {"type": "helpers:StepsAboveTerm", "kwargs": {"treshold": 0.5}},
            "field 'jobs[cart].outcomes.0.kwargs.treshold': outcome term 'helpers:StepsAboveTerm' has no "
            "setting 'treshold'; its settings: name, threshold; did you mean 'threshold'?",
        ),
        (
            {"type": "helpers:StepsAboveTerm"},
            "field 'jobs[cart].outcomes.0.kwargs.threshold': outcome term 'helpers:StepsAboveTerm' needs "
            "'threshold'",
        ),
        (
            {"type": "helpers:StepsAboveTerm", "kwargs": {"threshold": float("nan")}},
            "field 'jobs[cart].outcomes.0.kwargs': 'helpers:StepsAboveTerm' could not be built with kwargs "
            "{'threshold': nan}: ValueError: threshold must be finite, got nan",
        ),
        (
            {"type": "helpers:plain_function_factory"},
            "field 'jobs[cart].outcomes.0.type': 'helpers:plain_function_factory' built an object without name, "
            "allocate, start, step, value (see trialrun.outcomes.OutcomeTerm)",
        ),
    ],
)
def test_a_bad_term_is_one_clear_error_in_preflight(term: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        preflight(parse_run_config(_run([term])))
    assert str(info.value) == message


def test_a_bad_term_stops_the_cli_before_anything_runs(tmp_path: Path) -> None:
    doc = _run([{"type": "helpers:StepsAboveTerm", "kwargs": {"treshold": 1}}])
    assert refused_lines(tmp_path, doc) == [
        f"trialrun: error: {tmp_path / 'run.yaml'}: field 'jobs[cart].outcomes.0.kwargs.treshold': "
        "outcome term 'helpers:StepsAboveTerm' has no setting 'treshold'; its settings: name, threshold; "
        "did you mean 'threshold'?"
    ]
