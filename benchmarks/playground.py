"""MuJoCo Playground (MJX) on CPU: trialrun's batched path next to a plain jitted loop.

Same env (``CartpoleBalance``), same number of worlds, zero actions:

- **plain loop**: ``jax.jit(jax.vmap(env.step))`` called in a Python loop on
  states from ``jax.jit(jax.vmap(env.reset))`` (what a Playground user
  writes; no per-world resets, nothing recorded);
- **rollout**: :func:`trialrun.rollout_native.rollout_native` over
  :class:`~trialrun.envs.adapters.playground.PlaygroundBatchedEnv` (exact
  mode: per-world keys and resets, the batched model's per-world fields,
  ``lanes`` worlds per vectorized group);
- **trialrun run**: :func:`trialrun.execution.runner.run_evaluation` of the
  same job from a run file (``env: playground/CartpoleBalance``,
  ``vectorization: native``), preflight, records and summary included.

Compile time is measured separately (the first call of each jitted function,
compiling or loading from JAX's persistent cache) and excluded from the
steps/s; the ``trialrun run`` time includes its own trace and cache load.

    python benchmarks/playground.py [--worlds 64] [--steps 200] [--episodes 128] [--lanes 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import jax
import jax.numpy as jnp
import numpy as np

from trialrun.config import parse_run_config
from trialrun.envs.adapters.playground import (
    DEFAULT_LANES,
    enable_compile_cache,
    load_playground,
    make_playground_env,
)
from trialrun.execution.runner import run_evaluation
from trialrun.plan import plan_job
from trialrun.policies import build_policy
from trialrun.rollout import EpisodeResult
from trialrun.rollout_native import rollout_native
from trialrun.runfiles import read_episodes

ENV = "CartpoleBalance"


def plain(worlds: int, steps: int) -> tuple[float, float]:
    """(compile seconds, env-steps/s) of a plain jitted loop."""
    env = load_playground(ENV)
    reset, step = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))
    actions = jnp.zeros((worlds, env.action_size))
    start = time.perf_counter()
    state = reset(jax.random.split(jax.random.PRNGKey(0), worlds))
    state = jax.block_until_ready(step(state, actions))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state = step(state, actions)
    jax.block_until_ready(state.obs)
    return compile_s, worlds * steps / (time.perf_counter() - start)


def rollout(worlds: int, steps: int, episodes: int, lanes: int) -> tuple[float, float]:
    """(compile seconds, env-steps/s) of trialrun's batched rollout."""
    env = make_playground_env(worlds, env_name=ENV, max_episode_steps=steps, lanes=lanes)
    zero = lambda ctx: build_policy("zero", {}, ctx)  # noqa: E731
    rollout_native(plan_job(0, "warm", worlds), env, zero, lambda r: None)  # compiles
    compile_s = env.compile_seconds
    results: list[EpisodeResult] = []
    start = time.perf_counter()
    rollout_native(plan_job(1, "bench", episodes), env, zero, results.append)
    seconds = time.perf_counter() - start
    return compile_s, sum(int(r.outcome["length"]) for r in results) / seconds


def run_file(worlds: int, steps: int, episodes: int, lanes: int, out: Path) -> tuple[float, float]:
    """(wall seconds, env-steps/s) of ``trialrun run``, from preflight to summary."""
    job = {
        "name": "cart",
        "env": {"id": f"playground/{ENV}", "kwargs": {"lanes": lanes}},
        "policy": "zero",
        "episodes": episodes,
        "num_envs": worlds,
        "vectorization": "native",
        "max_steps": steps,
    }
    cfg = parse_run_config({"name": "bench", "seed": 1, "jobs": [job]})
    start = time.perf_counter()
    run_evaluation(cfg, out)
    seconds = time.perf_counter() - start
    return seconds, sum(r.outcome["length"] for r in read_episodes(out / "episodes.jsonl")) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="episode length (time limit)")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--lanes", type=int, default=DEFAULT_LANES)
    args = parser.parse_args()
    print(f"JAX compilation cache: {enable_compile_cache()}; load: {os.getloadavg()}")
    c_plain, s_plain = plain(args.worlds, args.steps * args.episodes // args.worlds)
    print(f"plain jitted loop   : {s_plain:10.0f} env-steps/s   (first calls {c_plain:.1f} s)")
    c_roll, s_roll = rollout(args.worlds, args.steps, args.episodes, args.lanes)
    ratio = s_roll / s_plain
    print(
        f"trialrun rollout    : {s_roll:10.0f} env-steps/s   (first calls {c_roll:.1f} s) ratio {ratio:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wall, s_run = run_file(args.worlds, args.steps, args.episodes, args.lanes, Path(tmp) / "run")
    ratio = s_run / s_plain
    print(f"trialrun run        : {s_run:10.0f} env-steps/s   (wall {wall:.1f} s)  ratio {ratio:.2f}")
    setup = f"worlds {args.worlds}, lanes {args.lanes}, {args.episodes} episodes of {args.steps} steps"
    print(f"{setup}; numpy {np.__version__}, jax {jax.__version__}")


if __name__ == "__main__":
    main()
