"""The view of a run the report renders: one :class:`RunView` with a
:class:`JobView` per job (built by :func:`trialrun.report.data.load_run`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trialrun.report.bins import FactorBins
from trialrun.report.sections import ComparisonView, SensitivityView
from trialrun.runfiles.names import ANALYSIS_DIR as ANALYSIS_DIR  # re-exported for the builder
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, JobSummary, Manifest, StoppedEarly, Summary

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the run


@dataclass
class JobView:
    """One job: its manifest entry, its summary, its factor charts."""

    index: int
    name: str
    status: str
    planned: int
    summary: JobSummary
    factors: list[FactorSpec]
    factor_bins: list[FactorBins]
    error: str | None = None
    traceback: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    stopped_early: StoppedEarly | None = None
    """Set when ``run --stop-when`` stopped the job: the report shows the decision and the episodes saved."""

    @property
    def failures(self) -> int:
        """Episodes of the job that did not succeed."""
        return self.summary.episodes - self.summary.successes

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds the job ran (None if it has not ended)."""
        return duration_s(self.started_at, self.ended_at)


@dataclass
class RunView:
    """Everything the report shows about one run."""

    run_dir: Path
    manifest: Manifest
    summary: Summary
    summary_computed: bool
    jobs: list[JobView]
    records: list[EpisodeRecord]
    sensitivity: list[SensitivityView]
    notes: list[str] = field(default_factory=list)
    comparisons: list[ComparisonView] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``completed``, ``failed`` (a job failed) or ``incomplete`` (still
        running, or stopped before its end)."""
        if any(j.status == "failed" for j in self.jobs):
            return "failed"
        if self.manifest.ended_at is None or any(j.status != "completed" for j in self.jobs):
            return "incomplete"
        return "completed"

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds of the whole run (None if it has not ended)."""
        return duration_s(self.manifest.started_at, self.manifest.ended_at)


def parse_time(text: str | None) -> datetime | None:
    """An ISO-8601 UTC time as written in run files (``...Z``), or None."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def duration_s(start: str | None, end: str | None) -> float | None:
    """Seconds between two run-file times (None when either is missing)."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return (b - a).total_seconds()
