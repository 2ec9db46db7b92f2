"""The job lifecycle of a run: plan, execute, record, summarise, resume.

The runner is the only writer of ``episodes.jsonl`` and ``manifest.json``.
Finished episodes are appended (and flushed) as they arrive, a block at a
time: the episodes that ended in one step, or came in one message from a
worker, take one write and one flush, and are reported only after it. A job whose env
or policy raises is marked ``failed`` with its message and traceback; the
other jobs still run. A failure to *write* (disk full, permissions) is not a
job failure: it stops the run with :class:`RunWriteError`, and the episodes
already on disk stay valid for ``--resume``.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.config import parse_run_config
    >>> cfg = parse_run_config({"name": "demo", "seed": 1, "jobs": [
    ...     {"name": "probe", "env": "trialrun/SeedProbe-v0", "policy": "zero",
    ...      "episodes": 6, "num_envs": 2}]})
    >>> result = run_evaluation(cfg, pathlib.Path(tempfile.mkdtemp()) / "demo")
    >>> result.statuses, result.exit_code
    ({'probe': 'completed'}, 0)
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import trialrun.envs  # noqa: F401  (registers the bundled env ids)
from trialrun.boundary import InterruptWatch, as_job_failure
from trialrun.config import JobConfig, RunConfig, parse_run_config
from trialrun.errors import ConfigError, InputError
from trialrun.execution.compiling import compile_native
from trialrun.execution.metadata import git_commit, host_info, package_versions
from trialrun.execution.native_resume import pin_recorded_lanes
from trialrun.execution.preflight import Preflight, preflight
from trialrun.execution.shard import RunContext, run_shard
from trialrun.execution.stopping import EarlyStopper, StopRule, run_in_batches
from trialrun.execution.trajectory_export import export_trajectories
from trialrun.plan import Slot
from trialrun.policies.base import Policy
from trialrun.rollout import utc_now
from trialrun.runfiles import (
    EPISODES_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    EpisodeLogWriter,
    RunDirLock,
    RunFileError,
    RunWriteError,
    read_manifest,
    repair_torn_tail,
    write_json_atomic,
)
from trialrun.runfiles.episodes import iter_episodes, record_lines
from trialrun.runfiles.schema import (
    EpisodeRecord,
    JobManifest,
    JobState,
    Manifest,
    StoppedEarly,
    Summary,
)
from trialrun.stats import EpisodeOutcome, OutcomeTally, summarize_tallies
from trialrun.stats.summary import episode_seconds
from trialrun.variations.factors import FactorSet

logger = logging.getLogger(__name__)

_MANIFEST_INTERVAL_S = 5.0


class RunObserver(Protocol):
    """Receives progress events (the CLI draws its progress bar from them)."""

    def job_started(self, job: str, planned: int, done: int) -> None: ...

    def episode_finished(self, record: EpisodeRecord) -> None:
        """One record, on disk. An observer may also define
        ``episodes_finished(job, records)``: it then gets each block of
        records (one step's, one worker message's) in one call instead."""

    def job_finished(self, job: str, status: JobState, error: str | None) -> None: ...

    def job_phase(self, job: str, phase: str) -> None:
        """The job entered ``phase`` ("compiling", then "running"); optional:
        observers without it still work."""


class Executor(Protocol):
    """Runs a job's slots somewhere and emits records back to the runner."""

    def run_job(
        self,
        job: JobConfig,
        context: RunContext,
        slots: Sequence[Slot],
        emit: Callable[[EpisodeRecord], None],
    ) -> bool | None:
        """Run the slots; return whether the env reported the success key
        (None when the executor cannot tell)."""
        ...


class LocalExecutor:
    """Runs every slot in this process (the default)."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to stop."""

    def run_job(
        self,
        job: JobConfig,
        context: RunContext,
        slots: Sequence[Slot],
        emit: Callable[[EpisodeRecord], None],
    ) -> bool:
        return run_shard(job, context, slots, emit, policy=self.policy)


@dataclass
class RunResult:
    """What a finished :func:`run_evaluation` reports."""

    run_dir: Path
    statuses: dict[str, JobState]
    summary: Summary
    errors: dict[str, str] = field(default_factory=dict)
    stopped: dict[str, StoppedEarly] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every job completed, 1 when any failed."""
        return 0 if all(s == "completed" for s in self.statuses.values()) else 1


def default_run_dir(output_dir: Path, name: str) -> Path:
    """``<output_dir>/<name>-<UTC timestamp>``, made unique with a suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = Path(output_dir) / f"{name}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = Path(output_dir) / f"{name}-{stamp}-{suffix}"
    return candidate


class ManifestWriter:
    """Writes ``manifest.json`` (atomically); ``force=False`` skips the write
    when the last one is less than a few seconds old (per block of records)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._last = 0.0

    def due(self) -> bool:
        """Whether the last write is a few seconds old (a periodic write is due)."""
        return time.monotonic() - self._last >= _MANIFEST_INTERVAL_S

    def write(self, force: bool = True) -> None:
        if not force and not self.due():
            return
        self._last = time.monotonic()
        write_json_atomic(self.path, self.manifest.model_dump(mode="json", by_alias=True))


def _new_manifest(config: RunConfig, config_path: Path | None, argv: list[str]) -> Manifest:
    host = host_info()
    commit_dir = config_path.parent if config_path is not None else Path.cwd()
    return Manifest(
        run=config.name,
        seed=config.seed,
        config=config.model_dump(mode="json"),
        config_path=str(config_path) if config_path else None,
        versions=package_versions(config),
        git_commit=git_commit(commit_dir),
        host=host["host"],
        python=host["python"],
        platform=host["platform"],
        command=argv,
        started_at=utc_now(),
        jobs={job.name: JobManifest(name=job.name, planned=job.episodes) for job in config.jobs},
    )


def load_for_resume(run_dir: Path) -> tuple[RunConfig, Manifest]:
    """The stored config and manifest of an existing run (for ``--resume``)."""
    try:
        manifest = read_manifest(run_dir)
    except RunFileError as exc:
        raise InputError(f"cannot resume {run_dir}: {exc}") from None
    config = parse_run_config(manifest.config, file=str(Path(run_dir) / MANIFEST_FILE))
    return config, manifest


def _existing_records(
    path: Path, config: RunConfig, keep: bool
) -> tuple[dict[str, OutcomeTally], dict[str, dict[int, EpisodeOutcome]]]:
    """Each job's tally of the episodes already on disk and, with ``keep``
    (stopping early needs them), their outcomes."""
    done = {job.name: OutcomeTally(job.episodes) for job in config.jobs}
    kept: dict[str, dict[int, EpisodeOutcome]] = {job.name: {} for job in config.jobs}
    if not path.exists():
        return done, kept
    repair_torn_tail(path)
    try:
        # One record at a time: a list of a million parsed records would cost GBs.
        for rec in iter_episodes(path):
            if rec.job not in done:
                raise InputError(f"{path}: record for job '{rec.job}', which the run's config does not have")
            if rec.episode in done[rec.job]:
                logger.warning(
                    "%s: duplicate record for (%s, %d); keeping the first", path, rec.job, rec.episode
                )
                continue
            outcome = EpisodeOutcome.of(rec)
            done[rec.job].add(rec.episode, rec.outcome, outcome.seconds)
            if keep:
                kept[rec.job][rec.episode] = outcome
    except RunFileError as exc:
        raise InputError(str(exc)) from None
    return done, kept


def run_evaluation(
    config: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    config_path: Path | None = None,
    observer: RunObserver | None = None,
    executor: Executor | None = None,
    argv: list[str] | None = None,
    stop: StopRule | None = None,
) -> RunResult:
    """Run (or resume) every job of ``config`` into ``run_dir``; ``stop`` stops
    jobs early against a baseline run (:mod:`trialrun.execution.stopping`).

    The run directory is locked while the run writes to it: a second process
    on the same directory (say, a resume while the run still goes on) gets a
    clear error instead of recording episodes twice.

    A ``SystemExit`` or ``KeyboardInterrupt`` raised by a job's env or policy
    fails that job like any error. A real Ctrl+C marks the running job
    ``interrupted``, writes the summary of what finished and re-raises
    ``KeyboardInterrupt``; ``--resume`` continues the run.

    Raises:
        ConfigError / InputError: bad config or run directory (nothing ran).
        KeyboardInterrupt: the user pressed Ctrl+C (the run files are consistent).
        RunWriteError: a run file could not be written; episodes already
            appended are valid and ``--resume`` continues from them.
    """
    run_dir = Path(run_dir)
    checked = preflight(config)
    asked = config
    if resume and (run_dir / MANIFEST_FILE).is_file():
        config = _keep_recorded_lanes(config, run_dir, checked)
        if config is not asked:
            checked = preflight(config)
    stopper = EarlyStopper.load(stop, config, run_dir) if stop is not None else None
    if resume:
        if not run_dir.is_dir():
            raise InputError(f"cannot resume {run_dir}: no such run directory")
    else:
        if (run_dir / MANIFEST_FILE).exists() or (run_dir / EPISODES_FILE).exists():
            raise InputError(
                f"{run_dir} already holds a run; use --resume to continue it or choose another --run-dir"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunWriteError(f"cannot create {run_dir}: {exc}") from exc
    with RunDirLock(run_dir):
        return _run_locked(
            config, run_dir, checked, resume, config_path, observer, executor, argv, stopper, asked=asked
        )


def _keep_recorded_lanes(config: RunConfig, run_dir: Path, checked: Preflight) -> RunConfig:
    """``config`` as :func:`~trialrun.execution.native_resume.pin_recorded_lanes`
    leaves it for the stored manifest (unchanged if the manifest cannot be
    read: resuming reports that)."""
    try:
        stored = read_manifest(run_dir)
    except RunFileError:
        return config
    recorded = {name: state.native for name, state in stored.jobs.items()}
    return pin_recorded_lanes(config, recorded, checked.native)


def _compile_phase(
    job: JobConfig, state: JobManifest, observer: RunObserver | None, writer: ManifestWriter
) -> None:
    """Compile a native job's simulator before its first episode
    (:mod:`trialrun.execution.compiling`), shown as the phase "compiling",
    with its seconds in the manifest."""
    if job.vectorization != "native":
        return
    phase = getattr(observer, "job_phase", None)  # observers written before phases existed lack it
    if phase is not None:
        phase(job.name, "compiling")
    seconds = compile_native(job)
    if seconds is not None and state.native is not None:
        state.native.compile_seconds = round(seconds, 3)
        writer.write()
    if phase is not None:
        phase(job.name, "running")


def _run_locked(
    config: RunConfig,
    run_dir: Path,
    checked: Preflight,
    resume: bool,
    config_path: Path | None,
    observer: RunObserver | None,
    executor: Executor | None,
    argv: list[str] | None,
    stopper: EarlyStopper | None = None,
    *,
    asked: RunConfig | None = None,
) -> RunResult:
    """Run ``config`` in the locked ``run_dir``; a resume checks that ``asked``
    (the config before any recorded setting was pinned) is the stored one."""
    episodes_path = run_dir / EPISODES_FILE
    manifest_path = run_dir / MANIFEST_FILE
    run_job = (executor or LocalExecutor()).run_job

    if resume:
        if not manifest_path.exists():
            raise InputError(f"cannot resume {run_dir}: it has no {MANIFEST_FILE}")
        stored = read_manifest(run_dir)
        # Both sides through the current model: a run started by an older
        # version lacks keys added since (with their defaults) and still resumes.
        if _normalized(stored.config, manifest_path) != (asked or config).model_dump(mode="json"):
            raise ConfigError(
                "the config differs from the one the run was started with; resume with the "
                "stored config (trialrun run --resume RUN_DIR) or start a new run",
                file=str(manifest_path),
                field="config",
            )
        manifest = stored
        manifest.ended_at = None
    else:
        if manifest_path.exists() or episodes_path.exists():  # appeared while we took the lock
            raise InputError(f"{run_dir} already holds a run; use --resume to continue it")
        manifest = _new_manifest(config, config_path, argv or [])

    for job in config.jobs:
        manifest.jobs[job.name].factors = checked.specs[job.name]
        manifest.jobs[job.name].native = checked.native.get(job.name)
    # Each job's running aggregates (summary.json in bounded memory); the
    # outcomes themselves only when stopping early looks at them.
    done, kept = _existing_records(episodes_path, config, keep=stopper is not None)
    writer = ManifestWriter(manifest_path, manifest)
    writer.write()
    context = RunContext(run_name=config.name, run_seed=config.seed, run_dir=run_dir)
    errors: dict[str, str] = {}
    success_seen: dict[str, bool] = {}

    interrupted: BaseException | None = None
    with InterruptWatch() as watch, EpisodeLogWriter(episodes_path) as log:
        for job in config.jobs:
            state = manifest.jobs[job.name]
            job_done = done[job.name]
            # A lazy plan: the missing slots are computed a block at a time as they run.
            slots = FactorSet(job).slots(config.seed).without(job_done.finished_mask())
            if observer:
                observer.job_started(job.name, job.episodes, len(job_done))
            state.completed = len(job_done)
            if not slots:
                state.status = "completed"
                state.error = state.traceback = None
                _export(job, run_dir, config.seed, state, errors, again=False)
                writer.write()
                if observer:
                    observer.job_finished(job.name, "completed", None)
                continue
            state.status = "running"
            state.error = state.traceback = state.stopped_early = None
            state.started_at = state.started_at or utc_now()
            writer.write()

            job_kept = kept[job.name] if stopper is not None else None
            emit = JobSink(job.name, log, done[job.name], job_kept, state, observer, writer)

            def run_slots(group: Sequence[Slot], _job: JobConfig = job, _emit: JobSink = emit) -> bool | None:
                return run_job(_job, context, group, _emit)

            try:
                _compile_phase(job, state, observer, writer)
                seen, state.stopped_early = run_in_batches(job, slots, stopper, kept[job.name], run_slots)
                if seen is not None:
                    success_seen[job.name] = seen
            except RunWriteError:
                state.status = "failed"
                state.error = "stopped: a run file could not be written (see the run's output)"
                state.completed = len(done[job.name])
                _try_write(writer)
                raise
            except (
                BaseException
            ) as exc:  # job isolation: whatever the env or policy raises fails only this job
                if watch.is_real_interrupt(exc):
                    state.status = "interrupted"
                    state.error = "interrupted by the user (Ctrl+C); trialrun run --resume continues it"
                    interrupted = exc
                else:
                    failure = as_job_failure(exc)  # a sys.exit() in a policy ends its job, not the run
                    state.status = "failed"
                    state.error = f"{type(failure).__name__}: {failure}"
                    # Errors from worker processes carry the worker's own traceback.
                    state.traceback = getattr(failure, "remote_traceback", None) or traceback.format_exc()
                    errors[job.name] = state.error
                    logger.error("job '%s' failed: %s", job.name, state.error)
            else:
                missing = job.episodes - len(done[job.name])
                if missing and state.stopped_early is None:
                    state.status = "failed"
                    state.error = f"executor returned without {missing} planned episode(s)"
                    errors[job.name] = state.error
                else:
                    state.status = "completed"
                    _export(job, run_dir, config.seed, state, errors)
            state.completed = len(done[job.name])
            state.ended_at = utc_now()
            writer.write()
            if observer:
                observer.job_finished(job.name, state.status, state.error)
            if interrupted is not None:
                break

    summary = summarize_tallies(
        config.name,
        done,
        planned={job.name: job.episodes for job in config.jobs},
        statuses={name: s.status for name, s in manifest.jobs.items()},
        seed=config.seed,
        target_half_width=config.target_half_width,
        success_rules={job.name: _has_success_rule(job) for job in config.jobs},
        success_seen=success_seen,
    )
    write_json_atomic(run_dir / SUMMARY_FILE, summary.model_dump(mode="json", by_alias=True))
    manifest.ended_at = utc_now()
    writer.write()
    if interrupted is not None:
        # The summary of what finished is written; the caller (the CLI: exit 130) sees the Ctrl+C.
        raise interrupted
    return RunResult(
        run_dir=run_dir,
        statuses={name: s.status for name, s in manifest.jobs.items()},
        summary=summary,
        errors=errors,
        stopped={name: s.stopped_early for name, s in manifest.jobs.items() if s.stopped_early is not None},
    )


class JobSink:
    """Where a job's records go (the executors' ``emit``, a
    :class:`~trialrun.execution.sink.RecordSink`): a block of records (one
    step's, or one message from a worker) is appended to ``episodes.jsonl``
    with one write and one flush, and only then counted and reported, so a
    killed run has on disk every episode it reported."""

    def __init__(
        self,
        job: str,
        log: EpisodeLogWriter,
        tally: OutcomeTally,
        kept: dict[int, EpisodeOutcome] | None,
        state: JobManifest,
        observer: RunObserver | None,
        writer: ManifestWriter,
    ) -> None:
        self.job = job
        self.log = log
        self.tally = tally
        self.kept = kept
        self.state = state
        self.observer = observer
        self.writer = writer
        # Observers written before blocks existed get the records one by one.
        self._observe_many: Callable[[str, Sequence[EpisodeRecord]], None] | None = getattr(
            observer, "episodes_finished", None
        )

    def __call__(self, record: EpisodeRecord) -> None:
        self.many([record])

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
        tally = self.tally
        episodes = [record.episode for record in records]
        if any(episode in tally for episode in episodes) or len(set(episodes)) < len(episodes):
            records, lines = self._first_results(records, lines)
            if not records:
                return
        self.log.append_lines(lines if lines is not None else record_lines(records))
        kept = self.kept
        for record in records:
            seconds = episode_seconds(record)
            tally.add(record.episode, record.outcome, seconds)
            if kept is not None:
                kept[record.episode] = EpisodeOutcome(record.job, record.episode, record.outcome, seconds)
        if self._observe_many is not None:
            self._observe_many(self.job, records)
        elif self.observer is not None:
            for record in records:
                self.observer.episode_finished(record)
        if self.writer.due():
            # The manifest's count is brought up to date only when it is written
            # (a pydantic model's attribute costs microseconds to set).
            self.state.completed = len(tally)
            self.writer.write()

    def _first_results(
        self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None
    ) -> tuple[list[EpisodeRecord], list[str] | None]:
        """``records`` (and their ``lines``) without the episodes already
        recorded or repeated in the block, each left out with a warning."""
        fresh: list[EpisodeRecord] = []
        fresh_lines: list[str] = []
        seen: set[int] = set()
        for k, record in enumerate(records):
            if record.episode in self.tally or record.episode in seen:
                logger.warning("ignoring a second result for (%s, %d)", self.job, record.episode)
                continue
            seen.add(record.episode)
            fresh.append(record)
            if lines is not None:
                fresh_lines.append(lines[k])
        return fresh, fresh_lines if lines is not None else None


def _normalized(stored: dict[str, object], path: Path) -> dict[str, object] | None:
    """A stored config as the current model dumps it (None if it no longer parses)."""
    try:
        return parse_run_config(stored, file=str(path)).model_dump(mode="json")
    except ConfigError:
        return None


def _has_success_rule(job: JobConfig) -> bool:
    """Whether the job decides success by its own rule rather than the env's default key."""
    return job.success.key is not None or job.success.survived or job.success.min_return is not None


def _export(
    job: JobConfig, run_dir: Path, seed: int, state: JobManifest, errors: dict[str, str], again: bool = True
) -> None:
    """Gather the completed job's trajectories into their dataset (``format:
    lerobot``); a failure fails the job (its episodes and files are kept)."""
    try:
        export_trajectories(job, run_dir, seed, again=again)
    except RunWriteError:
        raise
    except Exception as exc:
        state.status = "failed"
        state.error = f"the trajectories' dataset could not be written: {type(exc).__name__}: {exc}"
        state.traceback = traceback.format_exc()
        errors[job.name] = state.error
        logger.error("job '%s' failed: %s", job.name, state.error)


def _try_write(writer: ManifestWriter) -> None:
    try:
        writer.write()
    except RunWriteError:
        logger.error("could not update the manifest either")
