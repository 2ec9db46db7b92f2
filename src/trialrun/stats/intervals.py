"""Intervals and robust means of one sample: Wilson, bootstrap, IQM.

Example:
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _sps

logger = logging.getLogger(__name__)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Chosen over the normal (Wald) interval because it stays inside [0, 1] and
    keeps close to nominal coverage at rates near 0 or 1 and small ``n``, which
    is exactly where policy evaluation lives.
    """
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = float(_sps.norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def wilson_episodes_needed(rate: float, half_width: float, level: float = 0.95) -> int:
    """Smallest ``n`` whose Wilson interval at ``rate`` has at most ``half_width``."""
    if not 0 <= rate <= 1:
        raise ValueError("rate must be in [0, 1]")
    if not 0 < half_width < 0.5:
        raise ValueError("half_width must be in (0, 0.5)")
    n = 1
    while True:
        lo, hi = wilson_interval(round(rate * n), n, level)
        if (hi - lo) / 2 <= half_width:
            return n
        n += 1


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's 25% trimmed mean).

    Robust to a few runaway episodes, as recommended for RL evaluation
    (Agarwal et al., 2021).
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("iqm of no values")
    return float(_sps.trim_mean(arr, 0.25))


def bootstrap_mean_interval(
    values: Sequence[float] | np.ndarray,
    seed: int,
    level: float = 0.95,
    resamples: int = 2000,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean, from a seeded generator.

    When the values repeat a lot (lengths, the integer returns of CartPole),
    a resample is drawn as multinomial counts over the distinct values instead
    of ``n`` indices: the same bootstrap distribution, in ``O(distinct)`` per
    resample instead of ``O(n)`` (30,000 CartPole episodes: ~10 ms, not 300 ms).
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("bootstrap of no values")
    if arr.size >= 2**32:
        raise ValueError("bootstrap of more than 2**32 values")
    if arr.size == 1 or np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(arr, return_counts=True)
    draw: Callable[[int], np.ndarray]
    if distinct.size * 8 <= arr.size:
        columns = distinct.size
        shares = counts / arr.size

        def draw(count: int) -> np.ndarray:
            weights = rng.multinomial(arr.size, shares, size=count)
            return np.asarray(weights @ distinct / arr.size, dtype=float)
    else:
        columns = arr.size

        def draw(count: int) -> np.ndarray:
            picks = rng.integers(0, arr.size, size=(count, arr.size), dtype=np.uint32)
            return np.asarray(arr[picks].mean(axis=1), dtype=float)

    # Resample in chunks of about a million draws: one (resamples x n) array
    # would take gigabytes for a run of 100,000 episodes. The draws come from
    # the same stream in the same order, so the interval is unchanged.
    means = np.empty(resamples)
    rows = max(1, 2**20 // columns)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        means[start : start + count] = draw(count)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)
