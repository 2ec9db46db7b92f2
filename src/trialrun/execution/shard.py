"""Running a shard: a list of one job's slots, in the calling process.

A shard builds its env(s) and policy once and runs its slots through the
rollout. Every executor (local, process pool, Ray) ends up calling
:func:`run_shard`, so results do not depend on which executor ran them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from trialrun._imports import load_object
from trialrun._signatures import keywords_of
from trialrun.config import JobConfig
from trialrun.envs.batched import BatchedEnv, PerWorldFactors, make_batched_env
from trialrun.envs.build import make_env
from trialrun.envs.slot_wrapper import CaptureFactory, SlotWrapper, StepCaptureFactory
from trialrun.errors import ConfigError
from trialrun.execution.held_records import held_records
from trialrun.execution.rerender import Rerender
from trialrun.execution.sink import emit_many
from trialrun.outcomes import OutcomeTerm, SuccessRule
from trialrun.plan import PlannedSlots, Slot, episode_indices
from trialrun.policies.base import Policy, PolicyContext
from trialrun.policies.registry import build_policy
from trialrun.policies.registry import policy_cameras as registered_policy_cameras
from trialrun.recording.camera_obs import CameraObservations
from trialrun.recording.capture import DEFAULT_CAMERA, EpisodeRecorder
from trialrun.recording.native_film import WorldFilm
from trialrun.recording.native_steps import WorldSteps
from trialrun.recording.selection import TrajectorySelection, VideoSelection
from trialrun.recording.trajectory import TrajectoryRecorder
from trialrun.rollout import EnvFn, EpisodeResult, rollout
from trialrun.rollout_native import rollout_native
from trialrun.runfiles import RunLayout
from trialrun.runfiles.episodes import validate_records
from trialrun.runfiles.schema import EpisodeRecord
from trialrun.variations.factors import FactorHook, FactorSet, group_slots
from trialrun.variations.mjx import per_world_variations


@dataclass(frozen=True)
class RunContext:
    """What a shard needs to know about the run it belongs to."""

    run_name: str
    run_seed: int
    run_dir: Path


def build_outcome_terms(job: JobConfig) -> list[OutcomeTerm]:
    """Instantiate the job's custom outcome terms (fresh objects per shard)."""
    terms: list[OutcomeTerm] = []
    for index, spec in enumerate(job.outcomes):
        field = f"jobs[{job.name}].outcomes.{index}.type"
        factory = load_object(spec.type, field=field)
        term = _build_term(factory, spec.type, dict(spec.kwargs), field)
        if spec.name:
            term.name = spec.name
        missing = [m for m in ("name", "allocate", "start", "step", "value") if not hasattr(term, m)]
        if missing:
            raise ConfigError(
                f"'{spec.type}' built an object without {', '.join(missing)} "
                "(see trialrun.outcomes.OutcomeTerm)",
                field=field,
            )
        terms.append(term)
    names = [t.name for t in terms]
    clash = {n for n in names if names.count(n) > 1} | (set(names) & {"success", "return", "length"})
    if clash:
        raise ConfigError(f"outcome name(s) {sorted(clash)} used twice", field=f"jobs[{job.name}].outcomes")
    return terms


def _build_term(factory: Any, type_name: str, kwargs: dict[str, Any], field: str) -> Any:
    """``factory(**kwargs)``, with a setting it does not take, one it needs, or
    its own exception as one ConfigError naming the term (preflight builds
    every term, so a typo stops the run before it starts)."""
    where = field.removesuffix(".type")
    taken = keywords_of(factory)
    if taken is not None:
        taken.check(kwargs, f"outcome term '{type_name}'", lambda name: f"{where}.kwargs.{name}")
    try:
        return factory(**kwargs)
    except Exception as exc:
        raise ConfigError(
            f"'{type_name}' could not be built with kwargs {kwargs}: {type(exc).__name__}: {exc}",
            field=f"{where}.kwargs",
        ) from None


def policy_cameras(job: JobConfig) -> dict[str, tuple[int, int]]:
    """Cameras the job's policy reads from its observation: those its ``obs_map``
    names (the VLA server policies), its ``cameras`` setting, and those its
    factory declares (a pixel network's file); see
    :func:`trialrun.policies.registry.policy_cameras`."""
    return registered_policy_cameras(job.policy.type, job.policy.kwargs, field=f"jobs[{job.name}].policy")


def success_rule(job: JobConfig) -> SuccessRule:
    return SuccessRule(key=job.success.key, survived=job.success.survived, min_return=job.success.min_return)


def make_factor_env(
    env_id: str,
    kwargs: dict[str, Any],
    max_steps: int | None,
    hook: FactorHook | None,
    render_mode: str | None = None,
    recorder_factory: CaptureFactory | None = None,
    cameras: dict[str, tuple[int, int]] | None = None,
    step_recorder_factory: StepCaptureFactory | None = None,
) -> SlotWrapper:
    """One sub-env with its factor hook and, for a job with video, its
    recorder factory (module-level, as is ``recorder_factory``, so async
    workers can unpickle it). ``cameras`` (name -> (height, width)) are
    rendered into the observation for a policy that looks at them."""
    env = make_env(env_id, kwargs, max_steps, render_mode=render_mode)
    if cameras:
        env = CameraObservations(env, cameras)
    return SlotWrapper(
        env,
        env_index=0,
        hooks=[hook] if hook else [],
        recorder_factory=recorder_factory,
        step_recorder_factory=step_recorder_factory,
    )


@dataclass(frozen=True)
class GroupEnvFns:
    """Makes the sub-env builders of one build-time group of a job (the env
    kwargs its slots share). Each builder gets its own factor hook: a hook
    binds to the first env it resets and keeps that env's nominal values."""

    env_id: str
    kwargs: dict[str, Any]
    max_steps: int | None
    factor_set: FactorSet | None
    build_values: dict[str, Any]
    render_mode: str | None
    recorder_factory: CaptureFactory | None
    cameras: dict[str, tuple[int, int]]
    step_recorder_factory: StepCaptureFactory | None = None

    def __call__(self) -> EnvFn:
        hook = self.factor_set.hook(self.build_values) if self.factor_set is not None else None
        return partial(
            make_factor_env,
            self.env_id,
            self.kwargs,
            self.max_steps,
            hook,
            self.render_mode,
            self.recorder_factory,
            self.cameras,
            self.step_recorder_factory,
        )


class RecordBuilder:
    """Turns a shard's finished episodes into records and emits them: the
    episodes of one step as one block (:func:`~trialrun.rollout.deliver`),
    validated in one call."""

    def __init__(self, run: str, job: str, emit: Callable[[EpisodeRecord], None]) -> None:
        self.run = run
        self.job = job
        self.emit = emit

    def __call__(self, result: EpisodeResult) -> None:
        self.many([result])

    def many(self, results: list[EpisodeResult]) -> None:
        run, job = self.run, self.job
        # Plain dicts validated as one list: one pass through pydantic's core.
        records = validate_records(
            [
                {
                    "run": run,
                    "job": job,
                    "episode": r.slot.episode,
                    "seed": r.slot.seed,
                    "env_index": r.env_index,
                    "factors": r.factors,
                    "outcome": r.outcome,
                    "video": r.video,
                    "trajectory": r.trajectory,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "extra": r.extra,
                }
                for r in results
            ]
        )
        emit_many(self.emit, records)


def run_shard(
    job: JobConfig,
    context: RunContext,
    slots: Sequence[Slot],
    emit: Callable[[EpisodeRecord], None],
    policy: Policy | None = None,
    video_dir: Path | None = None,
    trajectory_dir: Path | None = None,
) -> bool:
    """Run ``slots`` of ``job`` and ``emit`` one record per finished episode;
    return whether the env ever reported the success key.

    ``policy`` overrides the job's policy spec with a live object (used by
    training-time evaluation, which passes the trainer's policy).
    ``video_dir`` is where the job's videos go (default
    ``<run_dir>/videos/<job>``; replay writes elsewhere), ``trajectory_dir``
    where its trajectories go (default ``<run_dir>/trajectories/<job>``).

    Records of episodes whose trajectory the writer process writes are held
    until it is written (:func:`held_records`).
    """
    with held_records(job, emit) as held:
        return _run_shard(job, context, slots, held, policy, video_dir, trajectory_dir)


def _run_shard(
    job: JobConfig,
    context: RunContext,
    slots: Sequence[Slot],
    emit: Callable[[EpisodeRecord], None],
    policy: Policy | None = None,
    video_dir: Path | None = None,
    trajectory_dir: Path | None = None,
) -> bool:
    """:func:`run_shard`'s work, emitting through ``emit`` (the held records)."""

    instruction_factor = FactorSet(job).instruction_name

    def policy_builder(ctx: PolicyContext) -> Policy:
        if policy is not None:
            return policy
        ctx = replace(ctx, instruction=job.instruction, episode_instructions=instruction_factor is not None)
        return build_policy(job.policy.type, job.policy.kwargs, ctx)

    on_episode = RecordBuilder(context.run_name, job.name, emit)
    if job.vectorization == "native":
        return _run_native(job, context, slots, policy_builder, on_episode, video_dir, trajectory_dir)
    video = None
    render_mode = None
    recorder_factory: CaptureFactory | None = None
    if job.video is not None:
        directory = video_dir or RunLayout(context.run_dir).video_dir(job.name)
        video = VideoSelection(job.video, directory, context.run_dir)
        video.prepare(episode_indices(slots))
        render_mode = "rgb_array" if DEFAULT_CAMERA in job.video.cameras else None
        recorder_factory = EpisodeRecorder
    trajectories = None
    step_recorder_factory: StepCaptureFactory | None = None
    if job.trajectories is not None:
        trajectories = TrajectorySelection(
            job.trajectories,
            trajectory_dir or RunLayout(context.run_dir).trajectory_dir(job.name),
            context.run_dir,
            job.env.id,
        )
        trajectories.prepare(episode_indices(slots))
        step_recorder_factory = TrajectoryRecorder
        if DEFAULT_CAMERA in job.trajectories.cameras:
            render_mode = "rgb_array"
    cameras = policy_cameras(job)
    if DEFAULT_CAMERA in cameras:
        render_mode = "rgb_array"
    factor_set = FactorSet(job)
    seen = False
    # Build-time factors (env kwargs) split the slots into env groups; each
    # group's env is built once, and its slots keep their own seeds.
    for group in group_slots(factor_set, slots).values():
        first = first_factors(group)
        build_values = {name: first[name] for name in factor_set.build_names if name in first}
        kwargs = {**job.env.kwargs, **factor_set.build_kwargs(first)}

        env_fn = GroupEnvFns(
            job.env.id,
            kwargs,
            job.max_steps,
            factor_set if factor_set else None,
            build_values,
            render_mode,
            recorder_factory,
            cameras,
            step_recorder_factory,
        )
        # failures/successes: record the wanted episodes by re-simulating them.
        for selection, records in ((video, "video"), (trajectories, "trajectory")):
            if selection is not None and selection.quota:
                selection.replayer = Rerender(
                    env_fn,
                    env_id=job.env.id,
                    success=success_rule(job),
                    terms=partial(build_outcome_terms, job),
                    limits=job.limits,
                    job=job.name,
                    records="video" if records == "video" else "trajectory",
                )
        env_fns = [env_fn() for _ in range(job.num_envs)]
        seen |= rollout(
            group,
            env_fns,
            policy_builder,
            on_episode,
            env_id=job.env.id,
            env_kwargs=kwargs,
            vectorization=job.vectorization,
            success=success_rule(job),
            terms=build_outcome_terms(job),
            video=video,
            limits=job.limits,
            job=job.name,
            instruction_factor=instruction_factor,
            trajectories=trajectories,
        )
    return seen


def first_factors(group: Sequence[Slot]) -> dict[str, Any]:
    """The factor values of a group's first slot. Why not ``group[0].factors``:
    on a plan that computes the first block of slots (their seeds too), which
    the rollout computes again when it takes them."""
    if isinstance(group, PlannedSlots):
        return group.factor_values(0)
    return group[0].factors


def bind_per_world_factors(env: BatchedEnv, factor_set: FactorSet, field: str) -> None:
    """Give a native simulator the job's reset-time factors, which it sets per
    world (:class:`~trialrun.envs.batched.PerWorldFactors`, e.g. MJX's batched
    model); a simulator without that hook cannot take them (the worlds share
    one env object).

    Raises:
        ConfigError: naming the first reset-time factor (``field``.<name>).
        VariationError: a factor's target is not in the model (listing the names).
    """
    names = factor_set.reset_names
    if not names:
        return
    if not isinstance(env, PerWorldFactors):
        raise ConfigError(
            f"factor '{names[0]}' applies at reset, one value per episode, but a native simulator's "
            "worlds share one env object: use a build-time variation (env_kwarg), which groups the slots "
            "so that each group's simulator is built with its value, or vectorization: sync",
            field=f"{field}.{names[0]}",
        )
    env.bind_factors(per_world_variations({n: factor_set.variation_configs[n] for n in names}, field=field))


def _run_native(
    job: JobConfig,
    context: RunContext,
    slots: Sequence[Slot],
    policy_builder: Callable[[PolicyContext], Policy],
    on_episode: Callable[[EpisodeResult], None],
    video_dir: Path | None = None,
    trajectory_dir: Path | None = None,
) -> bool:
    """``vectorization: native``: one batched simulator per build-time group.

    Waves (wave mode) are cut from the group's full plan, not from the slots
    this shard runs, so a wave is the same whichever shard or resume runs it.
    A job with ``video`` builds its simulator with ``render_mode="rgb_array"``
    and films the worlds its selection wants (:class:`WorldFilm`); one with
    ``trajectories`` records theirs (:class:`WorldSteps`).
    """
    factor_set = FactorSet(job)
    video = None
    if job.video is not None:
        video = VideoSelection(
            job.video, video_dir or RunLayout(context.run_dir).video_dir(job.name), context.run_dir
        )
        video.prepare(episode_indices(slots))
    trajectories = None
    if job.trajectories is not None:
        trajectories = TrajectorySelection(
            job.trajectories,
            trajectory_dir or RunLayout(context.run_dir).trajectory_dir(job.name),
            context.run_dir,
            env_id=job.env.id,
        )
        trajectories.prepare(episode_indices(slots))
    # The job's whole plan per group, which only wave mode cuts its waves from.
    plans: dict[str, Sequence[Slot]] | None = None
    seen = False
    for key, group in group_slots(factor_set, slots).items():
        kwargs = {**job.env.kwargs, **factor_set.build_kwargs(first_factors(group))}
        if video is not None:
            kwargs["render_mode"] = "rgb_array"
        env = make_batched_env(
            job.env.id, kwargs, job.num_envs, max_steps=job.max_steps, mode=job.native_mode, job=job.name
        )
        film = WorldFilm(env, video) if video is not None else None
        steps = WorldSteps(trajectories) if trajectories is not None else None
        try:
            bind_per_world_factors(env, factor_set, f"jobs[{job.name}].factors")
            if env.mode != "exact" and plans is None:
                plans = group_slots(factor_set, factor_set.slots(context.run_seed))
            seen |= rollout_native(
                group,
                env,
                policy_builder,
                on_episode,
                plan=None if plans is None else plans[key],
                env_id=job.env.id,
                env_kwargs=kwargs,
                success=success_rule(job),
                terms=build_outcome_terms(job),
                limits=job.limits,
                job=job.name,
                instruction_factor=factor_set.instruction_name,
                film=film,
                steps=steps,
            )
        finally:
            if film is not None:
                film.close()
            if steps is not None:
                steps.close()
            env.close()
    return seen
