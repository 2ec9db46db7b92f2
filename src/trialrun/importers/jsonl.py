"""trialrun-shaped records made elsewhere (a user's own loop) -> a run.

Each line is an :class:`~trialrun.runfiles.schema.EpisodeRecord` that may lack
``run``, ``seed`` (0 is used) and the timestamps::

    {"job": "pick", "episode": 0, "factors": {"mass": 1.2}, "outcome": {"success": true, "return": 4.5}}

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
    >>> _ = p.write_text('{"job": "j", "episode": 0, "outcome": {"success": true}}\\n')
    >>> [(r.job, r.seed, r.started_at) for r in read_jsonl(p)]
    [('j', 0, None)]
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from trialrun.errors import InputError, first_error
from trialrun.importers.common import EpisodeIds, RowError
from trialrun.runfiles.schema import EpisodeRecord


def read_jsonl(path: Path) -> list[EpisodeRecord]:
    """The records of a JSONL file of trialrun-shaped records.

    Raises:
        InputError: the file is missing, or a line is not JSON or not a valid
            record (naming the file, the line and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    ids = EpisodeIds(path)
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RowError(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise RowError(path, number, f"expected a JSON object, got {type(row).__name__}")
                row.setdefault("seed", 0)
                try:
                    rec = EpisodeRecord.model_validate(row)
                except ValidationError as exc:
                    field, message = first_error(exc, "(line)")
                    raise RowError(path, number, f"field '{field}': {message}") from None
                ids.take(rec.job, rec.episode, number)
                records.append(rec)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return records
