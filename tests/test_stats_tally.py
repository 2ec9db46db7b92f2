"""The runner's summary from running tallies equals the summary of the records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.stats import EpisodeOutcome, OutcomeTally, summarize_run, summarize_tallies

CONFIG = {
    "name": "tally",
    "seed": 7,
    "defaults": {"num_envs": 4, "max_steps": 500, "success": "survived"},
    "jobs": [
        {"name": "lqr", "env": "CartPole-v1", "policy": "cartpole-balance", "episodes": 24},
        {
            "name": "random",
            "env": "CartPole-v1",
            "policy": "random",
            "episodes": 40,
            "num_envs": 3,
            "factors": {
                "pole_length": {
                    "variation": {"type": "attr", "name": "length"},
                    "sampler": {"type": "uniform", "low": 0.3, "high": 0.7},
                }
            },
        },
    ],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tally") / "run"
    result = run_evaluation(parse_run_config(CONFIG), path)
    assert result.exit_code == 0
    return path


def test_the_runners_summary_is_the_summary_of_its_records(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    records = read_episodes(run_dir / "episodes.jsonl")
    from_records = summarize_run(
        manifest.run,
        records,
        planned={"lqr": 24, "random": 40},
        statuses={"lqr": "completed", "random": "completed"},
        seed=7,
        success_rules={"lqr": True, "random": True},
    )
    written = json.loads((run_dir / "summary.json").read_text())
    # Every value, timings included (records are summed in the order they were written).
    assert written == from_records.model_dump(mode="json", by_alias=True)


def test_exact_values_of_a_fixed_run(run_dir: Path) -> None:
    written = json.loads((run_dir / "summary.json").read_text())
    lqr, rnd = written["jobs"]["lqr"], written["jobs"]["random"]
    assert (lqr["episodes"], lqr["successes"], lqr["return_mean"], lqr["truncated"]) == (24, 24, 500.0, 24)
    assert (rnd["episodes"], rnd["successes"], rnd["terminated"], rnd["truncated"]) == (40, 0, 40, 0)
    records = [r for r in read_episodes(run_dir / "episodes.jsonl") if r.job == "random"]
    returns = np.array([r.outcome["return"] for r in sorted(records, key=lambda r: r.episode)])
    assert rnd["return_mean"] == float(returns.mean())
    assert rnd["return_std"] == float(returns.std(ddof=1))
    assert rnd["length_mean"] == float(np.mean([r.outcome["length"] for r in records]))
    assert written["overall"]["episodes"] == 64 and written["overall"]["successes"] == 24


def test_tallies_in_any_arrival_order_give_the_same_summary(run_dir: Path) -> None:
    records = read_episodes(run_dir / "episodes.jsonl")
    planned = {"lqr": 24, "random": 40}
    statuses = {"lqr": "completed", "random": "completed"}
    summaries = []
    for order in (records, records[::-1]):
        tallies = {name: OutcomeTally(n) for name, n in planned.items()}
        for r in order:
            tallies[r.job].add(r.episode, r.outcome, None)
        summaries.append(summarize_tallies("tally", tallies, planned, statuses, seed=7).model_dump())
    stripped = [EpisodeOutcome(r.job, r.episode, r.outcome) for r in records]
    expected = summarize_run("tally", stripped, planned, statuses, seed=7).model_dump()
    assert summaries[0] == summaries[1] == expected


def test_a_tally_grows_past_its_planned_count_and_counts_missing_returns() -> None:
    tally = OutcomeTally(planned=2)
    tally.add(0, {"success": None, "return": None, "length": 3})
    tally.add(40, {"success": True, "return": 2.5, "length": None, "terminated": True})
    assert (0 in tally, 1 in tally, 40 in tally, 41 in tally, -1 in tally) == (
        True,
        False,
        True,
        False,
        False,
    )
    assert len(tally) == 2 and tally.finished() == {0, 40}
    assert np.isnan(tally.returns()[0]) and tally.returns()[1] == 2.5
    assert (tally.successes, tally.length_total, tally.terminated, tally.any_success_value) == (1, 3, 1, True)
    summary = summarize_tallies("r", {"j": tally}, {"j": 41}, {}, seed=0).jobs["j"]
    assert (summary.invalid_returns, summary.return_mean, summary.length_mean) == (1, 2.5, 1.5)
    with pytest.raises(ValueError, match="episode index must be >= 0, got -3"):
        tally.add(-3, {})
