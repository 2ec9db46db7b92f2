"""Per-episode videos: real runs, real mp4 files decoded with PyAV."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import gymnasium as gym
import mujoco
import numpy as np
import pytest
import yaml

import trialrun.envs  # noqa: F401  (registers metaworld/<task>)
from helpers import subprocess_env
from trialrun.config import VideoConfig, parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.plan import slot_for
from trialrun.recording.video import (
    EpisodeRecorder,
    FrameSource,
    VideoError,
    VideoSelection,
    VideoWriter,
    camera_names,
    check_video,
    probe_video,
    video_file_name,
)
from trialrun.runfiles import RunWriteError, read_episodes, read_manifest
from trialrun.runfiles.schema import EpisodeRecord


def _run(tmp_path: Path, *jobs: dict[str, Any], seed: int = 5, name: str = "run") -> Path:
    config = parse_run_config({"name": "videos", "seed": seed, "jobs": list(jobs)})
    run_dir = tmp_path / name
    result = run_evaluation(config, run_dir)
    assert result.exit_code == 0, result.errors
    return run_dir


def _cartpole(**overrides: Any) -> dict[str, Any]:
    job = {
        "name": "cp",
        "env": "CartPole-v1",
        "policy": "random",
        "episodes": 8,
        "num_envs": 3,
        "max_steps": 40,
        "success": "survived",
        "video": {"select": "all", "size": [64, 48]},
    }
    job.update(overrides)
    return job


def _top_level_boxes(path: Path) -> list[bytes]:
    """The mp4's top-level box types, read straight from the bytes."""
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8])
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        assert size >= 8
        offset += size
    assert offset == len(data)
    return boxes


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _mp4s(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.suffix == ".mp4"} if directory.is_dir() else set()


def _assert_video(run_dir: Path, record: EpisodeRecord, width: int, height: int) -> None:
    for camera, name in record.video.items():
        assert name == f"videos/{record.job}/ep{record.episode}-{camera}.mp4"
        path = run_dir / name
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert (stream.codec_context.width, stream.codec_context.height) == (width, height)
            assert float(stream.average_rate) == 30.0
            frames = sum(1 for _ in container.decode(stream))
        assert frames == record.outcome["length"] + 1
        boxes = _top_level_boxes(path)
        assert boxes.index(b"moov") < boxes.index(b"mdat")  # faststart


# --------------------------------------------------------------------------- writer


def test_writer_streams_h264_yuv420p_faststart(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    writer = VideoWriter(path, width=48, height=32, fps=25)
    rng = np.random.default_rng(0)
    for shade in range(0, 250, 10):  # 25 frames, RGB at another size: scaled to 48x32
        image = np.full((60, 80, 3), shade, dtype=np.uint8)
        image[:, :8] = rng.integers(0, 255, (60, 8, 3), dtype=np.uint8)
        writer.write(image)
    assert not path.exists()  # not named before it is complete
    assert writer.close() == path
    assert not writer.partial.exists()
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (25, 48, 32)
    assert (info.codec, info.pix_fmt, info.fps, info.faststart) == ("h264", "yuv420p", 25.0, True)
    boxes = _top_level_boxes(path)
    assert boxes.index(b"moov") < boxes.index(b"mdat")
    frames = _decode(path)
    # frame 20 was a flat 200-grey on its right part: lossy but close.
    assert abs(float(frames[20][:, 16:].mean()) - 200) < 3


def test_writer_converts_rgba_and_gray_and_rejects_floats(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "b.mp4", 16, 16, 30)
    writer.write(np.full((16, 16, 4), 255, np.uint8))
    writer.write(np.zeros((16, 16), np.uint8))
    writer.close()
    frames = _decode(tmp_path / "b.mp4")
    assert len(frames) == 2 and frames[0].mean() > 250 and frames[1].mean() < 5
    bad = VideoWriter(tmp_path / "c.mp4", 16, 16, 30)
    with pytest.raises(ValueError, match="uint8"):
        bad.write(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"H x W x 3 \(RGB\) images, got shape \(16, 16, 2\)"):
        bad.write(np.zeros((16, 16, 2), np.uint8))
    bad.abort()
    assert not (tmp_path / "c.mp4").exists() and not bad.partial.exists()


def test_writer_abort_and_write_errors(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "d.mp4", 16, 16, 30)
    writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    missing = VideoWriter(tmp_path / "no" / "such" / "e.mp4", 16, 16, 30)
    with pytest.raises(RunWriteError, match=r"cannot write video .*e\.mp4"):
        for _ in range(50):
            missing.write(np.zeros((16, 16, 3), np.uint8))
        missing.close()
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "f.mp4", 15, 16, 30)


# --------------------------------------------------------------------------- config


def test_video_config_validation() -> None:
    def job(video: Any) -> dict[str, Any]:
        return {"name": "run", "jobs": [_cartpole(video=video)]}

    assert parse_run_config(job(True)).jobs[0].video == VideoConfig()
    assert VideoConfig().cameras == ["default"] and VideoConfig().size == (224, 224)
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


# --------------------------------------------------------------------------- runs


def test_every_sub_env_records_and_each_video_has_length_plus_one_frames(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, _cartpole())
    records = read_episodes(run_dir / "episodes.jsonl")
    assert sorted(r.episode for r in records) == list(range(8))
    assert {r.env_index for r in records} == {0, 1, 2}
    for record in records:
        assert set(record.video) == {"default"}
        _assert_video(run_dir, record, 64, 48)
    assert _mp4s(run_dir / "videos" / "cp") == {f"ep{k}-default.mp4" for k in range(8)}
    assert [p.name for p in (run_dir / "videos" / "cp").iterdir() if p.name.startswith(".")] == []


def test_first_records_exactly_the_first_episodes_whatever_num_envs(tmp_path: Path) -> None:
    for num_envs in (1, 4):
        run_dir = _run(
            tmp_path,
            _cartpole(num_envs=num_envs, video={"episodes": 3, "size": [32, 32]}),
            name=f"n{num_envs}",
        )
        records = read_episodes(run_dir / "episodes.jsonl")
        assert sorted(r.episode for r in records if r.video) == [0, 1, 2]
        assert _mp4s(run_dir / "videos" / "cp") == {"ep0-default.mp4", "ep1-default.mp4", "ep2-default.mp4"}
        for record in records:
            _assert_video(run_dir, record, 32, 32)


class _DiskWatcher:
    """Run observer: after each record, the job's video folder holds exactly
    the files that the records so far name (with one sub-env)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.named: set[str] = set()
        self.checks = 0

    def job_started(self, job: str, planned: int, done: int) -> None:
        pass

    def episode_finished(self, record: EpisodeRecord) -> None:
        self.named |= {Path(n).name for n in record.video.values()}
        assert _mp4s(self.directory) == self.named
        self.checks += 1

    def job_finished(self, job: str, status: str, error: str | None) -> None:
        pass


@pytest.mark.parametrize(
    ("select", "quota", "num_envs"), [("failures", 3, 1), ("failures", 3, 3), ("successes", 50, 2)]
)
def test_failures_and_successes_keep_at_most_the_quota(
    tmp_path: Path, select: str, quota: int, num_envs: int
) -> None:
    job = _cartpole(
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
    assert _mp4s(tmp_path / "run" / "videos" / "cp") == {f"ep{r.episode}-default.mp4" for r in kept}
    for record in kept:
        _assert_video(tmp_path / "run", record, 32, 32)
    if num_envs == 1:
        assert watcher.checks == 14
        # Every episode is recorded until the quota is full: the kept failures
        # are the first ones (in the order they finished).
        assert [r.episode for r in kept] == [r.episode for r in wanted][:quota]


def test_the_failure_quota_holds_across_process_executor_shards(tmp_path: Path) -> None:
    from trialrun.execution.process import ProcessExecutor

    job = _cartpole(
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
    assert _mp4s(tmp_path / "run" / "videos" / "cp") == {f"ep{r.episode}-default.mp4" for r in kept}
    for record in kept:
        _assert_video(tmp_path / "run", record, 32, 32)


def test_async_vectorization_records_in_the_workers(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, _cartpole(episodes=5, num_envs=2, vectorization="async"))
    records = read_episodes(run_dir / "episodes.jsonl")
    assert {r.env_index for r in records} == {0, 1}
    for record in records:
        assert set(record.video) == {"default"}
        _assert_video(run_dir, record, 64, 48)


def test_metaworld_two_cameras_upright(tmp_path: Path) -> None:
    job = {
        "name": "reach",
        "env": "metaworld/reach-v3",
        "policy": "metaworld-expert",
        "episodes": 2,
        "num_envs": 2,
        "max_steps": 12,
        "video": {"cameras": ["corner", "topview"], "select": "all", "size": [64, 64]},
    }
    run_dir = _run(tmp_path, job)
    records = read_episodes(run_dir / "episodes.jsonl")
    for record in records:
        assert set(record.video) == {"corner", "topview"}
        _assert_video(run_dir, record, 64, 64)
    first = _decode(run_dir / records[0].video["corner"])[0].astype(float)
    # Upright: the wooden table top is in the bottom half of the corner view,
    # the grey floor behind it in the top half (upside down it is the reverse).
    red, green, blue = first[:, :, 0], first[:, :, 1], first[:, :, 2]
    wood = (red > blue + 25) & (green > blue + 10) & (green > 0.45 * red)  # brown, not the red robot
    grey = (np.abs(red - green) < 12) & (np.abs(green - blue) < 12) & (red > 90)
    assert wood[32:].mean() > 0.15 and wood[:32].mean() < 0.05
    assert grey[:16].mean() > 0.6 and grey[48:].mean() < 0.4


def test_corner_frames_equal_an_upright_free_camera_at_the_same_pose() -> None:
    env = gym.make("metaworld/reach-v3")
    env.reset(seed=1)
    model, data = env.unwrapped.model, env.unwrapped.data
    source = FrameSource(env, ["corner", "topview"], (64, 64))
    ours = source.render(env)["corner"].astype(float)
    # A free camera never rolls: place one where the corner camera is, looking
    # the same way, with the same field of view.
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner")
    forward = -data.cam_xmat[cid].reshape(3, 3)[:, 2]
    free = mujoco.MjvCamera()
    free.type = mujoco.mjtCamera.mjCAMERA_FREE
    free.lookat[:] = data.cam_xpos[cid] + forward
    free.distance = 1.0
    free.azimuth = math.degrees(math.atan2(forward[1], forward[0]))
    free.elevation = math.degrees(math.asin(forward[2]))
    model.vis.global_.fovy = model.cam_fovy[cid]
    renderer = mujoco.Renderer(model, 64, 64)
    try:
        renderer.update_scene(data, camera=free)
        upright = renderer.render().astype(float)
    finally:
        renderer.close()
        source.close()
        env.close()
    assert np.abs(ours - upright).mean() < 1.0
    assert np.abs(ours[::-1] - upright).mean() > 20  # a mirror flip would not do
    assert np.abs(ours[::-1, ::-1] - upright).mean() > 20  # nor the raw, upside-down image


def test_camera_errors_name_the_cameras() -> None:
    env = gym.make("metaworld/reach-v3")
    try:
        assert camera_names(env)[:3] == ["default", "topview", "corner"]
        with pytest.raises(VideoError, match=r"has no camera 'cornr'; cameras: default, topview, corner, "):
            FrameSource(env, ["cornr"], (64, 64))
        with pytest.raises(VideoError, match="camera 'default' needs env 'metaworld/reach-v3' to render"):
            FrameSource(env, ["default"], (64, 64))
        check_video(env, VideoConfig(cameras=["corner", "topview"]), "jobs.0.video.cameras")
        with pytest.raises(ConfigError) as info:
            check_video(env, VideoConfig(cameras=["corner", "side"]), "jobs.0.video.cameras")
        assert info.value.field == "jobs.0.video.cameras"
        assert "unknown camera 'side'; this env's cameras: default, topview, corner, corner2" in str(
            info.value
        )
    finally:
        env.close()
    cartpole = gym.make("CartPole-v1", render_mode="rgb_array")
    with pytest.raises(VideoError, match=r"'CartPole-v1' has no MuJoCo model.*cameras: \[default\]"):
        FrameSource(cartpole, ["corner"], (64, 64))
    cartpole.close()


def test_a_bad_camera_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    config = parse_run_config({"name": "v", "jobs": [_cartpole(episodes=2, video={"cameras": ["corner"]})]})
    with pytest.raises(ConfigError) as info:
        run_evaluation(config, tmp_path / "run")
    assert (
        str(info.value)
        == "field 'jobs.0.video.cameras': unknown camera 'corner'; this env's cameras: default"
    )
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- pieces


def test_recorder_frames_are_reset_plus_each_step(tmp_path: Path) -> None:
    env = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=5)
    recorder = EpisodeRecorder()
    env.reset(seed=0)
    spec = {
        "dir": str(tmp_path),
        "prefix": "v/",
        "episode": 7,
        "cameras": ["default"],
        "size": [32, 32],
        "fps": 10,
    }
    recorder.begin(env, spec)
    for _ in range(5):
        env.step(0)
        recorder.capture(env)
    assert recorder.finish() == {"default": "v/ep7-default.mp4"}
    assert probe_video(tmp_path / "ep7-default.mp4").frames == 6
    assert probe_video(tmp_path / "ep7-default.mp4").fps == 10.0
    env.reset(seed=1)
    recorder.begin(env, {**spec, "episode": 8})
    recorder.close()  # an unfinished episode leaves nothing behind
    env.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep7-default.mp4"]


def test_selection_settings_claims_and_cleanup(tmp_path: Path) -> None:
    directory = tmp_path / "videos" / "j"
    first = VideoSelection(VideoConfig(episodes=2, cameras=["a", "b"]), directory, tmp_path)
    settings = first.settings(slot_for(0, "j", 1))
    assert settings == {
        "dir": str(directory.absolute()),
        "prefix": "videos/j/",
        "episode": 1,
        "cameras": ["a", "b"],
        "size": [224, 224],
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
    assert _mp4s(directory) == {"ep1-default.mp4", "ep2-default.mp4"}
    # Resuming episodes 2 and 5 (unrecorded): their files and claims go.
    (directory / ".ep5-default.mp4.part").write_bytes(b"x")
    failures.prepare([2, 5])
    assert sorted(p.name for p in directory.iterdir()) == [".claims", "ep1-default.mp4"]
    assert failures.settings(slot_for(0, "j", 9)) is not None


# --------------------------------------------------------------------------- resume


def test_a_killed_run_names_only_complete_videos_and_resume_rerecords(tmp_path: Path) -> None:
    doc = {
        "name": "killed",
        "seed": 4,
        "jobs": [
            _cartpole(
                name="long",
                episodes=8,
                num_envs=2,
                max_steps=100,
                policy="cartpole-balance",  # survives: 100-step episodes, long enough to kill mid-video
                video={"select": "all", "size": [32, 32]},
            )
        ],
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"
    directory = run_dir / "videos" / "long"
    command = [sys.executable, "-m", "trialrun.cli", "run", str(cfg), "--run-dir", str(run_dir), "-q"]
    child = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    episodes = run_dir / "episodes.jsonl"
    deadline = time.monotonic() + 120
    partial_seen = False
    while time.monotonic() < deadline and not partial_seen:
        if episodes.exists() and episodes.read_text().count("\n") >= 2 and directory.is_dir():
            partial_seen = any(p.name.endswith(".part") for p in directory.iterdir())
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert partial_seen  # killed while a video was being written
    before = read_episodes(episodes)
    assert 2 <= len(before) < 8
    for record in before:  # every video a record names is complete
        _assert_video(run_dir, record, 32, 32)

    resumed = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "run", "--resume", str(run_dir), "-q"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    records = read_episodes(episodes)
    assert sorted(r.episode for r in records) == list(range(8))
    for record in records:
        _assert_video(run_dir, record, 32, 32)
    # the partial files of the killed episodes are gone; each episode has one video
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"ep{k}-default.mp4" for k in range(8))
    assert read_manifest(run_dir).jobs["long"].status == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["overall"]["episodes"] == 8
