from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from helpers import subprocess_env
from trialrun.compare import (
    ComparisonRefused,
    compare_runs,
    default_out_dir,
    factor_bins,
    mcnemar_test,
    newcombe_paired_interval,
    read_comparison,
    render_compare_html,
    write_comparison,
)
from trialrun.config import parse_run_config
from trialrun.errors import InputError
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles.schema import FactorSpec
from trialrun.stats import wilson_interval

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]


def _doc(policy: Any, *, name: str = "cmp", seed: int = 3, episodes: int = 60, **job: Any) -> dict[str, Any]:
    base = {
        "name": "pole",
        "env": "CartPole-v1",
        "policy": policy,
        "episodes": episodes,
        "num_envs": 4,
        "max_steps": 150,
        "success": "survived",
        "factors": {
            "length": {
                "variation": {"type": "attr", "name": "length"},
                "sampler": {"type": "uniform", "low": 0.2, "high": 1.5},
            }
        },
    }
    base.update(job)
    return {"name": name, "seed": seed, "jobs": [base]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    docs = {
        "lqr": _doc("cartpole-balance"),
        "lqr2": _doc("cartpole-balance", name="again"),
        "random": _doc("random"),
        # The same stochastic policy with different (equivalent) random streams: no true difference.
        "noisy1": _doc({"type": "test_compare:NoisyBalance", "kwargs": {"stream": 1}}),
        "noisy2": _doc({"type": "test_compare:NoisyBalance", "kwargs": {"stream": 2}}),
        "other_seed": _doc("random", seed=4),
        "other_env": _doc("random", max_steps=100),
    }
    for key, doc in docs.items():
        run_evaluation(parse_run_config(doc), root / key)
    return {key: root / key for key in docs}


class NoisyBalance:
    """The LQR controller with 60% random actions from its own random stream."""

    def __init__(self, context: Any, stream: int, noise: float = 0.6) -> None:
        from trialrun.policies.scripted import CartPoleBalancePolicy

        self.inner = CartPoleBalancePolicy(context)
        self.rngs = [np.random.default_rng() for _ in range(context.num_envs)]
        self.stream = stream
        self.noise = noise

    def act(self, obs: Any) -> np.ndarray:
        actions = self.inner.act(obs)
        for i, rng in enumerate(self.rngs[: len(actions)]):
            if rng.random() < self.noise:
                actions[i] = rng.integers(2)
        return actions

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        for i in np.flatnonzero(mask):
            self.rngs[i] = np.random.default_rng([self.stream, seeds[i]])


def test_newcombe_interval_matches_the_published_example() -> None:
    # Fagerland, Lydersen & Laake (2017), Cavo et al. data: estimate -0.0621, 95% CI (-0.1186, -0.0046).
    lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)
    assert newcombe_paired_interval(10, 0, 0, 0) == pytest.approx((-0.2775, 0.2775), abs=1e-4)
    p, method = mcnemar_test(only_a=10, only_b=2)
    assert method == "exact-binomial" and p == pytest.approx(0.03857, abs=1e-5)
    assert mcnemar_test(30, 10)[1] == "chi2-continuity-corrected"
    assert mcnemar_test(0, 0) == (1.0, "exact-binomial")


def test_factor_bins_follow_the_spec_not_the_data() -> None:
    spec = FactorSpec(name="m", kind="continuous", low=1.0, high=100.0, scale="log")
    bins = factor_bins(spec, [1.0, 5.0, 10.0, 99.0, 100.0], 2)
    assert [label for label, _, _ in bins] == ["[1, 10)", "[10, 100]"]
    assert [idx for _, idx, _ in bins] == [[0, 1], [2, 3, 4]]
    assert [label for label, _, _ in factor_bins(spec, [1.0, 5.0, 10.0, 99.0, 100.0])] == [
        "[1, 4.64)",
        "[4.64, 21.5)",
        "[21.5, 100]",
    ]  # by default, the shared rule: 3 bins at least
    cat = FactorSpec(name="t", kind="categorical", values=["a", "b", "c"])
    assert [(label, idx) for label, idx, _ in factor_bins(cat, ["b", "b", "a"], 4)] == [
        ("a", [2]),
        ("b", [0, 1]),
        ("c", []),
    ]


def test_a_big_difference_is_found_and_fails_the_gate(runs: dict[str, Path], tmp_path: Path) -> None:
    comparison = compare_runs(runs["lqr"], runs["random"], margin=0.02)
    job = comparison.jobs["pole"]
    assert job.pairs == 60 and job.only_in_a == job.only_in_b == 0
    assert job.success is not None and job.return_ is not None
    # One of the random policy's 60 episodes survives its 150 steps (its action stream, run seed 3).
    assert job.success.b_rate == 1 / 60 and job.success.a_rate > 0.6
    assert job.success.difference == pytest.approx(1 / 60 - job.success.a_rate)
    assert job.success.ci.high < -0.4 and job.success.mcnemar_p < 1e-6
    assert job.return_.difference < -50 and job.return_.ci.high < 0
    assert job.verdict == "B worse" and job.worse_beyond_margin and comparison.gate_failed
    assert comparison.failing_jobs == ["pole"]
    (factor,) = job.factors
    # 60 pairs: the shared rule (trialrun.binning.n_bins_for) gives 3 bins
    assert factor.factor == "length" and [b.label for b in factor.bins] == [
        "[0.2, 0.633)",
        "[0.633, 1.07)",
        "[1.07, 1.5]",
    ]
    assert sum(b.pairs for b in factor.bins) == 60
    assert job.return_.pairs == 60 and job.return_.left_out == 0
    json_path, html_path = write_comparison(comparison, tmp_path / "out")
    assert read_comparison(tmp_path / "out") == comparison
    assert json.loads(json_path.read_text())["jobs"]["pole"]["return"]["difference"] == job.return_.difference
    html = html_path.read_text()
    assert "Gate FAILED" in html and html.count("<svg") == 7
    # The report's rate bars: A and B (pooled, then per job, Wilson) and the job's paired B - A.
    assert html.count('<svg class="ibar"') == 4 and html.count('<svg class="ibar dbar"') == 1
    # Self-contained: nothing to fetch, nothing to run (and its CSP allows neither).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    assert "script-src &#39;none&#39;" in html and "default-src &#39;none&#39;" in html


def test_the_same_policy_twice_shows_no_difference(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["lqr"], runs["lqr2"])  # run names differ; configs do not
    job = comparison.jobs["pole"]
    assert job.success is not None and job.return_ is not None
    assert job.success.difference == 0.0 and job.success.only_a == job.success.only_b == 0
    assert job.success.mcnemar_p == 1.0 and job.return_.difference == 0.0
    assert job.verdict == "no clear difference" and not comparison.gate_failed


def test_equivalent_random_streams_do_not_false_alarm(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["noisy1"], runs["noisy2"], margin=0.02)
    job = comparison.jobs["pole"]
    assert job.success is not None
    assert job.success.only_a + job.success.only_b > 0  # the streams really differ
    assert job.success.ci.low < 0 < job.success.ci.high
    assert not comparison.gate_failed


def test_partial_runs_compare_only_shared_episodes(runs: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text((runs["random"] / "manifest.json").read_text())
    lines = (runs["random"] / "episodes.jsonl").read_text().splitlines(keepends=True)
    (partial / "episodes.jsonl").write_text("".join(lines[:25]))
    job = compare_runs(runs["lqr"], partial).jobs["pole"]
    assert (job.pairs, job.only_in_a, job.only_in_b) == (25, 35, 0)


def test_missing_returns_are_left_out_not_zero(runs: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "no-returns"
    partial.mkdir()
    (partial / "manifest.json").write_text((runs["random"] / "manifest.json").read_text())
    lines = []
    for k, line in enumerate((runs["random"] / "episodes.jsonl").read_text().splitlines()):
        rec = json.loads(line)
        if k < 10:
            del rec["outcome"]["return"]
        lines.append(json.dumps(rec) + "\n")
    (partial / "episodes.jsonl").write_text("".join(lines))
    full = compare_runs(runs["lqr"], runs["random"]).jobs["pole"].return_
    job = compare_runs(runs["lqr"], partial).jobs["pole"]
    assert full is not None and job.return_ is not None
    assert (job.return_.pairs, job.return_.left_out) == (50, 10)
    assert job.pairs == 60 and job.success is not None  # success still uses every pair
    a = {
        r["episode"]: r["outcome"]["return"]
        for r in map(json.loads, (runs["lqr"] / "episodes.jsonl").read_text().splitlines())
    }
    b = {r["episode"]: r["outcome"].get("return") for r in map(json.loads, lines)}
    kept = [(a[k], b[k]) for k in sorted(a) if b[k] is not None]
    assert job.return_.difference == pytest.approx(np.mean([y - x for x, y in kept]))
    assert job.return_.a_mean == pytest.approx(np.mean([x for x, _ in kept]))
    assert "10 pair(s) lacking a return in A or B left out" in render_compare_html(
        compare_runs(runs["lqr"], partial)
    )


def test_runs_with_different_episodes_are_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(ComparisonRefused, match=r"the run seed differs: 3 \(A\) vs 4 \(B\)"):
        compare_runs(runs["lqr"], runs["other_seed"])
    with pytest.raises(ComparisonRefused, match=r"jobs\[pole\].max_steps differs: 150 \(A\) vs 100 \(B\)"):
        compare_runs(runs["lqr"], runs["other_env"])
    with pytest.raises(InputError, match=r"run A has no job 'nope'; its jobs: pole"):
        compare_runs(runs["lqr"], runs["random"], job="nope")


def _trialrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRIALRUN, *args], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )


def test_cli_gate_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    worse = _trialrun(
        "compare", str(runs["lqr"]), str(runs["random"]), "--fail-if-worse", "--out", str(tmp_path / "w")
    )
    assert worse.returncode == 1, worse.stderr
    assert "gate failed" in worse.stderr and "pole: 60 shared completed episodes compared" in worse.stdout
    assert (tmp_path / "w" / "compare.html").is_file() and (tmp_path / "w" / "comparison.json").is_file()
    better = _trialrun(
        "compare", str(runs["random"]), str(runs["lqr"]), "--fail-if-worse", "--target-half-width", "0.01"
    )
    assert better.returncode == 0, better.stderr
    assert "gate passed" in better.stdout and "B better" in better.stdout
    assert "is wider than the target 0.010" in better.stdout
    assert (runs["lqr"] / "compare" / "vs-random" / "compare.html").is_file()  # the default --out
    no_gate = _trialrun("compare", str(runs["lqr"]), str(runs["random"]), "--out", str(tmp_path / "n"))
    assert no_gate.returncode == 0
    refused = _trialrun("compare", str(runs["lqr"]), str(runs["other_seed"]), "--fail-if-worse")
    assert (
        refused.returncode == 2
        and "the run seed differs" in refused.stderr
        and "Traceback" not in refused.stderr
    )
    missing = _trialrun("compare", str(runs["lqr"]), str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such run directory" in missing.stderr


def test_html_escapes_user_text(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["lqr"], runs["random"])
    evil = comparison.model_copy(
        update={"run_b": comparison.run_b.model_copy(update={"name": "<script>x</script>"})}
    )
    html = render_compare_html(evil)
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_plan_episodes_and_the_run_target(tmp_path: Path) -> None:
    proc = _trialrun("plan-episodes", "--rate", "0.8", "--half-width", "0.05")
    assert proc.returncode == 0 and proc.stdout.startswith("245 episodes give a 95% Wilson interval")
    lo, hi = wilson_interval(196, 245)
    lo1, hi1 = wilson_interval(round(0.8 * 244), 244)
    assert (hi - lo) / 2 <= 0.05 < (hi1 - lo1) / 2
    bad = _trialrun("plan-episodes", "--rate", "1.5", "--half-width", "0.05")
    assert bad.returncode == 2 and "rate must be in [0, 1]" in bad.stderr
    doc = {
        "name": "t",
        "seed": 0,
        "target_half_width": 0.2,
        "jobs": [
            {"name": "few", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 5},
            {"name": "many", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 40},
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    proc = _trialrun("run", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["jobs"]
    assert summary["few"]["meets_target"] is False and summary["many"]["meets_target"] is True
    assert summary["few"]["target_half_width"] == 0.2 and summary["few"]["half_width"] > 0.2
    assert "note: job 'few': success interval" in proc.stdout and "job 'many'" not in proc.stdout


def test_the_report_of_run_b_shows_its_comparisons(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from trialrun.report import build_report
    from trialrun.report.data import read_comparisons

    run_b = tmp_path / "b"
    shutil.copytree(runs["random"], run_b)
    write_comparison(compare_runs(runs["lqr"], run_b), default_out_dir(runs["lqr"], run_b))
    (view,) = read_comparisons(run_b)
    assert view.against == "cmp" and view.page == "compare/vs-lqr/compare.html"
    (row,) = view.rows
    assert row["job"] == "pole" and row["pairs"] == 60 and row["b_rate"] == 1 / 60
    assert row["verdict"] == "B worse" and row["worse"] is True
    html = build_report(run_b).read_text()
    assert 'href="../compare/vs-lqr/compare.html"' in html
    assert '<tr data-job="pole" class="sig">' in html and "B worse, beyond the margin" in html
    (run_b / "compare" / "vs-lqr" / "comparison.json").write_text("{not json")
    (broken,) = read_comparisons(run_b)
    assert broken.error is not None and broken.rows == []
    assert "could not read compare/vs-lqr/comparison.json" in build_report(run_b).read_text()


# --------------------------------------------------------------------------- metrics, Holm, sequential


@pytest.fixture(scope="module")
def no_rule_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Issue 16: CartPole, 40 episodes, 4 envs, LQR (A) vs random (B), no success rule."""
    root = tmp_path_factory.mktemp("norule")
    out = {}
    for key, policy in (("lqr", "cartpole-balance"), ("random", "random")):
        doc = {
            "name": f"norule-{key}",
            "seed": 5,
            "jobs": [{"name": "pole", "env": "CartPole-v1", "policy": policy, "episodes": 40, "num_envs": 4}],
        }
        run_evaluation(parse_run_config(doc), root / key)
        out[key] = root / key
    return out


def test_without_a_success_signal_the_gate_uses_return(no_rule_runs: dict[str, Path], tmp_path: Path) -> None:
    a, b = str(no_rule_runs["lqr"]), str(no_rule_runs["random"])
    proc = _trialrun("compare", a, b, "--fail-if-worse", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "metric: return: no success signal in either run" in proc.stdout
    assert "gate failed" in proc.stderr and "on return" in proc.stderr
    assert "paired t-test" in proc.stdout
    data = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert data["metric"] == "return" and "no success signal in either run" in data["metric_reason"]
    job = data["jobs"]["pole"]
    mc = job["metric_comparison"]
    assert mc["test"] == "paired t-test" and mc["difference"] < -100 and mc["ci"]["high"] < 0
    assert mc["p_value"] < 1e-6 and mc["p_adjusted"] == mc["p_value"]
    assert job["verdict"] == "B worse" and job["worse_beyond_margin"] and data["overall_verdict"] == "B worse"
    assert data["gate_failed"] and data["failing_jobs"] == ["pole"]
    refused = _trialrun(
        "compare", a, b, "--metric", "success", "--fail-if-worse", "--out", str(tmp_path / "s")
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "success is not reported" in refused.stderr and "--metric return" in refused.stderr
    html = (tmp_path / "o" / "compare.html").read_text()
    assert "paired t-test" in html and "no success signal in either run" in html


def test_a_success_rule_picks_success_and_terms_can_be_compared(runs: dict[str, Path]) -> None:
    comparison = compare_runs(runs["lqr"], runs["random"])
    assert comparison.metric == "success" and "success: survived" in (comparison.metric_reason or "")
    mc = comparison.jobs["pole"].metric_comparison
    assert mc is not None and mc.kind == "binary" and mc.test.startswith("mcnemar")
    length = compare_runs(runs["lqr"], runs["random"], metric="length", margin=5.0)
    lc = length.jobs["pole"].metric_comparison
    assert lc is not None and lc.kind == "continuous" and lc.difference < -5
    assert length.jobs["pole"].worse_beyond_margin and length.metric_reason == "asked for with --metric"
    with pytest.raises(InputError, match="no record has the outcome 'nope'"):
        compare_runs(runs["lqr"], runs["random"], metric="nope")
    with pytest.raises(InputError, match=r"\[0, 1\) for the binary metric 'success'"):
        compare_runs(runs["lqr"], runs["random"], margin=2.0)


def test_holm_across_jobs_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    from trialrun.compare.build import _adjust_across_jobs
    from trialrun.runfiles.comparison import JobComparison, MetricComparison
    from trialrun.runfiles.schema import Interval
    from trialrun.stats import holm_adjust

    ps = [0.01, 0.04, 0.03]
    expected = multipletests(ps, method="holm")[1].tolist()
    assert holm_adjust(ps) == expected
    jobs = {
        f"j{i}": JobComparison(
            job=f"j{i}",
            policy_a={},
            policy_b={},
            pairs=10,
            only_in_a=0,
            only_in_b=0,
            success=None,
            verdict="no clear difference",
            metric_comparison=MetricComparison(
                metric="return",
                kind="continuous",
                a_value=0.0,
                b_value=-1.0,
                difference=-1.0,
                ci=Interval(low=-2.0, high=-0.1, method="x"),
                p_value=p,
                test="paired t-test",
                p_worse=p / 2,
                pairs=10,
            ),
        )
        for i, p in enumerate(ps)
    }
    overall = _adjust_across_jobs(jobs, 0.95)
    got = [jc.metric_comparison.p_adjusted for jc in jobs.values() if jc.metric_comparison]
    assert got == expected  # exact
    worse = [jc.metric_comparison.p_worse_adjusted for jc in jobs.values() if jc.metric_comparison]
    assert worse == multipletests([p / 2 for p in ps], method="holm")[1].tolist()
    assert overall == "B worse"  # 0.03 < 0.05 for j0
    # the gate at 0.025 one-sided: only j0 (0.005 * 3 = 0.015)
    assert [n for n, jc in jobs.items() if jc.worse_beyond_margin] == ["j0"]


def test_compare_sequential_reports_where_it_would_stop(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = _trialrun(
        "compare",
        str(runs["lqr"]),
        str(runs["random"]),
        "--sequential",
        "--batch",
        "10",
        "--out",
        str(tmp_path / "q"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "sequential (success, looks every 10 pairs): pole: would have stopped at pair" in proc.stdout
    sq = json.loads((tmp_path / "q" / "comparison.json").read_text())["jobs"]["pole"]["sequential"]
    assert sq["decision"] == "B worse" and sq["planned"] == 60 and sq["stopped_at"] % 10 == 0
    assert sq["saved"] == 60 - sq["stopped_at"] > 0 and sq["batch"] == 10
    assert (
        sq["e_value"] >= 20
        and sq["checks"][-1] == sq["stopped_at"]
        and len(sq["e_path"]) == len(sq["checks"])
    )
    assert all(e < 20 for e in sq["e_path"][:-1])
    same = compare_runs(runs["lqr"], runs["lqr2"], sequential=True, batch=10).jobs["pole"].sequential
    assert same is not None and same.decision == "undecided" and same.saved == 0 and same.e_value == 1.0
    html = render_compare_html(compare_runs(runs["lqr"], runs["random"], sequential=True))
    assert 'id="sequential"' in html


def test_compare_sequential_decides_equivalence_within_the_margin(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The same policy twice: every pair agrees, so both one-sided equivalence e-values cross 20
    at pair 33 (log E = 32 log(1 + 0.5 * 0.2)); the look after it is pair 40 of 60."""
    proc = _trialrun(
        "compare", str(runs["lqr"]), str(runs["lqr2"]), "--sequential", "--batch", "10",
        "--margin", "0.2", "--out", str(tmp_path / "q"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "sequential (success, looks every 10 pairs): pole: would have stopped at pair 40 of 60: equivalent "
        "within +-0.2 (both one-sided e-values >= 20), saving 20 episodes per run"
    ) in " ".join(proc.stdout.split())
    sq = json.loads((tmp_path / "q" / "comparison.json").read_text())["jobs"]["pole"]["sequential"]
    assert (sq["decision"], sq["stopped_at"], sq["saved"], sq["margin"]) == ("equivalent", 40, 20, 0.2)
    assert sq["equivalence_e_value"] == pytest.approx(1.1**39)
    # margin 0: no equivalence decision, the pairs run out undecided
    same = compare_runs(runs["lqr"], runs["lqr2"], sequential=True, margin=0.0).jobs["pole"].sequential
    assert same is not None and same.decision == "undecided" and same.margin is None
    html = (tmp_path / "q" / "compare.html").read_text()
    assert 'data-decision="equivalent">equivalent within ±0.2</td>' in html
