"""Loading two runs, checking they are made from the same plan, and pairing
their episodes by ``(job, episode)``.

Runs whose configs differ in what defines the episodes (run seed, or a job's
env, episodes, max_steps, success rule, factors or design) are refused
(:class:`~trialrun.errors.ComparisonRefused`, naming the first difference);
the policy, the instruction, ``num_envs`` and videos may differ. Pairs whose
recorded seed or factors differ are refused too.

Example:
    >>> config_difference({"seed": 1, "jobs": []}, {"seed": 2, "jobs": []}, [])
    'the run seed differs: 1 (A) vs 2 (B)'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trialrun.errors import ComparisonRefused, InputError
from trialrun.runfiles import RunFileError, RunLayout, read_manifest
from trialrun.runfiles.readers import check_unique_records, read_run_episodes
from trialrun.runfiles.schema import EpisodeRecord, Manifest

#: Job keys that define which episodes run: they must match for pairs to be pairs.
IDENTITY_KEYS = ("env", "episodes", "max_steps", "success", "factors", "design")


@dataclass
class LoadedRun:
    """A run's manifest and its records by job, then by episode."""

    manifest: Manifest
    records: dict[str, dict[int, EpisodeRecord]]

    @property
    def job_names(self) -> list[str]:
        """The jobs of the run's config, in config order."""
        return [str(j["name"]) for j in self.manifest.config.get("jobs", [])]

    def job_config(self, name: str) -> dict[str, Any]:
        """The config of job ``name`` as the manifest holds it."""
        for job in self.manifest.config.get("jobs", []):
            if job["name"] == name:
                return dict(job)
        raise KeyError(name)


def load_run(run_dir: Path) -> LoadedRun:
    """Read a run's manifest and episodes.

    Raises:
        InputError: the directory is missing or not a readable run: a file
            is missing or corrupt, a record belongs to no job of the run, or
            an episode has two records.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    layout = RunLayout(run_dir)
    try:
        manifest = read_manifest(run_dir)
        records = read_run_episodes(run_dir, manifest)
        # A repeated episode would be paired twice (or with either of two outcomes).
        check_unique_records(records, layout.episodes)
    except RunFileError as exc:
        raise InputError(f"{run_dir} is not a readable run: {exc}") from None
    by_job: dict[str, dict[int, EpisodeRecord]] = {}
    for rec in records:
        by_job.setdefault(rec.job, {})[rec.episode] = rec
    return LoadedRun(manifest, by_job)


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                where = f"{path}.{key}"
                return f"{where} is set only in run {'A' if key in a else 'B'}"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}.{i}")
            if found:
                return found
        return None
    if a != b:
        return f"{path} differs: {json.dumps(a, default=str)} (A) vs {json.dumps(b, default=str)} (B)"
    return None


def config_difference(config_a: dict[str, Any], config_b: dict[str, Any], jobs: Sequence[str]) -> str | None:
    """The first difference that makes the runs' episodes differ, or None.

    Compared: the run seed, and for each of ``jobs`` the keys in
    :data:`IDENTITY_KEYS`. Policies (and other keys) may differ.
    """
    if config_a.get("seed") != config_b.get("seed"):
        return f"the run seed differs: {config_a.get('seed')} (A) vs {config_b.get('seed')} (B)"
    jobs_a = {j["name"]: j for j in config_a.get("jobs", [])}
    jobs_b = {j["name"]: j for j in config_b.get("jobs", [])}
    for name in jobs:
        for key in IDENTITY_KEYS:
            found = _first_difference(jobs_a[name].get(key), jobs_b[name].get(key), f"jobs[{name}].{key}")
            if found:
                return found
    return None


def shared_jobs(run_a: LoadedRun, run_b: LoadedRun, job: str | None) -> list[str]:
    """The jobs to compare: ``job`` (which both runs must have) or every job of
    A that B has too, after checking that their configs define the same episodes.

    Raises:
        InputError: ``job`` is missing from a run.
        ComparisonRefused: the runs share no job, or their configs differ.
    """
    names_a, names_b = run_a.job_names, run_b.job_names
    if job is not None:
        for side, names in (("A", names_a), ("B", names_b)):
            if job not in names:
                raise InputError(f"run {side} has no job '{job}'; its jobs: {', '.join(names)}")
        shared = [job]
    else:
        shared = [n for n in names_a if n in names_b]
        if not shared:
            raise ComparisonRefused(
                f"the runs share no job (A: {', '.join(names_a)}; B: {', '.join(names_b)})"
            )
    difference = config_difference(run_a.manifest.config, run_b.manifest.config, shared)
    if difference:
        raise ComparisonRefused(
            f"the runs' configs differ, so their episodes are not paired: {difference}. Compare runs made "
            "from the same run file (only the policy may differ)"
        )
    return shared


def pair_episodes(
    name: str, recs_a: dict[int, EpisodeRecord], recs_b: dict[int, EpisodeRecord]
) -> list[tuple[EpisodeRecord, EpisodeRecord]]:
    """The episodes of job ``name`` that both runs completed, as ``(A, B)``
    pairs in episode order.

    Raises:
        ComparisonRefused: a pair's recorded seed or factors differ (the runs
            were not made from the same plan).
    """
    pairs = [(recs_a[k], recs_b[k]) for k in sorted(set(recs_a) & set(recs_b))]
    for rec_a, rec_b in pairs:
        if rec_a.seed != rec_b.seed or rec_a.factors != rec_b.factors:
            what = "seed" if rec_a.seed != rec_b.seed else "factors"
            raise ComparisonRefused(
                f"job '{name}' episode {rec_a.episode} has a different {what} in the two runs "
                f"({getattr(rec_a, what)} vs {getattr(rec_b, what)}): the runs were not made from the "
                "same plan"
            )
    return pairs
