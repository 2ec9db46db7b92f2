"""Reading a finished evaluator run back: :func:`result_from_run_dir` turns the
run directory an evaluator wrote (inline, or in a child process) into its
:class:`~trialrun.suites.result.EvalResult`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trialrun.runfiles import EPISODES_FILE, read_episodes, read_manifest, read_summary
from trialrun.runfiles.schema import JobSummary
from trialrun.suites.result import EvalResult, JobResult


def result_from_run_dir(name: str, run_dir: Path, seconds: float) -> EvalResult:
    """An :class:`EvalResult` from a finished run directory (summary.json,
    manifest.json and the videos its episodes recorded)."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    manifest = read_manifest(run_dir)
    jobs: dict[str, JobResult] = {}
    errors: list[str] = []
    tracebacks: list[str] = []
    for job_name, job in summary.jobs.items():
        state = manifest.jobs.get(job_name)
        status = job.status or (state.status if state else "failed")
        error = state.error if state else None
        jobs[job_name] = JobResult(
            job=job_name,
            status=status,
            **_metrics(job),
            error=error,
        )
        if status != "completed":
            errors.append(f"job '{job_name}' {status}: {error or 'no error recorded'}")
            if state is not None and state.traceback:
                tracebacks.append(state.traceback)
    overall = summary.overall
    videos: list[Path] = []
    episodes_path = run_dir / EPISODES_FILE
    if episodes_path.exists():
        for record in sorted(read_episodes(episodes_path), key=lambda r: (r.job, r.episode)):
            for relative in record.video.values():
                path = run_dir / relative
                if path.is_file():
                    videos.append(path)
    return EvalResult(
        evaluator=name,
        status="failed" if errors else "completed",
        eval_seconds=seconds,
        run_dir=run_dir,
        **_metrics(overall),
        jobs=jobs,
        videos=videos,
        error="; ".join(errors) or None,
        traceback="\n".join(tracebacks) or None,
    )


def _metrics(summary: JobSummary) -> dict[str, Any]:
    """The numbers an evaluator's result reports, from one job's (or the run's) summary."""
    ci = summary.success_ci
    return {
        "episodes": summary.episodes,
        "success_rate": summary.success_rate,
        "success_ci_low": ci.low if ci else None,
        "success_ci_high": ci.high if ci else None,
        "return_mean": summary.return_mean,
        "length_mean": summary.length_mean,
    }
