"""Videos of natively batched jobs (``vectorization: native`` with ``video``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trialrun.envs  # noqa: F401  (registers the probe's vector entry point)
from cli_errors import run_error_lines
from recording_helpers import decode_frames, mp4_names
from trialrun.config import parse_run_config
from trialrun.envs.probe import probe_length, probe_success
from trialrun.execution.runner import run_evaluation
from trialrun.replay import replay_episode
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord


def _probe_job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "probe",
        "env": "trialrun/SeedProbe-v0",
        "policy": "zero",
        "episodes": 12,
        "num_envs": 4,
        "vectorization": "native",
        "video": {"select": "first", "episodes": 3, "size": [32, 32]},
    }
    job.update(overrides)
    return job


def _run(run_dir: Path, *jobs: dict[str, Any]) -> list[EpisodeRecord]:
    config = parse_run_config({"name": "film", "seed": 9, "jobs": list(jobs)})
    result = run_evaluation(config, run_dir)
    assert result.exit_code == 0, result.errors
    return sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)


def _levels(path: Path) -> tuple[list[int], list[int]]:
    """(green, red) of each decoded frame: the probe draws steps taken and steps left."""
    frames = decode_frames(path)
    return [round(float(np.median(f[:, :, 1]))) for f in frames], [
        round(float(np.median(f[:, :, 0]))) for f in frames
    ]


@pytest.mark.parametrize("num_envs", [1, 4])
def test_exact_mode_films_the_first_episodes_of_their_own_worlds(tmp_path: Path, num_envs: int) -> None:
    records = _run(tmp_path / "run", _probe_job(num_envs=num_envs))
    assert [r.episode for r in records] == list(range(12))
    filmed = [r for r in records if r.video]
    assert [r.episode for r in filmed] == [0, 1, 2]
    assert mp4_names(tmp_path / "run" / "videos" / "probe") == {f"ep{k}-default.mp4" for k in range(3)}
    for record in filmed:
        assert record.video == {"default": f"videos/probe/ep{record.episode}-default.mp4"}
        length = probe_length(record.seed)
        green, red = _levels(tmp_path / "run" / record.video["default"])
        assert len(green) == length + 1 == record.outcome["length"] + 1
        # Frame t shows step t of this episode, not another world's (H.264 is within a few levels).
        assert all(abs(g - min(t, 255)) <= 3 for t, g in enumerate(green)), green
        assert all(abs(r - min(length - t, 255)) <= 3 for t, r in enumerate(red)), red


def test_failures_are_filmed_live_until_the_quota_holds_enough(tmp_path: Path) -> None:
    job = _probe_job(episodes=24, video={"select": "failures", "episodes": 2, "size": [32, 32]})
    records = _run(tmp_path / "run", job)
    filmed = [r for r in records if r.video]
    assert len(filmed) == 2
    assert all(not probe_success(r.seed) and r.outcome["success"] is False for r in filmed)
    assert mp4_names(tmp_path / "run" / "videos" / "probe") == {f"ep{r.episode}-default.mp4" for r in filmed}


def test_wave_mode_films_each_worlds_first_episode_of_a_real_vector_env(tmp_path: Path) -> None:
    job = {
        "name": "cart",
        "env": "CartPole-v1",
        "policy": "random",
        "episodes": 8,
        "num_envs": 4,
        "max_steps": 60,
        "vectorization": "native",
        "success": "survived",
        "video": {"select": "first", "episodes": 2},
    }
    records = _run(tmp_path / "run", job)
    filmed = [r for r in records if r.video]
    assert [r.episode for r in filmed] == [0, 1]
    for record in filmed:
        frames = decode_frames(tmp_path / "run" / record.video["default"])
        assert len(frames) == record.outcome["length"] + 1
        assert frames[0].shape[2] == 3 and frames[0].std() > 0  # CartPole drawn, not one colour
    # The replay of a filmed wave episode films it again, frame for frame as long.
    replayed = replay_episode(tmp_path / "run", "cart", 1, video=True)
    assert replayed.matches
    again = replayed.videos["default"]
    assert len(decode_frames(again)) == filmed[1].outcome["length"] + 1


def test_a_named_camera_on_a_native_job_is_refused_before_running(tmp_path: Path) -> None:
    code, lines = run_error_lines(tmp_path, {"name": "bad", "jobs": [_probe_job(video={"cameras": ["top"]})]})
    assert code == 2
    message = " ".join(" ".join(lines).split())
    assert "field 'jobs.0.video.cameras': a native job films its simulator's own render() only" in message
    assert "got ['top']" in message
    assert not list((tmp_path / "runs").rglob("episodes.jsonl"))
