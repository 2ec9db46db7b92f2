"""trialrun.report.data: reading a run directory into what the report shows.

``write_run`` (used by the other test_report_* files too) writes the files of a
run directly with the recording models, so each test states its episodes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trialrun.errors import InputError
from trialrun.report.data import (
    bin_factor,
    episodes_payload,
    infer_spec,
    load_run,
    read_sensitivity,
    relative_url,
    shown_units,
)
from trialrun.report.linechart import nice_ticks
from trialrun.report.trajectories import (
    MAX_DIMS,
    MAX_POINTS,
    downsample,
    episode_trajectories,
    read_trajectory,
)
from trialrun.runfiles import write_json_atomic
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, JobManifest, Manifest
from trialrun.stats import summarize_run, wilson_interval

T0 = "2026-11-21T19:00:00.000Z"


@dataclass
class JobSpec:
    """One job of a hand-written run."""

    name: str
    records: list[EpisodeRecord]
    factors: list[FactorSpec] = field(default_factory=list)
    status: str = "completed"
    planned: int | None = None
    error: str | None = None
    traceback: str | None = None


def record(
    job: str,
    episode: int,
    success: bool | None,
    ret: float = 1.0,
    length: int = 10,
    factors: dict[str, Any] | None = None,
    video: dict[str, str] | None = None,
    run: str = "hand-run",
    **outcome: Any,
) -> EpisodeRecord:
    """An episode record with the usual outcome keys."""
    return EpisodeRecord(
        run=run,
        job=job,
        episode=episode,
        seed=1000 + episode,
        env_index=episode % 4,
        factors=factors or {},
        outcome={
            "success": success,
            "success_at_end": success,
            "return": ret,
            "length": length,
            "terminated": bool(success),
            "truncated": not success,
            "time_to_success": length if success else None,
            **outcome,
        },
        video=video or {},
        started_at=f"2026-11-21T19:00:{episode % 60:02d}.000Z",
        ended_at=f"2026-11-21T19:00:{episode % 60:02d}.250Z",
    )


def write_run(
    run_dir: Path,
    jobs: list[JobSpec],
    *,
    name: str = "hand-run",
    summary: bool = True,
    config: dict[str, Any] | None = None,
    seed: int = 5,
) -> Path:
    """Write manifest.json, episodes.jsonl and (optionally) summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        run=name,
        seed=seed,
        config=config or {"name": name, "seed": seed, "jobs": [{"name": j.name} for j in jobs]},
        versions={"numpy": np.__version__, "trialrun": "0.1.0"},
        git_commit="0123456789abcdef0123456789abcdef01234567",
        host="testhost",
        python="3.11",
        platform="Linux",
        command=["trialrun", "run", "run.yaml"],
        started_at=T0,
        ended_at="2026-11-21T19:02:05.500Z",
        jobs={
            j.name: JobManifest(
                name=j.name,
                status=j.status,  # type: ignore[arg-type]
                planned=j.planned if j.planned is not None else len(j.records),
                completed=len(j.records),
                error=j.error,
                traceback=j.traceback,
                factors=j.factors,
                started_at=T0,
                ended_at="2026-11-21T19:01:00.000Z",
            )
            for j in jobs
        },
    )
    write_json_atomic(run_dir / "manifest.json", manifest.model_dump(mode="json", by_alias=True))
    with open(run_dir / "episodes.jsonl", "w", encoding="utf-8") as f:
        for j in jobs:
            for rec in j.records:
                f.write(rec.to_json_line() + "\n")
    if summary:
        s = summarize_run(
            name,
            [r for j in jobs for r in j.records],
            planned={j.name: j.planned if j.planned is not None else len(j.records) for j in jobs},
            statuses={j.name: j.status for j in jobs},  # type: ignore[misc]
            seed=seed,
        )
        write_json_atomic(run_dir / "summary.json", s.model_dump(mode="json", by_alias=True))
    return run_dir


# --------------------------------------------------------------------------- bins


def test_continuous_bins_follow_the_declared_range_not_the_data() -> None:
    spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=10.0)
    values = [0.5, 1.0, 2.6, 2.4, 9.9, 10.0]
    successes = [True, False, True, True, False, False]
    fb = bin_factor(spec, values, successes, bins=4)
    assert fb.edges == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert [(b.n, b.successes) for b in fb.bins] == [(3, 2), (1, 1), (0, 0), (2, 0)]
    assert fb.bins[0].rate == pytest.approx(2 / 3)
    assert fb.bins[0].ci == wilson_interval(2, 3)
    assert fb.bins[2].rate is None and fb.bins[2].ci is None
    assert fb.excluded == 0 and fb.notes == []
    assert fb.n == 6


def test_log_scale_bins_are_log_spaced() -> None:
    spec = FactorSpec(name="friction", kind="continuous", low=0.01, high=100.0, scale="log")
    fb = bin_factor(spec, [0.02, 0.5, 5.0, 50.0, 99.0], [True] * 5, bins=4)
    assert fb.edges is not None
    assert np.allclose(fb.edges, [0.01, 0.1, 1.0, 10.0, 100.0])
    assert [b.n for b in fb.bins] == [1, 1, 1, 2]


def test_values_outside_the_range_and_missing_ones_are_left_out_with_notes() -> None:
    spec = FactorSpec(name="g", kind="continuous", low=1.0, high=2.0)
    fb = bin_factor(spec, [1.5, 3.0, None, 1.2, "x"], [True, True, True, None, False], bins=2)
    assert [b.n for b in fb.bins] == [0, 1]
    assert fb.excluded == 4
    assert fb.notes == [
        "1 episode(s) outside the declared range [1, 2] left out",
        "3 episode(s) without a value or an outcome left out",
    ]


def test_log_scale_touching_zero_falls_back_to_linear_bins() -> None:
    spec = FactorSpec(name="x", kind="continuous", low=0.0, high=4.0, scale="log")
    fb = bin_factor(spec, [0.5, 3.5], [True, False], bins=2)
    assert fb.edges == [0.0, 2.0, 4.0]
    assert fb.notes == ["scale is log but the range touches 0: linear bins"]


def test_open_bounds_use_the_observed_values() -> None:
    spec = FactorSpec(name="x", kind="continuous")
    fb = bin_factor(spec, [2.0, 4.0, 6.0], [True, False, True], bins=2)
    assert fb.edges == [2.0, 4.0, 6.0]
    assert [b.n for b in fb.bins] == [1, 2]
    assert fb.notes == ["no declared bounds: bins span the observed values"]


def test_categorical_levels_keep_declared_order_and_add_undeclared_ones() -> None:
    spec = FactorSpec(name="obj", kind="categorical", values=["cube", 1, True])
    values = ["cube", 1.0, True, "can", 1, "cube"]
    successes = [True, False, True, True, True, False]
    fb = bin_factor(spec, values, successes)
    assert [(b.level, b.n, b.successes) for b in fb.bins] == [
        ("cube", 2, 1),
        (1, 2, 1),  # 1.0 and 1 are one level ...
        (True, 1, 1),  # ... but True is not 1
        ("can", 1, 1),
    ]
    assert fb.notes == ["1 level(s) seen in the episodes but not declared"]


def test_default_bin_count_is_the_shared_rule() -> None:
    # trialrun.binning.n_bins_for: about 25 episodes per bin, 3 to 10 bins
    spec = FactorSpec(name="x", kind="continuous", low=0.0, high=1.0)
    rng = np.random.default_rng(0)
    assert len(bin_factor(spec, list(rng.random(100)), [True] * 100).bins) == 4
    assert len(bin_factor(spec, list(rng.random(10)), [True] * 10).bins) == 3
    assert len(bin_factor(spec, list(rng.random(1000)), [True] * 1000).bins) == 10


def test_infer_spec_for_factors_missing_from_the_manifest() -> None:
    assert infer_spec("a", [1.0, 2, None]).kind == "continuous"
    spec = infer_spec("b", ["x", "y", "x", None])
    assert spec.kind == "categorical" and spec.values == ["x", "y"]


# --------------------------------------------------------------------------- load_run


def test_load_run_reads_manifest_records_and_summary(tmp_path: Path) -> None:
    spec = FactorSpec(name="g", kind="continuous", low=0.0, high=1.0, units="m")
    a = [record("a", k, k % 3 != 0, factors={"g": k / 10}) for k in range(10)]
    b = [record("b", k, False, factors={"g": 0.5, "extra_factor": "red"}) for k in range(4)]
    run = write_run(
        tmp_path / "run",
        [JobSpec("a", a, [spec]), JobSpec("b", b, [spec], status="failed", planned=6, error="Boom: x")],
    )
    view = load_run(run, bins=2)
    assert [j.name for j in view.jobs] == ["a", "b"]
    assert view.status == "failed"
    assert view.duration_s == pytest.approx(125.5)
    ja, jb = view.jobs
    assert ja.summary.episodes == 10 and ja.summary.successes == 6 and ja.failures == 4
    assert jb.error == "Boom: x" and jb.planned == 6 and jb.status == "failed"
    assert [fb.spec.name for fb in jb.factor_bins] == ["g", "extra_factor"]
    assert jb.factor_bins[1].spec.kind == "categorical"
    assert [(b.n, b.successes) for b in ja.factor_bins[0].bins] == [(5, 3), (5, 3)]
    assert view.summary_computed is False and view.notes == []
    assert [(r.job, r.episode) for r in view.records] == [("a", k) for k in range(10)] + [
        ("b", k) for k in range(4)
    ]


def test_a_run_without_summary_gets_one_computed_with_a_note(tmp_path: Path) -> None:
    recs = [record("a", k, k < 3) for k in range(5)]
    run = write_run(tmp_path / "run", [JobSpec("a", recs, status="running", planned=8)], summary=False)
    view = load_run(run)
    assert view.summary_computed
    assert view.summary.jobs["a"].successes == 3 and view.summary.jobs["a"].planned == 8
    assert view.notes == [
        "summary.json is missing (the run has not finished): the numbers are computed from episodes.jsonl"
    ]
    assert view.status == "incomplete"


def test_records_are_sorted_and_duplicates_dropped(tmp_path: Path) -> None:
    recs = [record("a", 2, True), record("a", 0, False), record("a", 1, True)]
    run = write_run(tmp_path / "run", [JobSpec("a", recs)])
    with open(run / "episodes.jsonl", "a") as f:
        f.write(record("a", 1, False).to_json_line() + "\n")  # a second result for episode 1
        f.write('{"schema": 1, "run": "hand')  # a torn last line
    view = load_run(run)
    assert [(r.episode, r.outcome["success"]) for r in view.records] == [(0, False), (1, True), (2, True)]


def test_load_run_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(InputError, match=r"is not a run directory: it has no manifest.json"):
        load_run(tmp_path)
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", 0, True)])])
    (run / "episodes.jsonl").write_text('{"schema": 1}\n')
    with pytest.raises(InputError, match=r"episodes.jsonl:1: field 'job': Field required"):
        load_run(run)
    (run / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match=r"manifest.json: field 'run'"):
        load_run(run)


# --------------------------------------------------------------------------- payload


def test_episodes_payload_is_columnar_and_compact(tmp_path: Path) -> None:
    specs = [
        FactorSpec(name="g", kind="continuous", low=0.0, high=1.0, units="m", scale="linear"),
        FactorSpec(name="obj", kind="categorical", values=["cube", "can"]),
    ]
    run = tmp_path / "run"
    (run / "videos" / "a").mkdir(parents=True)
    (run / "videos" / "a" / "ep1-top.mp4").write_bytes(b"\0")
    recs = [
        record("a", 0, True, ret=2.5, factors={"g": 0.25, "obj": "cube"}),
        record(
            "a",
            1,
            False,
            ret=float("nan"),
            factors={"g": 0.75, "obj": "can"},
            video={
                "top": "videos/a/ep1-top.mp4",
                "side": "videos/a/ep1-side.mp4",
                "evil": "../../etc/passwd",
            },
        ),
    ]
    recs[0].extra["note"] = "x"
    write_run(run, [JobSpec("a", recs, specs)], summary=False)
    payload = episodes_payload(load_run(run))
    assert payload["n"] == 2 and payload["jobs"] == ["a"] and payload["job"] == [0, 0]
    assert payload["episode"] == [0, 1] and payload["seed"] == [1000, 1001]
    outcomes = {o["name"]: o for o in payload["outcomes"]}
    assert [o["name"] for o in payload["outcomes"]] == [
        "success",
        "return",
        "length",
        "time_to_success",
        "success_at_end",
        "terminated",
        "truncated",
    ]
    assert outcomes["success"] == {"name": "success", "type": "bool", "values": [1, 0]}
    assert outcomes["return"]["values"] == [2.5, None]  # NaN has no JSON form
    assert outcomes["time_to_success"]["values"] == [10, None]
    factors = {f["name"]: f for f in payload["factors"]}
    assert factors["g"]["values"] == [0.25, 0.75] and factors["g"]["units"] == "m"
    assert factors["obj"]["levels"] == ["cube", "can"] and factors["obj"]["kind"] == "categorical"
    assert payload["videos"] == [
        [1, {"top": ["videos/a/ep1-top.mp4", 1], "side": ["videos/a/ep1-side.mp4", 0]}]
    ]
    assert payload["extra"] == [[0, {"note": "x"}]]
    assert payload["t0"] == [0, 1000] and payload["dur"] == [250, 250]
    json.dumps(payload, allow_nan=False)  # valid strict JSON


def test_dimensionless_factors_have_no_unit_in_the_view_and_the_payload(tmp_path: Path) -> None:
    # A friction coefficient's unit is written "1" by runs made so far: the
    # report drops it (and "" ) wherever a unit is shown, and keeps real ones.
    specs = [
        FactorSpec(name="object_friction", kind="continuous", low=0.02, high=1.0, units="1"),
        FactorSpec(name="blank", kind="continuous", low=0.0, high=1.0, units=""),
        FactorSpec(name="mass_scale", kind="continuous", low=0.5, high=2.0, units="x"),
        FactorSpec(name="g", kind="continuous", low=0.0, high=1.0, units="m"),
    ]
    values = {"object_friction": 0.5, "blank": 0.5, "mass_scale": 1.0, "g": 0.5}
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", 0, True, factors=values)], specs)])
    view = load_run(run)
    assert [s.units for s in view.jobs[0].factors] == [None, None, "x", "m"]
    assert [fb.spec.units for fb in view.jobs[0].factor_bins] == [None, None, "x", "m"]
    payload = episodes_payload(view)
    assert [(f["name"], f["units"]) for f in payload["factors"]] == [
        ("object_friction", None),
        ("blank", None),
        ("mass_scale", "x"),
        ("g", "m"),
    ]


def test_shown_units() -> None:
    assert [shown_units(u) for u in (None, "", " ", "1", " 1 ", "-", "kg", "x", "m/s", "10")] == [
        None,
        None,
        None,
        None,
        None,
        None,
        "kg",
        "x",
        "m/s",
        "10",
    ]


# --------------------------------------------------------------------------- sensitivity


def test_read_sensitivity_is_lenient_and_reports_broken_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "analysis" / "pick").mkdir(parents=True)
    (run / "analysis" / "push").mkdir(parents=True)
    doc = {
        "outcome": "success",
        "n": 120,
        "base_rate": 0.4,
        "alpha": 0.05,
        "notes": ["a note"],
        "job": "pick",
        "brand_new_field": {"nested": [1, 2]},
        "factors": [
            {
                "name": "b",
                "kind": "continuous",
                "rank": 2,
                "p_adjusted": 0.3,
                "significant": False,
                "units": "1",
            },
            {"name": "a", "kind": "categorical", "rank": 1, "p_adjusted": 0.001, "significant": True},
            "not a dict",
        ],
        "interactions": [{"factors": ["a", "b"], "p_value": 0.5}],
    }
    (run / "analysis" / "pick" / "sensitivity.json").write_text(json.dumps(doc))
    (run / "analysis" / "pick" / "sensitivity.png").write_bytes(b"png")
    (run / "analysis" / "pick" / "interaction.png").write_bytes(b"png")
    (run / "analysis" / "push" / "sensitivity.json").write_text("{not json")
    views = read_sensitivity(run)
    assert [v.path for v in views] == ["analysis/pick/sensitivity.json", "analysis/push/sensitivity.json"]
    pick, push = views
    assert pick.title == "pick" and pick.error is None and pick.binary
    assert [f["name"] for f in pick.factors] == ["a", "b"]
    assert [f["units"] for f in pick.factors] == [None, None]  # "1" is dimensionless: no unit shown
    assert pick.interactions == [{"factors": ["a", "b"], "p_value": 0.5}]
    assert pick.notes == ["a note"]
    assert pick.figures == ["analysis/pick/sensitivity.png", "analysis/pick/interaction.png"]
    assert push.error is not None and push.title == "push" and push.factors == []
    assert read_sensitivity(tmp_path / "nothing") == []


def test_relative_url() -> None:
    assert relative_url(Path("/r/run"), Path("/r/run/report")) == ".."
    assert relative_url(Path("/r/run"), Path("/r/run")) == "."
    assert relative_url(Path("/r/run"), Path("/elsewhere/out")) == "../../r/run"


def test_bins_rates_match_a_direct_count() -> None:
    rng = np.random.default_rng(3)
    values = list(rng.uniform(0, 3, 500))
    successes = [bool(v < 1.5) for v in values]
    fb = bin_factor(FactorSpec(name="x", kind="continuous", low=0.0, high=3.0), values, successes)
    assert len(fb.bins) == 10
    for b in fb.bins:
        assert b.low is not None and b.high is not None
        inside = [
            s
            for v, s in zip(values, successes, strict=True)
            if b.low <= v < b.high or (b.high == 3.0 and v == 3.0)
        ]
        assert b.n == len(inside) and b.successes == sum(inside)
        assert math.isclose(b.rate or 0, sum(inside) / len(inside))


# --------------------------------------------------------------------------- trajectories


def write_trajectory(path: Path, actions: Any, rewards: np.ndarray) -> Path:
    """A trajectory file in the layout the recorder writes (robomimic's): ``actions``
    is an array, or a dict of arrays for dict actions (a group)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        demo = f.create_group("data/demo_0")
        demo.attrs["num_samples"] = len(rewards)
        if isinstance(actions, dict):
            group = demo.create_group("actions")
            for key, value in actions.items():
                group.create_dataset(key, data=value)
        else:
            demo.create_dataset("actions", data=actions)
        demo.create_dataset("rewards", data=np.asarray(rewards, dtype=np.float64))
        demo.create_dataset("dones", data=(np.arange(len(rewards)) == len(rewards) - 1).astype(np.uint8))
    return path


def test_downsample_keeps_short_series_and_the_extremes_of_long_ones() -> None:
    short = np.arange(7.0)
    steps, values = downsample(short, 500)
    assert steps.tolist() == list(range(7)) and values.tolist() == short.tolist()
    rng = np.random.default_rng(0)
    long = rng.normal(size=1234)
    long[777] = 50.0  # a one-step spike survives, unlike with every k-th step
    long[3] = -40.0
    steps, values = downsample(long, 500)
    assert len(steps) == 500 and np.all(np.diff(steps) > 0)
    assert values.max() == 50.0 and values.min() == -40.0 and values.tolist() == long[steps].tolist()
    flat = np.ones(2000)
    steps, _ = downsample(flat, 500)
    assert len(steps) == 500 and steps[0] == 0 and steps[-1] == 1999


def test_read_trajectory_flattens_actions_and_sums_rewards(tmp_path: Path) -> None:
    rewards = np.linspace(0.0, 1.0, 30)
    path = write_trajectory(tmp_path / "ep0.h5", np.arange(30) % 2, rewards)
    data = read_trajectory(path)
    assert data is not None and data.length == 30 and data.action_dims == 1
    (action,) = data.actions
    assert (
        action.name == "action" and action.discrete and action.values.tolist() == (np.arange(30) % 2).tolist()
    )
    assert data.reward is not None and data.reward.values.tolist() == rewards.tolist()
    assert data.ret is not None and np.allclose(data.ret.values, np.cumsum(rewards))

    wide = write_trajectory(tmp_path / "ep1.h5", np.zeros((40, 3, 4), dtype=np.float32), np.ones(40))
    data = read_trajectory(wide)
    assert data is not None and data.action_dims == 12 and len(data.actions) == MAX_DIMS == 8
    assert data.dims_left_out == 4 and [s.name for s in data.actions][:2] == ["a[0]", "a[1]"]

    nested = write_trajectory(
        tmp_path / "ep2.h5",
        {"arm": np.zeros((5, 2)), "grip": np.array([0, 1, 1, 0, 1], dtype=bool)},
        np.ones(5),
    )
    data = read_trajectory(nested)
    assert data is not None and [s.name for s in data.actions] == ["arm[0]", "arm[1]", "grip"]

    long = write_trajectory(tmp_path / "ep3.h5", np.sin(np.arange(1234.0)), np.ones(1234))
    data = read_trajectory(long)
    assert data is not None and data.length == 1234
    assert len(data.actions[0].steps) == len(data.reward.steps) == len(data.ret.steps) == MAX_POINTS == 500  # type: ignore[union-attr]


def test_an_unreadable_trajectory_gives_a_warning_and_no_charts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bad.h5").write_bytes(b"not an HDF5 file")
    with caplog.at_level("WARNING", logger="trialrun.report.trajectories"):
        assert read_trajectory(tmp_path / "bad.h5") is None
        assert read_trajectory(tmp_path / "missing.h5") is None
    assert "bad.h5: cannot read the trajectory" in caplog.text and "missing.h5" in caplog.text


def test_nice_ticks() -> None:
    assert nice_ticks(0.0, 499.0) == [0.0, 200.0, 400.0, 600.0]
    assert nice_ticks(1.0, 1.0) == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert nice_ticks(-3.0, 3.0) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_only_the_first_trajectories_are_charted_and_none_without_h5py(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = []
    for k in range(3):
        write_trajectory(tmp_path / f"trajectories/a/ep{k}.h5", np.zeros(5), np.ones(5))
        recs.append(record("a", k, True).model_copy(update={"trajectory": f"trajectories/a/ep{k}.h5"}))
    recs.append(record("a", 3, True))
    found = episode_trajectories(tmp_path, recs, max_episodes=2)
    assert [(t.row, t.state) for t in found] == [(0, "charted"), (1, "charted"), (2, "not-charted")]
    assert all(t.data is not None and t.data.length == 5 for t in found[:2])

    monkeypatch.setattr("trialrun.report.trajectories._h5py", lambda: None)
    with caplog.at_level("WARNING", logger="trialrun.report.trajectories"):
        found = episode_trajectories(tmp_path, recs)
    assert [t.state for t in found] == ["unreadable"] * 3
    assert caplog.text.count("h5py is not installed") == 1  # said once, not per episode
