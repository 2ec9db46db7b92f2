"""A CSV table of episodes (PufferDrive's ``episode_metrics.csv``, any
spreadsheet export) -> trialrun records.

The first row names the columns. The caller says which column numbers the
episodes, which are factors and which are outcomes (and optionally which
holds the job or the success flag). Cells are parsed per column: a column
whose cells are all true/false (any case) is boolean, one whose cells are all
numbers is numeric (integers stay integers), any other holds strings (a
categorical factor; an outcome must be numbers or booleans). An empty cell is
a missing value. The success column is read as a boolean: true/false or 1/0.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = p.write_text("ep,speed,map,score,goal\\n0,1.5,town,3.5,1\\n1,2,city,,0\\n")
    >>> recs = read_table(p, episode="ep", factors=["speed", "map"], outcomes=["score"], success="goal")
    >>> [(r.episode, r.factors, r.outcome) for r in recs][1]
    (1, {'speed': 2.0, 'map': 'city'}, {'success': False, 'score': None})
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from trialrun.errors import InputError
from trialrun.importers.common import EpisodeIds, RowError, as_bool, episode_index
from trialrun.runfiles.episodes import check_regular_file
from trialrun.runfiles.schema import EpisodeRecord, FactorValue, Outcome


def read_table(
    path: Path,
    *,
    episode: str,
    factors: Sequence[str],
    outcomes: Sequence[str],
    job: str | None = None,
    job_name: str | None = None,
    success: str | None = None,
) -> list[EpisodeRecord]:
    """The records of a CSV table (see the module).

    ``job`` names a column holding the job of each row; else every row is in
    job ``job_name`` (default: the file's stem). ``success`` names the column
    of the success flag; without it an outcome column named ``success`` is
    used, if any.

    Raises:
        InputError: a missing file or column, a row with the wrong number of
            cells, a bad episode number, success flag or outcome value (naming
            the file and line).
    """
    path = Path(path)
    if job is not None and job_name is not None:
        raise InputError("give either --job COLUMN or --job-name NAME, not both")
    check_regular_file(path, "file")  # a directory or /dev/zero: one line, not a hang
    if success is None and "success" in outcomes:
        success = "success"
    outcome_cols = [c for c in outcomes if c != success]
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file; expected a header row naming the columns")
            header = [h.strip() for h in header]
            wanted = [
                episode,
                *factors,
                *outcome_cols,
                *([job] if job else []),
                *([success] if success else []),
            ]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise RowError(
                    path,
                    1,
                    f"no column(s) {', '.join(repr(m) for m in missing)}; "
                    f"the columns are: {', '.join(header)}",
                )
            rows: list[tuple[int, list[str]]] = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise RowError(
                        path,
                        reader.line_num,
                        f"{len(cells)} cell(s), but the header names {len(header)} columns",
                    )
                rows.append((reader.line_num, cells))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None

    index = {name: i for i, name in enumerate(header)}
    columns = {name: _parse_column(rows, index[name]) for name in {*factors, *outcome_cols}}
    for name in outcome_cols:
        for (line, _), value in zip(rows, columns[name], strict=True):
            if isinstance(value, str):
                raise RowError(
                    path,
                    line,
                    f"column '{name}' holds {value!r}; an outcome must be a number, true/false or empty",
                )
    default_job = job_name or path.stem
    ids = EpisodeIds(path)
    records = []
    for k, (line, cells) in enumerate(rows):
        job_of_row = cells[index[job]].strip() if job else default_job
        if not job_of_row:
            raise RowError(path, line, f"column '{job}' is empty; every row needs a job")
        number = ids.take(job_of_row, episode_index(cells[index[episode]], path, line, episode), line)
        outcome: dict[str, Any] = {name: columns[name][k] for name in outcome_cols}
        if success:
            cell = cells[index[success]].strip()
            try:
                outcome["success"] = as_bool(cell) if cell else None
            except ValueError as exc:
                raise RowError(path, line, f"column '{success}': {exc}") from None
        row_factors: dict[str, FactorValue] = {}
        for name in factors:
            value = columns[name][k]
            if value is not None:
                row_factors[name] = value
        records.append(
            EpisodeRecord(
                job=job_of_row,
                episode=number,
                seed=0,
                factors=row_factors,
                outcome=cast(Outcome, outcome),
            )
        )
    return records


def _parse_column(rows: list[tuple[int, list[str]]], i: int) -> list[Any]:
    """One column's cells as booleans, numbers (all floats when any cell is
    one) or strings; None when empty or not finite."""
    cells = [cells[i].strip() for _, cells in rows]
    present = [c for c in cells if c]
    words = {c.lower() for c in present}
    if present and words <= {"true", "false"}:
        return [None if not c else c.lower() == "true" for c in cells]
    numbers = [_number(c) for c in cells]
    if all(n is not None for n, c in zip(numbers, cells, strict=True) if c):
        if any(isinstance(n, float) for n in numbers):  # 1.5 and 2 in one column: all floats
            numbers = [None if n is None or not math.isfinite(n) else float(n) for n in numbers]
        return numbers
    return [c or None for c in cells]


def _number(cell: str) -> int | float | None:
    """The cell as an int, else a float, else None (not a number)."""
    if not cell:
        return None
    for parse in (int, float):
        try:
            value: int | float = parse(cell)
        except ValueError:
            continue
        return value
    return None
