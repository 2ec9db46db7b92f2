"""Preflight: what can be checked before a run starts anything.

Env ids, policy names, outcome terms, factors and their targets, video cameras,
whether the env honours reset seeds and what a native simulator can do are
checked against the config (building one nominal env per job), so a typo fails in a second with exit code 2
instead of marking a job failed after other jobs ran. What preflight learns
(factor specs with nominal values, how native worlds are reset) goes into the
manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from trialrun.config import JobConfig, RunConfig, VideoConfig
from trialrun.envs.batched import BatchedEnv, GymnasiumBatchedEnv, make_batched_env
from trialrun.envs.build import check_env_id, check_env_kwargs, make_env
from trialrun.envs.metaworld import METAWORLD_MAX_STEPS, is_metaworld_id
from trialrun.envs.seeding import check_seeding
from trialrun.errors import ConfigError, InputError
from trialrun.execution.shard import bind_per_world_factors, build_outcome_terms, policy_cameras
from trialrun.policies.registry import check_policy_settings, resolve_policy_factory, takes_instruction
from trialrun.recording.capture import DEFAULT_CAMERA, check_video
from trialrun.recording.native_film import RendersWorlds
from trialrun.rollout import instruction_not_taken
from trialrun.runfiles.schema import FactorSpec, NativeRun
from trialrun.variations.factors import FactorSet

logger = logging.getLogger(__name__)


@dataclass
class Preflight:
    """What preflight learned about each job, for the manifest."""

    specs: dict[str, list[FactorSpec]] = field(default_factory=dict)
    native: dict[str, NativeRun] = field(default_factory=dict)


def preflight(config: RunConfig) -> Preflight:
    """Check what can be checked before running anything (env ids, policy
    names, outcome terms, factors and their targets, what a native simulator
    can do), so a typo fails in a second with exit code 2 instead of marking a
    job failed after other jobs ran. Returns each job's factor specs and, for
    native jobs, how their worlds are reset (for the manifest)."""
    checked = Preflight()
    for index, job in enumerate(config.jobs):
        spec = check_env_id(job.env.id, field=f"jobs.{index}.env.id")
        if is_metaworld_id(job.env.id) and job.max_steps is not None and job.max_steps > METAWORLD_MAX_STEPS:
            raise ConfigError(
                f"Meta-World episodes are at most {METAWORLD_MAX_STEPS} steps, got {job.max_steps}",
                field=f"jobs.{index}.max_steps",
            )
        resolve_policy_factory(job.policy.type, field=f"jobs.{index}.policy.type")
        try:
            check_policy_settings(job.policy.type, job.policy.kwargs)
        except ConfigError as exc:
            raise exc.located(prefix=f"jobs.{index}") from None
        build_outcome_terms(job)
        factor_set = FactorSet(job)
        if factor_set.instruction_name is not None:
            _check_policy_takes_instructions(job, factor_set.instruction_name)
        if job.vectorization == "native":
            checked.native[job.name] = check_native(job, index, factor_set)
            # A native job films through its simulator (check_native), not a single env's cameras.
            single = job.model_copy(update={"video": None})
            checked.specs[job.name] = check_with_env(single, index, factor_set) if factor_set else []
        else:
            check_env_kwargs(spec, job.env.kwargs, field=f"jobs.{index}.env.kwargs")
            checked.specs[job.name] = check_with_env(job, index, factor_set, seeds=True)
    return checked


def _check_policy_takes_instructions(job: JobConfig, factor: str) -> None:
    """Refuse a ``language`` factor whose policy is a class that can take no
    instruction (its ``act`` has no ``instruction`` parameter and it has no
    ``instruct``): the factor would have no effect. A factory function's
    policy is only known once built; its job fails then, with the same message."""
    factory = resolve_policy_factory(job.policy.type)
    act = getattr(factory, "act", None)
    is_policy_class = isinstance(factory, type) and act is not None
    if is_policy_class and not hasattr(factory, "instruct") and takes_instruction(act) is None:
        raise instruction_not_taken(factory.__name__, factor, job.name)


def check_native(job: JobConfig, index: int, factor_set: FactorSet) -> NativeRun:
    """Check a ``vectorization: native`` job before anything runs: the env has a
    vector entry point and can do the forced mode (a one-world env is built to
    find out), its reset-time factors can be set per world (bound now, so a
    missing body is named before anything runs), and nothing asks for what
    native mode cannot do yet. Returns
    how its worlds will be reset (for the manifest).

    Raises:
        ConfigError: naming the job's field and what the env supports.
    """
    if job.video is not None and list(job.video.cameras) != [DEFAULT_CAMERA]:
        raise ConfigError(
            f"a native job films its simulator's own render() only: cameras must be ['{DEFAULT_CAMERA}'], "
            f"got {list(job.video.cameras)}; film named cameras with a sync job or trialrun replay --video",
            field=f"jobs.{index}.video.cameras",
        )
    if job.trajectories is not None and job.trajectories.cameras:
        raise ConfigError(
            "a native job's trajectories hold no camera images (its simulator renders every world at "
            f"once); drop trajectories.cameras (got {list(job.trajectories.cameras)}) or use a sync job",
            field=f"jobs.{index}.trajectories.cameras",
        )
    kwargs = dict(job.env.kwargs)
    if job.video is not None:
        kwargs["render_mode"] = "rgb_array"
    try:
        env = make_batched_env(
            job.env.id, kwargs, 1, max_steps=job.max_steps, mode=job.native_mode, job=job.name
        )
    except ConfigError as exc:
        raise exc.located(prefix=f"jobs.{index}") from None
    except Exception as exc:
        # Native mode is decided from the env itself, so a job whose env cannot be built cannot be checked.
        raise ConfigError(
            f"job '{job.name}': could not build its batched env to check it: {type(exc).__name__}: {exc}",
            field=f"jobs.{index}.env",
        ) from None
    try:
        bind_per_world_factors(env, factor_set, f"jobs.{index}.factors")
        if job.video is not None:
            _check_native_render(env, job, index)
        if job.trajectories is not None and not _keeps_terminal_obs(env):
            raise ConfigError(
                f"job '{job.name}': {type(env).__name__} returns the next episode's first observation for a "
                "world that just ended (it resets worlds within the step), so a trajectory's last next_obs "
                "would be wrong; trajectories of a native job need native_mode: exact, or a Gymnasium vector "
                "env with autoreset_mode NEXT_STEP",
                field=f"jobs.{index}.trajectories",
            )
        return NativeRun(
            mode=env.mode,
            num_envs=job.num_envs,
            depends_on_num_envs=env.mode == "wave",
            lanes=getattr(env, "lanes", None),
        )
    finally:
        env.close()


def _keeps_terminal_obs(env: BatchedEnv) -> bool:
    """Whether a world's observation after its last step is its terminal one:
    exact mode (nothing resets by itself), or Gymnasium's NEXT_STEP autoreset."""
    if env.mode == "exact":
        return True
    return isinstance(env, GymnasiumBatchedEnv) and env.autoreset == AutoresetMode.NEXT_STEP


def _check_native_render(env: BatchedEnv, job: JobConfig, index: int) -> None:
    """A native job with video: its simulator gives one image per world."""
    field = f"jobs.{index}.video"
    if not isinstance(env, RendersWorlds):
        raise ConfigError(
            f"job '{job.name}': {type(env).__name__} cannot render its worlds (no render_worlds), so this "
            "native job cannot be filmed; drop video or use vectorization: sync",
            field=field,
        )
    if not isinstance(env, GymnasiumBatchedEnv):
        return  # an adapter's render_worlds is its own (resetting here could mean compiling)
    if env.mode == "exact":
        env.reset_worlds(np.ones(1, dtype=bool), [0])
    else:
        env.reset_all(0)
    renders: RendersWorlds = env
    try:
        frames = renders.render_worlds([0])
    except ConfigError as exc:
        raise ConfigError(f"job '{job.name}': {exc.message}", field=field) from None
    shape = np.shape(frames[0]) if frames else ()
    if len(shape) != 3 or shape[2] not in (3, 4):
        raise ConfigError(
            f"job '{job.name}': the simulator rendered {shape} for a world; a video needs H x W x 3 images",
            field=field,
        )


def check_with_env(
    job: JobConfig, index: int, factor_set: FactorSet, seeds: bool = False
) -> list[FactorSpec]:
    """Build one nominal env and check the job against it: every factor's
    target exists (a VariationError lists the available names), every video
    camera and every camera the policy looks through exists, and (``seeds``)
    its episodes follow from their reset seed (:func:`check_job_seeding`);
    return the factor specs with nominal values."""
    try:
        env = make_env(job.env.id, job.env.kwargs, job.max_steps)
    except InputError:
        raise
    except Exception as exc:  # the env itself is broken: the job will fail and say why
        logger.warning("job '%s': could not build its env to check factors and cameras: %s", job.name, exc)
        return []
    try:
        if job.video is not None:
            check_video(env, job.video, field=f"jobs.{index}.video.cameras")
        if job.trajectories is not None and job.trajectories.cameras:
            cameras = VideoConfig(cameras=job.trajectories.cameras)
            check_video(env, cameras, field=f"jobs.{index}.trajectories.cameras")
        looks_at = policy_cameras(job)
        if looks_at:
            check_video(env, VideoConfig(cameras=list(looks_at)), field=f"jobs.{index}.policy.cameras")
        specs = factor_set.specs(env) if factor_set else []
        if seeds:
            check_job_seeding(job, index, env)
        return specs
    finally:
        env.close()


def check_job_seeding(job: JobConfig, index: int, env: gym.Env[Any, Any]) -> None:
    """Refuse a job whose episodes would not follow from their recorded seeds
    (so ``trialrun replay`` could not reproduce them), unless it says
    ``allow_unseeded: true``; then warn. Envs trialrun knows how to seed
    (Meta-World) were seeded when built and pass.

    Raises:
        ConfigError: naming the job's field and the way out.
    """
    try:
        check = check_seeding(env, job.env.kwargs)
    except Exception as exc:  # a reset that raises fails the job later, with its traceback
        logger.warning("job '%s': could not check that its env honours reset seeds: %s", job.name, exc)
        return
    logger.debug("job '%s': seed check took %.1f ms", job.name, check.milliseconds)
    if check.problem is None:
        return
    if job.allow_unseeded:
        logger.warning(
            "job '%s': its episodes will not be reproducible (%s); running it because allow_unseeded is set",
            job.name,
            check.problem,
        )
        return
    raise ConfigError(
        f"episodes would not be reproducible: {check.problem}; set allow_unseeded: true to run it anyway",
        field=f"jobs.{index}.{check.field}",
    )
