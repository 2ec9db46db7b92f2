"""What every importer shares: values coerced to record types, factor specs
(from a factors YAML or inferred from the data), row errors naming the file and
line, and the writer of the run directory.

An imported run has the three files ``report``, ``analyze`` and ``compare``
read: ``manifest.json`` (one completed job per source job, with its factor
specs, and ``source: {"imported": true, ...}``), ``episodes.jsonl`` and
``summary.json``. Records get ``seed`` 0 when the source has none, and no
timestamps.

Example:
    >>> import tempfile, pathlib
    >>> recs = [EpisodeRecord(job="j", episode=k, seed=0, factors={"m": float(k)},
    ...                       outcome={"success": k > 1}) for k in range(4)]
    >>> run = write_imported_run(recs, infer_specs(recs), run_dir=pathlib.Path(tempfile.mkdtemp()) / "r",
    ...                          name="r", source={"format": "jsonl", "file": "x.jsonl"}, command=[])
    >>> from trialrun.runfiles import read_manifest, read_summary
    >>> m = read_manifest(run)
    >>> m.source["imported"], m.jobs["j"].factors[0].high, read_summary(run).jobs["j"].successes
    (True, 3.0, 2)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trialrun.analysis.factors_file import load_factors_yaml
from trialrun.errors import InputError
from trialrun.runfiles import EpisodeLogWriter, RunLayout, write_json_atomic
from trialrun.runfiles.episodes import check_regular_file
from trialrun.runfiles.outputs import writing_output
from trialrun.runfiles.schema import (
    EpisodeRecord,
    FactorSpec,
    FactorValue,
    JobManifest,
    Manifest,
    OutcomeValue,
)
from trialrun.stats import summarize_run

logger = logging.getLogger(__name__)

#: Spellings of a boolean in a table cell or a JSON string (case-insensitive).
TRUE_WORDS = frozenset({"true", "1", "1.0", "yes"})
FALSE_WORDS = frozenset({"false", "0", "0.0", "no"})


class RowError(InputError):
    """A row of a source file that cannot be imported (names the file and line)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


# --------------------------------------------------------------------------- values


def json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file.

    Raises:
        InputError: the file is missing, not a regular file or unreadable.
        RowError: a line is not valid JSON or not a JSON object (naming the line).
    """
    check_regular_file(path, "file")  # a directory or /dev/zero: one line, not a hang
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RowError(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
                except RecursionError:
                    raise RowError(path, number, "not valid JSON: nested too deeply") from None
                if not isinstance(row, dict):
                    raise RowError(path, number, f"expected a JSON object, got {type(row).__name__}")
                yield number, row
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def as_bool(value: object) -> bool | None:
    """``value`` as a success flag: booleans, 0/1 and the words true/false
    (None stays None); raises ValueError for anything else.

    Example:
        >>> [as_bool(v) for v in (True, 1, 0.0, "False", "1", None)]
        [True, True, False, False, True, None]
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{value!r} is not a boolean (allowed: true/false, 1/0)")


def outcome_value(value: object) -> OutcomeValue:
    """A scalar outcome value (NaN and infinities become None, as a record
    stores them); raises ValueError for strings, lists and objects."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise ValueError(f"{value!r} is not a number or a boolean")


def flatten_factors(values: Mapping[str, Any], prefix: str = "") -> dict[str, FactorValue]:
    """Scalar factor values of a (possibly nested) mapping: nested keys are
    joined with ``.``, lists of scalars give ``key.0``, ``key.1``...; None,
    NaN and other values are left out (an absent factor).

    Example:
        >>> flatten_factors({"light": 500, "object": {"mass": 0.2}, "color": [1, 0, 0], "x": None})
        {'light': 500, 'object.mass': 0.2, 'color.0': 1, 'color.1': 0, 'color.2': 0}
    """
    out: dict[str, FactorValue] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_factors(value, f"{name}."))
        elif isinstance(value, list | tuple):
            if all(_scalar(v) for v in value):
                out.update(flatten_factors({str(i): v for i, v in enumerate(value)}, f"{name}."))
        elif _scalar(value):
            out[name] = value
    return out


def _scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, bool | int | str)


# --------------------------------------------------------------------------- factor specs


def infer_specs(records: Sequence[EpisodeRecord], *, source: str = "the data") -> dict[str, list[FactorSpec]]:
    """Factor specs per job inferred from the records, with a warning: a
    factor whose values are all numbers is continuous over the observed
    ``[min, max]`` (over the whole file), any other is categorical over the
    observed values. Factors constant over the whole file get no spec (they
    stay in the records)."""
    values: dict[str, list[FactorValue]] = {}
    for rec in records:
        for key, value in rec.factors.items():
            values.setdefault(key, []).append(value)
    specs: dict[str, FactorSpec] = {}
    constant = []
    for key, vals in values.items():
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
        if numeric:
            low, high = min(float(v) for v in vals), max(float(v) for v in vals)
            if low == high:
                constant.append(key)
                continue
            specs[key] = FactorSpec(name=key, kind="continuous", low=low, high=high)
        else:
            levels: dict[str, FactorValue] = {}
            for v in vals:
                levels.setdefault(f"{type(v).__name__}:{v}", v)
            if len(levels) < 2:
                constant.append(key)
                continue
            ordered = sorted(levels.values(), key=lambda v: (str(type(v)), str(v)))
            specs[key] = FactorSpec(name=key, kind="categorical", values=ordered)
    if specs:
        logger.warning(
            "%s: no factors file given; factor specs inferred from the data (ranges are the observed "
            "min/max, levels the observed values), so effects near unsampled bounds cannot be seen: %s. "
            "Give --factors FACTORS.yaml to declare them",
            source,
            ", ".join(specs),
        )
    if constant:
        logger.info("%s: constant over the file, not treated as factors: %s", source, ", ".join(constant))
    return _per_job(records, list(specs.values()))


def declared_specs(records: Sequence[EpisodeRecord], factors_file: Path) -> dict[str, list[FactorSpec]]:
    """The factors YAML's specs, for each job those of its factors present in its records."""
    specs = load_factors_yaml(factors_file)
    present = {k for r in records for k in r.factors}
    missing = [s.name for s in specs if s.name not in present]
    if missing and records:
        raise InputError(
            f"{factors_file}: factor(s) {', '.join(repr(m) for m in missing)} declared but absent from "
            f"every imported record; the records have factors: {', '.join(sorted(present)) or '(none)'}"
        )
    return _per_job(records, specs)


def _per_job(records: Sequence[EpisodeRecord], specs: list[FactorSpec]) -> dict[str, list[FactorSpec]]:
    by_job: dict[str, set[str]] = {}
    for rec in records:
        by_job.setdefault(rec.job, set()).update(rec.factors)
    return {job: [s for s in specs if s.name in keys] for job, keys in by_job.items()}


def job_specs(
    records: Sequence[EpisodeRecord], factors_file: Path | None, source: Path
) -> dict[str, list[FactorSpec]]:
    """Specs per job: from ``factors_file`` when given, else inferred."""
    if factors_file is not None:
        return declared_specs(records, factors_file)
    return infer_specs(records, source=str(source))


# --------------------------------------------------------------------------- episodes


class EpisodeIds:
    """Checks that ``(job, episode)`` is unique and numbers rows without an
    episode column (0, 1, 2... per job, in file order)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first_line: dict[tuple[str, int], int] = {}
        self.next: dict[str, int] = {}

    def take(self, job: str, episode: int | None, line: int) -> int:
        if episode is None:
            episode = self.next.get(job, 0)
        key = (job, episode)
        if key in self.first_line:
            raise RowError(
                self.path,
                line,
                f"episode {episode} of job '{job}' appears twice (first at line {self.first_line[key]}); "
                "(job, episode) must be unique",
            )
        self.first_line[key] = line
        self.next[job] = max(self.next.get(job, 0), episode + 1)
        return episode


def episode_index(value: object, path: Path, line: int, field: str) -> int:
    """A source's episode number as a non-negative int (3 and 3.0 are fine)."""
    if isinstance(value, str):
        text = value.strip()
        with contextlib.suppress(ValueError):
            value = float(text) if "." in text or "e" in text.lower() else int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RowError(path, line, f"field '{field}' is {value!r}; allowed: an integer >= 0")
    return value


# --------------------------------------------------------------------------- the run directory


def default_run_name(source: Path) -> str:
    """A run name from the source file's name (``episode_metrics.csv`` -> ``episode_metrics``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", source.stem).strip("-.")
    return name or "imported"


def choose_run_dir(run_dir: Path | None, output_dir: Path, name: str) -> Path:
    """``run_dir`` itself, or ``<output_dir>/<name>-import-<UTC time>`` (unique)."""
    if run_dir is not None:
        return run_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = output_dir / f"{name}-import-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = output_dir / f"{name}-import-{stamp}-{suffix}"
    return candidate


def write_imported_run(
    records: Iterable[EpisodeRecord],
    specs: Mapping[str, list[FactorSpec]],
    *,
    run_dir: Path,
    name: str,
    source: dict[str, Any],
    command: Sequence[str],
) -> Path:
    """Write ``manifest.json``, ``episodes.jsonl`` and ``summary.json`` of an
    imported run into ``run_dir`` (which must not hold a run yet).

    Every job is ``completed`` with as many planned episodes as it has; the
    manifest's times are the time of the import."""
    records = [r.model_copy(update={"run": name}) for r in records]
    if not records:
        raise InputError(f"{source.get('file', 'the source')}: no episodes to import")
    layout = RunLayout(run_dir)
    if layout.manifest.exists() or layout.episodes.exists():
        raise InputError(f"{run_dir} already holds a run; choose another --run-dir")
    with writing_output(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.job] = counts.get(rec.job, 0) + 1
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    manifest = Manifest(
        run=name,
        seed=0,
        config={"name": name, "imported": True},
        command=list(command),
        started_at=now,
        ended_at=now,
        jobs={
            job: JobManifest(
                name=job, status="completed", planned=n, completed=n, factors=list(specs.get(job, []))
            )
            for job, n in counts.items()
        },
        source={"imported": True, **source},
    )
    summary = summarize_run(
        name, records, planned=counts, statuses=dict.fromkeys(counts, "completed"), seed=0
    )
    with writing_output(run_dir), EpisodeLogWriter(layout.episodes) as writer:
        for rec in records:
            writer.append(rec)
    with writing_output(run_dir):
        write_json_atomic(layout.summary, summary.model_dump(mode="json", by_alias=True))
        write_json_atomic(layout.manifest, manifest.model_dump(mode="json", by_alias=True))
    return run_dir
