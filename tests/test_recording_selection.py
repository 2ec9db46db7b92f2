"""trialrun.recording.selection: which episodes are recorded and which videos are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recording_helpers import assert_video, cartpole_job, mp4_names, run_videos
from trialrun.config import VideoConfig, parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.plan import slot_for
from trialrun.recording.selection import VideoSelection
from trialrun.runfiles import read_episodes, video_file_name
from trialrun.runfiles.schema import EpisodeRecord


def test_video_config_validation() -> None:
    def job(video: Any) -> dict[str, Any]:
        return {"name": "run", "jobs": [cartpole_job(video=video)]}

    assert parse_run_config(job(True)).jobs[0].video == VideoConfig()
    assert VideoConfig().cameras == ["default"] and VideoConfig().size is None
    assert parse_run_config(job(False)).jobs[0].video is None
    cases = {
        "size must be even": ({"size": [63, 64]}, "jobs.0.video.size", "each even"),
        "select": ({"select": "best"}, "jobs.0.video.select", "'first', 'failures', 'successes' or 'all'"),
        "unknown key": ({"camera": "corner"}, "jobs.0.video.camera", "allowed keys: cameras, episodes"),
        "camera file name": ({"cameras": ["a/b"]}, "jobs.0.video.cameras", "names files"),
        "twice": ({"cameras": ["corner", "corner"]}, "jobs.0.video.cameras", "listed twice"),
    }
    for video, field, text in cases.values():
        with pytest.raises(ConfigError) as info:
            parse_run_config(job(video))
        assert info.value.field == field and text in str(info.value)


def test_first_records_exactly_the_first_episodes_whatever_num_envs(tmp_path: Path) -> None:
    for num_envs in (1, 4):
        run_dir = run_videos(
            tmp_path,
            cartpole_job(num_envs=num_envs, video={"episodes": 3, "size": [32, 32]}),
            name=f"n{num_envs}",
        )
        records = read_episodes(run_dir / "episodes.jsonl")
        assert sorted(r.episode for r in records if r.video) == [0, 1, 2]
        assert mp4_names(run_dir / "videos" / "cp") == {
            "ep0-default.mp4",
            "ep1-default.mp4",
            "ep2-default.mp4",
        }
        for record in records:
            assert_video(run_dir, record, 32, 32)


class _DiskWatcher:
    """Run observer: after each record, the job's video folder holds exactly
    the files that the records so far name (with one sub-env)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.named: set[str] = set()
        self.checks = 0

    def job_started(self, job: str, planned: int, done: int) -> None:
        """Only finished episodes are checked."""

    def episode_finished(self, record: EpisodeRecord) -> None:
        self.named |= {Path(n).name for n in record.video.values()}
        assert mp4_names(self.directory) == self.named
        self.checks += 1

    def job_finished(self, job: str, status: str, error: str | None) -> None:
        """Only finished episodes are checked."""


@pytest.mark.parametrize(
    ("select", "quota", "num_envs"), [("failures", 3, 1), ("failures", 3, 3), ("successes", 50, 2)]
)
def test_failures_and_successes_keep_at_most_the_quota(
    tmp_path: Path, select: str, quota: int, num_envs: int
) -> None:
    job = cartpole_job(
        episodes=14,
        num_envs=num_envs,
        max_steps=16,
        video={"select": select, "episodes": quota, "size": [32, 32]},
    )
    config = parse_run_config({"name": "videos", "seed": 5, "jobs": [job]})
    watcher = _DiskWatcher(tmp_path / "run" / "videos" / "cp")
    result = run_evaluation(config, tmp_path / "run", observer=watcher if num_envs == 1 else None)
    assert result.exit_code == 0
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    wanted = [r for r in records if bool(r.outcome["success"]) == (select == "successes")]
    assert 3 < len(wanted) < 14  # both kinds occur, so the selection is really tested
    kept = [r for r in records if r.video]
    assert len(kept) == min(quota, len(wanted))
    assert all(r in wanted for r in kept)
    assert mp4_names(tmp_path / "run" / "videos" / "cp") == {f"ep{r.episode}-default.mp4" for r in kept}
    for record in kept:
        assert_video(tmp_path / "run", record, 32, 32)
    if num_envs == 1:
        assert watcher.checks == 14
        # Every episode is recorded until the quota is full: the kept failures
        # are the first ones (in the order they finished).
        assert [r.episode for r in kept] == [r.episode for r in wanted][:quota]


def test_the_failure_quota_holds_across_process_executor_shards(tmp_path: Path) -> None:
    from trialrun.execution.process import ProcessExecutor

    job = cartpole_job(
        episodes=16, num_envs=2, max_steps=16, video={"select": "failures", "episodes": 3, "size": [32, 32]}
    )
    config = parse_run_config({"name": "videos", "seed": 5, "jobs": [job]})
    with ProcessExecutor(workers=2, shard_size=4) as executor:
        result = run_evaluation(config, tmp_path / "run", executor=executor)
    assert result.exit_code == 0
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    failures = [r for r in records if not r.outcome["success"]]
    assert len(failures) > 3  # more failures than places
    kept = [r for r in records if r.video]
    assert len(kept) == 3 and all(not r.outcome["success"] for r in kept)
    assert mp4_names(tmp_path / "run" / "videos" / "cp") == {f"ep{r.episode}-default.mp4" for r in kept}
    for record in kept:
        assert_video(tmp_path / "run", record, 32, 32)


def test_selection_settings_claims_and_cleanup(tmp_path: Path) -> None:
    directory = tmp_path / "videos" / "j"
    first = VideoSelection(VideoConfig(episodes=2, cameras=["a", "b"]), directory, tmp_path)
    settings = first.settings(slot_for(0, "j", 1))
    assert settings == {
        "dir": str(directory.absolute()),
        "prefix": "videos/j/",
        "episode": 1,
        "cameras": ["a", "b"],
        "size": None,
        "fps": 30.0,
    }
    assert first.settings(slot_for(0, "j", 2)) is None
    outside = VideoSelection(VideoConfig(), tmp_path / "elsewhere", tmp_path / "run")
    assert outside.prefix == f"{(tmp_path / 'elsewhere').absolute().as_posix()}/"

    failures = VideoSelection(VideoConfig(episodes=2, select="failures"), directory, tmp_path)
    directory.mkdir(parents=True)

    def finished(episode: int) -> dict[str, str]:
        name = video_file_name(episode, "default")
        (directory / name).write_bytes(b"x")
        return {"default": f"videos/j/{name}"}

    assert failures.settle(slot_for(0, "j", 0), {"success": True}, finished(0)) == {}
    assert failures.settle(slot_for(0, "j", 1), {"success": False}, finished(1)) == finished(1)
    assert failures.settings(slot_for(0, "j", 9)) is not None  # one place left
    # a second selection (another worker process) shares the quota
    other = VideoSelection(VideoConfig(episodes=2, select="failures"), directory, tmp_path)
    assert other.settle(slot_for(0, "j", 2), {"success": False}, finished(2)) == finished(2)
    assert failures.settle(slot_for(0, "j", 3), {"success": False}, finished(3)) == {}
    assert failures.settings(slot_for(0, "j", 9)) is None  # full: stop recording
    assert mp4_names(directory) == {"ep1-default.mp4", "ep2-default.mp4"}
    # Resuming episodes 2 and 5 (unrecorded): their files and claims go.
    (directory / ".ep5-default.mp4.part").write_bytes(b"x")
    failures.prepare([2, 5])
    assert sorted(p.name for p in directory.iterdir()) == [".claims", "ep1-default.mp4"]
    assert failures.settings(slot_for(0, "j", 9)) is not None


def test_a_video_without_a_size_keeps_the_envs_aspect_ratio(tmp_path: Path) -> None:
    job = cartpole_job(episodes=1, num_envs=1, video={"episodes": 1})
    run_dir = run_videos(tmp_path, job)
    (record,) = read_episodes(run_dir / "episodes.jsonl")
    assert_video(run_dir, record, 274, 182)  # CartPole's 600x400, at about 224x224 pixels
