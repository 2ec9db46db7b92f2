"""What the report shows, computed from the files of a run directory.

This module reads ``manifest.json``, ``episodes.jsonl``, ``summary.json``,
``videos/`` and ``analysis/**/sensitivity.json`` and nothing else: like the
analysis, the report never imports the rollout side, so a report can be built
on a machine that has none of the simulators installed.

It turns those files into plain objects the template renders (the pieces live
in :mod:`~trialrun.report.bins`, :mod:`~trialrun.report.sections`,
:mod:`~trialrun.report.view` and :mod:`~trialrun.report.payload`; this module
assembles them and re-exports their names):

* :func:`load_run` — the whole view of a run (:class:`RunView`);
* :func:`bin_factor` — success rate against one factor, in the bins of
  :mod:`trialrun.binning` (the same as the analysis and ``compare``: from the
  factor's *declared* bounds, log-spaced for ``scale: log``, or its levels),
  each with a Wilson 95% interval;
* :func:`episodes_payload` — the episode table as compact columnar JSON, so a
  run of 100,000 episodes stays a few megabytes and renders client-side;
* :func:`read_sensitivity` — a lenient reader of the analysis output (its
  schema may gain fields; unknown ones are ignored, missing ones shown as "-").

Example:
    >>> from trialrun.runfiles.schema import FactorSpec
    >>> spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=2.0)
    >>> fb = bin_factor(spec, [0.1, 0.4, 1.5, 1.9], [True, True, False, False], bins=2)
    >>> [(b.low, b.high, b.n, b.successes) for b in fb.bins]
    [(0.0, 1.0, 2, 2), (1.0, 2.0, 2, 0)]
"""

from __future__ import annotations

import logging
from pathlib import Path

from trialrun.binning import shown_units
from trialrun.errors import InputError
from trialrun.report.bins import BinStat, FactorBins, bin_factor, display_spec, infer_spec
from trialrun.report.payload import episodes_payload, relative_url
from trialrun.report.sections import ComparisonView, SensitivityView, read_comparisons, read_sensitivity
from trialrun.report.view import JobView, RunView, duration_s, parse_time
from trialrun.runfiles import (
    EPISODES_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    RunFileError,
    read_manifest,
    read_summary,
)
from trialrun.runfiles.names import ANALYSIS_DIR as ANALYSIS_DIR  # re-exported for the builder
from trialrun.runfiles.readers import read_run_episodes
from trialrun.runfiles.schema import EpisodeRecord
from trialrun.stats import summarize_run

logger = logging.getLogger(__name__)


def _unique_records(records: list[EpisodeRecord], path: Path) -> list[EpisodeRecord]:
    seen: set[tuple[str, int]] = set()
    kept = []
    for rec in records:
        key = (rec.job, rec.episode)
        if key in seen:
            logger.warning("%s: duplicate record for (%s, %d); keeping the first", path, rec.job, rec.episode)
            continue
        seen.add(key)
        kept.append(rec)
    return kept


def load_run(run_dir: Path | str, bins: int | None = None) -> RunView:
    """Read a run directory into a :class:`RunView`.

    ``summary.json`` is used as written; a run that has not finished (no
    summary yet) gets one computed from its episodes, with a note saying so.

    Raises:
        InputError: the directory is not a run, or a run file is unreadable
            (the message names the file and the field).

    Example:
        >>> import tempfile, pathlib
        >>> load_run(pathlib.Path(tempfile.mkdtemp()))
        Traceback (most recent call last):
        ...
        trialrun.errors.InputError: ... is not a run directory: it has no manifest.json
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if not (run_dir / MANIFEST_FILE).exists():  # a directory or device in its place: read_manifest says so
        raise InputError(f"{run_dir} is not a run directory: it has no {MANIFEST_FILE}")
    try:
        manifest = read_manifest(run_dir)
        records = read_run_episodes(run_dir, manifest)  # a deleted episodes.jsonl is an error
    except RunFileError as exc:
        raise InputError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{run_dir}: cannot read the run: {exc}") from None
    records = _unique_records(records, run_dir / EPISODES_FILE)
    job_order = list(manifest.jobs)  # read_run_episodes refused records of other jobs
    position = {name: i for i, name in enumerate(job_order)}
    records.sort(key=lambda r: (position[r.job], r.episode))

    notes: list[str] = []
    summary_computed = False
    if (run_dir / SUMMARY_FILE).is_file():
        try:
            summary = read_summary(run_dir)
        except RunFileError as exc:
            raise InputError(str(exc)) from None
    else:
        summary_computed = True
        notes.append(
            f"{SUMMARY_FILE} is missing (the run has not finished): "
            f"the numbers are computed from {EPISODES_FILE}"
        )
        summary = summarize_run(
            manifest.run,
            records,
            planned={name: j.planned for name, j in manifest.jobs.items()},
            statuses={name: j.status for name, j in manifest.jobs.items()},
            seed=manifest.seed,
        )

    by_job: dict[str, list[EpisodeRecord]] = {name: [] for name in job_order}
    for rec in records:
        by_job[rec.job].append(rec)
    jobs = []
    for index, name in enumerate(job_order):
        jm = manifest.jobs.get(name)
        job_records = by_job[name]
        job_summary = summary.jobs.get(name)
        if job_summary is None:
            job_summary = summarize_run(
                manifest.run, job_records, {name: len(job_records)}, {}, manifest.seed
            ).jobs[name]
            notes.append(f"job '{name}' has episodes but no entry in the manifest or summary")
        # Units as shown (a dimensionless factor's "1" dropped) for the charts, captions and table.
        specs = [display_spec(s) for s in jm.factors] if jm else []
        declared = {s.name for s in specs}
        seen: dict[str, None] = {}
        for rec in job_records:
            for key in rec.factors:
                seen.setdefault(key, None)
        for key in seen:
            if key not in declared:
                specs.append(infer_spec(key, [r.factors.get(key) for r in job_records]))
        successes = [_success(r) for r in job_records]
        factor_bins = [
            bin_factor(spec, [r.factors.get(spec.name) for r in job_records], successes, bins)
            for spec in specs
        ]
        jobs.append(
            JobView(
                index=index,
                name=name,
                status=jm.status if jm else (job_summary.status or "completed"),
                planned=jm.planned if jm else job_summary.planned,
                summary=job_summary,
                factors=specs,
                factor_bins=factor_bins,
                error=jm.error if jm else None,
                traceback=jm.traceback if jm else None,
                started_at=jm.started_at if jm else None,
                ended_at=jm.ended_at if jm else None,
                stopped_early=jm.stopped_early if jm else None,
            )
        )
    return RunView(
        run_dir=run_dir,
        manifest=manifest,
        summary=summary,
        summary_computed=summary_computed,
        jobs=jobs,
        records=records,
        sensitivity=read_sensitivity(run_dir),
        notes=notes,
        comparisons=read_comparisons(run_dir),
    )


def _success(rec: EpisodeRecord) -> bool | None:
    value = rec.outcome.get("success")
    return None if value is None else bool(value)


__all__ = [
    "ANALYSIS_DIR",
    "BinStat",
    "ComparisonView",
    "FactorBins",
    "JobView",
    "RunView",
    "SensitivityView",
    "bin_factor",
    "duration_s",
    "episodes_payload",
    "infer_spec",
    "load_run",
    "parse_time",
    "read_comparisons",
    "read_sensitivity",
    "relative_url",
    "shown_units",
]
