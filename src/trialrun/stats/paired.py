"""Paired comparisons of two runs' outcomes: Newcombe's paired interval,
McNemar's test, the paired bootstrap and t-test, Holm's adjustment.

Example:
    >>> lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    >>> round(lo, 4), round(hi, 4)
    (-0.1186, -0.0046)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from trialrun.runfiles.comparison import McNemarMethod
from trialrun.stats.intervals import bootstrap_mean_interval, wilson_interval

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- paired comparisons

#: McNemar's test is exact (binomial) below this many discordant pairs.
EXACT_MCNEMAR_BELOW = 25


def newcombe_paired_interval(
    both: int, only_b: int, only_a: int, neither: int, level: float = 0.95
) -> tuple[float, float]:
    """Newcombe's paired score interval (method 10) for ``rate_B - rate_A``.

    Arguments are the counts of the paired 2x2 table: both succeeded, only B,
    only A, neither. Chosen over the Wald interval because it stays in [-1, 1]
    and keeps near-nominal coverage at rates near 0 or 1 and at small n.

    Example:
        >>> lo, hi = newcombe_paired_interval(59, 6, 16, 80)
        >>> round(lo, 4), round(hi, 4)
        (-0.1186, -0.0046)
    """
    n = both + only_b + only_a + neither
    if n <= 0:
        raise ValueError("no pairs")
    b_succ, a_succ = both + only_b, both + only_a
    p1, p2 = b_succ / n, a_succ / n
    l1, u1 = wilson_interval(b_succ, n, level)
    l2, u2 = wilson_interval(a_succ, n, level)
    margins = [b_succ, n - b_succ, a_succ, n - a_succ]
    psi = 0.0
    if all(margins):
        cross = both * neither - only_b * only_a
        if cross > n / 2:
            psi = (cross - n / 2) / math.sqrt(math.prod(margins))
        elif cross < 0:
            psi = cross / math.sqrt(math.prod(margins))
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)))
    high = d + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


def mcnemar_test(only_a: int, only_b: int) -> tuple[float, McNemarMethod]:
    """McNemar's p-value for the discordant counts and the method used: the
    exact binomial test below 25 discordant pairs, else chi-square with
    continuity correction (statsmodels).

    Example:
        >>> p, method = mcnemar_test(only_a=10, only_b=2)
        >>> round(p, 5), method
        (0.03857, 'exact-binomial')
    """
    from statsmodels.stats.contingency_tables import mcnemar

    discordant = only_a + only_b
    if discordant == 0:
        return 1.0, "exact-binomial"
    exact = discordant < EXACT_MCNEMAR_BELOW
    result = mcnemar([[0, only_a], [only_b, 0]], exact=exact, correction=True)
    return float(min(1.0, result.pvalue)), "exact-binomial" if exact else "chi2-continuity-corrected"


def paired_mean_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    seed: int,
    level: float = 0.95,
    resamples: int = 2000,
) -> tuple[float, tuple[float, float]]:
    """Mean of the paired differences ``b - a`` and its paired percentile
    bootstrap interval (the pairs are resampled, so their correlation is kept).

    Example:
        >>> diff, (lo, hi) = paired_mean_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], seed=0)
        >>> diff, lo, hi
        (1.0, 1.0, 1.0)
    """
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diffs.size == 0:
        raise ValueError("no pairs")
    return float(diffs.mean()), bootstrap_mean_interval(diffs, seed=seed, level=level, resamples=resamples)


# --------------------------------------------------------------------------- tests for compare's metrics


def paired_t_test(
    differences: Sequence[float] | np.ndarray, null: float = 0.0, alternative: str = "two-sided"
) -> float:
    """p-value of the paired t-test on ``differences`` (``b - a``) against a
    mean of ``null`` (scipy's one-sample t-test on the differences).
    ``alternative`` is ``"two-sided"`` or ``"less"`` (mean below ``null``).

    Degenerate samples (one difference, or all equal) have no variance: the
    p-value is then 0 or 1 by the side the mean is on (two-sided: 1 only when
    the mean equals ``null``).

    Example:
        >>> round(paired_t_test([1.0, 2.0, 3.0, 4.0]), 4)
        0.0305
        >>> paired_t_test([-5.0, -5.0], null=-1.0, alternative="less")
        0.0
    """
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ValueError("no pairs")
    mean = float(d.mean())
    if d.size == 1 or np.all(d == d[0]):
        if alternative == "less":
            return 0.0 if mean < null else 1.0
        return 1.0 if mean == null else 0.0
    result = _sps.ttest_1samp(d, null, alternative=alternative)
    return float(result.pvalue)


def newcombe_worse_p(both: int, only_b: int, only_a: int, neither: int, margin: float) -> float:
    """One-sided p-value of "B's success rate is below A's by more than
    ``margin``", from inverting Newcombe's paired interval: half of one minus
    the level at which the interval's upper bound is ``-margin``. So
    ``p < 0.025`` exactly when the 95% interval lies below ``-margin``.

    Example:
        >>> newcombe_worse_p(59, 6, 16, 80, 0.0) < 0.025  # the 95% interval is below 0
        True
    """
    n = both + only_b + only_a + neither
    if n <= 0:
        raise ValueError("no pairs")
    if (only_b - only_a) / n >= -margin:
        return 1.0

    def upper(level: float) -> float:
        return newcombe_paired_interval(both, only_b, only_a, neither, level)[1]

    lo_level, hi_level = 1e-9, 1 - 1e-12
    if upper(hi_level) < -margin:
        return (1 - hi_level) / 2
    for _ in range(60):
        mid = (lo_level + hi_level) / 2
        if upper(mid) < -margin:
            lo_level = mid
        else:
            hi_level = mid
    return float((1 - (lo_level + hi_level) / 2) / 2)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels ``multipletests(method="holm")``),
    in the order given.

    Example:
        >>> [round(p, 3) for p in holm_adjust([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    if not len(p_values):
        return []
    from statsmodels.stats.multitest import multipletests

    adjusted = multipletests(np.asarray(p_values, dtype=float), method="holm")[1]
    return [float(p) for p in adjusted]
