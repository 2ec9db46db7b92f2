"""Typed readers of the JSON files of a run directory.

Every reader raises :class:`~trialrun.errors.RunFileError` (an input error:
exit code 2 in the CLI) naming the file and, for a format problem, the field:
a missing file, a directory or device in its place, bytes that are not UTF-8,
JSON that is truncated or corrupt, and a value of the wrong type all end in
one line, never a traceback (run directories come from elsewhere too: a
colleague's copy, an import, a disk that filled up).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from trialrun.errors import RunFileError
from trialrun.runfiles.episodes import check_regular_file, describe_validation_error, read_episodes
from trialrun.runfiles.names import EPISODES_FILE, MANIFEST_FILE, SUMMARY_FILE
from trialrun.runfiles.schema import EpisodeRecord, Manifest, Summary

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_model(path: Path, model: type[ModelT]) -> ModelT:
    """``path`` parsed as ``model`` (a pydantic model of one run file).

    Raises:
        RunFileError: naming the file: missing, not a regular file, not UTF-8,
            not valid JSON, or a field of the wrong type.
    """
    path = Path(path)
    check_regular_file(path, "file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "the file is corrupt or not a run file"
        ) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise RunFileError(f"{path}: {describe_validation_error(exc, '(file)')}") from None


def read_manifest(run_dir: Path) -> Manifest:
    """The run's manifest (raises :class:`RunFileError` naming the problem)."""
    return read_model(Path(run_dir) / MANIFEST_FILE, Manifest)


def read_summary(run_dir: Path) -> Summary:
    """The run's summary (raises :class:`RunFileError` naming the problem)."""
    return read_model(Path(run_dir) / SUMMARY_FILE, Summary)


def read_run_episodes(run_dir: Path, manifest: Manifest) -> list[EpisodeRecord]:
    """The records of a run directory, checked against its manifest.

    A run's ``episodes.jsonl`` exists from the run's start (a deleted one is an
    error, not "no episodes yet"), and every record belongs to a job of the
    run's config: a record of another job was pasted in from elsewhere and
    would be counted where it does not belong.

    Raises:
        RunFileError: naming the file (and the job) as :func:`read_episodes`
            and :func:`check_record_jobs` do.
    """
    path = Path(run_dir) / EPISODES_FILE
    records = read_episodes(path)
    check_record_jobs(records, manifest.jobs, path)
    return records


def check_record_jobs(records: Iterable[EpisodeRecord], jobs: Iterable[str], path: Path) -> None:
    """Raise :class:`RunFileError` for the first record whose job is not in ``jobs``."""
    known = set(jobs)
    for rec in records:
        if rec.job not in known:
            raise RunFileError(
                f"{path}: a record of job '{rec.job}' (episode {rec.episode}), which the run's "
                f"config does not have (jobs: {', '.join(sorted(known)) or '(none)'})"
            )


def check_unique_records(records: Iterable[EpisodeRecord], path: Path) -> None:
    """Raise :class:`RunFileError` for the first repeated ``(job, episode)``:
    the identity of an episode, unique in a run (DESIGN section 3)."""
    seen: set[tuple[str, int]] = set()
    for rec in records:
        key = (rec.job, rec.episode)
        if key in seen:
            raise RunFileError(
                f"{path}: two records of job '{rec.job}' episode {rec.episode}; "
                "(job, episode) must be unique in a run"
            )
        seen.add(key)
