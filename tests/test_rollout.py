from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pytest

from helpers import BlockSink, CountingWrapper, StepCountingPolicy
from trialrun.envs.probe import probe_length, probe_success
from trialrun.envs.slot_wrapper import SlotWrapper
from trialrun.outcomes import SuccessRule
from trialrun.plan import Slot, plan_job
from trialrun.policies import build_policy
from trialrun.rollout import EpisodeResult, _UtcClock, deliver, rollout


def _probe() -> gym.Env[Any, Any]:
    return gym.make("trialrun/SeedProbe-v0")


def _run(
    num_envs: int,
    episodes: int = 40,
    vectorization: str = "sync",
    policy: Callable[..., Any] | None = None,
    env_fn: Callable[[], gym.Env[Any, Any]] = _probe,
) -> list[EpisodeResult]:
    results: list[EpisodeResult] = []
    rollout(
        plan_job(11, "probe", episodes),
        [env_fn] * num_envs,
        policy or (lambda ctx: build_policy("random", {}, ctx)),
        results.append,
        vectorization=vectorization,
    )
    return results


@pytest.mark.parametrize("vectorization", ["sync", "async"])
@pytest.mark.parametrize("num_envs", [1, 3, 8, 64])
def test_every_slot_runs_exactly_once_with_its_own_seed(num_envs: int, vectorization: str) -> None:
    results = _run(num_envs, vectorization=vectorization)
    assert sorted(r.slot.episode for r in results) == list(range(40))
    for r in results:
        assert r.outcome["length"] == probe_length(r.slot.seed)
        assert r.outcome["success"] is probe_success(r.slot.seed)
        assert r.outcome["return"] == float(probe_length(r.slot.seed))
        assert r.outcome["terminated"] is True and r.outcome["truncated"] is False
        assert 0 <= r.env_index < min(num_envs, 40)


def test_results_do_not_depend_on_num_envs() -> None:
    def key(results: list[EpisodeResult]) -> list[tuple[Any, ...]]:
        return sorted((r.slot.episode, r.slot.seed, tuple(sorted(r.outcome.items()))) for r in results)

    reference = key(_run(1))
    assert key(_run(5)) == reference
    assert key(_run(16, vectorization="async")) == reference


def test_nothing_extra_runs() -> None:
    CountingWrapper.resets = CountingWrapper.steps = 0
    results = _run(7, episodes=30, env_fn=lambda: CountingWrapper(_probe()))
    assert CountingWrapper.resets == 30
    assert CountingWrapper.steps == sum(r.outcome["length"] for r in results)


def test_policy_state_is_reset_per_sub_env() -> None:
    StepCountingPolicy.instances.clear()
    _run(5, episodes=33, policy=StepCountingPolicy)
    (policy,) = StepCountingPolicy.instances
    assert policy.resets == 33
    assert policy.mismatches == 0


def test_random_policy_draws_depend_on_the_slot_not_the_sub_env() -> None:
    def actions_per_slot(num_envs: int) -> dict[int, list[int]]:
        seen: dict[int, list[int]] = {}
        rollout(
            plan_job(2, "cp", 12),
            [lambda: gym.make("CartPole-v1")] * num_envs,
            lambda ctx: build_policy("random", {}, ctx),
            lambda r: seen.__setitem__(r.slot.episode, [r.outcome["length"], r.outcome["return"]]),
        )
        return seen

    assert actions_per_slot(1) == actions_per_slot(6)


def test_max_steps_truncates() -> None:
    results: list[EpisodeResult] = []
    rollout(
        plan_job(0, "cp", 6),
        [lambda: gym.make("CartPole-v1", max_episode_steps=25)] * 3,
        lambda ctx: build_policy("cartpole-balance", {}, ctx),
        results.append,
        success=SuccessRule(survived=True),
    )
    assert [r.outcome["length"] for r in results] == [25] * 6
    assert all(r.outcome["truncated"] and not r.outcome["terminated"] for r in results)
    assert all(r.outcome["success"] for r in results)


def test_no_slots_is_a_no_op() -> None:
    results: list[EpisodeResult] = []
    rollout([], [_probe], lambda ctx: build_policy("zero", {}, ctx), results.append)
    assert results == []


def test_env_error_propagates_after_emitting_finished_episodes() -> None:
    import helpers  # noqa: F401  (registers helpers/Broken-v0)

    results: list[EpisodeResult] = []
    with pytest.raises(ValueError, match="diverged on purpose"):
        rollout(
            plan_job(0, "b", 3),
            [lambda: gym.make("helpers/Broken-v0")],
            lambda ctx: build_policy("zero", {}, ctx),
            results.append,
        )
    assert results == []


def test_timestamps_are_utc_iso() -> None:
    (result,) = _run(1, episodes=1)
    assert result.started_at.endswith("Z") and result.ended_at.endswith("Z")
    assert result.started_at <= result.ended_at


class _CountingCapture:
    """An episode capture that writes nothing: its "file" names the episode
    and how many frames it was given (module-level: async workers unpickle it)."""

    def __init__(self) -> None:
        self.episode: int | None = None
        self.frames = 0

    @property
    def recording(self) -> bool:
        return self.episode is not None

    def begin(self, env: gym.Env[Any, Any], settings: dict[str, Any]) -> None:
        self.episode, self.frames = int(settings["episode"]), 1

    def capture(self, env: gym.Env[Any, Any]) -> None:
        self.frames += 1

    def finish(self) -> dict[str, str]:
        files = {"fake": f"ep{self.episode}-{self.frames}"}
        self.episode = None
        return files

    def abort(self) -> None:
        self.episode = None

    def close(self) -> None:
        self.abort()


def _probe_with_capture() -> SlotWrapper:
    return SlotWrapper(_probe(), env_index=0, recorder_factory=_CountingCapture)


class _EvenEpisodes:
    """A video plan: record even episodes, keep those whose number is a multiple of 4."""

    def __init__(self) -> None:
        self.settled: list[int] = []

    def settings(self, slot: Slot) -> dict[str, Any] | None:
        return {"episode": slot.episode} if slot.episode % 2 == 0 else None

    def keeps_actions(self) -> bool:
        return False

    def settle(
        self, slot: Slot, outcome: dict[str, Any], files: dict[str, str], actions: Any = None
    ) -> dict[str, str]:
        assert actions is None  # it keeps none
        self.settled.append(slot.episode)
        return files if slot.episode % 4 == 0 else {}


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_the_video_plan_drives_the_injected_capture(vectorization: str) -> None:
    plan = _EvenEpisodes()
    results: list[EpisodeResult] = []
    rollout(
        plan_job(11, "probe", 12),
        [_probe_with_capture] * 3,
        lambda ctx: build_policy("random", {}, ctx),
        results.append,
        vectorization=vectorization,
        video=plan,
    )
    assert sorted(plan.settled) == list(range(12))
    for r in results:
        length = r.outcome["length"]
        expected = {"fake": f"ep{r.slot.episode}-{length + 1}"} if r.slot.episode % 4 == 0 else {}
        assert r.video == expected  # post-reset frame + one per step, only for recorded, kept episodes


def test_a_sub_env_without_a_recorder_refuses_to_record() -> None:
    with pytest.raises(RuntimeError, match="asked to record a video but has no recorder"):
        rollout(
            plan_job(11, "probe", 2),
            [_probe],
            lambda ctx: build_policy("random", {}, ctx),
            lambda r: None,
            video=_EvenEpisodes(),
        )


def test_the_episodes_that_end_in_one_step_are_delivered_together() -> None:
    sink = BlockSink()
    rollout(plan_job(11, "probe", 40), [_probe] * 8, lambda ctx: build_policy("random", {}, ctx), sink)
    flat = [r for block in sink.blocks for r in block]
    assert sorted(r.slot.episode for r in flat) == list(range(40))
    # SeedProbe's length is a function of the seed: the blocks are the steps'
    # groups of sub-envs whose episodes ended together, each once.
    assert len(sink.blocks) < 40 and all(sink.blocks)
    for block in sink.blocks:
        assert len({r.env_index for r in block}) == len(block)
        assert len({r.ended_at for r in block}) == 1
    one_by_one = sorted((r.slot.episode, r.env_index, sorted(r.outcome.items())) for r in _run(8))
    assert sorted((r.slot.episode, r.env_index, sorted(r.outcome.items())) for r in flat) == one_by_one


def test_deliver_hands_a_plain_callable_each_result_in_order() -> None:
    results = _run(3, episodes=4)
    seen: list[EpisodeResult] = []
    deliver(seen.append, results)
    deliver(seen.append, [])
    assert seen == results
    sink = BlockSink()
    deliver(sink, [])  # nothing ended: no call
    deliver(sink, results)
    assert sink.blocks == [results]


def test_utc_clock_text_per_millisecond_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text is cached per millisecond and its date and time per second; both roll over."""
    clock = _UtcClock()
    instants = [
        1_764_600_000_999_400_000,
        1_764_600_000_999_900_000,
        1_764_600_001_000_000_001,
        1_764_600_061_042_000_000,
    ]
    texts = []
    for ns in instants:
        monkeypatch.setattr("time.time_ns", lambda ns=ns: ns)
        texts.append(clock())
    assert texts == [
        "2025-12-01T14:40:00.999Z",
        "2025-12-01T14:40:00.999Z",
        "2025-12-01T14:40:01.000Z",
        "2025-12-01T14:41:01.042Z",
    ]
