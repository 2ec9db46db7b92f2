"""Aggregate statistics over episode outcomes: pure functions over recorded data.

Everything here takes arrays (or records) and returns numbers; nothing reads
the simulator. Random draws (the bootstrap) come from a generator derived from
an explicit seed so a summary is reproducible.

Example:
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
"""

from trialrun.stats.intervals import (
    bootstrap_mean_interval,
    iqm,
    wilson_episodes_needed,
    wilson_interval,
)
from trialrun.stats.paired import (
    EXACT_MCNEMAR_BELOW,
    holm_adjust,
    mcnemar_test,
    newcombe_paired_interval,
    newcombe_worse_p,
    paired_mean_difference,
    paired_t_test,
)
from trialrun.stats.summary import (
    OVERALL,
    SUCCESS_FIX,
    EpisodeOutcome,
    HasOutcome,
    success_status,
    summarize_job,
    summarize_run,
    summarize_tallies,
)
from trialrun.stats.tally import OutcomeTally

__all__ = [
    "EXACT_MCNEMAR_BELOW",
    "OVERALL",
    "SUCCESS_FIX",
    "EpisodeOutcome",
    "HasOutcome",
    "OutcomeTally",
    "bootstrap_mean_interval",
    "holm_adjust",
    "iqm",
    "mcnemar_test",
    "newcombe_paired_interval",
    "newcombe_worse_p",
    "paired_mean_difference",
    "paired_t_test",
    "success_status",
    "summarize_job",
    "summarize_run",
    "summarize_tallies",
    "wilson_episodes_needed",
    "wilson_interval",
]
