"""The model-free view: outcome rate per bin of each factor, with intervals.

This is what a reader can check by hand, so it assumes nothing about the shape
of an effect: the bins are :mod:`trialrun.binning`'s, the same as the report's
and ``compare``'s (equal-width over the *declared* range, equal-width in log
space for log-scale factors, about 25 episodes per bin, 3 to 10 of them),
categorical factors get one bin per level,
every bin reports its episode count, and binary rates carry Wilson 95%
intervals (from :func:`trialrun.stats.wilson_interval`). A chi-square test of
independence on the bins x {success, failure} table gives a model-free p-value
(for a continuous outcome, the Kruskal-Wallis test across bins, whose
statistic is also chi-square distributed).

Example:
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> from trialrun.analysis.dataset import prepare_dataset
    >>> ds = prepare_dataset(*make_sweep(n=300, seed=0).as_inputs(), "success")
    >>> bins, p = bin_factor(ds.columns[0], ds.y, ds.kind)
    >>> sum(b.n for b in bins)
    300
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from trialrun.analysis.dataset import FactorColumn, OutcomeKind
from trialrun.analysis.models import AxisBin, Bin
from trialrun.binning import assign_bins
from trialrun.binning import n_bins_for as n_bins_for  # re-exported: the analysis' bin count
from trialrun.stats import wilson_interval

logger = logging.getLogger(__name__)

#: Bins per continuous axis of the 2-D interaction view.
BINS_2D = 5


def bin_index(col: FactorColumn, n_bins: int) -> tuple[npt.NDArray[np.int64], list[AxisBin]]:
    """Bin of each episode and the bins' edges (factor units) or levels.

    The bins are :func:`trialrun.binning.assign_bins`'s, the ones the report
    and ``compare`` show. A categorical factor gets one bin per *declared*
    level, so a level that never occurred shows n = 0. Continuous values are
    clipped to the declared range first (the dataset let values within
    rounding of a bound through), so every episode is in a bin.
    """
    if col.kind == "categorical":
        assigned = assign_bins(col.spec, list(col.values))
        return assigned.index, [AxisBin(level=level) for level in assigned.levels]
    low, high = col.spec.low, col.spec.high
    values = np.asarray(col.values, dtype=float)
    if low is not None and high is not None:
        values = np.clip(values, low, high)
    assigned = assign_bins(col.spec, values, n_bins)
    edges = assigned.edges if assigned.edges is not None else np.zeros(0)
    axis = [AxisBin(low=float(edges[i]), high=float(edges[i + 1])) for i in range(len(edges) - 1)]
    return assigned.index, axis


def summarize_cell(
    y: np.ndarray, kind: OutcomeKind
) -> tuple[int | None, float | None, float | None, float | None]:
    """``(successes, rate, ci_low, ci_high)`` of the outcomes in one cell."""
    n = int(y.size)
    if n == 0:
        return (0 if kind == "binary" else None), None, None, None
    if kind == "binary":
        s = int(y.sum())
        lo, hi = wilson_interval(s, n)
        # rounding can leave the interval an ulp inside the rate at 0 or 1
        return s, s / n, min(lo, s / n), max(hi, s / n)
    mean = float(y.mean())
    if n < 2:
        return None, mean, None, None
    sd = float(y.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return None, mean, mean - half, mean + half


def bin_factor(
    col: FactorColumn, y: np.ndarray, kind: OutcomeKind, n_bins: int | None = None
) -> tuple[list[Bin], float | None]:
    """Binned rates of one factor and the chi-square (or Kruskal-Wallis) p-value;
    the p-value is ``None`` when there is nothing to test (one non-empty bin, or
    an outcome that never varies)."""
    nb = n_bins or n_bins_for(int(y.size))
    idx, axis = bin_index(col, nb)
    bins: list[Bin] = []
    groups: list[np.ndarray] = []
    for i, edge in enumerate(axis):
        yi = y[idx == i]
        s, rate, lo, hi = summarize_cell(yi, kind)
        bins.append(
            Bin(
                low=edge.low,
                high=edge.high,
                level=edge.level,
                n=int(yi.size),
                successes=s,
                rate=rate,
                ci_low=lo,
                ci_high=hi,
            )
        )
        if yi.size:
            groups.append(yi)
    return bins, independence_test(groups, kind)


def independence_test(groups: list[np.ndarray], kind: OutcomeKind) -> float | None:
    """Chi-square test of independence (binary) or Kruskal-Wallis (continuous)
    across the non-empty groups."""
    if len(groups) < 2:
        return None
    pooled = np.concatenate(groups)
    if np.ptp(pooled) == 0:
        return None
    if kind == "binary":
        table = np.array([[g.sum(), g.size - g.sum()] for g in groups])
        res = stats.chi2_contingency(table, correction=False)
        return float(res.pvalue)
    try:
        return float(stats.kruskal(*groups).pvalue)
    except ValueError:
        return None


def bin_pair(
    col_x: FactorColumn, col_y: FactorColumn, y: np.ndarray, kind: OutcomeKind
) -> tuple[list[AxisBin], list[AxisBin], list[list[int]], list[list[int]] | None, list[list[float | None]]]:
    """2-D cells of a pair: ``(x_bins, y_bins, n, successes, rate)`` with rows
    indexed by ``col_y``'s bins and columns by ``col_x``'s."""
    ix, ax = bin_index(col_x, BINS_2D)
    iy, ay = bin_index(col_y, BINS_2D)
    n: list[list[int]] = []
    succ: list[list[int]] = []
    rate: list[list[float | None]] = []
    for j in range(len(ay)):
        n_row, s_row, r_row = [], [], []
        for i in range(len(ax)):
            cell = y[(ix == i) & (iy == j)]
            s, r, _, _ = summarize_cell(cell, kind)
            n_row.append(int(cell.size))
            s_row.append(int(s or 0))
            r_row.append(r)
        n.append(n_row)
        succ.append(s_row)
        rate.append(r_row)
    return ax, ay, n, (succ if kind == "binary" else None), rate
