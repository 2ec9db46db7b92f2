"""The episode table as compact columnar JSON for the page's script."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from trialrun.binning import is_number, level_key
from trialrun.report.view import RunView, parse_time
from trialrun.runfiles.names import ANALYSIS_DIR as ANALYSIS_DIR  # re-exported for the builder
from trialrun.runfiles.schema import FactorSpec

logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- episode table payload


def _clean(value: Any) -> Any:
    """JSON-safe scalar: booleans as 1/0 are decided by the caller; non-finite
    floats become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def safe_relpath(path: str) -> bool:
    """A record's video (or trajectory) path is usable if it is relative and stays in the run dir."""
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
    # The outcome's mapping view (record keys, custom terms included), built once per record.
    terms = [r.outcome for r in records]
    present_keys = {k for t in terms for k in t}
    outcome_keys: dict[str, None] = {key: None for key in _OUTCOME_ORDER if key in present_keys}
    for key in sorted(present_keys - set(outcome_keys)):
        outcome_keys[key] = None

    outcomes = []
    for key in outcome_keys:
        column = [_clean(t.get(key)) for t in terms]
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
        numeric = bool(present) and all(is_number(v) for v in present)
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
            if not safe_relpath(rel):
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
