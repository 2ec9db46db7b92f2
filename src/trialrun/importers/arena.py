"""Isaac Lab Arena's per-episode JSONL files -> trialrun records.

Two row shapes are read (one JSON object per line, blank lines skipped):

(a) the sensitivity ``episode_summary.jsonl`` of Arena's eval runner
    (``isaaclab_arena/evaluation/episode_writer.py``)::

        {"record": "episode", "job_name": "light_cube", "episode_idx": 3,
         "arena_env_args": {"environment": "...", "light_intensity": 500.0, ...},
         "variation_draws": {...}, "outcomes": {"success_rate": 1.0, ...}}

    ``record`` and ``variation_draws`` are only in later versions; a
    ``{"record": "meta", ...}`` header line is skipped. Factors are the scalar
    values of ``arena_env_args`` and ``variation_draws`` (nested keys joined
    with ``.``), outcomes the values of ``outcomes``.

(b) the ``episode_results*.jsonl`` of Arena's episode recorder
    (``isaaclab_arena/recording/``)::

        {"job_name": "default", "env_id": 2, "episode_in_env": 0, "seed": 42,
         "success": true, "episode_length": 87, "language_instruction": "...",
         "timestamp": "...", "variations": {"light.intensity": 812.5}}

    Factors are the values of ``variations``; outcomes the other top-level
    numbers and booleans; ``env_id`` becomes ``env_index`` and ``seed`` the
    seed; other values (strings, lists) go under ``extra``.

In both shapes ``episode_length`` becomes ``length``; a ``success`` outcome is
read as a boolean, and when there is none, a ``success_rate`` whose values are
0/1 gives ``success``. The episode number is ``episode_idx`` (or ``episode``);
rows without one are numbered 0, 1, 2... per job in file order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from trialrun.importers.common import (
    EpisodeIds,
    RowError,
    as_bool,
    episode_index,
    flatten_factors,
    json_rows,
    outcome_value,
)
from trialrun.runfiles.schema import EpisodeRecord, Outcome

#: Top-level keys of a shape-(b) row that are not outcomes.
_META_KEYS = frozenset(
    {
        "record",
        "schema_version",
        "job_name",
        "episode_idx",
        "episode",
        "env_id",
        "episode_in_env",
        "seed",
        "variations",
        "variation_draws",
        "arena_env_args",
        "outcomes",
    }
)
_RENAMED = {"episode_length": "length"}


def read_arena(path: Path, *, job_name: str | None = None) -> list[EpisodeRecord]:
    """The records of an Arena JSONL file (either shape, see the module).

    ``job_name`` puts every row in that one job (the source's ``job_name``
    is kept under ``extra``) and numbers episodes in file order: use it for a
    sweep whose cells Arena ran as separate jobs.

    Raises:
        InputError: the file is missing, or a line is not JSON, not an object,
            or not an Arena episode row (naming the file and line).
    """
    path = Path(path)
    ids = EpisodeIds(path)
    records: list[EpisodeRecord] = []
    for number, row in json_rows(path):
        if row.get("record") == "meta":
            continue
        records.append(_record(row, path, number, ids, job_name))
    _success_from_rate(records)
    return records


def _record(
    row: dict[str, Any], path: Path, line: int, ids: EpisodeIds, job_name: str | None
) -> EpisodeRecord:
    if "outcomes" in row:
        shape = "a"
    elif "variations" in row:
        shape = "b"
    else:
        raise RowError(
            path,
            line,
            "not an Isaac Lab Arena episode row: expected 'outcomes' (with 'arena_env_args') or "
            f"'variations' (episode recorder); the row has keys: {', '.join(sorted(row)) or '(none)'}",
        )
    source_job = row.get("job_name", "default")
    if not isinstance(source_job, str) or not source_job:
        raise RowError(path, line, f"field 'job_name' is {source_job!r}; allowed: a non-empty string")
    job = job_name or source_job
    extra: dict[str, Any] = {}
    if job_name is not None:
        extra["job_name"] = source_job
    episode = None
    if job_name is None:
        for key in ("episode_idx", "episode"):
            if row.get(key) is not None:
                episode = episode_index(row[key], path, line, key)
                break
    episode = ids.take(job, episode, line)

    factors = {}
    for key in ("arena_env_args", "variation_draws", "variations"):
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise RowError(path, line, f"field '{key}' is {type(value).__name__}; allowed: an object")
        factors.update(flatten_factors(value))

    raw: dict[str, Any]
    if shape == "a":
        raw = row["outcomes"]
        if not isinstance(raw, dict):
            raise RowError(path, line, f"field 'outcomes' is {type(raw).__name__}; allowed: an object")
        prefix = "outcomes."
    else:
        raw = {k: v for k, v in row.items() if k not in _META_KEYS}
        prefix = ""
    outcome: dict[str, Any] = {}
    for key, value in raw.items():
        name = _RENAMED.get(key, key)
        if key == "success":
            try:
                outcome[name] = as_bool(value)
            except ValueError as exc:
                raise RowError(path, line, f"field '{prefix}{key}': {exc}") from None
            continue
        try:
            outcome[name] = outcome_value(value)
        except ValueError:
            if shape == "a":
                raise RowError(
                    path, line, f"field 'outcomes.{key}' is {value!r}; allowed: a number, a boolean or null"
                ) from None
            extra[key] = value  # language_instruction, timestamp, ...

    env_index = row.get("env_id", 0)
    seed = row.get("seed", 0)
    for key, value in (("env_id", env_index), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RowError(path, line, f"field '{key}' is {value!r}; allowed: an integer >= 0")
    if "episode_in_env" in row:
        extra["episode_in_env"] = row["episode_in_env"]
    return EpisodeRecord(
        job=job,
        episode=episode,
        seed=seed,
        env_index=env_index,
        factors=factors,
        outcome=cast(Outcome, outcome),
        extra=extra,
    )


def _success_from_rate(records: list[EpisodeRecord]) -> None:
    """Arena's per-episode ``success_rate`` is 1 or 0: read it as ``success``
    when the rows have no ``success`` of their own."""
    if any("success" in r.outcome for r in records):
        return
    rates = [r.outcome.get("success_rate") for r in records]
    if not any(v is not None for v in rates):
        return
    if all(v is None or v in (0, 1) for v in rates):
        for rec, rate in zip(records, rates, strict=True):
            rec.outcome["success"] = None if rate is None else bool(rate)
