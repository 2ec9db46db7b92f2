"""The model-free view: bins from the declared range, Wilson intervals, counts,
chi-square and Kruskal-Wallis tests, 2-D cells."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trialrun.analysis.binned import bin_factor, bin_pair, independence_test, n_bins_for
from trialrun.analysis.dataset import prepare_dataset
from trialrun.analysis.synthetic import make_sweep
from trialrun.runfiles.schema import FactorSpec
from trialrun.stats import wilson_interval


@pytest.fixture(scope="module")
def ds():  # type: ignore[no-untyped-def]
    return prepare_dataset(*make_sweep(n=600, seed=0).as_inputs(), "success")


def test_n_bins_for() -> None:
    assert [n_bins_for(n) for n in (10, 75, 100, 250, 10_000)] == [3, 3, 4, 10, 10]


def test_continuous_bins_cover_declared_range_with_wilson_intervals(ds) -> None:  # type: ignore[no-untyped-def]
    mass = ds.columns[0]
    bins, p = bin_factor(mass, ds.y, ds.kind)
    assert len(bins) == 10
    assert bins[0].low == 0.5 and bins[-1].high == 2.0
    assert [b.high for b in bins[:-1]] == pytest.approx([b.low for b in bins[1:]])
    assert sum(b.n for b in bins) == 600
    for b in bins:
        assert b.rate == b.successes / b.n
        assert (b.ci_low, b.ci_high) == wilson_interval(b.successes, b.n)
    assert p is not None and p < 1e-6  # mass is planted


def test_log_factor_bins_are_geometric(ds) -> None:  # type: ignore[no-untyped-def]
    friction = ds.columns[1]
    bins, _ = bin_factor(friction, ds.y, ds.kind, n_bins=4)
    edges = [bins[0].low] + [b.high for b in bins]
    assert edges == pytest.approx([0.01, 10**-1.5, 0.1, 10**-0.5, 1.0])


def test_bins_follow_the_spec_not_the_data() -> None:
    sweep = make_sweep(n=200, seed=1)
    spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=4.0)
    ds = prepare_dataset(sweep.records, [spec], "success")
    bins, _ = bin_factor(ds.columns[0], ds.y, ds.kind, n_bins=4)
    # data lie in [0.5, 2.0]: the upper half of the declared range is empty
    assert [b.n for b in bins] == [bins[0].n, 200 - bins[0].n, 0, 0]
    assert bins[3].rate is None and bins[3].successes == 0 and bins[3].ci_low is None


def test_categorical_bins_are_levels(ds) -> None:  # type: ignore[no-untyped-def]
    obj = ds.columns[2]
    bins, p = bin_factor(obj, ds.y, ds.kind)
    assert [b.level for b in bins] == ["cube", "can", "mug"]
    assert all(b.low is None for b in bins)
    assert p is not None and p < 1e-6


def test_continuous_outcome_uses_mean_t_interval_and_kruskal() -> None:
    ds = prepare_dataset(*make_sweep(n=300, seed=2).as_inputs(), "return")
    bins, p = bin_factor(ds.columns[0], ds.y, ds.kind, n_bins=3)
    b = bins[0]
    assert b.successes is None
    assert b.ci_low < b.rate < b.ci_high
    assert p is not None and 0 <= p <= 1


def test_independence_test_edge_cases() -> None:
    assert independence_test([np.ones(5)], "binary") is None
    assert independence_test([np.ones(5), np.ones(3)], "binary") is None
    p = independence_test([np.ones(30), np.zeros(30)], "binary")
    assert p is not None and p < 1e-10
    assert independence_test([np.full(4, 2.0), np.full(4, 2.0)], "continuous") is None


def test_bin_pair_shapes(ds) -> None:  # type: ignore[no-untyped-def]
    x_bins, y_bins, n, succ, rate = bin_pair(ds.columns[0], ds.columns[2], ds.y, ds.kind)
    assert len(x_bins) == 5 and [b.level for b in y_bins] == ["cube", "can", "mug"]
    assert len(n) == 3 and all(len(row) == 5 for row in n)
    assert sum(map(sum, n)) == 600
    assert succ is not None
    r = rate[0][0]
    assert r is not None and math.isclose(r, succ[0][0] / n[0][0])
