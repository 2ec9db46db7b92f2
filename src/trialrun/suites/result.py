"""What one evaluator run reports back to the trainer.

Example:
    >>> r = EvalResult(evaluator="nominal", status="completed", eval_seconds=1.5, epoch=3,
    ...                success_rate=0.75, success_ci_low=0.5, success_ci_high=0.9,
    ...                return_mean=120.0, length_mean=120.0, episodes=8)
    >>> r.metrics()["nominal/success_rate"], r.ok
    (0.75, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
        }
