"""Which outcome a comparison is about, and B - A on it.

The metric of a job is ``success`` when the job reports a success signal,
otherwise ``return`` (or the ``--metric`` asked for: ``success``, ``return``
or any outcome term of the records). A job reports success when its config
has a success rule (``success: survived``, ``{min_return: ...}``,
``{key: ...}`` in the run's stored config) or when at least one episode of
either run succeeded; otherwise its ``success`` is ``False`` everywhere by
construction, and a comparison of 0% against 0% says nothing.

Example:
    >>> success_rule({"key": None, "survived": True, "min_return": None})
    'success: survived'
    >>> success_rule({"key": None, "survived": False, "min_return": None}) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trialrun.compare.pairing import LoadedRun
from trialrun.errors import ComparisonRefused, InputError
from trialrun.runfiles.comparison import MetricComparison, MetricKind
from trialrun.runfiles.schema import EpisodeRecord, Interval
from trialrun.stats import (
    mcnemar_test,
    newcombe_paired_interval,
    newcombe_worse_p,
    paired_mean_difference,
    paired_t_test,
)

FloatArray = npt.NDArray[np.float64]

#: The metric chosen when none is asked for and the job reports no success.
FALLBACK_METRIC = "return"


def success_rule(rule: Any) -> str | None:
    """A readable form of a job's ``success`` config, or None when it has no rule
    (the env's own ``info["success"]`` is read then, if it has one)."""
    if rule == "survived":
        return "success: survived"
    if not isinstance(rule, dict):
        return None
    if rule.get("survived"):
        return "success: survived"
    if rule.get("min_return") is not None:
        return f"success: {{min_return: {rule['min_return']}}}"
    if rule.get("key") is not None:
        return f"success: {{key: {rule['key']}}}"
    return None


def success_signal(run_a: LoadedRun, run_b: LoadedRun, job: str) -> tuple[bool, str]:
    """Whether job ``job`` reports success, and why (or why not).

    Reported: the job config of either run has a success rule, or at least
    one episode of either run has ``outcome["success"]`` true.
    """
    for run in (run_a, run_b):
        try:
            rule = success_rule(run.job_config(job).get("success"))
        except KeyError:
            rule = None
        if rule:
            return True, f"the job has a success rule ({rule})"
    counts = []
    for side, run in (("A", run_a), ("B", run_b)):
        n = sum(1 for rec in run.records.get(job, {}).values() if rec.outcome.get("success"))
        if n:
            counts.append(f"{n} in run {side}")
    if counts:
        return True, f"the env reported success (episodes that succeeded: {', '.join(counts)})"
    return (
        False,
        "no success signal in either run (no success rule in the job config, and no episode succeeded)",
    )


def choose_metric(requested: str | None, run_a: LoadedRun, run_b: LoadedRun, job: str) -> tuple[str, str]:
    """``(metric, reason)`` for job ``job``.

    Raises:
        ComparisonRefused: ``success`` was asked for and the job reports none.
    """
    reported, why = success_signal(run_a, run_b, job)
    if requested is None:
        if reported:
            return "success", why
        return FALLBACK_METRIC, why
    if requested == "success" and not reported:
        raise ComparisonRefused(
            f"job '{job}': success is not reported: {why}. Compare another outcome (--metric return), or "
            "give the job a success rule (success: survived, {min_return: ...} or {key: ...}) and run again"
        )
    return requested, "asked for with --metric" + (f"; {why}" if requested == "success" else "")


def metric_values(
    pairs: Sequence[tuple[EpisodeRecord, EpisodeRecord]], metric: str, job: str
) -> tuple[FloatArray, FloatArray, MetricKind]:
    """The paired values of ``metric`` (NaN where a record lacks it) and its kind.

    Success is binary (a missing success is a failure, as in the summary);
    another term is binary when all its values are booleans.

    Raises:
        InputError: no record of the job has the term.
    """
    if metric == "success":
        a = np.array([float(bool(ra.outcome.get("success"))) for ra, _ in pairs])
        b = np.array([float(bool(rb.outcome.get("success"))) for _, rb in pairs])
        return a, b, "binary"
    raw_a = [ra.outcome.get(metric) for ra, _ in pairs]
    raw_b = [rb.outcome.get(metric) for _, rb in pairs]
    present = [v for v in raw_a + raw_b if v is not None]
    if pairs and not present:
        terms = sorted({k for ra, rb in pairs for k in (*ra.outcome, *rb.outcome)})
        raise InputError(
            f"job '{job}': no record has the outcome '{metric}'; its outcomes: {', '.join(terms)}"
        )
    kind: MetricKind = "binary" if present and all(isinstance(v, bool) for v in present) else "continuous"

    def num(v: Any) -> float:
        if v is None or isinstance(v, str):
            return math.nan
        return float(v)

    return np.array([num(v) for v in raw_a]), np.array([num(v) for v in raw_b]), kind


def compare_metric(
    metric: str, kind: MetricKind, a: FloatArray, b: FloatArray, *, margin: float, seed: int
) -> MetricComparison | None:
    """B - A on the metric over the pairs with a value on both sides (None when there is none)."""
    valid = np.isfinite(a) & np.isfinite(b)
    left_out = int((~valid).sum())
    if not valid.any():
        return None
    a, b = a[valid], b[valid]
    n = int(valid.sum())
    if kind == "binary":
        sa, sb = a > 0.5, b > 0.5
        both, only_a = int(np.sum(sa & sb)), int(np.sum(sa & ~sb))
        only_b, neither = int(np.sum(~sa & sb)), int(np.sum(~sa & ~sb))
        low, high = newcombe_paired_interval(both, only_b, only_a, neither)
        p, method = mcnemar_test(only_a, only_b)
        return MetricComparison(
            metric=metric,
            kind=kind,
            a_value=float(sa.mean()),
            b_value=float(sb.mean()),
            difference=(only_b - only_a) / n,
            ci=Interval(low=low, high=high, method="newcombe-paired-score"),
            p_value=p,
            test=f"mcnemar ({method})",
            p_worse=newcombe_worse_p(both, only_b, only_a, neither, margin),
            pairs=n,
            left_out=left_out,
        )
    d = b - a
    difference, (low, high) = paired_mean_difference(a, b, seed=seed)
    return MetricComparison(
        metric=metric,
        kind=kind,
        a_value=float(a.mean()),
        b_value=float(b.mean()),
        difference=difference,
        ci=Interval(low=low, high=high, method="paired-percentile-bootstrap"),
        p_value=paired_t_test(d),
        test="paired t-test",
        p_worse=paired_t_test(d, null=-margin, alternative="less"),
        pairs=n,
        left_out=left_out,
    )


__all__ = [
    "FALLBACK_METRIC",
    "choose_metric",
    "compare_metric",
    "metric_values",
    "success_rule",
    "success_signal",
]
