"""The "compiling" phase of a native job whose simulator is a compiled program.

A JAX simulator (MuJoCo Playground) traces and compiles its batched reset and
step the first time they run: about a minute on two CPU cores, a few seconds
when JAX's persistent cache already holds them. Left inside the first
episode, that minute looks like a job stuck at 0 episodes. The runner
therefore compiles before the job's first episode, shows the phase, and
records its seconds in the manifest (``jobs.<job>.native.compile_seconds``).

Where the programs go next: in this process the simulator the job builds
afterwards reuses them (``LocalExecutor``); worker processes (``process``,
``ray``) load them from the persistent cache this phase has just filled.

The simulator is built with the job's ``env.kwargs``. A job whose
build-time factors change the simulator itself compiles each other variant
when it first runs.
"""

from __future__ import annotations

import logging

from trialrun.config import JobConfig
from trialrun.envs.batched import CompilesPrograms, make_batched_env

logger = logging.getLogger(__name__)


def compile_native(job: JobConfig) -> float | None:
    """Compile the programs of the simulator of ``job`` (a ``vectorization:
    native`` job); return the seconds it took, or None when its simulator
    compiles nothing (a Gymnasium vector env)."""
    env = make_batched_env(
        job.env.id,
        dict(job.env.kwargs),
        job.num_envs,
        max_steps=job.max_steps,
        mode=job.native_mode,
        job=job.name,
    )
    try:
        if not isinstance(env, CompilesPrograms):
            return None
        seconds = env.compile()
    finally:
        env.close()
    logger.info("job '%s': compiled the simulator's programs in %.1f s", job.name, seconds)
    return seconds
