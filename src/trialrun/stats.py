"""Aggregate statistics over episode outcomes: pure functions over recorded data.

Everything here takes arrays (or records) and returns numbers; nothing reads
the simulator. Random draws (the bootstrap) come from a generator derived from
an explicit seed so a summary is reproducible.

Example:
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import numpy as np
from scipy import stats as _sps

from trialrun.runfiles.comparison import McNemarMethod
from trialrun.runfiles.schema import (
    EpisodeRecord,
    Interval,
    JobState,
    JobSummary,
    Outcome,
    SuccessStatus,
    Summary,
)

logger = logging.getLogger(__name__)


class HasOutcome(Protocol):
    """What a summary reads from an episode: an :class:`EpisodeRecord` or an
    :class:`EpisodeOutcome`."""

    @property
    def job(self) -> str: ...

    @property
    def episode(self) -> int: ...

    @property
    def outcome(self) -> Outcome: ...


class EpisodeOutcome(NamedTuple):
    """The part of a record a summary needs.

    Why: the runner keeps every finished episode until the run's summary; a
    tuple of plain values costs a fraction of a full record's memory and, unlike
    a record, is not traversed by the garbage collector over and over.
    """

    job: str
    episode: int
    outcome: Outcome

    @classmethod
    def of(cls, record: EpisodeRecord) -> EpisodeOutcome:
        """The outcome part of ``record``."""
        return cls(record.job, record.episode, record.outcome)


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


# --------------------------------------------------------------------------- summaries

#: The job name of a summary's overall entry.
OVERALL = "(all)"


def _number(value: float | None) -> float:
    """An outcome value as a float; missing values (JSON null) become NaN."""
    return float("nan") if value is None else float(value)


#: The fix printed when a job's success is ``absent`` (docs/configuration.md).
SUCCESS_FIX = "set success: survived / {min_return: X} / {key: NAME} in the job"


def success_status(
    records: Sequence[HasOutcome], success_rule: bool = False, success_seen: bool | None = None
) -> SuccessStatus | None:
    """Where a job's ``success`` came from.

    ``rule`` when the job configures a success rule (``survived``,
    ``min_return`` or an explicit ``key``); else ``reported`` when an episode
    succeeded or the env reported the key (``success_seen``); else ``absent``
    when the env never reported it (``success_seen=False``) or no record has a
    ``success`` value (records made elsewhere). With ``success_seen`` unknown
    (None) and only failed episodes, the records cannot tell: ``reported``.
    None for a job without episodes and without a rule.

    Example:
        >>> fail = EpisodeOutcome("j", 0, {"success": False, "return": -3.0})
        >>> success_status([fail]), success_status([fail], success_seen=False)
        ('reported', 'absent')
        >>> success_status([fail], success_rule=True), success_status([EpisodeOutcome("j", 0, {})])
        ('rule', 'absent')
    """
    if success_rule:
        return "rule"
    if success_seen or any(r.outcome.get("success") for r in records):
        return "reported"
    if success_seen is False:
        return "absent"
    if not records:
        return None
    if all(r.outcome.get("success") is None for r in records):
        return "absent"
    return "reported"


def summarize_job(
    job: str,
    records: Sequence[HasOutcome],
    planned: int,
    seed: int,
    status: JobState | None = None,
    target_half_width: float | None = None,
    *,
    success_rule: bool = False,
    success_seen: bool | None = None,
) -> JobSummary:
    """Aggregates of one job's records: success rate with a Wilson 95% interval,
    mean return with a seeded bootstrap 95% interval, IQM of return, mean length.

    ``half_width`` is half the success interval's width; with a
    ``target_half_width``, ``meets_target`` says whether the job reached it.
    ``success_rule`` (the job configures ``success:``) and ``success_seen``
    (the env reported the success key at some step; None when not known) give
    ``success_status`` (see :func:`success_status`); ``absent`` logs a warning
    naming the job and the fix."""
    n = len(records)
    successes = sum(1 for r in records if r.outcome.get("success"))
    signal = success_status(records, success_rule, success_seen)
    if signal == "absent" and n and job != OVERALL:
        logger.warning(
            "job '%s': success was never reported (no info['success'] or info['is_success']), "
            "so its success rate means nothing; %s",
            job,
            SUCCESS_FIX,
        )
    raw_returns = np.array([_number(r.outcome.get("return")) for r in records], dtype=float)
    finite = np.isfinite(raw_returns)
    invalid_returns = int((~finite).sum())
    if invalid_returns:
        # A diverged simulation can return NaN or inf: leave those episodes out
        # of the return statistics (and say so) rather than poison the mean.
        logger.warning(
            "job '%s': %d episode(s) have no finite return; return statistics leave them out",
            job,
            invalid_returns,
        )
    returns = raw_returns[finite]
    m = len(returns)
    lengths = np.array([float(r.outcome.get("length") or 0) for r in records])
    success_ci = None
    return_ci = None
    if n:
        lo, hi = wilson_interval(successes, n)
        success_ci = Interval(low=lo, high=hi, method="wilson")
    if m:
        blo, bhi = bootstrap_mean_interval(returns, seed=seed)
        return_ci = Interval(low=blo, high=bhi, method="percentile-bootstrap")
    half_width = (success_ci.high - success_ci.low) / 2 if success_ci is not None else None
    return JobSummary(
        job=job,
        status=status,
        planned=planned,
        episodes=n,
        successes=successes,
        success_rate=successes / n if n else None,
        success_ci=success_ci,
        return_mean=float(returns.mean()) if m else None,
        return_ci=return_ci,
        return_iqm=iqm(returns) if m else None,
        return_std=float(returns.std(ddof=1)) if m > 1 else (0.0 if m else None),
        invalid_returns=invalid_returns,
        length_mean=float(lengths.mean()) if n else None,
        terminated=sum(1 for r in records if r.outcome.get("terminated")),
        truncated=sum(1 for r in records if r.outcome.get("truncated")),
        half_width=half_width,
        target_half_width=target_half_width,
        meets_target=None
        if target_half_width is None or half_width is None
        else bool(half_width <= target_half_width + 1e-12),
        success_status=signal,
    )


def summarize_run(
    run: str,
    records: Sequence[HasOutcome],
    planned: dict[str, int],
    statuses: dict[str, JobState],
    seed: int,
    target_half_width: float | None = None,
    *,
    success_rules: dict[str, bool] | None = None,
    success_seen: dict[str, bool] | None = None,
) -> Summary:
    """Per-job and overall summaries. Jobs appear in ``planned`` order; the
    bootstrap of each job uses its own seed derived from ``seed`` and the job's
    position, so adding a job does not change another job's interval.
    ``target_half_width`` (the run config's) is checked for every job.
    ``success_rules`` (job -> the job configures a success rule) and
    ``success_seen`` (job -> the env reported the success key) give each job's
    ``success_status``; a job missing from them counts as no rule / unknown.
    The overall status is the jobs' common status (None when they differ)."""
    rules = success_rules or {}
    seen = success_seen or {}
    by_job: dict[str, list[HasOutcome]] = {name: [] for name in planned}
    for rec in records:
        by_job.setdefault(rec.job, []).append(rec)
    for recs in by_job.values():
        recs.sort(key=lambda r: r.episode)
    seeds = np.random.SeedSequence(seed).spawn(len(by_job) + 1)
    jobs = {
        name: summarize_job(
            name,
            by_job[name],
            planned.get(name, len(by_job[name])),
            int(seeds[i].generate_state(1)[0]),
            statuses.get(name),
            target_half_width,
            success_rule=rules.get(name, False),
            success_seen=seen.get(name),
        )
        for i, name in enumerate(by_job)
    }
    if len(jobs) == 1:
        # One job: the overall numbers are that job's (no second bootstrap).
        (only,) = jobs.values()
        overall = only.model_copy(
            update={"job": OVERALL, "status": None, "target_half_width": None, "meets_target": None}
        )
    else:
        all_records = [r for name in by_job for r in by_job[name]]
        overall = summarize_job(
            OVERALL, all_records, sum(planned.values()), int(seeds[-1].generate_state(1)[0])
        )
        kinds = {j.success_status for j in jobs.values()}
        overall.success_status = kinds.pop() if len(kinds) == 1 else None
    return Summary(run=run, jobs=jobs, overall=overall)


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
