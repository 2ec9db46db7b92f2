"""The model-free view: outcome rate per bin of each factor, with intervals.

This is what a reader can check by hand, so it assumes nothing about the shape
of an effect: bins are equal-width over the *declared* range (equal-width in
log space for log-scale factors), categorical factors get one bin per level,
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
from scipy import stats

from trialrun.analysis.dataset import FactorColumn, OutcomeKind
from trialrun.analysis.models import AxisBin, Bin
from trialrun.binning import level_key
from trialrun.stats import wilson_interval

logger = logging.getLogger(__name__)

#: Bins per continuous factor: about 25 episodes per bin, between 3 and 10.
MIN_BINS, MAX_BINS, EPISODES_PER_BIN = 3, 10, 25
#: Bins per continuous axis of the 2-D interaction view.
BINS_2D = 5


def n_bins_for(n: int) -> int:
    """Number of bins for ``n`` episodes (about 25 per bin, 3 to 10).

    Example:
        >>> n_bins_for(100), n_bins_for(10_000)
        (4, 10)
    """
    return int(np.clip(n // EPISODES_PER_BIN, MIN_BINS, MAX_BINS))


def bin_index(col: FactorColumn, n_bins: int) -> tuple[np.ndarray, list[AxisBin]]:
    """Bin of each episode and the bins' edges (factor units) or levels."""
    if col.kind == "categorical":
        # one bin per *declared* level, so a level that never occurred shows n = 0
        assert col.codes is not None
        declared = list(col.spec.values or col.levels)
        position = {level_key(lv): i for i, lv in enumerate(declared)}
        mapping = np.array([position[level_key(lv)] for lv in col.levels], dtype=int)
        return mapping[col.codes], [AxisBin(level=lv) for lv in declared]
    assert col.u is not None
    if col.spec.low == col.spec.high:
        v = float(col.spec.low)  # type: ignore[arg-type]
        return np.zeros(col.u.size, dtype=int), [AxisBin(low=v, high=v)]
    edges = col.from_unit(np.linspace(0.0, 1.0, n_bins + 1))
    idx = np.minimum((col.u * n_bins).astype(int), n_bins - 1)
    return idx, [AxisBin(low=float(edges[i]), high=float(edges[i + 1])) for i in range(n_bins)]


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
