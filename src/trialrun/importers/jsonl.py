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

from pathlib import Path

from pydantic import ValidationError

from trialrun.errors import first_error
from trialrun.importers.common import EpisodeIds, RowError, json_rows
from trialrun.runfiles.schema import EpisodeRecord


def read_jsonl(path: Path) -> list[EpisodeRecord]:
    """The records of a JSONL file of trialrun-shaped records.

    Raises:
        InputError: the file is missing, or a line is not JSON or not a valid
            record (naming the file, the line and the field).
    """
    path = Path(path)
    ids = EpisodeIds(path)
    records = []
    for number, row in json_rows(path):
        row.setdefault("seed", 0)
        try:
            rec = EpisodeRecord.model_validate(row)
        except ValidationError as exc:
            field, message = first_error(exc, "(line)")
            raise RowError(path, number, f"field '{field}': {message}") from None
        ids.take(rec.job, rec.episode, number)
        records.append(rec)
    return records
