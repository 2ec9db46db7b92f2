"""``trialrun run --stop-when``: batches in planned order, a sequential test
against a baseline run after each, a stop that is a prefix of the full run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.errors import InputError
from trialrun.execution.runner import run_evaluation
from trialrun.execution.stopping import StopRule, batch_boundaries
from trialrun.runfiles import read_episodes, read_manifest, read_summary
from trialrun.sequential import sequential_test

EPISODES = 50


def _doc(policy: str, *, num_envs: int = 1, episodes: int = EPISODES, seed: int = 3) -> dict[str, Any]:
    return {
        "name": "cartpole-stop",
        "seed": seed,
        "jobs": [
            {
                "name": "cartpole",
                "env": "CartPole-v1",
                "policy": policy,
                "episodes": episodes,
                "num_envs": num_envs,
                "max_steps": 80,
                "success": "survived",
            }
        ],
    }


def _run(run_dir: Path, policy: str, **kwargs: Any) -> Any:
    stop = kwargs.pop("stop", None)
    resume = kwargs.pop("resume", False)
    return run_evaluation(parse_run_config(_doc(policy, **kwargs)), run_dir, stop=stop, resume=resume)


def _records(run_dir: Path, drop: tuple[str, ...] = ("started_at", "ended_at")) -> dict[int, dict[str, Any]]:
    """Records by episode without the wall-clock parts (timestamps, ``extra.timing``) and ``drop``."""
    out = {}
    for r in read_episodes(run_dir / "episodes.jsonl"):
        record = {k: v for k, v in r.model_dump().items() if k not in drop}
        record["extra"] = {k: v for k, v in record.get("extra", {}).items() if k != "timing"}
        out[r.episode] = record
    return out


def _values(run_dir: Path, metric: str) -> np.ndarray:
    recs = sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)
    return np.array([float(r.outcome[metric]) for r in recs])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A baseline (an LQR controller that survives) and a fixed-n candidate (random)."""
    root = tmp_path_factory.mktemp("stopping")
    _run(root / "baseline", "cartpole-balance")
    _run(root / "fixed", "random")
    _run(root / "fixed4", "random", num_envs=4)
    return {"root": root, "baseline": root / "baseline", "fixed": root / "fixed", "fixed4": root / "fixed4"}


def test_batch_boundaries_follow_the_plan() -> None:
    assert batch_boundaries(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert batch_boundaries(8, 8) == [(0, 8)]


@pytest.mark.parametrize("batch", [7, 10])
def test_a_stopped_run_resumed_to_the_full_count_equals_the_fixed_n_run(
    runs: dict[str, Path], tmp_path: Path, batch: int
) -> None:
    a, b = _values(runs["baseline"], "success"), _values(runs["fixed"], "success")
    expected = sequential_test(a, b, kind="binary", alpha=0.05, batch=batch)
    assert expected.decision == "B worse" and expected.stopped_at < EPISODES  # the premise of the test
    assert expected.stopped_at % batch == 0  # a batch boundary

    cand = tmp_path / "cand"
    result = _run(cand, "random", stop=StopRule(when="worse", baseline=runs["baseline"], batch=batch))
    assert result.statuses == {"cartpole": "completed"} and result.exit_code == 0
    stopped = read_manifest(cand).jobs["cartpole"]
    assert stopped.status == "completed" and stopped.completed == expected.stopped_at
    early = stopped.stopped_early
    assert early is not None
    assert (early.decision, early.at_episode, early.planned, early.saved, early.metric) == (
        "worse",
        expected.stopped_at,
        EPISODES,
        EPISODES - expected.stopped_at,
        "success",
    )
    assert early.e_value == pytest.approx(expected.e_value)
    assert early.e_value >= 1 / 0.05
    assert result.stopped["cartpole"] == early
    summary = read_summary(cand).jobs["cartpole"]
    assert (summary.status, summary.episodes, summary.planned) == ("completed", expected.stopped_at, EPISODES)
    # The stopped run is exactly the prefix of the fixed-n run (num_envs 1: env_index 0 everywhere).
    full = _records(runs["fixed"])
    assert _records(cand) == {k: v for k, v in full.items() if k < expected.stopped_at}

    # Resuming with the same rule stops again at the same look, running nothing.
    again = _run(
        cand, "random", stop=StopRule(when="worse", baseline=runs["baseline"], batch=batch), resume=True
    )
    assert again.stopped["cartpole"].at_episode == expected.stopped_at
    assert len(_records(cand)) == expected.stopped_at

    # Resuming without --stop-when runs the rest: the fixed-n run, apart from timestamps.
    rest = _run(cand, "random", resume=True)
    assert rest.stopped == {} and read_manifest(cand).jobs["cartpole"].stopped_early is None
    assert read_summary(cand).jobs["cartpole"].episodes == EPISODES
    assert _records(cand) == full


def test_batches_with_several_envs_give_the_fixed_n_outcomes(runs: dict[str, Path], tmp_path: Path) -> None:
    """With num_envs 4 the sub-env a slot ran in (env_index) depends on which
    slots shared a batch; everything else is the fixed-n run's."""
    a, b = _values(runs["baseline"], "success"), _values(runs["fixed4"], "success")
    expected = sequential_test(a, b, batch=10)  # default batch: max(num_envs, 10)
    cand = tmp_path / "cand"
    _run(cand, "random", num_envs=4, stop=StopRule(when="decided", baseline=runs["baseline"]))
    early = read_manifest(cand).jobs["cartpole"].stopped_early
    assert early is not None and (early.at_episode, early.batch) == (expected.stopped_at, 10)
    _run(cand, "random", num_envs=4, resume=True)
    drop = ("started_at", "ended_at", "env_index")
    assert _records(cand, drop) == _records(runs["fixed4"], drop)


def test_a_continuous_metric_fixes_its_bound_at_the_first_look(runs: dict[str, Path], tmp_path: Path) -> None:
    a, b = _values(runs["baseline"], "return"), _values(runs["fixed"], "return")
    bound = float(np.max(np.abs(b[:10] - a[:10])))
    expected = sequential_test(a, b, kind="continuous", batch=10, bound=bound)
    assert expected.decision == "B worse" and expected.stopped_at < EPISODES
    cand = tmp_path / "cand"
    _run(cand, "random", stop=StopRule(when="worse", baseline=runs["baseline"], metric="return"))
    early = read_manifest(cand).jobs["cartpole"].stopped_early
    assert early is not None
    assert (early.metric, early.at_episode, early.bound) == ("return", expected.stopped_at, bound)
    assert early.e_value == pytest.approx(expected.e_value)


def test_no_stop_in_an_unwanted_direction(runs: dict[str, Path], tmp_path: Path) -> None:
    """--stop-when better on a worse candidate runs every planned episode."""
    result = _run(tmp_path / "cand", "random", stop=StopRule(when="better", baseline=runs["baseline"]))
    assert result.stopped == {} and result.summary.jobs["cartpole"].episodes == EPISODES
    assert _records(tmp_path / "cand") == _records(runs["fixed"])


def test_the_same_policy_stops_as_equivalent_within_the_margin(runs: dict[str, Path], tmp_path: Path) -> None:
    """Every pair is the same (the baseline's policy again): each one-sided equivalence wealth
    grows by 1 + 0.5 * 0.2 per pair from the second on, so log E = 32 log 1.1 >= log 20 at pair 33;
    the look after it is at 40 (batches of 10)."""
    cand = tmp_path / "cand"
    rule = StopRule(when="equivalent", baseline=runs["baseline"], batch=10, margin=0.2)
    result = _run(cand, "cartpole-balance", stop=rule)
    early = result.stopped["cartpole"]
    assert (early.decision, early.at_episode, early.saved, early.margin, early.final_look) == (
        "equivalent",
        40,
        10,
        0.2,
        False,
    )
    assert early.e_value == 1.0  # the difference test saw no discordant pair
    assert _records(cand) == {k: v for k, v in _records(runs["baseline"]).items() if k < 40}
    # 'worse' does not stop on equivalence; 'decided' does
    assert (
        _run(
            tmp_path / "w",
            "cartpole-balance",
            stop=StopRule(when="worse", baseline=runs["baseline"], batch=10, margin=0.2),
        ).stopped
        == {}
    )
    decided = StopRule(when="decided", baseline=runs["baseline"], batch=10, margin=0.2)
    assert _run(tmp_path / "d", "cartpole-balance", stop=decided).stopped["cartpole"].decision == "equivalent"
    with pytest.raises(InputError, match="--stop-when equivalent needs --margin"):
        _run(tmp_path / "x", "random", stop=StopRule(when="equivalent", baseline=runs["baseline"]))


def test_a_baseline_of_another_config_is_refused_before_anything_runs(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"jobs\[cartpole\]\.episodes differs: 50 \(A\) vs 40 \(B\)"):
        _run(tmp_path / "cand", "random", episodes=40, stop=StopRule(when="worse", baseline=runs["baseline"]))
    assert not (tmp_path / "cand" / "episodes.jsonl").exists()
    with pytest.raises(InputError, match="no such run directory"):
        _run(tmp_path / "cand", "random", stop=StopRule(when="worse", baseline=tmp_path / "missing"))


# --------------------------------------------------------------------------- command line


def _trialrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trialrun.cli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )


def test_cli_stops_and_resumes(runs: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(_doc("random")))
    cand = tmp_path / "cand"
    proc = _trialrun(
        "run", str(cfg), "--run-dir", str(cand), "--no-report",
        "--stop-when", "worse", "--baseline", str(runs["baseline"]), "--batch", "10",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    early = read_manifest(cand).jobs["cartpole"].stopped_early
    assert early is not None and early.at_episode < EPISODES
    assert "stopped early: worse than the baseline" in " ".join(proc.stdout.split())
    proc = _trialrun("run", "--resume", str(cand), "--no-report", "-q")
    assert proc.returncode == 0, proc.stderr
    assert _records(cand) == _records(runs["fixed"])


def test_cli_refuses_a_baseline_of_another_config(runs: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(_doc("random", seed=4)))
    proc = _trialrun(
        "run", str(cfg), "--run-dir", str(tmp_path / "cand"), "--no-report",
        "--stop-when", "worse", "--baseline", str(runs["baseline"]),
    )  # fmt: skip
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "the run seed differs: 3 (A) vs 4 (B)" in message and "Traceback" not in proc.stderr
    assert not (tmp_path / "cand").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stop-when", "worse"], "--stop-when worse needs --baseline RUN_DIR"),
        (["--baseline", "runs/x"], "--baseline only applies with --stop-when"),
        (
            ["--stop-when", "sooner", "--baseline", "runs/x"],
            "--stop-when must be one of better, worse, equivalent, decided, got 'sooner'",
        ),
        (
            ["--stop-when", "equivalent", "--baseline", "runs/x"],
            "--stop-when equivalent needs --margin M (the metric's units; rate points for success)",
        ),
        (["--margin", "0.1"], "--margin only applies with --stop-when better|worse|equivalent|decided"),
    ],
)
def test_cli_refuses_incomplete_stop_options(tmp_path: Path, args: list[str], message: str) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(_doc("random")))
    proc = _trialrun("run", str(cfg), "--run-dir", str(tmp_path / "cand"), *args)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert not (tmp_path / "cand").exists()
