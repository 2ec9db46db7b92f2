"""Natively batched simulators: trialrun's batched loop next to a plain loop.

Measured side by side in one run (interleaved rounds, medians), with the same
env, random actions and episode count:

- **plain loop**: ``gymnasium.make_vec("CartPole-v1", N, vectorization_mode=
  "vector_entry_point")`` stepped with random actions, counting every episode
  that ends (Gymnasium's own autoreset; nothing recorded);
- **rollout**: :func:`trialrun.rollout_native.rollout_native` over the same
  vector env (wave mode: the env autoresets worlds itself), results kept in a
  list;
- **trialrun run**: :func:`trialrun.execution.runner.run_evaluation` of the
  same job (records validated, appended and flushed to ``episodes.jsonl``,
  summary, manifest).

Env-steps/s counts every world-step the simulator computed. In wave mode a
world that finished its episode keeps stepping (its result is discarded) until
the wave's longest episode ends, so episodes/s of the rollout is below its
env-steps/s share: that is the price of counting episodes without a bias
toward short ones on a simulator that cannot reset a chosen world. Also
printed: the driver's record rate (records validated and appended per
second) and peak RSS.

**MJX** (``--mjx``, needs the ``mjx`` extra): MuJoCo Playground's
``CartpoleBalance`` with 1024 worlds and a jitted JAX PD controller (the
shipped ``cartpole-pd``'s gains), every episode 200 steps:

- **plain jitted loop**: ``jit(vmap(env.reset))`` and ``jit(vmap(env.step))``
  called in a Python loop, ``rounds`` x 200 steps (what a Playground user
  writes; nothing recorded);
- **trialrun run** of the same env, policy and episodes (``rounds`` x 1024),
  for each of ``--lanes`` (default ``8,32,128,256,1024``): ``lanes: 256``
  is the default, 8 and 128 the older ones (any fixed width gives identical
  records for any ``num_envs``), ``lanes: 1024`` is one ``vmap`` over every
  world, as the plain loop.

Compile time (or the load from JAX's persistent cache) is excluded from
env-steps/s and printed apart: the plain loop's first calls, and each lane
count's first ``trialrun run``, which also pays what a process does once
(env load, the reset's traced shapes; the plain loop's env load is not
timed either). The measured runs' wall time counts everything else
(preflight, records, summary, manifest). The cases then run ``--repeats``
times interleaved (the machine is shared) and the medians are printed,
with the median of the paired ratios (each run against the plain loop
measured just before it), the target's measure. Also printed: env-steps/s
from the first episode's start to the last episode's end (the rollout
alone), and env-steps per CPU-second of this process (all threads: the
simulator's and the host's work; steadier than wall time when other
tenants take the cores). Peak RSS is this process's high-water mark after
each case's first run (VmHWM; cases run in order).

    python benchmarks/batched.py [--worlds 1024] [--episodes 65536] [--rounds 3]
    python benchmarks/batched.py --mjx [--worlds 1024] [--rounds 4] [--lanes 8,32,128,256,1024] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import numpy as np

import trialrun.envs  # noqa: F401
from trialrun._memory import peak_rss_mb
from trialrun.config import parse_run_config
from trialrun.envs.batched import make_batched_env
from trialrun.execution.runner import run_evaluation
from trialrun.plan import plan_job
from trialrun.policies import build_policy
from trialrun.rollout import EpisodeResult
from trialrun.rollout_native import rollout_native
from trialrun.runfiles import EpisodeLogWriter, read_episodes
from trialrun.runfiles.schema import EpisodeRecord


def plain_loop(worlds: int, episodes: int, seed: int) -> tuple[float, int, int]:
    """Seconds, env-steps and episodes of a plain autoreset loop."""
    vec = gym.make_vec("CartPole-v1", worlds, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(seed)
    vec.reset(seed=seed)
    done_episodes = steps = 0
    start = time.perf_counter()
    while done_episodes < episodes:
        _, _, terminated, truncated, _ = vec.step(rng.integers(0, 2, size=worlds))
        steps += worlds
        done_episodes += int(np.count_nonzero(terminated | truncated))
    elapsed = time.perf_counter() - start
    vec.close()
    return elapsed, steps, done_episodes


class _CountingEnv:
    """Counts the world-steps a batched env computes."""

    def __init__(self, env: object) -> None:
        self.env = env
        self.steps = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.env, name)

    def step(self, actions: object) -> object:
        self.steps += self.env.num_worlds  # type: ignore[attr-defined]
        return self.env.step(actions)  # type: ignore[attr-defined]


def trialrun_rollout(worlds: int, episodes: int, seed: int) -> tuple[float, int, int, int]:
    """Seconds, env-steps, episodes and the env-steps that belong to recorded
    episodes, of trialrun's batched loop."""
    env = _CountingEnv(make_batched_env("CartPole-v1", {}, worlds))
    results: list[EpisodeResult] = []
    slots = plan_job(seed, "bench", episodes)
    start = time.perf_counter()
    rollout_native(slots, env, lambda ctx: build_policy("random", {}, ctx), results.append)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    env.close()
    useful = sum(int(r.outcome["length"]) for r in results)
    return elapsed, env.steps, len(results), useful


def trialrun_run(worlds: int, episodes: int, seed: int, root: Path) -> tuple[float, int]:
    """Seconds and episodes of ``run_evaluation`` (records on disk)."""
    config = parse_run_config(
        {
            "name": "bench",
            "seed": seed,
            "jobs": [
                {
                    "name": "cartpole",
                    "env": "CartPole-v1",
                    "policy": "random",
                    "episodes": episodes,
                    "num_envs": worlds,
                    "vectorization": "native",
                }
            ],
        }
    )
    run_dir = Path(tempfile.mkdtemp(dir=root)) / "run"
    start = time.perf_counter()
    result = run_evaluation(config, run_dir)
    elapsed = time.perf_counter() - start
    return elapsed, result.summary.overall.episodes


def record_rate(count: int, root: Path) -> float:
    """Records per second through the driver's path: a validated record, its
    JSON line appended and flushed (what the runner does per episode)."""
    start = time.perf_counter()
    with EpisodeLogWriter(root / "rate.jsonl") as log:
        for k in range(count):
            log.append(
                EpisodeRecord(
                    run="bench",
                    job="cartpole",
                    episode=k,
                    seed=123456 + k,
                    env_index=k % 1024,
                    factors={},
                    outcome={
                        "success": False,
                        "success_at_end": False,
                        "return": 22.0,
                        "length": 22,
                        "terminated": True,
                        "truncated": False,
                        "time_to_success": None,
                    },
                    started_at="2026-11-30T12:00:00.000Z",
                    ended_at="2026-11-30T12:00:00.001Z",
                )
            )
    return count / (time.perf_counter() - start)


MJX_ENV = "CartpoleBalance"
MJX_STEPS = 200


def jax_pd() -> object:
    """The shipped ``cartpole-pd`` controller's gains as a jitted JAX function
    (``policy: batched:jax_pd``), so both MJX loops run the same policy on the device."""
    import jax
    import jax.numpy as jnp

    gains = jnp.array([0.5, 0.0, 5.0, 1.0, 1.0], dtype=jnp.float32)
    return jax.jit(lambda obs: jnp.clip(obs @ gains, -1.0, 1.0)[:, None])


def mjx_plain(worlds: int) -> tuple[float, Callable[[int, int], float]]:
    """(first-call seconds, ``measure(rounds, seed) -> (env-steps/s, env-steps
    per CPU-second)``) of a plain
    jitted Playground loop."""
    import jax

    from trialrun.envs.adapters.playground import enable_compile_cache, load_playground

    enable_compile_cache()
    env = load_playground(MJX_ENV)
    reset, step, act = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step)), jax_pd()
    keys = jax.random.split(jax.random.PRNGKey(0), worlds)
    start = time.perf_counter()
    state = reset(keys)
    jax.block_until_ready(step(state, act(state.obs)))  # type: ignore[operator]
    first = time.perf_counter() - start

    def measure(rounds: int, seed: int) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for r in range(rounds):
            state = reset(jax.random.split(jax.random.PRNGKey(seed + r), worlds))
            for _ in range(MJX_STEPS):
                state = step(state, act(state.obs))  # type: ignore[operator]
        jax.block_until_ready(state.obs)
        steps = worlds * MJX_STEPS * rounds
        return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)

    return first, measure


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mjx_run(worlds: int, rounds: int, lanes: int, root: Path) -> tuple[float, float, float, float, float]:
    """(wall seconds, compile seconds, env-steps/s without them, env-steps/s
    from the first episode's start to the last one's end, env-steps per
    CPU-second of this process, compile included) of ``trialrun run``."""
    job = {
        "name": "cart",
        "env": {"id": f"playground/{MJX_ENV}", "kwargs": {"lanes": lanes}},
        "policy": "batched:jax_pd",
        "episodes": worlds * rounds,
        "num_envs": worlds,
        "vectorization": "native",
        "max_steps": MJX_STEPS,
        "success": "survived",
    }
    run_dir = Path(tempfile.mkdtemp(dir=root)) / "run"
    start, cpu = time.perf_counter(), time.process_time()
    result = run_evaluation(parse_run_config({"name": "bench", "seed": 1, "jobs": [job]}), run_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.exit_code != 0:
        raise SystemExit(f"trialrun run failed: {result.errors}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    compile_s = manifest["jobs"]["cart"]["native"]["compile_seconds"] or 0.0
    records = list(read_episodes(run_dir / "episodes.jsonl"))
    steps = sum(int(r.outcome["length"]) for r in records)
    span = _stamp(max(r.ended_at for r in records)) - _stamp(min(r.started_at for r in records))
    return wall, compile_s, steps / (wall - compile_s), steps / span.total_seconds(), steps / cpu


def mjx_main(worlds: int, rounds: int, lanes_list: list[int], repeats: int) -> None:
    """Plain loop and ``trialrun run`` for each lane count, ``repeats`` times
    interleaved (the machine is shared: a slow moment hits every case alike).

    Before the repetitions, each lane count has one first run, printed apart:
    it compiles (or loads from the cache) and pays what a process does once
    (the Playground env's load, the reset's traced shapes), as the plain
    loop's first calls and env load, which are not timed either. Printed per
    lane count: the median env-steps/s, and the median of the paired ratios
    (each repetition's run against the plain loop measured just before it)."""
    import jax

    root = Path(tempfile.mkdtemp(prefix="trialrun-mjx-"))
    first, plain = mjx_plain(worlds)
    rss: dict[str, float] = {"plain": peak_rss_mb()}
    first_runs: dict[int, tuple[float, float, float, float, float]] = {}
    for lanes in lanes_list:
        first_runs[lanes] = mjx_run(worlds, rounds, lanes, root)
        rss[f"lanes {lanes}"] = peak_rss_mb()
    plain_measured: list[tuple[float, float]] = []
    runs: dict[int, list[tuple[float, float, float, float, float]]] = {lanes: [] for lanes in lanes_list}
    for k in range(repeats):
        plain_measured.append(plain(rounds, 1 + k * rounds))
        for lanes in lanes_list:
            runs[lanes].append(mjx_run(worlds, rounds, lanes, root))
    plain_rates = [rate for rate, _ in plain_measured]
    plain_sps = statistics.median(plain_rates)
    plain_cpu = statistics.median(per_cpu for _, per_cpu in plain_measured)
    print(
        f"MJX {MJX_ENV}, {worlds} worlds, {rounds} x {MJX_STEPS} steps, jitted PD policy, "
        f"jax {jax.__version__}, medians of {repeats} interleaved repetitions after one first run each"
    )
    print(
        f"plain jitted loop       : {plain_sps:10,.0f} env-steps/s  first calls {first:5.1f} s   "
        f"peak RSS {rss['plain']:5.0f} MB   per CPU-second {plain_cpu:,.0f}   "
        f"(each: {', '.join(f'{r:,.0f}' for r in plain_rates)})"
    )
    for lanes, measured in runs.items():
        sps = statistics.median(m[2] for m in measured)
        in_episodes = statistics.median(m[3] for m in measured)
        paired = sorted(m[2] / p for m, p in zip(measured, plain_rates, strict=True))
        wall, compile_s = first_runs[lanes][:2]
        print(
            f"trialrun run, lanes {lanes:4d}: {sps:10,.0f} env-steps/s  ratio {sps / plain_sps:.3f}   "
            f"paired ratios: median {statistics.median(paired):.3f} (target >= 0.9), "
            f"{', '.join(f'{r:.2f}' for r in paired)}   "
            f"first run: compile {compile_s:.1f} s, wall {wall:.1f} s; "
            f"then wall {statistics.median(m[0] for m in measured):.2f} s   "
            f"peak RSS {rss[f'lanes {lanes}']:5.0f} MB   "
            f"first episode to last: {in_episodes:,.0f} env-steps/s (ratio {in_episodes / plain_sps:.3f})   "
            f"per CPU-second: {statistics.median(m[4] for m in measured):,.0f} "
            f"(ratio {statistics.median(m[4] for m in measured) / plain_cpu:.3f})"
        )
    print(f"load average: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mjx", action="store_true", help="the MuJoCo Playground comparison instead")
    parser.add_argument("--lanes", default="8,32,128,256,1024", help="--mjx: lane counts of trialrun runs")
    parser.add_argument("--repeats", type=int, default=7, help="--mjx: interleaved repetitions (medians)")
    args = parser.parse_args()
    if args.mjx:
        mjx_main(args.worlds, args.rounds, [int(x) for x in args.lanes.split(",")], args.repeats)
        return
    root = Path(tempfile.mkdtemp(prefix="trialrun-batched-"))
    plain, rollout, full = [], [], []
    for r in range(args.rounds):
        seed = 100 + r
        plain.append(plain_loop(args.worlds, args.episodes, seed))
        rollout.append(trialrun_rollout(args.worlds, args.episodes, seed))
        full.append(trialrun_run(args.worlds, args.episodes, seed, root))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    plain_sps = med([s / t for t, s, _ in plain])
    plain_eps = med([e / t for t, _, e in plain])
    roll_sps = med([s / t for t, s, _, _ in rollout])
    roll_eps = med([e / t for t, _, e, _ in rollout])
    full_eps = med([e / t for t, e in full])
    used = med([u / s for _, s, _, u in rollout])
    rate = record_rate(100_000, root)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    what = f"{args.worlds} worlds, {args.episodes} episodes, random actions, {args.rounds} rounds"
    print(f"CartPole-v1 vector env, {what}")
    print(f"plain loop     : {plain_sps:12,.0f} env-steps/s  {plain_eps:10,.0f} episodes/s")
    print(f"trialrun rollout: {roll_sps:12,.0f} env-steps/s  {roll_eps:10,.0f} episodes/s")
    print(f"trialrun run   :                          {full_eps:10,.0f} episodes/s")
    print(f"rollout / plain: env-steps/s {roll_sps / plain_sps:.3f}, episodes/s {roll_eps / plain_eps:.3f}")
    print(f"run / plain    : episodes/s {full_eps / plain_eps:.3f}")
    print(f"share of computed env-steps inside recorded episodes (wave mode): {used:.3f}")
    print(f"driver record rate: {rate:,.0f} records/s; peak RSS {rss_mb:.0f} MB")
    print(
        json.dumps(
            {
                "plain_steps_per_s": plain_sps,
                "rollout_steps_per_s": roll_sps,
                "plain_episodes_per_s": plain_eps,
                "rollout_episodes_per_s": roll_eps,
                "run_episodes_per_s": full_eps,
                "records_per_s": rate,
            }
        )
    )


if __name__ == "__main__":
    main()
