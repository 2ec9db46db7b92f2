"""Entry points: run directories (one and several jobs), records from elsewhere
with a factors YAML, the JSON schema and the figures on disk, every bad-input
message, the CLI table."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from rich.console import Console

from helpers import subprocess_env
from trialrun.analysis import (
    SensitivityResult,
    analyze,
    analyze_records,
    analyze_run,
    format_analysis_table,
    load_factors_yaml,
    load_run_analyses,
    load_sensitivity,
    make_sweep,
)
from trialrun.errors import InputError, TrialrunError
from trialrun.runfiles.schema import EpisodeRecord

FACTOR_KEYS = {
    "name",
    "kind",
    "p_value",
    "p_adjusted",
    "significant",
    "effect",
    "effect_ci",
    "rank",
    "bins",
    "partial_dependence",
    "chi2_p",
    "importance",
    "importance_null_p",
}
BIN_KEYS = {"low", "high", "level", "n", "successes", "rate", "ci_low", "ci_high"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(n=500, seed=0).write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def run_result(run_dir: Path) -> SensitivityResult:
    results = analyze_run(run_dir)
    assert list(results) == ["synthetic"]
    return results["synthetic"]


def test_run_outputs_and_json_schema(run_dir: Path, run_result: SensitivityResult) -> None:
    out = run_dir / "analysis"
    assert sorted(p.name for p in out.iterdir()) == ["interaction.png", "sensitivity.json", "sensitivity.png"]
    data = json.loads((out / "sensitivity.json").read_text())
    assert SensitivityResult.model_validate(data) == run_result
    assert {"outcome", "n", "base_rate", "alpha", "notes", "factors", "interactions"} <= set(data)
    assert (data["outcome"], data["n"], data["alpha"], data["job"]) == ("success", 500, 0.05, "synthetic")
    assert data["base_rate"] == pytest.approx(
        sum(r.outcome["success"] for r in make_sweep(n=500, seed=0).records) / 500
    )
    for f in data["factors"]:
        assert set(f) >= FACTOR_KEYS
        assert all(set(b) == BIN_KEYS for b in f["bins"])
        assert set(f["partial_dependence"]) == {"x", "y", "low", "high"}
        assert len(f["effect_ci"]) == 2
    assert sorted(f["rank"] for f in data["factors"]) == list(range(1, 7))
    assert {"factors", "df", "statistic", "p_value", "p_adjusted", "significant"} == set(
        data["interactions"][0]
    )
    assert len(data["interactions"]) == 15
    assert data["model"]["family"] == "binomial" and data["importance_info"]["n_null"] == 19
    img = mpimg.imread(out / "sensitivity.png")
    assert img.shape == (1287, 1716, 4)
    assert mpimg.imread(out / "interaction.png").shape == (550, 1375, 4)


def test_run_finds_planted_factors(run_result: SensitivityResult) -> None:
    assert set(run_result.significant_factors()) == {"mass", "friction", "object"}
    ranks = {f.name: f.rank for f in run_result.factors}
    assert {ranks["mass"], ranks["friction"], ranks["object"]} == {1, 2, 3}
    for name in ("mass", "friction", "object"):
        assert run_result.factor(name).importance_null_p == 0.05
    assert run_result.notes == []


def test_load_helpers(run_dir: Path, run_result: SensitivityResult) -> None:
    assert load_sensitivity(run_dir / "analysis") == run_result
    assert load_run_analyses(run_dir) == {"synthetic": run_result}
    with pytest.raises(InputError, match="no such analysis file"):
        load_sensitivity(run_dir / "nowhere")


def test_format_analysis_table(run_result: SensitivityResult) -> None:
    table = format_analysis_table(run_result)
    assert table.row_count == 6
    headers = [c.header for c in table.columns]
    assert headers == [
        "#",
        "factor",
        "kind",
        "p (LRT)",
        "p adj. (Holm)",
        "signif.",
        "effect on success rate [95% CI]",
        "chi² p (bins)",
        "GBT importance (null p)",
    ]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "continuous, log" in text and "top interaction:" in text
    first = next(line for line in text.splitlines() if line.startswith("│ 1 "))
    assert "yes" in first


def test_several_jobs_go_to_subfolders(tmp_path: Path) -> None:
    run = make_sweep(n=120, seed=1, job="a").write_run(
        tmp_path / "run", extra_jobs={"b": make_sweep(n=80, seed=2, job="b")}
    )
    results = analyze_run(run)
    assert sorted(results) == ["a", "b"]
    assert results["b"].n == 80 and results["b"].job == "b"
    assert (run / "analysis" / "a" / "sensitivity.json").is_file()
    assert (run / "analysis" / "b" / "sensitivity.png").is_file()
    assert not (run / "analysis" / "sensitivity.json").exists()
    only = analyze_run(run, job="b", out_dir=tmp_path / "elsewhere")
    assert list(only) == ["b"] and (tmp_path / "elsewhere" / "b" / "sensitivity.json").is_file()
    assert sorted(load_run_analyses(run)) == ["a", "b"]


def test_several_jobs_one_unusable_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = make_sweep(n=100, seed=1, job="a").write_run(
        tmp_path / "run", extra_jobs={"b": make_sweep(n=0, seed=2, job="b")}
    )
    with caplog.at_level(logging.WARNING):
        results = analyze_run(run)
    assert list(results) == ["a"]
    assert f"job 'b' not analysed: {run / 'episodes.jsonl'}: no episodes of job 'b' to analyse" in caplog.text
    with pytest.raises(InputError, match="no episodes of job 'b' to analyse"):
        analyze_run(run, job="b")


def test_run_errors(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(InputError) as exc:
        analyze_run(run_dir, job="nope")
    assert str(exc.value) == f"{run_dir / 'manifest.json'}: no job 'nope'; jobs in this run: synthetic"
    assert isinstance(exc.value, TrialrunError)
    with pytest.raises(InputError, match=f"^{tmp_path / 'missing'}: no such run directory$"):
        analyze_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"manifest\.json: no such file"):
        analyze_run(tmp_path / "empty")
    with pytest.raises(InputError) as exc:
        analyze_run(run_dir, outcome="win")
    assert str(exc.value) == (
        f"{run_dir / 'episodes.jsonl'}: outcome 'win' is not in the records of job 'synthetic'; "
        "available outcomes: length, return, success, success_at_end, terminated, "
        "time_to_success, truncated"
    )
    with pytest.raises(InputError, match="alpha must be between 0 and 1"):
        analyze_run(run_dir, alpha=1.5)


def test_job_without_factors(tmp_path: Path) -> None:
    sweep = make_sweep(n=40, seed=0)
    sweep.specs = []
    run = sweep.write_run(tmp_path / "run")
    with pytest.raises(InputError) as exc:
        analyze_run(run)
    assert str(exc.value) == (
        f"{run / 'manifest.json'}: no job declares factors, so there is nothing to analyse (jobs: synthetic)"
    )
    with pytest.raises(InputError, match="job 'synthetic' has no factors to analyse"):
        analyze_run(run, job="synthetic")


def test_torn_and_bad_episode_lines(tmp_path: Path) -> None:
    run = make_sweep(n=60, seed=0).write_run(tmp_path / "run")
    with open(run / "episodes.jsonl", "a") as f:
        f.write('{"run": "synthetic", "job": "synth')  # torn last line: ignored
    assert analyze_run(run)["synthetic"].n == 60
    with open(run / "episodes.jsonl", "a") as f:
        f.write('etic"}\n')
    with pytest.raises(InputError, match=r"episodes.jsonl:61: field 'episode': Field required"):
        analyze_run(run)


# --------------------------------------------------------------------------- records + YAML


def test_analyze_records_defaults(tmp_path: Path) -> None:
    episodes, factors = make_sweep(n=300, seed=5).write(tmp_path)
    res = analyze_records(episodes, factors, outcome="success")
    assert res.source == str(episodes) and res.job == "synthetic"
    assert (tmp_path / "analysis" / "sensitivity.json").is_file()
    assert set(res.significant_factors()) == {"mass", "friction", "object"}


def test_analyze_records_several_jobs(tmp_path: Path) -> None:
    run = make_sweep(n=40, seed=1, job="a").write_run(tmp_path, extra_jobs={"b": make_sweep(n=40, seed=2)})
    factors = tmp_path / "factors.yaml"
    factors.write_text(make_sweep(n=1).factors_yaml())
    with pytest.raises(InputError) as exc:
        analyze_records(run / "episodes.jsonl", factors)
    assert str(exc.value) == (
        f"{run / 'episodes.jsonl'}: holds episodes of several jobs (a, b); choose one with --job"
    )
    with pytest.raises(InputError, match=r"no episodes of job 'c'; jobs in the file: a, b"):
        analyze_records(run / "episodes.jsonl", factors, job="c")
    res = analyze_records(run / "episodes.jsonl", factors, job="b", out_dir=tmp_path / "o")
    assert (res.n, res.job) == (40, "b")


YAML_CASES = [
    (
        "factors:\n  m: {type: continuous, range: [0, 1], colour: red}\n",
        "field 'factors.m.colour': unknown key; allowed keys for a continuous factor: type, range, "
        "scale, nominal, units",
    ),
    (
        "factors:\n  m: {range: [0, 1]}\n",
        "field 'factors.m': missing 'type'; allowed: continuous, categorical",
    ),
    (
        "factors:\n  m: {type: ordinal, range: [0, 1]}\n",
        "field 'factors.m.type': 'ordinal' is not allowed; allowed: continuous, categorical",
    ),
    ("factors:\n  m: {type: continuous}\n", "field 'factors.m.range': required for a continuous factor"),
    (
        "factors:\n  m: {type: continuous, range: [5, 1]}\n",
        "field 'factors.m': range must be [low, high] with low < high, got [5.0, 1.0]",
    ),
    (
        "factors:\n  m: {type: continuous, range: [0, 10], scale: log}\n",
        "field 'factors.m': scale 'log' needs a range above 0, got [0.0, 10.0]",
    ),
    (
        "factors:\n  m: {type: continuous, range: [1, 10], scale: cubic}\n",
        "field 'factors.m.scale': Input should be 'linear' or 'log'",
    ),
    (
        "factors:\n  c: {type: categorical, choices: [a, b], range: [0, 1]}\n",
        "field 'factors.c.range': unknown key; allowed keys for a categorical factor: type, choices, "
        "nominal, units",
    ),
    (
        "factors:\n  c: {type: categorical, choices: [a, a]}\n",
        "field 'factors.c': choices must be distinct, got ['a', 'a']",
    ),
    ("factors: {}\n", "field 'factors': Dictionary should have at least 1 item after validation, not 0"),
    (
        "factor:\n  m: {type: continuous, range: [0, 1]}\n",
        "field 'factors': required; field 'factor': unknown key; allowed: factors",
    ),
    (
        "- a\n- b\n",
        "expected a mapping with a 'factors' key, e.g. 'factors: {light: {type: continuous, range: "
        "[0, 2000]}}'",
    ),
    (
        "factors:\n  m: {type: continuous\n",
        "invalid YAML at line 3, column 1: did not find expected ',' or '}'",
    ),
]


@pytest.mark.parametrize(("text", "message"), YAML_CASES)
def test_factors_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "factors.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_factors_yaml(path)
    assert str(exc.value) == f"{path}: {message}"


def test_factors_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.yaml: no such factors file$"):
        load_factors_yaml(tmp_path / "nope.yaml")


def test_factors_yaml_example_from_the_docs(tmp_path: Path) -> None:
    path = tmp_path / "factors.yaml"
    path.write_text(
        "factors:\n"
        "  light_intensity: {type: continuous, range: [0.0, 2000.0]}   # optional: scale: log\n"
        "  pick_up_object:  {type: categorical, choices: [cube, can]}\n"
    )
    specs = load_factors_yaml(path)
    assert [(s.name, s.kind) for s in specs] == [
        ("light_intensity", "continuous"),
        ("pick_up_object", "categorical"),
    ]


# --------------------------------------------------------------------------- bad and thin data


def _with_outcome(records: list[EpisodeRecord], value: bool) -> list[EpisodeRecord]:
    return [r.model_copy(update={"outcome": {**r.outcome, "success": value}}) for r in records]


@pytest.mark.parametrize("value", [True, False])
def test_all_successes_or_failures_give_reduced_analysis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: bool
) -> None:
    sweep = make_sweep(n=100, seed=0)
    with caplog.at_level(logging.WARNING):
        res = analyze(_with_outcome(sweep.records, value), sweep.specs, out_dir=tmp_path)
    what = "every episode succeeded" if value else "every episode failed"
    msg = f"{what}: nothing to explain, so no model is fitted; only binned rates are shown"
    assert res.notes == [msg] and msg in caplog.text
    assert res.base_rate == float(value) and res.model is None and res.interactions == []
    for f in res.factors:
        assert (f.p_value, f.significant, f.chi2_p, f.status) == (None, False, None, "not_modelled")
        assert f.bins and all(b.rate in (None, float(value)) for b in f.bins)
    assert (tmp_path / "sensitivity.png").is_file()
    assert not (tmp_path / "interaction.png").exists()


def test_stale_interaction_png_is_removed(tmp_path: Path) -> None:
    (tmp_path / "interaction.png").write_bytes(b"old")
    (tmp_path / "posterior.png").write_bytes(b"old")
    analyze(*make_sweep(n=20).as_inputs(), out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensitivity.json", "sensitivity.png"]


def test_few_episodes_give_reduced_analysis(tmp_path: Path) -> None:
    res = analyze(*make_sweep(n=25).as_inputs(), out_dir=tmp_path)
    assert res.notes == [
        "only 25 usable episodes (fewer than 30): no model is fitted; only the binned rates are shown"
    ]
    assert all(f.p_value is None and f.chi2_p is not None for f in res.factors)
    assert sorted(f.rank for f in res.factors) == list(range(1, 7))


def test_length_outcome_among_successes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sweep = make_sweep(n=300, seed=0)
    with caplog.at_level(logging.WARNING):
        res = analyze(*sweep.as_inputs(), "length", out_dir=tmp_path, importance=False)
    successes = sum(bool(r.outcome["success"]) for r in sweep.records)
    assert res.n == successes and res.n_excluded == 300 - successes
    assert res.notes[0].startswith("outcome 'length' is capped at the time limit for failures")
    assert "among successful episodes only" in caplog.text
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    assert data["outcome_kind"] == "continuous" and data["notes"] == res.notes
    assert res.factor("mass").significant  # time to success grows with mass


def test_separation_is_reported_in_json(tmp_path: Path) -> None:
    sweep = make_sweep(n=200, seed=0)
    recs = [
        r.model_copy(update={"outcome": {**r.outcome, "success": r.factors["mass"] < 1.0}})
        for r in sweep.records
    ]
    res = analyze(recs, sweep.specs, out_dir=tmp_path, importance=False)
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    assert data["model"]["penalized"] is True and data["model"]["ridge"] == 1.0
    assert any(n.startswith("the logistic model separates the data") for n in data["notes"])
    assert res.significant_factors() == ["mass"]


def test_constant_factor_is_reported_not_modelled() -> None:
    sweep = make_sweep(n=200, seed=1)
    recs = [r.model_copy(update={"factors": {**r.factors, "background": "plain"}}) for r in sweep.records]
    res = analyze(recs, sweep.specs, importance=False)
    bg = res.factor("background")
    assert (bg.status, bg.p_value, bg.note, bg.rank) == (
        "constant",
        None,
        "constant in the records ('plain')",
        6,
    )
    assert [b.n for b in bg.bins] == [200, 0]
    assert res.notes == [
        "factor 'background' is constant in the records (always 'plain'); it cannot be analysed "
        "and is left out of the model",
        "only 85 events for 18 spline parameters: splines reduced to 3 degrees of freedom per "
        "continuous factor",
    ]


def test_reads_run_files_only() -> None:
    """The analysis must not pull in the simulator side (design section 6)."""
    import subprocess
    import sys

    code = (
        "import sys, trialrun.analysis; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'mujoco', "
        "'torch', 'sbi') or m.split('.')[:2] in (['trialrun', 'rollout'], ['trialrun', 'envs'], "
        "['trialrun', 'policies'], ['trialrun', 'execution'])); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_records_without_run_or_timestamps_are_analysed(tmp_path: Path) -> None:
    episodes, factors = make_sweep(n=200, seed=1).write(tmp_path)
    lines = []
    for line in episodes.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for key in ("run", "started_at", "ended_at"):
            del row[key]
        lines.append(json.dumps(row) + "\n")
    episodes.write_text("".join(lines), encoding="utf-8")
    assert analyze_records(episodes, factors, outcome="success").n == 200


def test_success_that_was_never_reported_is_refused(tmp_path: Path) -> None:
    from trialrun.runfiles import write_json_atomic
    from trialrun.stats import summarize_run

    sweep = make_sweep(n=120, seed=2, job="pendulum")
    # An env that never reports success: every episode is recorded as a failure.
    sweep.records = [r.model_copy(update={"outcome": {**r.outcome, "success": False}}) for r in sweep.records]
    run = sweep.write_run(tmp_path / "run")
    summary = summarize_run(
        "synthetic", sweep.records, {"pendulum": 120}, {}, 0, success_seen={"pendulum": False}
    )
    write_json_atomic(run / "summary.json", summary.model_dump(mode="json", by_alias=True))
    with pytest.raises(InputError, match=r"job 'pendulum' never reported success.*--outcome return"):
        analyze_run(run, outcome="success")
    assert analyze_run(run, outcome="return")["pendulum"].outcome == "return"


def test_records_without_success_suggest_another_outcome(tmp_path: Path) -> None:
    sweep = make_sweep(n=50, seed=2)
    records = [r.model_copy(update={"outcome": {"return": r.outcome["return"]}}) for r in sweep.records]
    with pytest.raises(InputError, match="success was never reported, try --outcome return"):
        analyze(records, sweep.specs, "success", importance=False)


def test_trialrun_analyze_prints_the_paths_it_wrote(tmp_path: Path) -> None:
    # Before, the command printed the table only: where sensitivity.png went was a guess.
    run = make_sweep(n=120, seed=1, job="a").write_run(
        tmp_path / "run", extra_jobs={"b": make_sweep(n=80, seed=2, job="b")}
    )
    (run / "analysis" / "b").mkdir(parents=True)
    (run / "analysis" / "b" / "notes.txt").write_text("not the analysis'")

    def wrote(*args: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "trialrun.cli", "analyze", *args],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if line.startswith("wrote ")]

    analysis = run / "analysis"
    assert wrote(str(run)) == [
        f"wrote {analysis / 'a' / 'sensitivity.json'}",
        f"wrote {analysis / 'a' / 'sensitivity.png'}",
        f"wrote {analysis / 'a' / 'interaction.png'}",
        f"wrote {analysis / 'b' / 'sensitivity.json'}",
        f"wrote {analysis / 'b' / 'sensitivity.png'}",
        f"wrote {analysis / 'b' / 'interaction.png'}",
    ]
    # Only what this command wrote: job b's files from before are not listed again.
    assert wrote(str(run), "--job", "a") == [
        f"wrote {analysis / 'a' / 'sensitivity.json'}",
        f"wrote {analysis / 'a' / 'sensitivity.png'}",
        f"wrote {analysis / 'a' / 'interaction.png'}",
    ]
    out = tmp_path / "elsewhere"
    assert wrote(str(run), "--job", "b", "--out", str(out))[:2] == [
        f"wrote {out / 'b' / 'sensitivity.json'}",
        f"wrote {out / 'b' / 'sensitivity.png'}",
    ]
