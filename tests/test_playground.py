"""MuJoCo Playground / MJX as a native batched backend (trialrun.envs.adapters.playground).

The jitted reset and step compile once per number of worlds (about a minute
on 2 CPU cores the first time); JAX's persistent compilation cache
(``~/.cache/trialrun/jax``, or ``$TRIALRUN_JAX_CACHE``) makes later runs
load them in seconds. The envs are built once per module.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.envs.adapters.playground import PlaygroundBatchedEnv, make_playground_env, seed_keys
from trialrun.envs.batched import PerWorldFactors, make_batched_env
from trialrun.errors import ConfigError, VariationError
from trialrun.execution.runner import run_evaluation
from trialrun.plan import Slot, plan_job
from trialrun.policies.base import CallablePolicy, Policy, PolicyContext
from trialrun.rollout import EpisodeResult
from trialrun.rollout_native import rollout_native
from trialrun.runfiles import read_episodes
from trialrun.variations.mjx import per_world_variations

pytestmark = pytest.mark.slow

STEPS = 30
FACTORS = {
    "pole_mass": {"type": "mujoco.body_mass", "body": "pole_1", "mode": "scale"},
    "friction": {"type": "mujoco.geom_friction", "geom": "floor", "mode": "set"},
    "gain": {"type": "mujoco.actuator_gain", "actuator": "slide", "mode": "scale"},
    "gravity": {"type": "mujoco.gravity", "mode": "scale"},
}


@pytest.fixture(scope="module")
def env6() -> Iterator[PlaygroundBatchedEnv]:
    """Six worlds in two groups of four lanes (two padded)."""
    env = make_playground_env(6, env_name="CartpoleBalance", max_episode_steps=STEPS, lanes=4)
    yield env
    env.close()


def _cartpoles(worlds: int) -> Iterator[PlaygroundBatchedEnv]:
    env = make_playground_env(worlds, env_name="CartpoleBalance", max_episode_steps=STEPS, lanes=4)
    yield env
    env.close()


@pytest.fixture(scope="module")
def env1() -> Iterator[PlaygroundBatchedEnv]:
    yield from _cartpoles(1)


@pytest.fixture(scope="module")
def env8() -> Iterator[PlaygroundBatchedEnv]:
    yield from _cartpoles(8)


@pytest.fixture(scope="module")
def env64() -> Iterator[PlaygroundBatchedEnv]:
    yield from _cartpoles(64)


def _push(ctx: PolicyContext) -> Policy:
    """A numpy policy: pushes the cart right, harder the further the pole leans."""
    return CallablePolicy(lambda obs: np.clip(np.asarray(obs)[:, 2:3] * 2.0 + 0.2, -1, 1))


def jax_push() -> Any:
    """A ``module:callable`` policy factory returning a jitted JAX function
    (``policy: test_playground:jax_push`` in a run file)."""
    return jax.jit(lambda obs: jax.numpy.clip(obs[:, 2:3] * 2.0 + 0.2, -1, 1))


def slow_push() -> Any:
    """``jax_push``, sleeping 10 ms a step so that a run lasts long enough to be killed."""
    push = jax_push()

    def act(obs: Any) -> Any:
        time.sleep(0.01)
        return push(obs)

    return act


def _run(env: PlaygroundBatchedEnv, slots: list[Slot], builder: Any = _push) -> dict[int, EpisodeResult]:
    results: list[EpisodeResult] = []
    rollout_native(slots, env, builder, results.append, job="pg")
    assert len(results) == len(slots)
    return {r.slot.episode: r for r in results}


def test_exact_mode_gives_the_same_records_for_1_6_8_and_64_worlds(
    env1: PlaygroundBatchedEnv,
    env6: PlaygroundBatchedEnv,
    env8: PlaygroundBatchedEnv,
    env64: PlaygroundBatchedEnv,
) -> None:
    slots = plan_job(3, "pg", 12)  # 1, 6 and 8 worlds refill worlds; 64 leaves most idle
    one = _run(env1, slots)
    outcomes = {e: r.outcome for e, r in one.items()}
    for env in (env6, env8, env64):
        assert {e: r.outcome for e, r in _run(env, slots).items()} == outcomes, env.num_worlds
    assert {r.outcome["length"] for r in one.values()} == {STEPS}
    returns = [one[e].outcome["return"] for e in range(12)]
    assert len(set(returns)) == 12  # each seed starts the pole somewhere else
    # A world's seed gives its key: jax.random.PRNGKey(seed), however large the seed.
    assert seed_keys([slots[0].seed]).tolist() == [
        jax.random.key_data(jax.random.PRNGKey(slots[0].seed)).tolist()
    ]


def test_the_default_lanes_give_the_same_records_for_1_and_257_worlds(env1: PlaygroundBatchedEnv) -> None:
    # 256 lanes: one world runs in one padded group of 256, 257 worlds in two groups.
    one = make_playground_env(1, env_name="CartpoleBalance", max_episode_steps=STEPS)
    many = make_playground_env(257, env_name="CartpoleBalance", max_episode_steps=STEPS)
    assert (one.lanes, one.padded, many.lanes, many.padded) == (256, 256, 256, 512)
    slots = plan_job(3, "pg", 4)
    outcomes = {e: r.outcome for e, r in _run(one, slots).items()}
    assert {e: r.outcome for e, r in _run(many, slots).items()} == outcomes
    # The same episodes as with 4 lanes, up to float rounding.
    four = _run(env1, slots)
    for e, outcome in outcomes.items():
        assert outcome["length"] == four[e].outcome["length"] == STEPS
        assert outcome["return"] == pytest.approx(four[e].outcome["return"], rel=1e-5)
    one.close()
    many.close()


class _Opaque:
    """The jitted policy behind a plain ``act``: not known to be pure, so the
    rollout steps without queueing ahead."""

    def __init__(self) -> None:
        self.act = jax_push()

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        pass


def test_steps_queued_one_ahead_give_the_records_of_steps_taken_one_by_one(
    env6: PlaygroundBatchedEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped: list[int] = []
    discard = env6.discard
    monkeypatch.setattr(env6, "discard", lambda pending: (dropped.append(1), discard(pending)))
    slots = plan_job(5, "pg", 14)  # 6 worlds: ends at steps 30, 60 and 90 (2 slots in the last round)
    assert CallablePolicy(jax_push()).pure and not CallablePolicy(np.asarray).pure
    ahead = _run(env6, slots, lambda ctx: CallablePolicy(jax_push()))
    assert len(dropped) == 3  # the step queued after each round's last one
    one_by_one = _run(env6, slots, lambda ctx: _Opaque())
    assert len(dropped) == 3
    assert {e: r.outcome for e, r in ahead.items()} == {e: r.outcome for e, r in one_by_one.items()}
    assert {r.outcome["length"] for r in ahead.values()} == {STEPS}


def test_a_rerun_on_the_same_env_is_identical(env6: PlaygroundBatchedEnv) -> None:
    slots = plan_job(9, "pg", 5)
    first = _run(env6, slots)
    again = _run(env6, slots)
    assert {e: r.outcome for e, r in first.items()} == {e: r.outcome for e, r in again.items()}


def test_per_world_factors_are_read_back_change_only_their_world_and_never_recompile(
    env6: PlaygroundBatchedEnv,
) -> None:
    env6.bind_factors(per_world_variations(FACTORS))
    assert isinstance(env6, PerWorldFactors)
    _run(env6, plan_job(1, "warm", 4))  # compiled (or loaded) before counting
    traces = dict(env6.traces)
    base = plan_job(1, "pg", 1)[0]
    values = [
        {},
        {"pole_mass": 4.0},
        {"pole_mass": 1.0, "friction": 1.5, "gain": 1.5, "gravity": 0.5},
        {"gravity": 2.0},
        {"pole_mass": 0.25, "gain": 0.5},
        {},
    ]
    slots = [dataclasses.replace(base, episode=k, factors=v) for k, v in enumerate(values)]
    records = _run(env6, slots)
    # The record holds the value read back from the model (what the world ran with).
    assert records[1].factors == {"pole_mass": 4.0}
    assert records[2].factors == {"pole_mass": 1.0, "friction": 1.5, "gain": 1.5, "gravity": 0.5}
    returns = [records[k].outcome["return"] for k in range(6)]
    # Same seed: nominal worlds agree, every changed dynamics differs, a nominal
    # world after changed ones is nominal again (values are restored).
    assert returns[0] == returns[5]
    assert len({returns[0], returns[1], returns[3], returns[4]}) == 4
    assert env6.traces == traces  # new values are new array contents, not new programs
    # The batched model itself holds each world's values.
    nominal = env6.env.mj_model
    got = env6.apply([0, 1, 2, 3], [{"pole_mass": 3.0}, {"gravity": 0.5}, {"gain": 2.0}, {}])
    assert got == [{"pole_mass": pytest.approx(3.0, abs=1e-12)}, {"gravity": 0.5}, {"gain": 2.0}, {}]
    pole = 2  # body index of pole_1
    assert env6.model_value("body_mass", 0)[pole] == np.float32(3 * nominal.body_mass[pole])
    assert env6.model_value("body_mass", 1)[pole] == np.float32(nominal.body_mass[pole])
    assert env6.model_value("opt.gravity", 1).tolist() == pytest.approx([0, 0, -9.81 / 2])
    assert env6.model_value("actuator_gainprm", 2)[0, 0] == np.float32(2 * nominal.actuator_gainprm[0, 0])
    assert env6.model_value("opt.gravity", 3).tolist() == pytest.approx([0, 0, -9.81])
    env6.bind_factors({})


def test_a_jax_policy_gets_jax_arrays_and_a_numpy_policy_the_same_outcomes(
    env6: PlaygroundBatchedEnv,
) -> None:
    seen: list[type] = []

    @jax.jit
    def act(obs: jax.Array) -> jax.Array:
        return jax.numpy.clip(obs[:, 2:3] * 2.0 + 0.2, -1, 1)

    def jax_policy(ctx: PolicyContext) -> Policy:
        def call(obs: Any) -> Any:
            seen.append(type(obs))
            return act(obs)

        return CallablePolicy(call)

    slots = plan_job(4, "pg", 4)
    with_jax = _run(env6, slots, jax_policy)
    with_numpy = _run(env6, slots)
    assert seen and all(issubclass(t, jax.Array) for t in seen)
    assert {e: r.outcome for e, r in with_jax.items()} == {e: r.outcome for e, r in with_numpy.items()}


def test_torchscript_and_onnx_policies_act_on_the_worlds_like_the_numpy_controller(
    env6: PlaygroundBatchedEnv, tmp_path: Path
) -> None:
    # The shipped cartpole-pd controller as a TorchScript module and as an ONNX
    # graph: both read the JAX observations through numpy and act like it.
    import torch

    from trialrun.policies import build_policy

    torch.set_num_threads(1)

    class PD(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gains = torch.tensor([[0.5], [0.0], [5.0], [1.0], [1.0]])

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.clamp(obs @ self.gains, -1.0, 1.0)

    pd = PD().eval()
    torch.jit.script(pd).save(str(tmp_path / "pd.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter
        torch.onnx.export(
            pd,
            (torch.zeros(2, 5),),
            str(tmp_path / "pd.onnx"),
            input_names=["obs"],
            output_names=["action"],
            dynamic_axes={"obs": {0: "batch"}},
            dynamo=False,
        )
    slots = plan_job(5, "pg", 8)

    def outcomes(kind: str, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
        runs = _run(env6, slots, lambda ctx: build_policy(kind, settings, ctx))
        return {e: r.outcome for e, r in runs.items()}

    numpy_pd = outcomes("cartpole-pd", {})
    zero = outcomes("zero", {})
    for kind, path in (("torchscript", "pd.pt"), ("onnx", "pd.onnx")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = outcomes(kind, {"path": str(tmp_path / path)})
        # Bit for bit: the same float32 products and sums, hence the same worlds.
        assert got == numpy_pd, kind
        # JAX hands numpy a read-only view; torch warns about those unless the policy copies.
        assert [str(w.message) for w in caught] == [], kind
    assert sorted(numpy_pd) == list(range(8))
    assert all(
        numpy_pd[e]["length"] == STEPS and numpy_pd[e]["return"] != zero[e]["return"] for e in range(8)
    )


def _cart_job(**extra: Any) -> dict[str, Any]:
    """Six Playground cartpole worlds (lanes of 4) under the jitted JAX policy."""
    return {
        "name": "cart",
        "env": {"id": "playground/CartpoleBalance", "kwargs": {"lanes": 4}},
        "policy": "test_playground:jax_push",
        "episodes": 6,
        "num_envs": 6,
        "vectorization": "native",
        "max_steps": STEPS,
        **extra,
    }


def test_a_run_file_names_playground_envs_and_records_per_world_factors(tmp_path: Path) -> None:
    job = _cart_job(
        factors={
            "pole_mass": {
                "variation": FACTORS["pole_mass"],
                "sampler": {"type": "choice", "values": [0.5, 2.0]},
            }
        }
    )
    cfg = parse_run_config({"name": "pg", "seed": 2, "jobs": [job]})
    run_evaluation(cfg, tmp_path / "run")
    records = sorted(read_episodes(tmp_path / "run" / "episodes.jsonl"), key=lambda r: r.episode)
    assert [r.episode for r in records] == list(range(6))
    assert {r.outcome["length"] for r in records} == {STEPS}
    assert {r.factors["pole_mass"] for r in records} == {0.5, 2.0}
    # The same slots through the Python API, the numpy twin of the policy, and the factors read back.
    env = make_playground_env(6, env_name="CartpoleBalance", max_episode_steps=STEPS, lanes=4)
    env.bind_factors(per_world_variations({"pole_mass": FACTORS["pole_mass"]}))
    slots = [
        dataclasses.replace(s, factors={"pole_mass": r.factors["pole_mass"]})
        for s, r in zip(plan_job(2, "cart", 6), records, strict=True)
    ]
    direct = _run(env, slots)
    assert [direct[r.episode].outcome for r in records] == [r.outcome for r in records]
    job_manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["jobs"]["cart"]
    native = job_manifest["native"]
    assert native.pop("compile_seconds") >= 0.0
    assert native == {"mode": "exact", "num_envs": 6, "depends_on_num_envs": False, "lanes": 4}
    assert job_manifest["factors"][0]["nominal"] == 1.0  # read from the Playground env's MuJoCo model


def test_a_missing_body_is_named_before_the_run_and_sync_is_refused(tmp_path: Path) -> None:
    job: dict[str, Any] = {
        "name": "cart",
        "env": "playground/CartpoleBalance",
        "policy": "zero",
        "episodes": 2,
        "num_envs": 2,
        "vectorization": "native",
        "factors": {
            "m": {
                "variation": {"type": "mujoco.body_mass", "body": "pole_9"},
                "sampler": {"type": "choice", "values": [2.0]},
            }
        },
    }
    with pytest.raises(VariationError, match=r"unknown body 'pole_9'; bodies: .*pole_1") as err:
        run_evaluation(parse_run_config({"name": "pg", "jobs": [job]}), tmp_path / "bad")
    assert err.value.field == "jobs.0.factors.m"
    job.pop("factors")
    job["vectorization"] = "sync"
    run_evaluation(parse_run_config({"name": "pg", "jobs": [job]}), tmp_path / "sync")
    failed = json.loads((tmp_path / "sync" / "manifest.json").read_text())["jobs"]["cart"]
    assert failed["status"] == "failed"
    assert (
        "playground/CartpoleBalance is a batched MJX env: run it with vectorization: native"
        in failed["error"]
    )


def test_bad_names_and_factors_are_clear_errors(env6: PlaygroundBatchedEnv) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown MuJoCo Playground env 'CartpoleBalanc'; available: .*CartpoleBalance"
    ):
        make_playground_env(1, env_name="CartpoleBalanc")
    with pytest.raises(
        ConfigError,
        match=r"unknown environment 'playground/CartpoleBalanc'; did you mean 'playground/CartpoleBalance'",
    ):
        make_batched_env("playground/CartpoleBalanc", {}, 1)
    with pytest.raises(
        ConfigError, match=r"'mujoco.dof_damping' cannot be set per world .* mujoco.body_mass"
    ):
        per_world_variations({"d": {"type": "mujoco.dof_damping", "joint": "slider"}})
    with pytest.raises(
        ConfigError, match=r"priority: true changes geom_priority, which MJX reads as a constant"
    ) as err:
        per_world_variations({"f": {"type": "mujoco.geom_friction", "geom": "floor", "priority": True}})
    assert err.value.field == "factors.f.priority"
    with pytest.raises(VariationError, match=r"unknown body 'pole_9'; bodies: .*pole_1"):
        env6.bind_factors(per_world_variations({"m": {"type": "mujoco.body_mass", "body": "pole_9"}}))
    env6.bind_factors({})


def test_a_native_job_films_chosen_worlds_with_mujocos_renderer(tmp_path: Path) -> None:
    from recording_helpers import decode_frames

    job = _cart_job(video={"select": "first", "episodes": 2, "size": [64, 48]})
    cfg = parse_run_config({"name": "pg", "seed": 2, "jobs": [job]})
    assert run_evaluation(cfg, tmp_path / "run").exit_code == 0
    records = sorted(read_episodes(tmp_path / "run" / "episodes.jsonl"), key=lambda r: r.episode)
    assert [r.video for r in records] == [
        {"default": "videos/cart/ep0-default.mp4"},
        {"default": "videos/cart/ep1-default.mp4"},
        *[{}] * 4,
    ]
    videos = [decode_frames(tmp_path / "run" / str(r.video["default"])) for r in records[:2]]
    for frames in videos:
        assert len(frames) == STEPS + 1
        assert frames[0].shape == (48, 64, 3)
        assert frames[0].std() > 5  # the cart and pole are drawn, not one colour
        assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.5  # the pole moved
    # Two worlds from different seeds: different pictures.
    assert np.abs(videos[0][-1].astype(int) - videos[1][-1].astype(int)).mean() > 0.1


def test_the_shipped_pd_controller_holds_the_nominal_pole(env6: PlaygroundBatchedEnv) -> None:
    from trialrun.policies import build_policy

    results = _run(env6, plan_job(11, "pd", 6), lambda ctx: build_policy("cartpole-pd", {}, ctx))
    returns = [r.outcome["return"] for r in results.values()]
    assert all(STEPS * 0.95 < value <= STEPS for value in returns), returns
    assert all(r.outcome["truncated"] and not r.outcome["terminated"] for r in results.values())


class _Phases:
    """A run observer keeping the phases it is told of."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, str]] = []

    def job_started(self, job: str, planned: int, done: int) -> None:
        self.phases.append((job, "started"))

    def episode_finished(self, record: Any) -> None:
        """Episodes are not phases."""

    def job_finished(self, job: str, status: str, error: str | None) -> None:
        self.phases.append((job, status))

    def job_phase(self, job: str, phase: str) -> None:
        self.phases.append((job, phase))


def test_a_run_compiles_before_the_first_episode_once_per_process(
    tmp_path: Path, env6: PlaygroundBatchedEnv
) -> None:
    observer = _Phases()
    cfg = parse_run_config({"name": "pg", "seed": 4, "jobs": [_cart_job()]})
    assert run_evaluation(cfg, tmp_path / "run", observer=observer).exit_code == 0
    assert observer.phases == [
        ("cart", "started"),
        ("cart", "compiling"),
        ("cart", "running"),
        ("cart", "completed"),
    ]
    native = json.loads((tmp_path / "run" / "manifest.json").read_text())["jobs"]["cart"]["native"]
    assert isinstance(native["compile_seconds"], float)
    # env6 has the job's world count and lanes, so it shares the job's programs: the compile
    # phase's simulator and the job's own, built after it, traced reset and step once in all.
    assert env6.traces == {"reset": 1, "step": 1}
    assert env6.compile() == 0.0  # already held by this process


def test_the_process_executor_and_a_resume_after_kill_9_give_the_local_records(tmp_path: Path) -> None:
    from helpers import record_identity, subprocess_env
    from trialrun.execution.process import ProcessExecutor

    job = _cart_job(episodes=120, policy="test_playground:slow_push")
    doc = {"name": "pg", "seed": 6, "jobs": [job]}
    local = tmp_path / "local"
    assert run_evaluation(parse_run_config(doc), local).exit_code == 0
    with ProcessExecutor(workers=2, shard_size=30) as executor:
        assert run_evaluation(parse_run_config(doc), tmp_path / "process", executor=executor).exit_code == 0
    local_records = record_identity(local / "episodes.jsonl", keep_world=False)
    assert record_identity(tmp_path / "process" / "episodes.jsonl", keep_world=False) == local_records

    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(doc))
    run_dir = tmp_path / "killed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trialrun.cli",
            "run",
            str(cfg),
            "--run-dir",
            str(run_dir),
            "-q",
            "--no-report",
        ],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    episodes = run_dir / "episodes.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if episodes.exists() and episodes.read_text().count("\n") >= 12:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert 12 <= episodes.read_text().count("\n") < 120
    resumed = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "run", "--resume", str(run_dir), "-q", "--no-report"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(r.episode for r in read_episodes(episodes)) == list(range(120))
    assert record_identity(episodes, keep_world=False) == local_records


def test_a_resume_keeps_the_lanes_its_run_started_with(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run started at one width (here 4, standing for an earlier default)
    and resumed by a version whose default differs goes on at its own width:
    its records are those of a whole run at that width, not a mix."""
    from helpers import record_identity

    job = _cart_job(episodes=6, num_envs=1)
    pinned = {"name": "pg", "seed": 9, "jobs": [job]}
    whole = tmp_path / "whole"
    run_evaluation(parse_run_config(pinned), whole)
    # The same run as the default-lanes config would have left it half done at width 4.
    unpinned = {"name": "pg", "seed": 9, "jobs": [{**job, "env": "playground/CartpoleBalance"}]}
    half = tmp_path / "half"
    run_evaluation(parse_run_config(unpinned), half)
    manifest = json.loads((whole / "manifest.json").read_text())
    manifest["config"] = json.loads((half / "manifest.json").read_text())["config"]
    manifest["jobs"]["cart"]["status"] = "running"
    (half / "manifest.json").write_text(json.dumps(manifest))
    lines = (whole / "episodes.jsonl").read_text().splitlines(keepends=True)
    (half / "episodes.jsonl").write_text("".join(lines[:3]))
    (half / "summary.json").unlink()

    with caplog.at_level("WARNING", logger="trialrun.execution.native_resume"):
        assert run_evaluation(parse_run_config(unpinned), half, resume=True).exit_code == 0
    assert "job 'cart': resuming with lanes 4, the width its run started with" in caplog.text
    assert record_identity(half / "episodes.jsonl") == record_identity(whole / "episodes.jsonl")
    assert json.loads((half / "manifest.json").read_text())["jobs"]["cart"]["native"]["lanes"] == 4
