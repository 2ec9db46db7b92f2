"""The episode table as compact columnar JSON for the page's script."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
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


#: Runs of at most this many episodes keep their table inside ``index.html``;
#: larger ones page it from data files beside it (:func:`episode_chunks`).
INLINE_ROWS = 20_000
#: Rows per data file of a paged table (about 2 MB of script each).
CHUNK_ROWS = 20_000


def episodes_payload(view: RunView, check_files: bool = True, inline: bool = True) -> dict[str, Any]:
    """The episode table as columnar JSON for the page's script.

    One array per column (job index, episode, seed, env index, each outcome,
    each factor, start offset and duration in milliseconds) instead of one
    object per episode: a 100,000-episode run stays a few megabytes and parses
    in a fraction of a second. Booleans are stored as 1/0; missing values as
    null. Videos and ``extra`` terms are sparse lists of ``[row, value]``.

    With ``inline=False`` the columns are left empty (the page loads them
    from :func:`episode_chunks`' files) and only what describes them is kept:
    the number of rows, each outcome's type, each factor's kind and levels,
    whether any episode has a video.
    """
    records = view.records
    jobs = [j.name for j in view.jobs]
    # The outcome's mapping view (record keys, custom terms included), built once per record.
    terms = [r.outcome for r in records]
    present_keys = {k for t in terms for k in t}
    outcome_keys: dict[str, None] = {key: None for key in _OUTCOME_ORDER if key in present_keys}
    for key in sorted(present_keys - set(outcome_keys)):
        outcome_keys[key] = None

    outcomes: list[dict[str, Any]] = []
    for key in outcome_keys:
        is_bool = _all_bool(_clean(t.get(key)) for t in terms)
        outcomes.append({"name": key, "type": "bool" if is_bool else "number", "values": []})

    factors = []
    for name, spec in _factor_specs(view).items():
        present = [v for v in (_clean(r.factors.get(name)) for r in records) if v is not None]
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
                "values": [],
            }
        )
    payload: dict[str, Any] = {
        "run": view.manifest.run,
        "runStart": view.manifest.started_at,
        "jobs": jobs,
        "n": len(records),
        "hasVideo": any(r.video for r in records),
        "outcomes": outcomes,
        "factors": factors,
    }
    columns = episode_rows(view, payload, 0, len(records) if inline else 0, check_files)
    for i, values in enumerate(columns.pop("outcomes")):
        outcomes[i]["values"] = values
    for i, values in enumerate(columns.pop("factors")):
        factors[i]["values"] = values
    payload.update(columns)
    return payload


def _all_bool(values: Any) -> bool:
    """Whether the non-null values are all booleans (and there is one)."""
    any_present = False
    for v in values:
        if v is None:
            continue
        if not isinstance(v, bool):
            return False
        any_present = True
    return any_present


def _factor_specs(view: RunView) -> dict[str, FactorSpec]:
    specs: dict[str, FactorSpec] = {}
    for job in view.jobs:
        for spec in job.factors:
            specs.setdefault(spec.name, spec)
    return specs


def episode_rows(
    view: RunView, meta: dict[str, Any], start: int, end: int, check_files: bool = True
) -> dict[str, Any]:
    """The columns of rows ``[start, end)`` of the table described by ``meta``
    (an :func:`episodes_payload`): the per-row arrays, ``outcomes`` and
    ``factors`` as lists of value arrays in ``meta``'s order, and the sparse
    ``videos`` and ``extra`` with rows numbered from 0 over the whole table."""
    records = view.records[start:end]
    job_index = {name: i for i, name in enumerate(meta["jobs"])}
    outcomes = []
    for o in meta["outcomes"]:
        column = [_clean(r.outcome.get(o["name"])) for r in records]
        if o["type"] == "bool":
            column = [None if v is None else int(v) for v in column]
        outcomes.append(column)
    factors = [[_clean(r.factors.get(f["name"])) for r in records] for f in meta["factors"]]

    run_start = parse_time(view.manifest.started_at)
    starts, durations = [], []
    for r in records:
        a, b = parse_time(r.started_at), parse_time(r.ended_at)
        starts.append(round((a - run_start).total_seconds() * 1000) if a and run_start else None)
        durations.append(round((b - a).total_seconds() * 1000) if a and b else None)

    videos = []
    for row, r in enumerate(records, start):
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
    return {
        "job": [job_index[r.job] for r in records],
        "episode": [r.episode for r in records],
        "seed": [r.seed for r in records],
        "envIndex": [r.env_index for r in records],
        "t0": starts,
        "dur": durations,
        "outcomes": outcomes,
        "factors": factors,
        "videos": videos,
        "extra": [[row, r.extra] for row, r in enumerate(records, start) if r.extra],
    }


def episode_chunks(view: RunView, meta: dict[str, Any], rows: int = CHUNK_ROWS) -> Iterator[dict[str, Any]]:
    """The table described by ``meta`` in pieces of ``rows`` rows, each an
    :func:`episode_rows` plus its ``index`` and ``start`` row (what one data
    file of a paged report holds)."""
    for index, start in enumerate(range(0, len(view.records), rows)):
        chunk = episode_rows(view, meta, start, min(start + rows, len(view.records)))
        yield {"index": index, "start": start, **chunk}


def relative_url(target: Path, start: Path) -> str:
    """``target`` relative to ``start`` as a URL path prefix (``'..'`` for the
    run dir seen from ``run/report``), used to link videos and figures."""
    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return Path(rel).as_posix()
