"""``trialrun import arena|csv|jsonl``: records made elsewhere -> a run directory.

The Arena fixtures follow Isaac Lab Arena's writers: shape (a) is the
``episode_summary.jsonl`` row of ``isaaclab_arena/evaluation/episode_writer.py``
(``record``/``job_name``/``episode_idx``/``arena_env_args``/``variation_draws``/
``outcomes``, after a ``"record": "meta"`` header); shape (b) is the
``episode_results*.jsonl`` row of ``isaaclab_arena/recording/`` (``job_name``
stamped by ``EpisodeRecorderManager``, the core term's ``env_id``,
``episode_in_env``, ``seed``, ``success``, ``episode_length``,
``language_instruction``, ``timestamp``, and the variation term's
``variations``).
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import subprocess_env
from trialrun.analysis import analyze_records, analyze_run
from trialrun.analysis.models import SensitivityResult
from trialrun.analysis.synthetic import SyntheticSweep, make_sweep
from trialrun.cli import app
from trialrun.errors import InputError
from trialrun.importers import job_specs, read_arena, read_jsonl, read_table, write_imported_run
from trialrun.report import build_report
from trialrun.runfiles import read_episodes, read_manifest, read_summary

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]
FACTORS = ["mass", "friction", "object", "light", "camera_height", "background"]


@pytest.fixture(scope="module")
def sweep() -> SyntheticSweep:
    return make_sweep(n=240, seed=3)


@pytest.fixture(scope="module")
def reference(
    sweep: SyntheticSweep, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, SensitivityResult]:
    """The sweep written as trialrun records and analysed with a factors YAML."""
    root = tmp_path_factory.mktemp("reference")
    episodes, factors = sweep.write(root)
    return factors, analyze_records(episodes, factors, outcome="success", out_dir=root / "analysis")


def write_arena_summary(sweep: SyntheticSweep, path: Path) -> Path:
    """Shape (a): Arena's episode_summary.jsonl (header line, then one row per episode)."""
    lines = [
        {
            "record": "meta",
            "schema_version": 1,
            "slice": {"environment": "pick_place", "embodiment": "franka", "policy_type": "zero_action"},
            "factors": {},
            "outcome_names": ["success_rate", "task_duration"],
        }
    ]
    for r in sweep.records:
        lines.append(
            {
                "record": "episode",
                "job_name": sweep.job,
                "episode_idx": r.episode,
                "arena_env_args": {"environment": "pick_place", "embodiment": "franka", **r.factors},
                "variation_draws": {},
                "outcomes": {
                    "success_rate": 1.0 if r.outcome["success"] else 0.0,
                    "task_duration": 0.05 * (r.outcome["length"] or 0),
                },
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def write_arena_results(sweep: SyntheticSweep, path: Path) -> Path:
    """Shape (b): Arena's episode recorder rows, no episode index (file order numbers them)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in sweep.records:
            row = {
                "job_name": sweep.job,
                "env_id": r.episode % 4,
                "episode_in_env": r.episode // 4,
                "seed": 42,
                "success": r.outcome["success"],
                "episode_length": r.outcome["length"],
                "language_instruction": "pick up the object",
                "timestamp": "2026-06-22T10:00:00.000000",
                "variations": dict(r.factors),
            }
            f.write(json.dumps(row) + "\n")
    return path


def write_table(sweep: SyntheticSweep, path: Path, *, success: bool = True) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", *FACTORS, *(["goal_reached"] if success else []), "score", "steps"])
        for r in sweep.records:
            goal = ["true" if r.outcome["success"] else "false"] if success else []
            w.writerow(
                [
                    r.episode,
                    *(
                        repr(r.factors[name]) if isinstance(r.factors[name], float) else r.factors[name]
                        for name in FACTORS
                    ),
                    *goal,
                    repr(r.outcome["return"]),
                    r.outcome["length"],
                ]
            )
    return path


def run_cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def same_analysis(a: SensitivityResult, b: SensitivityResult) -> None:
    assert a.n == b.n
    for name in FACTORS:
        fa, fb = a.factor(name), b.factor(name)
        for field in ("p_value", "p_adjusted", "statistic", "chi2_p"):
            va, vb = getattr(fa, field), getattr(fb, field)
            assert (va is None) == (vb is None), (name, field)
            if va is not None:
                assert va == pytest.approx(vb, abs=1e-9, rel=0), (name, field)
        assert [x.model_dump() for x in fa.bins] == [x.model_dump() for x in fb.bins], name


@pytest.mark.parametrize("shape", ["arena-summary", "arena-results", "csv"])
def test_imported_data_gives_the_same_analysis_as_trialrun_records(
    shape: str, sweep: SyntheticSweep, reference: tuple[Path, SensitivityResult], tmp_path: Path
) -> None:
    factors, expected = reference
    run_dir = tmp_path / "run"
    if shape == "arena-summary":
        source = write_arena_summary(sweep, tmp_path / "episode_summary.jsonl")
        run_cli("import", "arena", str(source), "--factors", str(factors), "--run-dir", str(run_dir))
    elif shape == "arena-results":
        source = write_arena_results(sweep, tmp_path / "episode_results_rank0.jsonl")
        run_cli("import", "arena", str(source), "--factors", str(factors), "--run-dir", str(run_dir))
    else:
        source = write_table(sweep, tmp_path / "episode_metrics.csv")
        factor_args = [a for name in FACTORS for a in ("--factor", name)]
        run_cli(
            "import", "csv", str(source), "--episode", "episode", *factor_args,
            "--outcome", "score", "--outcome", "steps", "--success", "goal_reached",
            "--job-name", sweep.job, "--factors", str(factors), "--run-dir", str(run_dir),
        )  # fmt: skip
    records = read_episodes(run_dir / "episodes.jsonl")
    assert [r.outcome["success"] for r in records] == [r.outcome["success"] for r in sweep.records]
    assert all(r.started_at is None and r.ended_at is None for r in records)
    manifest = read_manifest(run_dir)
    assert manifest.source is not None and manifest.source["imported"] is True
    assert manifest.source["file"] == str(source.resolve())
    assert manifest.command[:3] == ["trialrun", "import", "csv" if shape == "csv" else "arena"]
    assert [s.name for s in manifest.jobs[sweep.job].factors] == FACTORS
    summary = read_summary(run_dir)
    assert summary.jobs[sweep.job].successes == sum(bool(r.outcome["success"]) for r in sweep.records)
    assert summary.jobs[sweep.job].success_status == "reported"
    same_analysis(analyze_run(run_dir, outcome="success")[sweep.job], expected)


def test_arena_rows_map_to_records(sweep: SyntheticSweep, tmp_path: Path) -> None:
    a = read_arena(write_arena_summary(sweep, tmp_path / "a.jsonl"))
    b = read_arena(write_arena_results(sweep, tmp_path / "b.jsonl"))
    first_a, first_b = a[0], b[5]
    assert first_a.factors["environment"] == "pick_place"
    assert first_a.outcome["success"] is sweep.records[0].outcome["success"]
    assert dict(first_a.outcome)["task_duration"] == pytest.approx(
        0.05 * (sweep.records[0].outcome["length"] or 0)
    )
    assert (first_b.episode, first_b.env_index, first_b.seed) == (5, 1, 42)
    assert first_b.outcome["length"] == sweep.records[5].outcome["length"]
    assert first_b.extra["language_instruction"] == "pick up the object"
    assert first_b.factors == sweep.records[5].factors
    merged = read_arena(write_arena_summary(sweep, tmp_path / "c.jsonl"), job_name="sweep")
    assert {r.job for r in merged} == {"sweep"} and merged[7].extra["job_name"] == sweep.job


def test_inferred_factor_specs_come_from_min_max_with_a_warning(
    sweep: SyntheticSweep, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_arena_results(sweep, tmp_path / "episode_results.jsonl")
    with caplog.at_level(logging.WARNING):
        job_specs(read_arena(source), None, source)
    assert "min/max" in caplog.text and "--factors" in caplog.text
    run_cli("import", "arena", str(source), "-o", str(tmp_path / "runs"), "--name", "arena")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("arena-import-")
    specs = {s.name: s for s in read_manifest(run_dir).jobs[sweep.job].factors}
    masses = [float(r.factors["mass"]) for r in sweep.records]
    assert (specs["mass"].low, specs["mass"].high) == (min(masses), max(masses))
    assert specs["object"].kind == "categorical" and set(specs["object"].values or []) == {
        "cube",
        "can",
        "mug",
    }


def test_csv_cells_are_parsed_per_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "run,ep,light,map,ok,score,done\nA,0,1,town,1,2.5,TRUE\nA,1,2.5,city,0,,false\nB,0,3,town,true,4,true\n",
        encoding="utf-8",
    )
    recs = read_table(
        path, episode="ep", factors=["light", "map"], outcomes=["score", "done"], job="run", success="ok"
    )
    assert [(r.job, r.episode) for r in recs] == [("A", 0), ("A", 1), ("B", 0)]
    assert [r.factors["light"] for r in recs] == [1.0, 2.5, 3.0]
    assert [r.outcome["success"] for r in recs] == [True, False, True]
    assert [dict(r.outcome)["score"] for r in recs] == [2.5, None, 4]
    assert [dict(r.outcome)["done"] for r in recs] == [True, False, True]
    assert all(r.seed == 0 for r in recs)


def test_jsonl_records_need_no_run_seed_or_times(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"job": "j", "episode": 0, "factors": {"m": 1.0}, "outcome": {"success": true, "return": 1.0}}\n'
        '{"job": "j", "episode": 1, "seed": 7, "factors": {"m": 2.0}, "outcome": {"success": false}}\n',
        encoding="utf-8",
    )
    recs = read_jsonl(path)
    assert [(r.run, r.seed, r.started_at) for r in recs] == [("", 0, None), ("", 7, None)]
    run_cli("import", "jsonl", str(path), "--run-dir", str(tmp_path / "run"), "--name", "mine")
    assert read_episodes(tmp_path / "run" / "episodes.jsonl")[0].run == "mine"


@pytest.mark.parametrize(
    "kind,content,extra,line,words",
    [
        ("arena", '{"job_name": "j", "episode_idx": 0, "outcomes": {"success_rate": 1.0}}\n{"job_name": "j", oops}\n', [], 2, "not valid JSON"),
        ("arena", '{"job_name": "j", "episode_idx": 0, "outcomes": {}}\n\n{"job": "j", "episode": 1}\n', [], 3, "not an Isaac Lab Arena episode row"),
        ("csv", "ep,x,ok\n0,1.0,true\n1,2.0,maybe\n", ["--episode", "ep", "--factor", "x", "--success", "ok"], 3, "not a boolean"),
        ("csv", "ep,x\n0,1.0\n1,2.0,3\n", ["--episode", "ep", "--factor", "x"], 3, "cell(s)"),
        ("jsonl", '{"job": "j", "episode": 0, "outcome": {}}\n{"episode": 1, "outcome": {}}\n', [], 2, "field 'job'"),
        ("jsonl", '{"job": "j", "episode": 0, "outcome": {}}\n{"job": "j", "episode": 0, "outcome": {}}\n', [], 2, "appears twice"),
    ],
)  # fmt: skip
def test_malformed_rows_name_the_file_and_line_and_exit_2(
    kind: str, content: str, extra: list[str], line: int, words: str, tmp_path: Path
) -> None:
    source = tmp_path / ("bad.csv" if kind == "csv" else "bad.jsonl")
    source.write_text(content, encoding="utf-8")
    proc = subprocess.run(
        [*TRIALRUN, "import", kind, str(source), *extra, "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{source}:{line}: " in proc.stderr  # one line: the console never wraps an error
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_absent_success_is_marked_reported_as_such_and_refused_by_analyze(
    sweep: SyntheticSweep, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_table(sweep, tmp_path / "pendulum.csv", success=False)
    run_dir = tmp_path / "run"
    records = read_table(source, episode="episode", factors=["mass"], outcomes=["score"], job_name="pendulum")
    with caplog.at_level(logging.WARNING):
        write_imported_run(
            records, job_specs(records, None, source), run_dir=run_dir, name="p", source={}, command=[]
        )
    assert "job 'pendulum': success was never reported" in caplog.text
    assert "set success: survived" in caplog.text
    summary = read_summary(run_dir)
    assert summary.jobs["pendulum"].success_status == "absent"
    html = build_report(run_dir).read_text(encoding="utf-8")
    assert "not reported" in html
    with pytest.raises(InputError, match=r"job 'pendulum' never reported success.*--outcome return"):
        analyze_run(run_dir, outcome="success")
    assert analyze_run(run_dir, outcome="score")["pendulum"].n == len(sweep.records)
