"""Paired comparison of two runs of one config (typically two checkpoints).

Two runs made from the same config see identical episodes: slot ``k`` of a job
has the same seed and factor values whatever policy runs it. So episodes are
paired by ``(job, episode)`` and compared pair by pair, which removes the
episode-to-episode variation that an unpaired comparison would have to
average out (far fewer episodes are needed to see a difference).

Per job, on the episodes both runs completed:

- success: B - A with **Newcombe's paired score interval** (Newcombe 1998,
  method 10: Wilson intervals of both rates, combined with the estimated
  correlation of the pairs) and **McNemar's test** (exact binomial test of the
  discordant pairs when there are fewer than 25 of them, else the chi-square
  test with continuity correction; statsmodels). Both live in
  :mod:`trialrun.stats`.
- return: mean of ``return_B - return_A`` with a **paired percentile
  bootstrap** interval (pairs are resampled, 2000 resamples, seeded), over the
  pairs with a return in both runs (the others are counted, never taken as 0).
- per factor bin (the bins of :mod:`trialrun.binning`, the same as in the
  report and the analysis: equal-width, or log-spaced for log-scale factors,
  over the spec's bounds, about 25 pairs per bin; one bin per categorical
  value): the same success difference and interval.

The metric of a job (:mod:`trialrun.compare.metric`): success when the job
reports success (a success rule, or an episode that succeeded), else return,
or ``--metric``; a continuous metric gets the bootstrap interval and a paired
t-test. p-values are Holm-adjusted across jobs.

The gate (``--fail-if-worse``): a job fails when B is worse than A on its
metric by more than ``margin`` (metric units) with 95% confidence: the
one-sided p-value of "B - A < -margin", Holm-adjusted across jobs, is below
0.025 (for one job on success: the upper bound of the 95% Newcombe interval
is below ``-margin``). ``sequential=True`` adds where an anytime-valid test
(:mod:`trialrun.sequential`) would have stopped.

Runs whose configs differ in what defines the episodes are refused
(:class:`ComparisonRefused`; see :mod:`trialrun.compare.pairing`).

The package reads run files only; it never imports the rollout side:
:mod:`~trialrun.compare.pairing` loads and pairs, :mod:`~trialrun.compare.build`
builds the :class:`Comparison` (the model of ``comparison.json``, in
:mod:`trialrun.runfiles.comparison`) and :mod:`~trialrun.compare.page` renders
``compare.html``.

Example:
    >>> lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    >>> round(lo, 4), round(hi, 4)
    (-0.1186, -0.0046)
"""

from trialrun.compare.build import compare_runs, default_out_dir, factor_bins, write_comparison
from trialrun.compare.page import render_compare_html
from trialrun.compare.pairing import config_difference
from trialrun.errors import ComparisonRefused
from trialrun.runfiles.comparison import Comparison, JobComparison, read_comparison
from trialrun.runfiles.names import COMPARE_HTML, COMPARISON_FILE
from trialrun.stats import mcnemar_test, newcombe_paired_interval

__all__ = [
    "COMPARE_HTML",
    "COMPARISON_FILE",
    "Comparison",
    "ComparisonRefused",
    "JobComparison",
    "compare_runs",
    "config_difference",
    "default_out_dir",
    "factor_bins",
    "mcnemar_test",
    "newcombe_paired_interval",
    "read_comparison",
    "render_compare_html",
    "write_comparison",
]
