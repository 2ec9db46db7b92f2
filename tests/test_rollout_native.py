"""``vectorization: native``: one simulator object steps every world (trialrun.rollout_native)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

import trialrun.envs  # noqa: F401  (registers the probe's vector entry point)
from helpers import BlockSink, record_identity, subprocess_env
from trialrun.config import parse_run_config
from trialrun.envs.batched import GymnasiumBatchedEnv, make_batched_env
from trialrun.envs.probe import probe_length, probe_success
from trialrun.errors import ConfigError
from trialrun.execution.process import ProcessExecutor
from trialrun.execution.runner import RunResult, run_evaluation
from trialrun.plan import plan_job
from trialrun.policies import build_policy
from trialrun.replay import replay_episode
from trialrun.rollout import EpisodeResult
from trialrun.rollout_native import rollout_native
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.runfiles.schema import EpisodeRecord

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]
WAVE_PROBE = {"id": "trialrun/SeedProbe-v0", "kwargs": {"autoreset_mode": "next_step"}}


def _job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "probe",
        "env": "trialrun/SeedProbe-v0",
        "policy": "zero",
        "episodes": 40,
        "num_envs": 4,
        "vectorization": "native",
    }
    job.update(overrides)
    return job


def _run(tmp_path: Path, name: str, *jobs: dict[str, Any], seed: int = 5, **kwargs: Any) -> RunResult:
    cfg = parse_run_config({"name": "native", "seed": seed, "jobs": list(jobs)})
    return run_evaluation(cfg, tmp_path / name, **kwargs)


def _identity(path: Path, *, keep_world: bool = True) -> list[str]:
    return record_identity(path, keep_world=keep_world)


# --------------------------------------------------------------------------- exact mode


def test_exact_mode_every_seed_explains_its_outcome_and_num_envs_does_not_matter(tmp_path: Path) -> None:
    identities = []
    for n in (1, 3, 8, 64):
        result = _run(tmp_path, f"n{n}", _job(episodes=50, num_envs=n))
        assert result.statuses == {"probe": "completed"}
        records = read_episodes(tmp_path / f"n{n}" / "episodes.jsonl")
        assert sorted(r.episode for r in records) == list(range(50))
        for rec in records:
            assert rec.outcome.get("length") == probe_length(rec.seed)
            assert rec.outcome.get("success") is probe_success(rec.seed)
            assert rec.outcome.get("return") == float(probe_length(rec.seed))
            assert set(rec.extra) == {"timing"}
        manifest = read_manifest(tmp_path / f"n{n}")
        native = manifest.jobs["probe"].native
        assert native is not None and (native.mode, native.num_envs, native.depends_on_num_envs) == (
            "exact",
            n,
            False,
        )
        # env_index is the world that ran the episode: the only field allowed to differ.
        identities.append(sorted((r.episode, r.seed, json.dumps(r.outcome, sort_keys=True)) for r in records))
    assert identities[0] == identities[1] == identities[2] == identities[3]


def test_exact_mode_equals_the_per_env_loop(tmp_path: Path) -> None:
    _run(tmp_path, "native", _job(episodes=30, num_envs=5))
    _run(tmp_path, "sync", _job(episodes=30, num_envs=5, vectorization="sync"))

    def outcomes(name: str) -> list[tuple[int, int, str]]:
        recs = read_episodes(tmp_path / name / "episodes.jsonl")
        return sorted((r.episode, r.seed, json.dumps(r.outcome)) for r in recs)

    assert outcomes("native") == outcomes("sync")


def test_exact_mode_never_steps_a_finished_world() -> None:
    # The probe raises when a finished world is stepped without a reset: worlds
    # left without a slot at the end must be reset too, not stepped past their end.
    env = make_batched_env("trialrun/SeedProbe-v0", {}, 8)
    results: list[EpisodeResult] = []
    rollout_native(plan_job(1, "j", 3), env, lambda ctx: build_policy("zero", {}, ctx), results.append)
    env.close()
    assert sorted(r.slot.episode for r in results) == [0, 1, 2]


# --------------------------------------------------------------------------- wave mode


def test_wave_mode_on_cartpoles_vector_env_is_exact_repeatable_and_unbiased(tmp_path: Path) -> None:
    wave = _job(name="cp", env="CartPole-v1", policy="random", episodes=2048, num_envs=256, max_steps=500)
    sync = {**wave, "vectorization": "sync", "num_envs": 16}
    assert _run(tmp_path, "wave1", wave).statuses == {"cp": "completed"}
    _run(tmp_path, "wave2", wave)
    _run(tmp_path, "sync", sync)
    first = read_episodes(tmp_path / "wave1" / "episodes.jsonl")
    assert sorted(r.episode for r in first) == list(range(2048))
    assert _identity(tmp_path / "wave1" / "episodes.jsonl") == _identity(
        tmp_path / "wave2" / "episodes.jsonl"
    )
    native = read_manifest(tmp_path / "wave1").jobs["cp"].native
    assert native is not None and (native.mode, native.depends_on_num_envs) == ("wave", True)
    waves = {(r.extra["wave"]["first_episode"], r.extra["wave"]["seed"]) for r in first}
    assert len(waves) == 8 and {r.extra["wave"]["num_envs"] for r in first} == {256}
    assert all(r.extra["wave"]["world"] == r.episode % 256 for r in first)
    # No bias toward short episodes: the mean length equals the per-env loop's
    # (a random CartPole episode lasts ~22 steps, sd ~12: 4 standard errors).
    a = np.array([r.outcome.get("length") for r in first], dtype=float)
    b = np.array(
        [r.outcome.get("length") for r in read_episodes(tmp_path / "sync" / "episodes.jsonl")], dtype=float
    )
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    assert 18 < a.mean() < 27


def test_a_wave_episode_replays_exactly(tmp_path: Path) -> None:
    job = _job(env=WAVE_PROBE, episodes=20, num_envs=6)
    _run(tmp_path, "run", job)
    for episode in (0, 7, 19):
        result = replay_episode(tmp_path / "run", "probe", episode)
        assert result.matches, result.mismatches
        assert result.replayed.extra["wave"] == result.recorded.extra["wave"]


def test_wave_mode_reports_each_worlds_first_episode_only() -> None:
    # Each world's episode is the probe episode of the seed the wave's shared
    # generator gave it; what a world does after that is discarded.
    env = make_batched_env("trialrun/SeedProbe-v0", {"autoreset_mode": "next_step"}, 5)
    slots = plan_job(2, "j", 12)
    results: list[EpisodeResult] = []
    rollout_native(slots, env, lambda ctx: build_policy("zero", {}, ctx), results.append)
    assert sorted(r.slot.episode for r in results) == list(range(12))
    probe = env.vec  # type: ignore[attr-defined]
    for result in results:
        wave = result.extra["wave"]
        assert wave["seed"] == slots[wave["first_episode"]].seed == result.slot.seed
        env.reset_all(wave["seed"])
        world_seed = int(probe.world_seeds[wave["world"]])
        assert result.outcome["length"] == probe_length(world_seed)
        assert result.outcome["success"] is probe_success(world_seed)
    env.close()


def test_wave_mode_cuts_its_waves_from_a_large_plan_without_reading_all_of_it() -> None:
    # A shard near the end of a million-episode plan: its waves are found by
    # position, not through a map over the whole plan (~100 MB).
    env = make_batched_env("trialrun/SeedProbe-v0", {"autoreset_mode": "next_step"}, 5)
    plan = plan_job(2, "j", 10**6)
    results: list[EpisodeResult] = []
    tracemalloc.start()
    try:
        rollout_native(
            plan[500_002:500_013], env, lambda ctx: build_policy("zero", {}, ctx), results.append, plan=plan
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        env.close()
    assert sorted(r.slot.episode for r in results) == list(range(500_002, 500_013))
    waves = {r.extra["wave"]["first_episode"]: r.extra["wave"]["seed"] for r in results}
    assert waves == {k: plan[k].seed for k in (500_000, 500_005, 500_010)}
    assert all(r.extra["wave"]["world"] == r.slot.episode % 5 for r in results)
    assert peak < 4 * 2**20, peak


def test_wave_mode_takes_slots_out_of_plan_order() -> None:
    env = make_batched_env("trialrun/SeedProbe-v0", {"autoreset_mode": "next_step"}, 4)
    plan = plan_job(2, "j", 12)
    shuffled = [plan[k] for k in (9, 1, 10, 2)]
    results: list[EpisodeResult] = []
    rollout_native(shuffled, env, lambda ctx: build_policy("zero", {}, ctx), results.append, plan=plan)
    env.close()
    assert sorted(r.slot.episode for r in results) == [1, 2, 9, 10]
    assert {r.extra["wave"]["first_episode"] for r in results} == {0, 8}
    with pytest.raises(ValueError, match=r"slots \[12\] are not in the plan the waves are cut from"):
        rollout_native(
            [plan_job(2, "j", 13)[12]],
            env,
            lambda ctx: build_policy("zero", {}, ctx),
            results.append,
            plan=plan,
        )


# --------------------------------------------------------------------------- executors and resume


def test_process_executor_gives_the_local_records(tmp_path: Path) -> None:
    jobs = [_job(episodes=30, num_envs=4), _job(name="wave", env=WAVE_PROBE, episodes=30, num_envs=4)]
    _run(tmp_path, "local", *jobs)
    with ProcessExecutor(workers=2, shard_size=8) as executor:
        result = _run(tmp_path, "process", *jobs, executor=executor)
    assert result.exit_code == 0
    # Exact mode: which world ran a slot depends on the shard; wave mode: the world is the slot's place in its wave.
    local, process = tmp_path / "local" / "episodes.jsonl", tmp_path / "process" / "episodes.jsonl"
    assert _identity(local, keep_world=False) == _identity(process, keep_world=False)
    waves = {(r.episode, r.env_index) for r in read_episodes(local) if r.job == "wave"}
    assert waves == {(r.episode, r.env_index) for r in read_episodes(process) if r.job == "wave"}


def test_resume_after_kill_9_completes_without_duplicates(tmp_path: Path) -> None:
    doc = {
        "name": "killed",
        "seed": 9,
        "jobs": [
            _job(
                name="slow",
                env=WAVE_PROBE,
                episodes=60,
                num_envs=4,
                policy={"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.004}},
            )
        ],
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    reference = subprocess.run(
        [*TRIALRUN, "run", str(cfg), "--run-dir", str(tmp_path / "reference"), "-q", "--no-report"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr
    run_dir = tmp_path / "killed"
    child = subprocess.Popen(
        [*TRIALRUN, "run", str(cfg), "--run-dir", str(run_dir), "-q", "--no-report"],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    episodes = run_dir / "episodes.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if episodes.exists() and episodes.read_text().count("\n") >= 10:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    done_before = episodes.read_text().count("\n")
    assert 10 <= done_before < 60
    resumed = subprocess.run(
        [*TRIALRUN, "run", "--resume", str(run_dir), "-q", "--no-report"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    records = read_episodes(episodes)
    assert sorted(r.episode for r in records) == list(range(60))

    # A resumed wave runs whole, so even the world that ran each episode is the same.
    assert _identity(episodes) == _identity(tmp_path / "reference" / "episodes.jsonl")


# --------------------------------------------------------------------------- bad input


def _cli(tmp_path: Path, job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"name": "bad", "jobs": [job]}))
    return subprocess.run(
        [*TRIALRUN, "run", str(cfg), "--run-dir", str(tmp_path / "bad-run"), "-q"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_native_on_an_env_without_a_vector_entry_point_is_a_clear_error(tmp_path: Path) -> None:
    proc = _cli(tmp_path, _job(env="Pendulum-v1"))
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "field 'jobs.0.vectorization': job 'probe': vectorization 'native' needs an env with a vector entry "
        "point (one object that steps many worlds); 'Pendulum-v1' has none" in message
    )
    assert not (tmp_path / "bad-run").exists()


def test_a_mode_the_env_cannot_do_is_a_clear_error(tmp_path: Path) -> None:
    proc = _cli(tmp_path, _job(env="CartPole-v1", native_mode="exact"))
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "field 'jobs.0.native_mode': job 'probe': native_mode 'exact' needs an env that resets" in message
    assert (
        "CartPoleVectorEnv supports wave only (it autoresets worlds itself: autoreset_mode=NEXT_STEP)"
        in message
    )
    exact_only = gym.make_vec("trialrun/SeedProbe-v0", 2, vectorization_mode="vector_entry_point")
    with pytest.raises(ConfigError, match="native_mode 'wave' needs an env that restarts finished worlds"):
        GymnasiumBatchedEnv(exact_only, "wave", job="j")


def test_a_kwarg_the_vector_entry_point_does_not_take_is_a_clear_error(tmp_path: Path) -> None:
    proc = _cli(tmp_path, _job(env={"id": "CartPole-v1", "kwargs": {"sutton_barto": True}}))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert " ".join(proc.stderr.split()) == (
        f"trialrun: error: {tmp_path / 'bad.yaml'}: field 'jobs.0.env.kwargs.sutton_barto': CartPole-v1's "
        "vector entry point takes no argument 'sutton_barto'; it takes: max_episode_steps, render_mode, "
        "sutton_barto_reward; did you mean 'sutton_barto_reward'?"
    )
    assert not (tmp_path / "bad-run").exists()


def test_a_batched_env_that_cannot_be_built_is_one_line_naming_the_job(tmp_path: Path) -> None:
    proc = _cli(tmp_path, _job(env="helpers:helpers/UnbuildableBatched-v0"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert " ".join(proc.stderr.split()) == (
        f"trialrun: error: {tmp_path / 'bad.yaml'}: field 'jobs.0.env': job 'probe': could not build its "
        "batched env to check it: RuntimeError: no CUDA device is available"
    )
    assert not (tmp_path / "bad-run").exists()


def test_settings_native_mode_cannot_do_are_refused_before_running(tmp_path: Path) -> None:
    reset_factor = {
        "pole": {
            "variation": {"type": "attr", "name": "length"},
            "sampler": {"type": "uniform", "low": 0.4, "high": 0.6},
        }
    }
    proc = _cli(tmp_path, _job(env="CartPole-v1", factors=reset_factor))
    assert proc.returncode == 2
    assert "field 'jobs.0.factors.pole': factor 'pole' applies at reset" in " ".join(proc.stderr.split())
    too_many = parse_run_config
    with pytest.raises(ConfigError, match="num_envs 2048 needs vectorization: native"):
        too_many({"name": "x", "jobs": [_job(num_envs=2048, vectorization="sync")]})
    with pytest.raises(ConfigError, match="native_mode 'wave' needs vectorization: native"):
        too_many({"name": "x", "jobs": [_job(vectorization="sync", native_mode="wave")]})


def test_build_time_factors_group_worlds_and_record_their_values(tmp_path: Path) -> None:
    factor = {
        "steps": {
            "variation": {"type": "env_kwarg", "key": "max_episode_steps"},
            "sampler": {"type": "choice", "values": [5, 12]},
        }
    }
    result = _run(tmp_path, "run", _job(episodes=40, num_envs=4, factors=factor))
    assert result.exit_code == 0
    records: list[EpisodeRecord] = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert sorted(r.episode for r in records) == list(range(40))
    for rec in records:
        cap = rec.factors["steps"]
        assert cap in (5, 12)
        assert rec.outcome.get("length") == min(probe_length(rec.seed), cap)
        assert rec.outcome.get("truncated") is (probe_length(rec.seed) > cap)


class _PerWorldProbe:
    """A SeedProbe batched env with the PerWorldFactors hook: ``apply`` logs
    its calls and reads back each value rounded to 1 decimal (as a simulator
    storing it in lower precision would)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode, self.num_worlds = inner.mode, inner.num_worlds
        self.single_observation_space = inner.single_observation_space
        self.single_action_space = inner.single_action_space
        self.calls: list[tuple[list[int], list[dict[str, Any]]]] = []

    def bind_factors(self, variations: Any) -> None:
        """Nothing to bind: ``apply`` reads values back by rounding them."""

    def apply(self, worlds: Any, factors: Any) -> list[dict[str, Any]]:
        self.calls.append((list(worlds), [dict(f) for f in factors]))
        return [{k: round(v, 1) for k, v in f.items()} for f in factors]

    def reset_worlds(self, mask: Any, seeds: Any) -> Any:
        return self.inner.reset_worlds(mask, seeds)

    def reset_all(self, seed: int) -> Any:
        return self.inner.reset_all(seed)

    def step(self, actions: Any) -> Any:
        return self.inner.step(actions)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("kwargs", [{}, {"autoreset_mode": "next_step"}], ids=["exact", "wave"])
def test_a_per_world_factor_hook_sets_each_starting_world_and_records_the_value_read_back(
    kwargs: dict[str, Any],
) -> None:
    from dataclasses import replace

    env = _PerWorldProbe(make_batched_env("trialrun/SeedProbe-v0", kwargs, 3))
    slots = [replace(s, factors={"mass": 1.0 + s.episode / 100}) for s in plan_job(4, "j", 5)]
    results: list[EpisodeResult] = []
    rollout_native(slots, env, lambda ctx: build_policy("zero", {}, ctx), results.append)
    assert {r.slot.episode: r.factors["mass"] for r in results} == {k: 1.0 for k in range(5)}
    first_worlds, first_factors = env.calls[0]
    assert first_worlds == [0, 1, 2]
    assert first_factors == [{"mass": 1.0}, {"mass": 1.01}, {"mass": 1.02}]
    applied = [f["mass"] for _, factors in env.calls for f in factors if f]
    assert sorted(applied) == [1.0 + k / 100 for k in range(5)]  # every slot once, before its reset
    assert any(f == {} for _, factors in env.calls for f in factors)  # idle worlds go back to nominal


class _Counters:
    """Exact-mode worlds held as arrays: world ``i`` counts its steps, its
    episode lasts ``3 + seed % 5`` steps and a step's reward is the action
    times the count. A step that runs past a world's end raises, as the probe does."""

    mode = "exact"

    def __init__(self, n: int) -> None:
        self.num_worlds = n
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (1,))
        self.single_action_space = gym.spaces.Box(-np.inf, np.inf, (1,))
        self.count = np.zeros(n)
        self.length = np.zeros(n)
        self.ends = 0  # steps at which some world's episode ended

    def reset_worlds(self, mask: Any, seeds: Any) -> Any:
        self.count = np.where(mask, 0.0, self.count)
        self.length = np.where(mask, [3 + (s or 0) % 5 for s in seeds], self.length)
        return self.count[:, None].copy(), {}

    def reset_all(self, seed: int) -> Any:
        raise AssertionError("exact mode resets chosen worlds, never all at once")

    def step(self, actions: Any) -> Any:
        if (self.count >= self.length).any():
            raise RuntimeError("a finished world was stepped")
        self.count = self.count + 1
        terminated = self.count >= self.length
        self.ends += bool(terminated.any())
        return (
            self.count[:, None].copy(),
            np.asarray(actions)[:, 0] * self.count,
            terminated,
            terminated & False,
            {},
        )

    def close(self) -> None:
        pass


class _CountersAhead(_Counters):
    """:class:`_Counters` with the StepsAhead hook: a queued step past a world's
    end is allowed (it is dropped), reading one is not."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.dropped = 0

    def step_async(self, actions: Any) -> Any:
        before = self.count
        self.count = self.count + 1
        past = before >= self.length
        rewards = np.asarray(actions)[:, 0] * self.count
        return type(
            "Queued",
            (),
            {
                "obs": self.count[:, None].copy(),
                "before": before,
                "past": past,
                "flags": (rewards, self.count >= self.length),
            },
        )()

    def finish(self, pending: Any) -> Any:
        if pending.past.any():
            raise RuntimeError("a step past a world's end was read")
        rewards, terminated = pending.flags
        return pending.obs, rewards, terminated, terminated & False, {}

    def discard(self, pending: Any) -> None:
        self.dropped += 1
        self.count = pending.before


class _Doubler:
    """A pure policy (``pure``: one more call changes nothing): the action is twice the count."""

    pure = True

    def act(self, obs: Any) -> Any:
        return np.asarray(obs) * 2.0

    def reset(self, mask: Any, seeds: Any = None) -> None:
        pass


def test_steps_queued_one_ahead_give_the_records_of_steps_taken_one_by_one() -> None:
    slots = plan_job(8, "j", 23)
    outcomes = []
    plain, ahead = _Counters(4), _CountersAhead(4)
    for env in (plain, ahead):
        results: list[EpisodeResult] = []
        rollout_native(slots, env, lambda ctx: _Doubler(), results.append)  # type: ignore[arg-type]
        outcomes.append({r.slot.episode: r.outcome for r in results})
    assert outcomes[0] == outcomes[1]
    assert sorted(outcomes[0]) == list(range(23))
    for slot in slots:
        length = 3 + slot.seed % 5
        assert outcomes[0][slot.episode]["length"] == length
        assert outcomes[0][slot.episode]["return"] == sum(2.0 * (k - 1) * k for k in range(1, length + 1))
    # A queued step was dropped at every step where some world finished (lengths differ by seed).
    assert ahead.dropped == plain.ends
    assert plain.ends == 15


def test_the_episodes_that_end_in_one_step_reach_the_sink_as_one_block() -> None:
    plan = plan_job(3, "demo", 30)
    env = make_batched_env("trialrun/SeedProbe-v0", {}, 4)
    sink = BlockSink()
    try:
        rollout_native(plan, env, lambda ctx: build_policy("zero", {}, ctx), sink)
    finally:
        env.close()
    # The schedule exact mode follows: a world takes the next slot when its
    # episode ends, and a probe episode lasts probe_length(seed) steps.
    queue, ends, expected = list(plan), [None] * 4, []
    for world in range(4):
        slot = queue.pop(0)
        ends[world] = (probe_length(slot.seed), slot.episode)
    while any(ends):
        now = min(end[0] for end in ends if end)
        finished = [world for world, end in enumerate(ends) if end and end[0] == now]
        expected.append(sorted(ends[world][1] for world in finished))
        for world in finished:
            if queue:
                slot = queue.pop(0)
                ends[world] = (now + probe_length(slot.seed), slot.episode)
            else:
                ends[world] = None
    assert [sorted(r.slot.episode for r in block) for block in sink.blocks] == expected
    assert sorted(e for block in expected for e in block) == list(range(30))
    assert any(len(block) > 1 for block in expected)  # the case the block exists for


class _FailingThirdReset(_CountersAhead):
    """:class:`_CountersAhead` whose third ``reset_worlds`` raises (the env
    fails while the finished worlds take their next slots)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.resets = 0

    def reset_worlds(self, mask: Any, seeds: Any) -> Any:
        self.resets += 1
        if self.resets == 3:
            raise RuntimeError("the simulator failed to reset")
        return super().reset_worlds(mask, seeds)


def test_the_new_episodes_first_step_is_queued_before_the_ended_ones_are_written() -> None:
    # Writing a block of records takes the host a while; the simulator computes meanwhile.
    env = _CountersAhead(4)
    dispatched_at_delivery: list[tuple[int, int]] = []
    steps = {"queued": 0}
    original = env.step_async

    def counting(actions: Any) -> Any:
        steps["queued"] += 1
        return original(actions)

    env.step_async = counting  # type: ignore[method-assign]

    class Sink:
        def __call__(self, result: EpisodeResult) -> None:
            self.many([result])

        def many(self, results: list[EpisodeResult]) -> None:
            dispatched_at_delivery.append((len(results), steps["queued"]))

    rollout_native(plan_job(8, "j", 6), env, lambda ctx: _Doubler(), Sink())  # type: ignore[arg-type]
    # Episode lengths 3 + seed % 5 for 4 worlds then 2 more slots: the first
    # block ends at the shortest episode; by then the steps of the first episodes
    # plus the new episodes' first step have been queued.
    first_block_size, queued = dispatched_at_delivery[0]
    lengths = sorted(3 + s.seed % 5 for s in plan_job(8, "j", 6)[:4])
    assert first_block_size == lengths.count(lengths[0])
    # Steps 1..L of the first episodes (the one queued past L was dropped), then the new first step.
    assert queued == lengths[0] + 1 + 1
    assert sum(size for size, _ in dispatched_at_delivery) == 6


def test_episodes_that_ended_reach_the_sink_when_the_next_reset_fails() -> None:
    env = _FailingThirdReset(4)
    results: list[EpisodeResult] = []
    with pytest.raises(RuntimeError, match="the simulator failed to reset"):
        rollout_native(plan_job(8, "j", 12), env, lambda ctx: _Doubler(), results.append)  # type: ignore[arg-type]
    # Resets: all 4 worlds, then the worlds of the first ending step, then the
    # second ending step's (which fails): both steps' episodes were delivered.
    queue = list(plan_job(8, "j", 12))
    ends = {}
    for world in range(4):
        slot = queue.pop(0)
        ends[world] = (3 + slot.seed % 5, slot.episode)
    expected: list[int] = []
    for _ending_step in range(2):
        now = min(end for end, _ in ends.values())
        finished = [w for w, (end, _) in ends.items() if end == now]
        expected += sorted(ends[w][1] for w in finished)
        for w in finished:
            slot = queue.pop(0)
            ends[w] = (now + 3 + slot.seed % 5, slot.episode)
    assert [r.slot.episode for r in results] == expected
    assert env.resets == 3
