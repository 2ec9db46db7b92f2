"""What the report shows, computed from the files of a run directory.

This module reads ``manifest.json``, ``episodes.jsonl``, ``summary.json``,
``videos/`` and ``analysis/**/sensitivity.json`` and nothing else: like the
analysis, the report never imports the rollout side, so a report can be built
on a machine that has none of the simulators installed.

It turns those files into plain objects the template renders:

* :func:`load_run` — the whole view of a run (:class:`RunView`);
* :func:`bin_factor` — success rate against one factor, in bins taken from the
  factor's *declared* bounds (log-spaced for ``scale: log``) or its levels,
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

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trialrun.binning import level_key
from trialrun.errors import InputError
from trialrun.runfiles import (
    EPISODES_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    RunFileError,
    read_episodes,
    read_manifest,
    read_summary,
)
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, FactorValue, JobSummary, Manifest, Summary
from trialrun.stats import summarize_run, wilson_interval

logger = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"
SENSITIVITY_FILE = "sensitivity.json"
MAX_BINS = 10
MIN_BINS = 2
EPISODES_PER_BIN = 20

# Outcome keys in the order the table shows them; others follow, sorted.
_OUTCOME_ORDER = (
    "success",
    "return",
    "length",
    "time_to_success",
    "success_at_end",
    "terminated",
    "truncated",
)


# --------------------------------------------------------------------------- factor bins


@dataclass
class BinStat:
    """One bin of a continuous factor (``low``..``high``) or one categorical level."""

    n: int
    successes: int
    low: float | None = None
    high: float | None = None
    level: FactorValue | None = None

    @property
    def rate(self) -> float | None:
        """The success rate in the bin (None when the bin is empty)."""
        return self.successes / self.n if self.n else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """Wilson 95% interval of the rate (None when the bin is empty)."""
        return wilson_interval(self.successes, self.n) if self.n else None


@dataclass
class FactorBins:
    """Success rate against one factor: the spec, the bins and what was left out."""

    spec: FactorSpec
    bins: list[BinStat]
    edges: list[float] | None = None
    excluded: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Episodes counted in the bins."""
        return sum(b.n for b in self.bins)


def default_bin_count(n: int) -> int:
    """Bins for ``n`` episodes: about 20 episodes per bin, between 2 and 10, so
    each bin's Wilson interval is informative (±20 points at worst)."""
    return max(MIN_BINS, min(MAX_BINS, n // EPISODES_PER_BIN))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def bin_factor(
    spec: FactorSpec,
    values: Sequence[Any],
    successes: Sequence[bool | None],
    bins: int | None = None,
) -> FactorBins:
    """Success rate against one factor.

    Continuous factors are cut into ``bins`` equal bins over the spec's declared
    ``[low, high]`` (equal in log space for ``scale: log``), never over the
    data's min/max, so a corner the sampler rarely reached shows up as a thin
    bin with a wide interval instead of vanishing. Episodes whose value is
    missing, outside the declared range, or whose success is unknown are left
    out and counted in ``excluded`` (with a note). Categorical factors get one
    bin per declared level, in declared order, then any level seen in the data
    but not declared.

    Example:
        >>> spec = FactorSpec(name="obj", kind="categorical", values=["cube", "can"])
        >>> fb = bin_factor(spec, ["can", "cube", "can"], [True, False, False])
        >>> [(b.level, b.n, b.successes) for b in fb.bins]
        [('cube', 1, 0), ('can', 2, 1)]
    """
    if len(values) != len(successes):
        raise ValueError("values and successes must have the same length")
    if spec.kind == "categorical":
        return _bin_categorical(spec, values, successes)
    return _bin_continuous(spec, values, successes, bins)


def _bin_categorical(spec: FactorSpec, values: Sequence[Any], successes: Sequence[bool | None]) -> FactorBins:
    order: dict[str, BinStat] = {}
    for level in spec.values or []:
        order.setdefault(level_key(level), BinStat(n=0, successes=0, level=level))
    declared = len(order)
    excluded = 0
    for value, ok in zip(values, successes, strict=True):
        if value is None or ok is None:
            excluded += 1
            continue
        stat = order.setdefault(level_key(value), BinStat(n=0, successes=0, level=value))
        stat.n += 1
        stat.successes += int(bool(ok))
    result = FactorBins(spec=spec, bins=list(order.values()), excluded=excluded)
    if len(order) > declared and spec.values:
        result.notes.append(f"{len(order) - declared} level(s) seen in the episodes but not declared")
    if excluded:
        result.notes.append(f"{excluded} episode(s) without a value or an outcome left out")
    return result


def _bin_continuous(
    spec: FactorSpec, values: Sequence[Any], successes: Sequence[bool | None], bins: int | None
) -> FactorBins:
    pairs = [
        (float(v), bool(ok))
        for v, ok in zip(values, successes, strict=True)
        if _is_number(v) and ok is not None
    ]
    missing = len(values) - len(pairs)
    notes: list[str] = []
    low, high = spec.low, spec.high
    if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
        if not pairs:
            return FactorBins(spec=spec, bins=[], excluded=missing, notes=["no episodes with a value"])
        low, high = min(v for v, _ in pairs), max(v for v, _ in pairs)
        notes.append("no declared bounds: bins span the observed values")
    log = spec.scale == "log" and low > 0
    if spec.scale == "log" and not log:
        notes.append("scale is log but the range touches 0: linear bins")
    if not high > low:
        stat = BinStat(n=len(pairs), successes=sum(ok for _, ok in pairs), low=low, high=high)
        return FactorBins(spec=spec, bins=[stat], edges=[low, high], excluded=missing, notes=notes)
    k = bins if bins is not None else default_bin_count(len(pairs))
    if k < 1:
        raise ValueError("bins must be >= 1")
    edges = np.geomspace(low, high, k + 1) if log else np.linspace(low, high, k + 1)
    edges[0], edges[-1] = low, high
    arr = np.array([v for v, _ in pairs], dtype=float)
    ok = np.array([o for _, o in pairs], dtype=bool)
    inside = (arr >= low) & (arr <= high)
    outside = int((~inside).sum())
    idx = np.clip(np.searchsorted(edges, arr[inside], side="right") - 1, 0, k - 1)
    counts = np.bincount(idx, minlength=k)
    wins = np.bincount(idx, weights=ok[inside].astype(float), minlength=k)
    stats = [
        BinStat(
            n=int(counts[i]), successes=round(float(wins[i])), low=float(edges[i]), high=float(edges[i + 1])
        )
        for i in range(k)
    ]
    if outside:
        notes.append(f"{outside} episode(s) outside the declared range [{_g(low)}, {_g(high)}] left out")
    if missing:
        notes.append(f"{missing} episode(s) without a value or an outcome left out")
    return FactorBins(
        spec=spec, bins=stats, edges=[float(e) for e in edges], excluded=missing + outside, notes=notes
    )


def _g(value: float) -> str:
    return f"{value:.4g}"


def infer_spec(name: str, values: Sequence[Any]) -> FactorSpec:
    """A factor spec for a factor the manifest does not describe (its env could
    not be built at preflight): numeric values make a continuous factor whose
    bounds are left open (bins then span the observed values)."""
    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        return FactorSpec(name=name, kind="continuous")
    levels: dict[str, FactorValue] = {}
    for v in present:
        levels.setdefault(level_key(v), v)
    return FactorSpec(name=name, kind="categorical", values=list(levels.values()))


# --------------------------------------------------------------------------- sensitivity


@dataclass
class SensitivityView:
    """One ``sensitivity.json`` as the report shows it; ``data`` is the parsed
    JSON as written (read leniently), ``figures`` the PNGs next to it, as paths
    relative to the run directory."""

    path: str
    title: str
    data: dict[str, Any]
    figures: list[str]
    error: str | None = None

    @property
    def factors(self) -> list[dict[str, Any]]:
        """Factor rows (dicts), strongest first (by ``rank``, then adjusted p)."""
        raw = self.data.get("factors")
        rows = [dict(f) for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
        for row in rows:
            ci = row.get("effect_ci")
            if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_number(v) for v in ci):
                row["effect_ci"] = (float(ci[0]), float(ci[1]))
            else:
                row["effect_ci"] = None

        def number(value: Any) -> float:
            return float(value) if _is_number(value) else math.inf

        return sorted(rows, key=lambda f: (number(f.get("rank")), number(f.get("p_adjusted"))))

    @property
    def interactions(self) -> list[dict[str, Any]]:
        """Interaction rows (dicts); ``factors`` made a list of names."""
        raw = self.data.get("interactions")
        rows = [dict(i) for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
        for row in rows:
            names = row.get("factors")
            row["factors"] = [str(n) for n in names] if isinstance(names, list | tuple) else [str(names)]
        return rows

    @property
    def notes(self) -> list[str]:
        """The analysis' notes, as text."""
        notes = self.data.get("notes") or []
        return [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]

    @property
    def binary(self) -> bool:
        """True when the analysed outcome is binary (effects are in rate units)."""
        kind = self.data.get("outcome_kind")
        if kind is not None:
            return bool(kind == "binary")
        return self.data.get("base_rate") is not None


_FIGURE_ORDER = ("sensitivity.png", "interaction.png", "posterior.png")


def read_sensitivity(run_dir: Path) -> list[SensitivityView]:
    """Every ``analysis/**/sensitivity.json`` of the run, sorted by path.

    A file that cannot be parsed becomes a view with ``error`` set, so a broken
    analysis output is reported in the page instead of failing the build.
    """
    run_dir = Path(run_dir)
    root = run_dir / ANALYSIS_DIR
    if not root.is_dir():
        return []
    views = []
    for path in sorted(root.rglob(SENSITIVITY_FILE)):
        rel = path.relative_to(run_dir).as_posix()
        folder = path.parent
        figures = [(folder / name) for name in _FIGURE_ORDER if (folder / name).is_file()]
        figures += sorted(p for p in folder.glob("*.png") if p.name not in _FIGURE_ORDER)
        fig_rel = [p.relative_to(run_dir).as_posix() for p in figures]
        sub = folder.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("%s: cannot read the sensitivity analysis: %s", path, exc)
            views.append(SensitivityView(rel, sub if sub != "." else "analysis", {}, fig_rel, str(exc)))
            continue
        job = data.get("job")
        title = str(job) if job else (sub if sub != "." else "all episodes")
        views.append(SensitivityView(rel, title, data, fig_rel))
    return views


# --------------------------------------------------------------------------- comparisons

COMPARE_DIR = "compare"


@dataclass
class ComparisonView:
    """One ``compare/*/comparison.json`` written by ``trialrun compare`` into
    this run (the run is B), read leniently: one row per compared job."""

    path: str
    page: str | None
    against: str
    margin: float | None
    rows: list[dict[str, Any]]
    error: str | None = None


def _number_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (lenient reading)."""
    return value if isinstance(value, dict) else {}


def read_comparisons(run_dir: Path) -> list[ComparisonView]:
    """Every paired comparison stored in the run, sorted by path."""
    run_dir = Path(run_dir)
    root = run_dir / COMPARE_DIR
    if not root.is_dir():
        return []
    views = []
    for path in sorted(root.glob("*/comparison.json")):
        rel = path.relative_to(run_dir).as_posix()
        html = path.parent / "compare.html"
        page = html.relative_to(run_dir).as_posix() if html.is_file() else None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("%s: cannot read the comparison: %s", path, exc)
            views.append(ComparisonView(rel, page, path.parent.name, None, [], str(exc)))
            continue
        run_a = _mapping(data.get("run_a"))
        rows = []
        for name, job in _mapping(data.get("jobs")).items():
            if not isinstance(job, dict):
                continue
            success = _mapping(job.get("success"))
            ci = _mapping(success.get("ci"))
            rows.append(
                {
                    "job": str(name),
                    "pairs": job.get("pairs"),
                    "a_rate": _number_or_none(success.get("a_rate")),
                    "b_rate": _number_or_none(success.get("b_rate")),
                    "difference": _number_or_none(success.get("difference")),
                    "ci_low": _number_or_none(ci.get("low")),
                    "ci_high": _number_or_none(ci.get("high")),
                    "p": _number_or_none(success.get("mcnemar_p")),
                    "verdict": str(job.get("verdict", "")),
                    "worse": bool(job.get("worse_beyond_margin", False)),
                }
            )
        margin = data.get("margin")
        views.append(
            ComparisonView(
                rel,
                page,
                str(run_a.get("name") or path.parent.name),
                _number_or_none(margin),
                rows,
            )
        )
    return views


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
    if not (run_dir / MANIFEST_FILE).is_file():
        raise InputError(f"{run_dir} is not a run directory: it has no {MANIFEST_FILE}")
    try:
        manifest = read_manifest(run_dir)
        episodes_path = run_dir / EPISODES_FILE
        records = read_episodes(episodes_path) if episodes_path.exists() else []
    except RunFileError as exc:
        raise InputError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{run_dir}: cannot read the run: {exc}") from None
    records = _unique_records(records, run_dir / EPISODES_FILE)
    job_order = list(manifest.jobs)
    for rec in records:
        if rec.job not in job_order:
            job_order.append(rec.job)
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
        specs = list(jm.factors) if jm else []
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


# --------------------------------------------------------------------------- episode table payload


def _clean(value: Any) -> Any:
    """JSON-safe scalar: booleans as 1/0 are decided by the caller; non-finite
    floats become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _safe_relpath(path: str) -> bool:
    """A record's video path is usable if it is relative and stays in the run dir."""
    if not path or path.startswith(("/", "\\")) or ":" in path.split("/")[0]:
        return False
    return ".." not in path.replace("\\", "/").split("/")


def episodes_payload(view: RunView, check_files: bool = True) -> dict[str, Any]:
    """The episode table as columnar JSON for the page's script.

    One array per column (job index, episode, seed, env index, each outcome,
    each factor, start offset and duration in milliseconds) instead of one
    object per episode: a 100,000-episode run stays a few megabytes and parses
    in a fraction of a second. Booleans are stored as 1/0; missing values as
    null. Videos and ``extra`` terms are sparse lists of ``[row, value]``.
    """
    records = view.records
    jobs = [j.name for j in view.jobs]
    job_index = {name: i for i, name in enumerate(jobs)}
    outcome_keys: dict[str, None] = {}
    for key in _OUTCOME_ORDER:
        if any(key in r.outcome for r in records):
            outcome_keys[key] = None
    extra_keys = sorted({k for r in records for k in r.outcome} - set(outcome_keys))
    for key in extra_keys:
        outcome_keys[key] = None

    outcomes = []
    for key in outcome_keys:
        column = [_clean(r.outcome.get(key)) for r in records]
        present = [v for v in column if v is not None]
        is_bool = bool(present) and all(isinstance(v, bool) for v in present)
        if is_bool:
            column = [None if v is None else int(v) for v in column]
        outcomes.append({"name": key, "type": "bool" if is_bool else "number", "values": column})

    factor_specs: dict[str, FactorSpec] = {}
    for job in view.jobs:
        for spec in job.factors:
            factor_specs.setdefault(spec.name, spec)
    factors = []
    for name, spec in factor_specs.items():
        column = [_clean(r.factors.get(name)) for r in records]
        present = [v for v in column if v is not None]
        numeric = bool(present) and all(_is_number(v) for v in present)
        kind = "continuous" if spec.kind == "continuous" and numeric else "categorical"
        levels: list[Any] = []
        if kind == "categorical":
            seen: dict[str, Any] = {}
            for v in [*(spec.values or []), *present]:
                seen.setdefault(level_key(v), v)
            levels = list(seen.values())
        factors.append(
            {
                "name": name,
                "kind": kind,
                "units": spec.units,
                "low": spec.low,
                "high": spec.high,
                "scale": spec.scale,
                "levels": levels,
                "values": column,
            }
        )

    run_start = parse_time(view.manifest.started_at)
    starts, durations = [], []
    for r in records:
        a, b = parse_time(r.started_at), parse_time(r.ended_at)
        starts.append(round((a - run_start).total_seconds() * 1000) if a and run_start else None)
        durations.append(round((b - a).total_seconds() * 1000) if a and b else None)

    videos = []
    for row, r in enumerate(records):
        if not r.video:
            continue
        cams = {}
        for camera, rel in r.video.items():
            if not _safe_relpath(rel):
                logger.warning(
                    "episode (%s, %d): ignoring video path %r (not inside the run)", r.job, r.episode, rel
                )
                continue
            exists = (view.run_dir / rel).is_file() if check_files else True
            cams[camera] = [rel, int(exists)]
        if cams:
            videos.append([row, cams])
    extras = [[row, r.extra] for row, r in enumerate(records) if r.extra]

    return {
        "run": view.manifest.run,
        "runStart": view.manifest.started_at,
        "jobs": jobs,
        "n": len(records),
        "job": [job_index[r.job] for r in records],
        "episode": [r.episode for r in records],
        "seed": [r.seed for r in records],
        "envIndex": [r.env_index for r in records],
        "t0": starts,
        "dur": durations,
        "outcomes": outcomes,
        "factors": factors,
        "videos": videos,
        "extra": extras,
    }


def relative_url(target: Path, start: Path) -> str:
    """``target`` relative to ``start`` as a URL path prefix (``'..'`` for the
    run dir seen from ``run/report``), used to link videos and figures."""
    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return Path(rel).as_posix()
