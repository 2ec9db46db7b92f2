"""The synthetic sweep generator: seeded, within the declared ranges, truthful
about what it planted, and writable as inputs of both entry points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trialrun.analysis.api import load_factors_yaml
from trialrun.analysis.synthetic import MAX_STEPS, make_sweep
from trialrun.runfiles import read_episodes, read_manifest


def test_same_seed_gives_identical_records_and_other_seed_differs() -> None:
    a, b, c = make_sweep(n=50, seed=7), make_sweep(n=50, seed=7), make_sweep(n=50, seed=8)
    assert [r.to_json_line() for r in a.records] == [r.to_json_line() for r in b.records]
    assert a.records[0].factors != c.records[0].factors


def test_truth_is_reported() -> None:
    sweep = make_sweep(n=10)
    assert sorted(sweep.planted) == ["friction", "mass", "object"]
    assert sweep.irrelevant == ["light", "camera_height", "background"]
    assert sweep.interacting is None
    assert [s.name for s in sweep.specs] == [
        "mass",
        "friction",
        "object",
        "light",
        "camera_height",
        "background",
    ]
    null = make_sweep(n=10, effect=0.0)
    assert null.planted == {}
    assert len(null.irrelevant) == 6
    inter = make_sweep(n=10, interaction=1.0)
    assert inter.interacting == ("wind", "tilt")
    assert "wind" not in inter.irrelevant and "tilt" not in inter.irrelevant


def test_values_stay_in_declared_ranges_and_log_factor_is_log_uniform() -> None:
    sweep = make_sweep(n=2000, seed=1)
    for spec in sweep.specs:
        vals = [r.factors[spec.name] for r in sweep.records]
        if spec.kind == "continuous":
            assert spec.low <= min(vals) and max(vals) <= spec.high
        else:
            assert set(vals) == set(spec.values)
    friction = np.array([r.factors["friction"] for r in sweep.records])
    # log-uniform on [0.01, 1]: the median sits near the geometric middle 0.1
    assert 0.08 < np.median(friction) < 0.125


def test_outcomes_are_consistent() -> None:
    sweep = make_sweep(n=300, seed=2)
    rate = np.mean([r.outcome["success"] for r in sweep.records])
    assert 0.45 < rate < 0.7
    for r in sweep.records:
        o = r.outcome
        if o["success"]:
            assert o["time_to_success"] == o["length"] < MAX_STEPS
        else:
            assert o["time_to_success"] is None and o["length"] == MAX_STEPS
            assert o["truncated"] and not o["terminated"]


def test_write_and_write_run(tmp_path: Path) -> None:
    sweep = make_sweep(n=20, seed=3)
    episodes, factors = sweep.write(tmp_path / "plain")
    assert len(read_episodes(episodes)) == 20
    specs = load_factors_yaml(factors)
    assert [(s.name, s.kind, s.scale) for s in specs] == [(s.name, s.kind, s.scale) for s in sweep.specs]
    run = sweep.write_run(tmp_path / "run", extra_jobs={"other": make_sweep(n=5, seed=4)})
    manifest = read_manifest(run)
    assert list(manifest.jobs) == ["synthetic", "other"]
    assert manifest.jobs["other"].factors[0].name == "mass"
    jobs = [r.job for r in read_episodes(run / "episodes.jsonl")]
    assert jobs.count("synthetic") == 20 and jobs.count("other") == 5
