"""trialrun.execution.rerender: videos of ``select: failures | successes`` made by
re-simulating the kept episodes from their recorded actions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from recording_helpers import assert_video, cartpole_job, decode_frames, mp4_names, run_videos
from trialrun.execution.rerender import Rerender
from trialrun.execution.shard import GroupEnvFns
from trialrun.plan import slot_for
from trialrun.recording.capture import EpisodeRecorder
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord


class UnseededCartPole(CartPoleEnv):
    """CartPole that ignores ``reset(seed=...)``: its start state and its
    reward scale come from fresh OS entropy, as in envs that keep their own
    unseeded generator (the return makes any two episodes differ)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self._np_random = np.random.default_rng()
        self.reward_scale = float(self._np_random.uniform(1.0, 2.0))
        return super().reset(seed=None, options=options)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float(reward) * self.reward_scale, terminated, truncated, info


UNSEEDED_ID = "TrialrunTest/UnseededCartPole-v0"
if UNSEEDED_ID not in gym.registry:
    gym.register(UNSEEDED_ID, entry_point=f"{__name__}:UnseededCartPole", max_episode_steps=500)


def _records(run_dir: Path) -> list[EpisodeRecord]:
    return sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)


class _CountBegins:
    """Counts the episodes a recorder starts filming (sync vectors: same process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.episodes: list[int] = []
        begin = EpisodeRecorder.begin

        def counted(recorder: EpisodeRecorder, env: Any, settings: dict[str, Any]) -> None:
            self.episodes.append(int(settings["episode"]))
            begin(recorder, env, settings)

        monkeypatch.setattr(EpisodeRecorder, "begin", counted)


@pytest.mark.parametrize("select", ["failures", "successes"])
def test_only_the_kept_episodes_are_filmed_and_the_records_do_not_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, select: str
) -> None:
    plain = run_videos(tmp_path, cartpole_job(episodes=14, max_steps=16, video=None), name="plain")
    filmed = _CountBegins(monkeypatch)
    video = {"select": select, "episodes": 3, "size": [32, 32]}
    run_dir = run_videos(tmp_path, cartpole_job(episodes=14, max_steps=16, video=video))
    records = _records(run_dir)
    wanted = [r for r in records if bool(r.outcome["success"]) == (select == "successes")]
    assert 3 < len(wanted) < 14  # both kinds occur and there are more wanted episodes than places
    kept = [r for r in records if r.video]
    assert len(kept) == 3 and all(r in wanted for r in kept)
    # One filmed episode per kept video: the re-simulations, nothing else.
    assert sorted(filmed.episodes) == [r.episode for r in kept]
    assert mp4_names(run_dir / "videos" / "cp") == {f"ep{r.episode}-default.mp4" for r in kept}
    for record in kept:
        assert_video(run_dir, record, 32, 32)
    # Keeping actions and re-simulating changes no outcome.
    assert [r.outcome for r in records] == [r.outcome for r in _records(plain)]


def test_a_re_simulated_video_shows_the_frames_live_capture_shows(tmp_path: Path) -> None:
    size = {"size": [64, 48]}
    live = run_videos(tmp_path, cartpole_job(video={"select": "all", **size}), name="live")
    replayed = run_videos(tmp_path, cartpole_job(video={"select": "failures", "episodes": 8, **size}))
    kept = [r for r in _records(replayed) if r.video]
    assert kept and all(not r.outcome["success"] for r in kept)
    for record in kept:
        ours = decode_frames(replayed / record.video["default"])
        theirs = decode_frames(live / f"videos/cp/ep{record.episode}-default.mp4")
        assert len(ours) == len(theirs) == record.outcome["length"] + 1
        difference = max(
            np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(ours, theirs, strict=True)
        )
        assert difference < 0.5, f"episode {record.episode}: mean pixel difference {difference}"


def test_mujoco_factors_are_applied_again_when_an_episode_is_re_simulated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = {
        "name": "pendulum",
        "env": "InvertedPendulum-v5",
        "policy": "random",
        "episodes": 10,
        "num_envs": 2,
        "max_steps": 30,
        "success": "survived",
        "factors": {
            "pole_mass": {
                "variation": {"type": "mujoco.body_mass", "body": "pole", "mode": "scale"},
                "sampler": {"type": "uniform", "low": 0.2, "high": 5.0},
            }
        },
        "video": {"select": "failures", "episodes": 3, "size": [32, 32]},
    }
    with caplog.at_level(logging.WARNING):
        run_dir = run_videos(tmp_path, job)
    assert "did not reproduce" not in caplog.text
    records = _records(run_dir)
    kept = [r for r in records if r.video]
    assert len(kept) == 3 and all(not r.outcome["success"] for r in kept)
    assert len({r.factors["pole_mass"] for r in kept}) == 3
    for record in kept:
        assert_video(run_dir, record, 32, 32)


def test_an_env_that_ignores_its_seed_is_filmed_live_after_the_first_mismatch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    filmed = _CountBegins(monkeypatch)
    job = cartpole_job(
        env=UNSEEDED_ID,
        episodes=12,
        num_envs=1,
        max_steps=200,
        policy="zero",
        allow_unseeded=True,  # the seed check before the job would refuse it
        video={"select": "failures", "episodes": 3, "size": [32, 32]},
    )
    with caplog.at_level(logging.WARNING):
        run_dir = run_videos(tmp_path, job)
    records = _records(run_dir)
    # Always pushing left, the pole falls within a few dozen steps: every episode fails.
    assert all(not r.outcome["success"] for r in records)
    warnings = [m for m in caplog.messages if "did not reproduce" in m]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "job 'cp': episode 0, re-simulated from its actions to record it, did not reproduce its record ("
    )
    # Either the return differs, or the env ran on past the recorded actions.
    assert "return " in warnings[0] or "recorded, longer replayed" in warnings[0]
    assert "the rest of the job's failures videos are recorded live" in warnings[0]
    # Episode 0 was re-simulated and its video dropped; then episodes are
    # filmed live until three videos are kept.
    assert [r.episode for r in records if r.video] == [1, 2, 3]
    assert filmed.episodes == [0, 1, 2, 3]
    assert mp4_names(run_dir / "videos" / "cp") == {"ep1-default.mp4", "ep2-default.mp4", "ep3-default.mp4"}
    assert sorted(p.name for p in (run_dir / "videos" / "cp" / ".claims").iterdir()) == ["0", "1", "2"]
    for record in records[1:4]:
        assert_video(run_dir, record, 32, 32)


def _cartpole_fns() -> GroupEnvFns:
    return GroupEnvFns("CartPole-v1", {}, 50, None, {}, "rgb_array", EpisodeRecorder, {})


def test_an_env_that_runs_past_the_recorded_actions_leaves_no_file(tmp_path: Path) -> None:
    rerender = Rerender(_cartpole_fns(), env_id="CartPole-v1")
    settings = {
        "dir": str(tmp_path),
        "prefix": "",
        "episode": 4,
        "cameras": ["default"],
        "size": [32, 32],
        "fps": 30.0,
    }
    slot = slot_for(3, "cp", 4)
    result = rerender(slot, [0, 1], {"length": 2}, settings)
    assert result.differences == ["length"] and result.files == {} and not result.matches
    assert list(tmp_path.iterdir()) == []
    # With the whole stream it matches and names its one video.
    full = rerender(slot, [0, 1] * 25, {}, None)
    again = rerender(slot, [0, 1] * 25, full.outcome, settings)
    assert again.matches and again.files == {"default": "ep4-default.mp4"}
    assert len(decode_frames(tmp_path / "ep4-default.mp4")) == full.outcome["length"] + 1


def test_dict_and_tuple_actions_are_kept_and_played_back() -> None:
    from trialrun.policies.playback import ActionLog, ActionPlayback

    log = ActionLog(num_envs=2)
    log.begin(1)
    batch = {"arm": np.array([[0.1, 0.2], [0.3, 0.4]]), "grip": (np.array([0, 1]), np.array([5, 6]))}
    log.add(batch, np.array([True, True]))
    batch["arm"][1] = 9.0  # the batch is reused by the caller: the log kept a copy
    stream = log.take(1)
    assert stream is not None and log.take(0) is None and log.take(1) is None
    played = ActionPlayback(stream).act(None)
    assert played["arm"].tolist() == [[0.3, 0.4]]
    assert [a.tolist() for a in played["grip"]] == [[1], [6]]
