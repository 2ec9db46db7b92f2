"""Replay one recorded episode exactly and check it against its record.

An episode's seed and factor values are a pure function of ``(run seed, job
name, k)``, so the run directory's manifest (the resolved config) is all that
is needed to rebuild episode ``k``: the slot comes from the same plan as in the
run (``FactorSet(job).slots(seed)[k]``) and runs through the same code path
(:func:`trialrun.execution.shard.run_shard` with that single slot). The replay
then compares seed, factors and every outcome term with the record. A mismatch
means the episode is not reproducible: a nondeterministic env or policy, a
changed package version, a policy checkpoint that changed on disk, or an
edited record.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.config import parse_run_config
    >>> from trialrun.execution.runner import run_evaluation
    >>> cfg = parse_run_config({"name": "demo", "seed": 1, "jobs": [
    ...     {"name": "cp", "env": "CartPole-v1", "policy": "random", "episodes": 3}]})
    >>> run_dir = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> _ = run_evaluation(cfg, run_dir)
    >>> result = replay_episode(run_dir, "cp", 2)
    >>> result.matches, result.replayed.outcome == result.recorded.outcome
    (True, True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trialrun.config import JobConfig, RunConfig, TrajectoryConfig, VideoConfig, parse_run_config
from trialrun.errors import InputError
from trialrun.execution.shard import RunContext, run_shard
from trialrun.outcomes import MISSING, values_match
from trialrun.plan import Slot
from trialrun.runfiles import (
    EPISODES_FILE,
    MANIFEST_FILE,
    REPLAY_DIR,
    RunFileError,
    read_episodes,
    read_manifest,
)
from trialrun.runfiles.schema import EpisodeRecord
from trialrun.variations.factors import FactorSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """One compared value: ``seed``, ``factors.<name>`` or ``outcome.<name>``."""

    name: str
    recorded: Any
    replayed: Any
    matches: bool


@dataclass
class ReplayTarget:
    """What a replay needs, read and checked from a run directory."""

    run_dir: Path
    config: RunConfig
    job: JobConfig
    slot: Slot
    record: EpisodeRecord


@dataclass
class ReplayResult:
    """A replayed episode next to its record."""

    target: ReplayTarget
    replayed: EpisodeRecord
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def recorded(self) -> EpisodeRecord:
        return self.target.record

    @property
    def matches(self) -> bool:
        """Seed, factors and outcome all equal the record's."""
        return all(c.matches for c in self.comparisons)

    @property
    def mismatches(self) -> list[str]:
        return [c.name for c in self.comparisons if not c.matches]

    @property
    def videos(self) -> dict[str, Path]:
        """The replay's video files by camera (absolute paths)."""
        return {camera: self.target.run_dir / name for camera, name in self.replayed.video.items()}

    @property
    def trajectory(self) -> Path | None:
        """The replay's trajectory file (absolute), when one was written."""
        name = self.replayed.trajectory
        return None if name is None else self.target.run_dir / name


def load_replay_target(run_dir: Path, job_name: str, episode: int) -> ReplayTarget:
    """Read the run's config and the episode's record, checking every argument.

    Raises:
        InputError: not a run directory, unknown job (lists the jobs), episode
            outside ``0..episodes-1`` or without a record.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    try:
        manifest = read_manifest(run_dir)
    except RunFileError as exc:
        raise InputError(f"{run_dir} is not a trialrun run directory: {exc}") from None
    config = parse_run_config(manifest.config, file=str(run_dir / MANIFEST_FILE))
    try:
        job = config.job(job_name)
    except KeyError:
        jobs = ", ".join(j.name for j in config.jobs)
        raise InputError(f"run '{config.name}' has no job '{job_name}'; its jobs: {jobs}") from None
    if not 0 <= episode < job.episodes:
        raise InputError(
            f"job '{job.name}' has episodes 0..{job.episodes - 1}; episode {episode} is out of range"
        )
    episodes_path = run_dir / EPISODES_FILE
    try:
        records = read_episodes(episodes_path) if episodes_path.exists() else []
    except RunFileError as exc:
        raise InputError(str(exc)) from None
    record = next((r for r in records if r.job == job.name and r.episode == episode), None)
    if record is None:
        raise InputError(
            f"episode {episode} of job '{job.name}' has no record in {episodes_path} (the run has not "
            f"finished it; continue the run with: trialrun run --resume {run_dir})"
        )
    slot = FactorSet(job).slots(config.seed)[episode]
    return ReplayTarget(run_dir=run_dir, config=config, job=job, slot=slot, record=record)


def replay_episode(
    run_dir: Path,
    job: str,
    episode: int,
    *,
    video: bool = False,
    out: Path | None = None,
    cameras: list[str] | None = None,
    trajectory: bool = False,
) -> ReplayResult:
    """Re-run episode ``episode`` of ``job`` from ``run_dir`` and compare it
    with its record.

    With ``video``, the replay records every camera of the job's ``video``
    settings (or ``cameras``; ``default`` when the job has none) to
    ``<run_dir>/replays/<job>/ep<k>-<camera>.mp4``, or into ``out``.
    Recording does not change the episode: frames are rendered after each step.
    With ``trajectory``, the replay writes the episode's trajectory (the job's
    ``trajectories`` settings, or the defaults) to
    ``<run_dir>/replays/<job>/ep<k>.h5``, or into ``out``.
    """
    target = load_replay_target(run_dir, job, episode)
    job_config = target.job
    video_dir: Path | None = None
    if video:
        base = job_config.video or VideoConfig()
        settings = base.model_copy(update={"select": "all", "cameras": cameras or base.cameras})
        settings = VideoConfig.model_validate(settings.model_dump())
        video_dir = Path(out) if out is not None else target.run_dir / REPLAY_DIR / job_config.name
    else:
        settings = None
    steps: TrajectoryConfig | None = None
    trajectory_dir: Path | None = None
    if trajectory:
        base_steps = job_config.trajectories or TrajectoryConfig()
        steps = base_steps.model_copy(update={"select": "all", "format": "hdf5"})
        trajectory_dir = Path(out) if out is not None else target.run_dir / REPLAY_DIR / job_config.name
    # A replay writes its own files and never touches the run's videos or trajectories.
    replay_job = job_config.model_copy(update={"video": settings, "trajectories": steps})
    context = RunContext(run_name=target.config.name, run_seed=target.config.seed, run_dir=target.run_dir)
    results: list[EpisodeRecord] = []
    run_shard(
        replay_job,
        context,
        [target.slot],
        results.append,
        video_dir=video_dir,
        trajectory_dir=trajectory_dir,
    )
    if len(results) != 1:
        raise RuntimeError(f"the replay produced {len(results)} episodes instead of 1")
    replayed = results[0]
    return ReplayResult(
        target=target, replayed=replayed, comparisons=compare_records(target.record, replayed)
    )


def compare_records(recorded: EpisodeRecord, replayed: EpisodeRecord) -> list[Comparison]:
    """Seed, every factor and every outcome term, recorded against replayed.

    Floats match within a relative 1e-9 (JSON round-trips floats exactly, so a
    faithful replay is far inside it); everything else must be equal.
    """
    rows = [Comparison("seed", recorded.seed, replayed.seed, recorded.seed == replayed.seed)]
    for section, old, new in (
        ("factors", recorded.factors, replayed.factors),
        ("outcome", recorded.outcome, replayed.outcome),
    ):
        for key in [*old, *(k for k in new if k not in old)]:
            a, b = old.get(key, MISSING), new.get(key, MISSING)
            rows.append(Comparison(f"{section}.{key}", a, b, values_match(a, b)))
    return rows
