"""trialrun.recording.capture: rendering cameras and recording episodes in the sub-envs."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import yaml

import trialrun.envs  # noqa: F401  (registers metaworld/<task>)
from helpers import subprocess_env
from recording_helpers import assert_video, cartpole_job, decode_frames, mp4_names, run_videos
from trialrun.config import VideoConfig, parse_run_config
from trialrun.errors import ConfigError, VideoError
from trialrun.execution.runner import run_evaluation
from trialrun.recording.capture import EpisodeRecorder, FrameSource, camera_names, check_video
from trialrun.recording.writer import probe_video
from trialrun.runfiles import read_episodes, read_manifest


def test_every_sub_env_records_and_each_video_has_length_plus_one_frames(tmp_path: Path) -> None:
    run_dir = run_videos(tmp_path, cartpole_job())
    records = read_episodes(run_dir / "episodes.jsonl")
    assert sorted(r.episode for r in records) == list(range(8))
    assert {r.env_index for r in records} == {0, 1, 2}
    for record in records:
        assert set(record.video) == {"default"}
        assert_video(run_dir, record, 64, 48)
    assert mp4_names(run_dir / "videos" / "cp") == {f"ep{k}-default.mp4" for k in range(8)}
    assert [p.name for p in (run_dir / "videos" / "cp").iterdir() if p.name.startswith(".")] == []


def test_async_vectorization_records_in_the_workers(tmp_path: Path) -> None:
    run_dir = run_videos(tmp_path, cartpole_job(episodes=5, num_envs=2, vectorization="async"))
    records = read_episodes(run_dir / "episodes.jsonl")
    assert {r.env_index for r in records} == {0, 1}
    for record in records:
        assert set(record.video) == {"default"}
        assert_video(run_dir, record, 64, 48)


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
    run_dir = run_videos(tmp_path, job)
    records = read_episodes(run_dir / "episodes.jsonl")
    for record in records:
        assert set(record.video) == {"corner", "topview"}
        assert_video(run_dir, record, 64, 64)
    first = decode_frames(run_dir / records[0].video["corner"])[0].astype(float)
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
    config = parse_run_config(
        {"name": "v", "jobs": [cartpole_job(episodes=2, video={"cameras": ["corner"]})]}
    )
    with pytest.raises(ConfigError) as info:
        run_evaluation(config, tmp_path / "run")
    assert (
        str(info.value)
        == "field 'jobs.0.video.cameras': unknown camera 'corner'; this env's cameras: default"
    )
    assert not (tmp_path / "run").exists()


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


def test_a_killed_run_names_only_complete_videos_and_resume_rerecords(tmp_path: Path) -> None:
    doc = {
        "name": "killed",
        "seed": 4,
        "jobs": [
            cartpole_job(
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
        assert_video(run_dir, record, 32, 32)

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
        assert_video(run_dir, record, 32, 32)
    # the partial files of the killed episodes are gone; each episode has one video
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"ep{k}-default.mp4" for k in range(8))
    assert read_manifest(run_dir).jobs["long"].status == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["overall"]["episodes"] == 8
