"""What one evaluator run reports back to the trainer.

Example:
    >>> r = EvalResult(evaluator="nominal", status="completed", eval_seconds=1.5, epoch=3,
    ...                success_rate=0.75, success_ci_low=0.5, success_ci_high=0.9,
    ...                return_mean=120.0, length_mean=120.0, episodes=8)
    >>> r.metrics()["nominal/success_rate"], r.ok
    (0.75, True)
    >>> r.gate_passed, r.gate_verdict = False, "B worse"
    >>> r.metrics()["nominal/gate_passed"]
    0.0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

EvalStatus = Literal["completed", "failed"]

_METRICS = ("success_rate", "success_ci_low", "success_ci_high", "return_mean", "length_mean")


@dataclass
class JobResult:
    """One job of an evaluator run."""

    job: str
    status: str
    episodes: int
    success_rate: float | None = None
    success_ci_low: float | None = None
    success_ci_high: float | None = None
    return_mean: float | None = None
    length_mean: float | None = None
    error: str | None = None


@dataclass
class EvalResult:
    """The outcome of one evaluator run.

    ``status`` is ``completed`` when every job ran all its episodes, else
    ``failed`` with ``error`` (the message; ``traceback`` has the details). The
    metrics are over all episodes that finished, so a partly failed run still
    reports what it measured. ``eval_seconds`` is wall time as the trainer saw
    it (for ``mode: subprocess``, including starting the child process).
    """

    evaluator: str
    status: EvalStatus
    eval_seconds: float
    epoch: int | None = None
    global_step: int | None = None
    run_dir: Path | None = None
    episodes: int = 0
    success_rate: float | None = None
    success_ci_low: float | None = None
    success_ci_high: float | None = None
    return_mean: float | None = None
    length_mean: float | None = None
    jobs: dict[str, JobResult] = field(default_factory=dict)
    videos: list[Path] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    mode: str = "inline"
    checkpoint: Path | None = None
    gate_passed: bool | None = None
    """The evaluator's ``gate``: False when this run is worse than the
    baseline beyond the margin (see :class:`trialrun.suites.config.GateConfig`);
    None without a gate, without a baseline yet, or when the comparison failed."""
    gate_verdict: str | None = None
    """Why: the comparison's verdict (or why there was none)."""
    gate_baseline: Path | None = None

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    def metrics(self) -> dict[str, float]:
        """Scalar metrics keyed ``<evaluator>/<metric>`` and
        ``<evaluator>/<job>/<metric>``; metrics with no value are left out."""
        out: dict[str, float] = {}
        for name in _METRICS:
            value = getattr(self, name)
            if value is not None:
                out[f"{self.evaluator}/{name}"] = float(value)
        out[f"{self.evaluator}/eval_seconds"] = float(self.eval_seconds)
        if self.gate_passed is not None:
            out[f"{self.evaluator}/gate_passed"] = float(self.gate_passed)
        for job in self.jobs.values():
            for name in _METRICS:
                value = getattr(job, name)
                if value is not None:
                    out[f"{self.evaluator}/{job.job}/{name}"] = float(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (what the jsonl logger writes)."""
        return {
            "evaluator": self.evaluator,
            "status": self.status,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "mode": self.mode,
            "eval_seconds": self.eval_seconds,
            "episodes": self.episodes,
            "metrics": self.metrics(),
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "videos": [str(v) for v in self.videos],
            "error": self.error,
            "gate": None
            if self.gate_verdict is None
            else {
                "passed": self.gate_passed,
                "verdict": self.gate_verdict,
                "baseline": None if self.gate_baseline is None else str(self.gate_baseline),
            },
        }


def apply_gate(result: EvalResult, baseline: Path, *, metric: str | None, margin: float) -> None:
    """Compare ``result``'s run (B) with the ``baseline`` run (A) with
    :func:`trialrun.compare.compare_runs` and set ``result``'s gate fields:
    ``gate_passed`` is False when some job is worse than the baseline by more
    than ``margin`` (metric units) with 95% confidence (Holm across jobs). A
    comparison that cannot be made (the baseline is missing, or was made from
    another config) is logged as an error and leaves ``gate_passed`` None."""
    from trialrun.compare import compare_runs

    result.gate_baseline = baseline
    if result.run_dir is None:
        result.gate_verdict = "not compared: the evaluation wrote no run directory"
        return
    try:
        comparison = compare_runs(baseline, result.run_dir, metric=metric, margin=margin)
    except Exception as exc:
        logger.error(
            "evaluator '%s': the gate could not compare with %s: %s", result.evaluator, baseline, exc
        )
        result.gate_verdict = f"not compared: {type(exc).__name__}: {exc}"
        return
    result.gate_passed = not comparison.gate_failed
    verdict = f"{comparison.overall_verdict} on {comparison.metric} (B: this run, A: the baseline)"
    if comparison.failing_jobs:
        jobs = ", ".join(comparison.failing_jobs)
        verdict += f"; worse by more than the margin {margin:g} on job(s) {jobs}"
    result.gate_verdict = verdict
    (logger.info if result.gate_passed else logger.warning)(
        "evaluator '%s' gate %s: %s", result.evaluator, "passed" if result.gate_passed else "failed", verdict
    )
