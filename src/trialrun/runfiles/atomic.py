"""Atomic writes: a reader sees the old file or the new one, never half of one.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json_atomic(d / "x.json", {"a": 1})
    >>> (d / "x.json").read_text()
    '{\\n  "a": 1\\n}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from trialrun.errors import RunWriteError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask() is process-wide, so calling it while other
# threads create files would race.
_UMASK = _read_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and a
    rename, so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp makes the file owner-only; run files are meant to be shared.
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RunWriteError(f"cannot write {path}: {exc}") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN refused)."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
