"""The Isaac Lab, ManiSkill3 and PufferLib adapters driven by the native rollout
against doubles that follow each real API's reset/autoreset semantics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from batched_doubles import IsaacLabDouble, ManiSkillDouble, PufferLibDouble
from trialrun.envs.adapters import IsaacLabBatchedEnv, ManiSkillBatchedEnv, PufferLibBatchedEnv
from trialrun.envs.batched import BatchedEnv
from trialrun.envs.probe import probe_length, probe_success
from trialrun.errors import ConfigError
from trialrun.plan import plan_job
from trialrun.policies import build_policy
from trialrun.rollout import EpisodeResult
from trialrun.rollout_native import rollout_native

K = 21


def _run(env: BatchedEnv, k: int = K) -> list[EpisodeResult]:
    results: list[EpisodeResult] = []
    rollout_native(plan_job(0, "j", k), env, lambda ctx: build_policy("zero", {}, ctx), results.append)
    return results


def _by_episode(results: list[EpisodeResult]) -> dict[int, tuple[int, dict[str, Any], dict[str, Any]]]:
    episodes = [r.slot.episode for r in results]
    assert sorted(episodes) == list(range(K)), "each episode exactly once"
    return {r.slot.episode: (r.slot.seed, r.outcome, r.extra.get("wave", {})) for r in results}


# --------------------------------------------------------------------------- ManiSkill3 (exact)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_maniskill_exact_results_are_each_slots_seed(n: int) -> None:
    double = ManiSkillDouble(n)
    env = ManiSkillBatchedEnv(double)
    assert isinstance(env, BatchedEnv) and env.mode == "exact"
    results = _run(env)
    assert len(results) == K
    for r in results:
        assert r.outcome["length"] == probe_length(r.slot.seed)
        assert r.outcome["success"] == probe_success(r.slot.seed)
        assert "wave" not in r.extra
    _by_episode(results)
    assert double.stepped_finished == 0, "the rollout resets each finished world before the next step"
    for seeds, env_idx in double.reset_calls:  # a full per-world seed list and a partial env_idx
        assert len(seeds) == n and env_idx


def test_maniskill_results_do_not_depend_on_num_worlds() -> None:
    runs = [_by_episode(_run(ManiSkillBatchedEnv(ManiSkillDouble(n)))) for n in (1, 3, 8)]
    assert runs[0] == runs[1] == runs[2]


def test_maniskill_partial_reset_keeps_the_other_worlds_seeds() -> None:
    double = ManiSkillDouble(3)
    env = ManiSkillBatchedEnv(double)
    env.reset_worlds(np.ones(3, dtype=bool), [10, 11, 12])
    env.reset_worlds(np.array([False, True, False]), [None, 21, None])
    assert double.reset_calls[-1] == ([10, 21, 12], [1])
    assert [eps[-1] for eps in double.worlds.episodes] == [10, 21, 12]


def test_maniskill_refuses_an_autoresetting_vector_env() -> None:
    double = ManiSkillDouble(2)
    double.auto_reset = True  # type: ignore[attr-defined]  # as ManiSkillVectorEnv(auto_reset=True)
    with pytest.raises(ConfigError, match="auto_reset=False"):
        ManiSkillBatchedEnv(double)


# --------------------------------------------------------------------------- wave-mode simulators


def _assert_first_episodes(results: list[EpisodeResult], first_seeds: dict[int, list[int]], n: int) -> None:
    """Each result is its world's first episode of its wave, as the double ran it."""
    assert len(results) == K
    for r in results:
        wave = r.extra["wave"]
        assert wave["num_envs"] == n and wave["seed"] == r.slot.seed
        assert wave["first_episode"] <= r.slot.episode < wave["first_episode"] + n
        assert wave["world"] == r.slot.episode - wave["first_episode"] == r.env_index
        seed = first_seeds[wave["seed"]][wave["world"]]
        assert r.outcome["length"] == probe_length(seed)
        assert r.outcome["success"] == probe_success(seed)


@pytest.mark.parametrize("source", ["term", "extras"])
def test_isaaclab_waves_record_each_worlds_first_episode(source: str) -> None:
    n = 8
    kwargs: dict[str, Any] = {"success_term": "success"} if source == "term" else {"success_key": "success"}

    def run() -> tuple[list[EpisodeResult], IsaacLabDouble]:
        double = IsaacLabDouble(n, success_key="success" if source == "extras" else None)
        return _run(IsaacLabBatchedEnv(double, **kwargs)), double

    results, double = run()
    assert len(double.first_seeds) == -(-K // n)  # one reset(seed) per wave
    _assert_first_episodes(results, double.first_seeds, n)
    assert any(r.outcome["success"] for r in results) and not all(r.outcome["success"] for r in results)
    assert _by_episode(run()[0]) == _by_episode(results), "a rerun gives identical results"


def test_isaaclab_time_outs_are_truncations() -> None:
    double = IsaacLabDouble(4, max_steps=5)
    results = _run(IsaacLabBatchedEnv(double, success_term="success"))
    for r in results:
        seed = double.first_seeds[r.extra["wave"]["seed"]][r.env_index]
        assert r.outcome["length"] == min(probe_length(seed), 5)
        assert r.outcome["truncated"] == (probe_length(seed) > 5)


def test_isaaclab_missing_success_key_names_the_key_and_the_extras() -> None:
    env = IsaacLabBatchedEnv(IsaacLabDouble(3), success_key="is_success")
    with pytest.raises(KeyError, match=r"'is_success'.*extras keys: \['log'\]"):
        _run(env)


def test_isaaclab_unknown_termination_term_is_named() -> None:
    env = IsaacLabBatchedEnv(IsaacLabDouble(2), success_term="goal_reached")
    with pytest.raises(KeyError, match=r"goal_reached.*success"):
        _run(env)


def test_pufferlib_waves_record_each_worlds_first_episode() -> None:
    n = 6

    def run() -> tuple[list[EpisodeResult], PufferLibDouble]:
        double = PufferLibDouble(n)
        return _run(PufferLibBatchedEnv(double)), double

    results, double = run()
    _assert_first_episodes(results, double.first_seeds, n)
    for wave_seed, seeds in double.first_seeds.items():
        assert seeds == [wave_seed + i for i in range(n)]  # make_seeds(seed, n)
    assert _by_episode(run()[0]) == _by_episode(results), "a rerun gives identical results"


@pytest.mark.parametrize("adapter", [IsaacLabBatchedEnv, PufferLibBatchedEnv])
def test_wave_only_adapters_refuse_exact_resets(adapter: Any) -> None:
    double = IsaacLabDouble(2) if adapter is IsaacLabBatchedEnv else PufferLibDouble(2)
    with pytest.raises(ConfigError, match="native_mode: wave"):
        adapter(double).reset_worlds(np.ones(2, dtype=bool), [1, 2])


def test_pufferlib_refuses_a_partial_batch_env_pool() -> None:
    double = PufferLibDouble(4)
    double.agents_per_batch = 2
    with pytest.raises(ConfigError, match="batch_size == num_envs"):
        PufferLibBatchedEnv(double)


def test_a_vector_entry_point_may_return_an_adapter_for_run_files(tmp_path: Any) -> None:
    import gymnasium as gym

    from trialrun.config import parse_run_config
    from trialrun.execution.runner import run_evaluation
    from trialrun.runfiles import read_episodes, read_manifest

    if "trialrun-test/ManiSkillDouble-v0" not in gym.registry:
        gym.register(
            id="trialrun-test/ManiSkillDouble-v0", vector_entry_point="batched_doubles:maniskill_adapter"
        )
    job = {"name": "ms", "env": "trialrun-test/ManiSkillDouble-v0", "policy": "zero", "episodes": 12}
    cfg = parse_run_config({"name": "r", "jobs": [{**job, "num_envs": 5, "vectorization": "native"}]})
    assert run_evaluation(cfg, tmp_path / "run").exit_code == 0
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert sorted(r.episode for r in records) == list(range(12))
    assert all(r.outcome.get("length") == probe_length(r.seed) for r in records)
    native = read_manifest(tmp_path / "run").jobs["ms"].native
    assert native is not None and native.mode == "exact"
    wave = parse_run_config(
        {"name": "r", "jobs": [{**job, "vectorization": "native", "native_mode": "wave"}]}
    )
    with pytest.raises(ConfigError, match="native_mode 'wave' was asked for, but ManiSkillBatchedEnv resets"):
        run_evaluation(wave, tmp_path / "wave")
