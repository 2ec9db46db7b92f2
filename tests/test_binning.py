"""The one binning rule: bin count, edges, assignment, and the same bins in the
report, the analysis and ``compare``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trialrun.analysis.binned import bin_factor as analysis_bin_factor
from trialrun.analysis.dataset import prepare_dataset
from trialrun.binning import (
    EPISODES_PER_BIN,
    MAX_BINS,
    MIN_BINS,
    assign_bins,
    bin_edges,
    factor_range,
    level_key,
    n_bins_for,
)
from trialrun.compare import factor_bins
from trialrun.report.data import bin_factor as report_bin_factor
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, FactorValue


def test_bin_count_rule() -> None:
    assert (EPISODES_PER_BIN, MIN_BINS, MAX_BINS) == (25, 3, 10)
    counts = [n_bins_for(n) for n in (0, 1, 74, 75, 99, 100, 124, 125, 249, 250, 251, 100_000)]
    assert counts == [3, 3, 3, 3, 3, 4, 4, 5, 9, 10, 10, 10]


def test_linear_edges_over_the_declared_range() -> None:
    spec = FactorSpec(name="x", kind="continuous", low=0.0, high=10.0)
    assert bin_edges(spec, 4).tolist() == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert bin_edges(spec, 1).tolist() == [0.0, 10.0]
    with pytest.raises(ValueError, match="bins must be >= 1"):
        bin_edges(spec, 0)


def test_log_edges_and_the_zero_fallback() -> None:
    spec = FactorSpec(name="f", kind="continuous", low=0.001, high=1.0, scale="log")
    edges = bin_edges(spec, 3)
    assert edges[0] == 0.001 and edges[-1] == 1.0
    assert edges.tolist() == pytest.approx([0.001, 0.01, 0.1, 1.0])
    touching = FactorSpec(name="f", kind="continuous", low=0.0, high=3.0, scale="log")
    assert bin_edges(touching, 3).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert not assign_bins(touching, [1.0], 3).log and assign_bins(spec, [0.5], 3).log


def test_degenerate_range_is_one_bin() -> None:
    spec = FactorSpec(name="g", kind="continuous", low=9.81, high=9.81)
    assert bin_edges(spec, 7).tolist() == [9.81, 9.81]
    b = assign_bins(spec, [9.81, 9.81, 5.0])
    assert b.n_bins == 1 and b.index.tolist() == [0, 0, -1] and b.outside == 1


def test_missing_bounds_span_the_observed_values() -> None:
    assert factor_range(FactorSpec(name="x", kind="continuous"), [3.0, 1.0, 2.0]) == (1.0, 3.0)
    assert factor_range(FactorSpec(name="x", kind="continuous", low=0.0), [3.0, 1.0]) == (0.0, 3.0)
    assert factor_range(FactorSpec(name="x", kind="continuous", low=0.0)) is None
    b = assign_bins(FactorSpec(name="x", kind="continuous"), [2.0, 4.0, 6.0], 2)
    assert b.observed_range and b.edges is not None and b.edges.tolist() == [2.0, 4.0, 6.0]
    assert b.index.tolist() == [0, 1, 1]
    empty = assign_bins(FactorSpec(name="x", kind="continuous"), [None, "a"])
    assert empty.edges is None and empty.n_bins == 0 and empty.index.tolist() == [-1, -1]
    assert empty.missing == 2
    with pytest.raises(ValueError, match="no declared range"):
        bin_edges(FactorSpec(name="x", kind="continuous"), 3)


def test_assignment_excludes_missing_non_numeric_and_outside_values() -> None:
    spec = FactorSpec(name="x", kind="continuous", low=0.0, high=3.0)
    values: list[Any] = [0.0, 0.999, 1.0, 3.0, 3.0 + 1e-12, -0.1, 3.5, None, "a", True, float("nan")]
    b = assign_bins(spec, values, 3)
    assert b.index.tolist() == [0, 0, 1, 2, 2, -1, -1, -1, -1, -1, -1]
    assert (b.missing, b.outside, b.excluded) == (4, 2, 6)
    assert b.counts().tolist() == [2, 1, 2]
    assert b.members(0).tolist() == [0, 1]
    # the default count follows the values inside the range: 5 -> 3 bins
    assert assign_bins(spec, values).n_bins == 3
    # a float array takes the vectorised path and gives the same answer
    arr = np.array([0.0, 0.999, 1.0, 3.0, 3.5, np.nan])
    assert assign_bins(spec, arr, 3).index.tolist() == [0, 0, 1, 2, -1, -1]


def test_categorical_levels_declared_first_then_seen() -> None:
    spec = FactorSpec(name="obj", kind="categorical", values=["cube", 1, True])
    b = assign_bins(spec, ["mug", "cube", 1.0, True, None, 1, "mug", "can"])
    assert b.levels == ["cube", 1, True, "mug", "can"]
    assert b.index.tolist() == [3, 0, 1, 2, -1, 1, 3, 4]
    assert (b.undeclared, b.missing, b.outside) == (2, 1, 0)
    assert b.counts().tolist() == [1, 2, 1, 2, 1]
    undeclared = assign_bins(FactorSpec(name="t", kind="categorical"), ["b", "a", "b"])
    assert undeclared.levels == ["b", "a"] and undeclared.undeclared == 0
    assert level_key(2) == level_key(2.0) != level_key("2")


# --------------------------------------------------------------------------- one rule everywhere


def _records(spec: FactorSpec, values: list[FactorValue], successes: list[bool]) -> list[EpisodeRecord]:
    return [
        EpisodeRecord(
            run="r",
            job="j",
            episode=k,
            seed=k,
            factors={spec.name: v},
            outcome={"success": ok, "return": float(ok)},
            started_at="2026-01-01T00:00:00.000Z",
            ended_at="2026-01-01T00:00:01.000Z",
        )
        for k, (v, ok) in enumerate(zip(values, successes, strict=True))
    ]


def _cases() -> list[tuple[FactorSpec, list[FactorValue]]]:
    rng = np.random.default_rng(7)
    linear = FactorSpec(name="mass", kind="continuous", low=0.5, high=2.0)
    log = FactorSpec(name="friction", kind="continuous", low=0.01, high=10.0, scale="log")
    cat = FactorSpec(name="obj", kind="categorical", values=["cube", "can", "mug", "box"])
    return [
        # 130 values: 5 bins; the range ends are hit exactly
        (linear, [0.5, 2.0, *(float(v) for v in rng.uniform(0.5, 2.0, 128))]),
        # 90 log-uniform values: 3 bins, one decade each
        (log, [0.01, 10.0, 0.1, 1.0, *(float(v) for v in 10 ** rng.uniform(-2, 1, 86))]),
        # "box" is declared but never drawn: it still gets a bin
        (cat, [str(v) for v in rng.choice(["cube", "can", "mug"], 60)]),
    ]


@pytest.mark.parametrize("case", range(3), ids=["linear", "log", "categorical"])
def test_report_analysis_and_compare_show_the_same_bins(case: int) -> None:
    spec, values = _cases()[case]
    successes = [bool(k % 3) for k in range(len(values))]

    report = report_bin_factor(spec, values, successes)
    report_counts = [b.n for b in report.bins]

    ds = prepare_dataset(_records(spec, values, successes), [spec], "success")
    analysis, _ = analysis_bin_factor(ds.columns[0], ds.y, ds.kind)
    analysis_counts = [b.n for b in analysis]

    compare = factor_bins(spec, values)
    compare_counts = [len(idx) for _, idx, _ in compare]

    assert report_counts == analysis_counts == compare_counts
    assert sum(report_counts) == len(values) and report.excluded == 0
    if spec.kind == "categorical":
        assert [b.level for b in report.bins] == [b.level for b in analysis] == ["cube", "can", "mug", "box"]
        assert [fields["value"] for _, _, fields in compare] == ["cube", "can", "mug", "box"]
        assert report_counts[-1] == 0
        return
    assert report.edges is not None
    analysis_edges = [analysis[0].low] + [b.high for b in analysis]
    compare_edges = [compare[0][2]["low"]] + [fields["high"] for _, _, fields in compare]
    assert report.edges == analysis_edges == compare_edges
    expected = bin_edges(spec, n_bins_for(len(values))).tolist()
    assert report.edges == expected and len(expected) - 1 == {"mass": 5, "friction": 3}[spec.name]
    assert report.edges[0] == spec.low and report.edges[-1] == spec.high
    # the successes per bin agree too
    assert [b.successes for b in report.bins] == [b.successes for b in analysis]
