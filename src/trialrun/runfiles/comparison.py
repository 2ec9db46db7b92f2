"""``comparison.json``: the paired comparison of run B against run A.

Written by ``trialrun compare`` into ``RUN_B/compare/vs-<RUN_A>/`` (see
:meth:`~trialrun.runfiles.names.RunLayout.comparison_dir`), read back by the
report of run B. These models are the file's contract; they import nothing
but the run-file schema.

Example:
    >>> import tempfile, pathlib
    >>> read_comparison(pathlib.Path(tempfile.mkdtemp()))
    Traceback (most recent call last):
    ...
    trialrun.errors.RunFileError: .../comparison.json: no such file
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trialrun.runfiles.names import COMPARISON_FILE
from trialrun.runfiles.readers import read_model
from trialrun.runfiles.schema import FactorValue, Interval, StoppedEarly

COMPARISON_SCHEMA = 1

#: How McNemar's p-value was computed.
McNemarMethod = Literal["exact-binomial", "chi2-continuity-corrected"]
#: What the interval of B - A success says about a job.
Verdict = Literal["B better", "B worse", "no clear difference", "no shared episodes"]
#: The verdict across jobs (Holm-adjusted): "mixed" when some jobs are better and others worse.
OverallVerdict = Literal["B better", "B worse", "mixed", "no clear difference", "no shared episodes"]
#: A binary metric (success, boolean terms) or a continuous one (return, numeric terms).
MetricKind = Literal["binary", "continuous"]
#: What a sequential test decided.
SequentialDecision = Literal["B better", "B worse", "equivalent", "undecided"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuccessComparison(_Strict):
    """Success of the paired episodes: rates, B - A and its interval, McNemar's test."""

    a_rate: float
    b_rate: float
    difference: float
    ci: Interval
    both: int
    only_a: int
    only_b: int
    neither: int
    mcnemar_p: float
    mcnemar_method: McNemarMethod


class ReturnComparison(_Strict):
    """Mean return of the paired episodes and the mean of the paired differences.

    Only pairs with a return on both sides count: ``pairs`` of them, and
    ``left_out`` pairs without a return on either side were left out (a
    missing return is never taken as 0).
    """

    a_mean: float
    b_mean: float
    difference: float
    ci: Interval
    pairs: int | None = None
    left_out: int = 0


class BinComparison(_Strict):
    """B - A within one bin of one factor."""

    label: str
    low: float | None = None
    high: float | None = None
    value: FactorValue | None = None
    pairs: int
    a_rate: float | None
    b_rate: float | None
    difference: float | None
    ci: Interval | None
    return_difference: float | None


class FactorComparison(_Strict):
    """The per-bin differences of one factor."""

    factor: str
    kind: Literal["continuous", "categorical"]
    scale: Literal["linear", "log"] = "linear"
    bins: list[BinComparison]


class MetricComparison(_Strict):
    """B - A on the compared metric, with its interval and tests.

    ``p_value`` tests "no difference" (McNemar for a binary metric, the paired
    t-test for a continuous one); ``p_adjusted`` is Holm-adjusted across the
    compared jobs. ``p_worse`` is the one-sided p-value of "B is worse than A
    by more than the margin" (inverted Newcombe interval, or the paired t-test
    against ``-margin``) and ``p_worse_adjusted`` its Holm adjustment; the gate
    fails for a job when ``p_worse_adjusted < (1 - level) / 2``.
    """

    metric: str
    kind: MetricKind
    a_value: float
    b_value: float
    difference: float
    ci: Interval
    p_value: float
    p_adjusted: float | None = None
    test: str
    p_worse: float | None = None
    p_worse_adjusted: float | None = None
    pairs: int
    left_out: int = 0


class SequentialComparison(_Strict):
    """Where an anytime-valid sequential test, reading the pairs in planned
    episode order every ``batch`` pairs, would have stopped (``trialrun.sequential``)."""

    metric: str
    kind: MetricKind
    decision: SequentialDecision
    stopped_at: int
    planned: int
    saved: int
    batch: int
    alpha: float
    e_value: float
    max_e_value: float
    p_value: float
    method: str
    discordant: int | None = None
    bound: float | None = None
    clipped: int = 0
    checks: list[int] = Field(default_factory=list)
    e_path: list[float] = Field(default_factory=list)
    margin: float | None = None
    """The equivalence margin (metric units); "equivalent" means B - A is inside +-margin."""
    equivalence_e_value: float | None = None
    """The smaller e-value of the two one-sided equivalence tests at the stop."""
    final_critical: int | None = None
    """Binary: the critical |B only - A only| of the truncated test's final look."""
    at_final_look: bool = False


class JobComparison(_Strict):
    """Everything compared for one job."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    job: str
    policy_a: dict[str, Any]
    policy_b: dict[str, Any]
    pairs: int
    only_in_a: int
    only_in_b: int
    success: SuccessComparison | None
    return_: ReturnComparison | None = Field(default=None, alias="return")
    factors: list[FactorComparison] = Field(default_factory=list)
    verdict: Verdict
    half_width: float | None = None
    target_half_width: float | None = None
    meets_target: bool | None = None
    worse_beyond_margin: bool = False
    metric: str | None = None
    metric_reason: str | None = None
    metric_comparison: MetricComparison | None = None
    sequential: SequentialComparison | None = None
    stopped_early_a: StoppedEarly | None = None
    """Run A's job was stopped by ``run --stop-when`` (fewer pairs than planned)."""
    stopped_early_b: StoppedEarly | None = None


class RunRef(_Strict):
    """Which run a side of the comparison is."""

    name: str
    dir: str
    seed: int


class Comparison(_Strict):
    """``comparison.json``: the paired comparison of run B against run A."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=COMPARISON_SCHEMA, alias="schema")
    run_a: RunRef
    run_b: RunRef
    level: float = 0.95
    margin: float
    created_at: str
    jobs: dict[str, JobComparison]
    jobs_only_in_a: list[str] = Field(default_factory=list)
    jobs_only_in_b: list[str] = Field(default_factory=list)
    gate_failed: bool
    failing_jobs: list[str] = Field(default_factory=list)
    methods: dict[str, str] = Field(default_factory=dict)
    metric: str | None = None
    metric_reason: str | None = None
    overall_verdict: OverallVerdict | None = None


def read_comparison(out_dir: Path) -> Comparison:
    """The ``comparison.json`` in ``out_dir`` (raises
    :class:`~trialrun.errors.RunFileError` naming the file and the field)."""
    return read_model(Path(out_dir) / COMPARISON_FILE, Comparison)


__all__ = [
    "COMPARISON_SCHEMA",
    "BinComparison",
    "Comparison",
    "FactorComparison",
    "JobComparison",
    "McNemarMethod",
    "MetricComparison",
    "MetricKind",
    "OverallVerdict",
    "ReturnComparison",
    "RunRef",
    "SequentialComparison",
    "SequentialDecision",
    "SuccessComparison",
    "Verdict",
    "read_comparison",
]
