"""Typed readers of the JSON files of a run directory.

Every reader raises :class:`~trialrun.errors.RunFileError` (an input error:
exit code 2 in the CLI) naming the file and, for a format problem, the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from trialrun.errors import RunFileError, first_error
from trialrun.runfiles.names import MANIFEST_FILE, SUMMARY_FILE
from trialrun.runfiles.schema import Manifest, Summary

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_model(path: Path, model: type[ModelT]) -> ModelT:
    """``path`` parsed as ``model`` (a pydantic model of one run file)."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read: {exc}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        field, message = first_error(exc, "(file)")
        raise RunFileError(f"{path}: field '{field}': {message}") from None


def read_manifest(run_dir: Path) -> Manifest:
    """The run's manifest (raises :class:`RunFileError` naming the problem)."""
    return read_model(Path(run_dir) / MANIFEST_FILE, Manifest)


def read_summary(run_dir: Path) -> Summary:
    """The run's summary (raises :class:`RunFileError` naming the problem)."""
    return read_model(Path(run_dir) / SUMMARY_FILE, Summary)
