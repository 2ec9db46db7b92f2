"""Rendering that works or says why: SDL's offscreen driver for pygame envs
(highway-env draws all-black frames under ``dummy``), a warning for a video
whose frames are all one colour, and videos that keep the env's aspect ratio
when no size is set."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from helpers import subprocess_env
from recording_helpers import decode_frames
from trialrun.recording.capture import EpisodeRecorder, native_size
from trialrun.recording.writer import VideoWriter, probe_video

pytest.importorskip("highway_env")

HIGHWAY = "highway_env:highway-v0"

_RENDER = """
import json, os, sys
import gymnasium as gym, numpy as np
from trialrun.recording.capture import headless_sdl
if sys.argv[1] == "trialrun":
    headless_sdl()
import pygame
out = {}
for env_id in ("highway_env:highway-v0", "CartPole-v1"):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    out[env_id] = {"colours": len(np.unique(frame.reshape(-1, 3), axis=0)), "sum": int(frame.astype(np.int64).sum())}
out["driver"] = pygame.display.get_driver()
print(json.dumps(out))
"""


def _render_in_child(mode: str, driver: str) -> dict[str, Any]:
    env = {**subprocess_env(), "SDL_VIDEODRIVER": driver}
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER, mode], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_sdl_drivers_as_measured() -> None:
    # The fact the driver choice rests on: under 'dummy', highway-env's frames are one colour (black).
    dummy = _render_in_child("plain", "dummy")
    offscreen = _render_in_child("plain", "offscreen")
    assert dummy["driver"] == "dummy" and dummy[HIGHWAY] == {"colours": 1, "sum": 0}
    assert offscreen["driver"] == "offscreen" and offscreen[HIGHWAY]["colours"] > 3
    assert dummy["CartPole-v1"] == offscreen["CartPole-v1"]  # CartPole draws the same under both


def test_trialrun_draws_with_offscreen_even_when_dummy_is_set() -> None:
    chosen = _render_in_child("trialrun", "dummy")
    assert chosen["driver"] == "offscreen"
    assert chosen[HIGHWAY]["colours"] > 3


def test_a_user_chosen_driver_other_than_dummy_is_kept() -> None:
    env = {**subprocess_env(), "SDL_VIDEODRIVER": "nosuchdriver"}
    code = "import os; from trialrun.recording.capture import headless_sdl; headless_sdl(); print(os.environ['SDL_VIDEODRIVER'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "nosuchdriver"


def test_a_highway_run_under_dummy_records_a_real_video(tmp_path: Path) -> None:
    run = {
        "name": "hw",
        "seed": 1,
        "jobs": [
            {
                "name": "drive",
                "env": HIGHWAY,
                "policy": "random",
                "episodes": 1,
                "max_steps": 3,
                "video": {"cameras": ["default"], "size": [192, 48]},
            }
        ],
    }
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(run))
    env = {**subprocess_env(), "SDL_VIDEODRIVER": "dummy"}
    command = [
        sys.executable,
        "-m",
        "trialrun.cli",
        "run",
        str(path),
        "--run-dir",
        str(tmp_path / "run"),
        "-q",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "one colour" not in proc.stderr
    frames = decode_frames(tmp_path / "run" / "videos" / "drive" / "ep0-default.mp4")
    assert len(frames) == 4
    assert all(len(np.unique(f.reshape(-1, 3), axis=0)) > 3 for f in frames)


class _BlackRender(gym.Wrapper[Any, Any, Any, Any]):
    """An env whose render() draws nothing: every frame black."""

    def render(self) -> Any:
        frame = self.env.render()
        return np.zeros_like(frame)


def _record(
    env: Any, episode: int, directory: Path, size: list[int] | None, steps: int = 6
) -> dict[str, str]:
    recorder = EpisodeRecorder()
    env.reset(seed=episode)
    settings = {
        "dir": str(directory),
        "prefix": "videos/j/",
        "episode": episode,
        "cameras": ["default"],
        "fps": 30,
    }
    recorder.begin(env, {**settings, "size": size})
    for _ in range(steps):
        env.step(env.action_space.sample())
        recorder.capture(env)
    names = recorder.finish()
    recorder.close()
    return names


def test_an_all_one_colour_video_is_warned_about_once_per_job_and_camera(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = _BlackRender(gym.make("CartPole-v1", render_mode="rgb_array"))
    with caplog.at_level(logging.WARNING, logger="trialrun.recording.capture"):
        for episode in range(3):
            _record(env, episode, tmp_path, [32, 32])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "ep0-default.mp4: every frame checked of camera 'default' is one colour (0, 0, 0) (7 frames); likely cause: "
        "the env's render() draws nothing in this setup (check its render settings)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trialrun.recording.capture"):
        _record(gym.make("CartPole-v1", render_mode="rgb_array"), 0, tmp_path / "ok", [32, 32])
    assert caplog.records == []


def test_the_warning_names_sdl_dummy_when_pygame_draws_with_it(tmp_path: Path) -> None:
    code = f"""
import logging, pygame, gymnasium as gym, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
pygame.display.init()  # the process already draws with 'dummy' (set before trialrun could choose)
from test_render_checks import _record
logging.basicConfig(level=logging.WARNING, format="%(message)s")
_record(gym.make("highway_env:highway-v0", render_mode="rgb_array"), 0, __import__("pathlib").Path({str(tmp_path)!r}), None, steps=2)
"""
    env = {**subprocess_env(), "SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "ep0-default.mp4: every frame checked of camera 'default' is one colour (0, 0, 0) (3 frames); likely cause: "
        "SDL's 'dummy' video driver, which draws some pygame envs' frames all black (highway-env): "
        "set SDL_VIDEODRIVER=offscreen"
    )


def test_the_one_colour_check_looks_at_frames_0_1_2_4_8() -> None:
    with tempfile.TemporaryDirectory() as directory:
        writer = VideoWriter(Path(directory) / "a.mp4", 16, 16, 30)
        for index in range(12):
            # frames 3, 5, 6, 7, 9, 10, 11 (never checked) are white
            checked = index in (0, 1, 2, 4, 8)
            writer.write(np.full((16, 16, 3), 0 if checked else 255, np.uint8))
        assert writer.uniform_colour == (0, 0, 0)
        writer.write(np.full((16, 16, 3), 9, np.uint8))  # frame 12: not checked
        writer.abort()
        second = VideoWriter(Path(directory) / "b.mp4", 16, 16, 30)
        frame = np.zeros((16, 16, 3), np.uint8)
        second.write(frame)
        frame[5, 3] = 1  # one pixel off the 1-in-64 grid
        second.write(frame)
        assert second.uniform_colour is None
        second.abort()


def test_videos_keep_the_envs_aspect_ratio_unless_a_size_is_set(tmp_path: Path) -> None:
    highway = gym.make(HIGHWAY, render_mode="rgb_array")
    cartpole = gym.make("CartPole-v1", render_mode="rgb_array")
    cases = [(highway, None, (448, 112)), (cartpole, None, (274, 182)), (cartpole, [64, 48], (64, 48))]
    for episode, (env, size, expected) in enumerate(cases):
        names = _record(env, episode, tmp_path, size, steps=2)
        info = probe_video(tmp_path / Path(names["default"]).name)
        assert (info.width, info.height, info.frames) == (*expected, 3)
    frames = decode_frames(tmp_path / "ep0-default.mp4")
    assert all(len(np.unique(f.reshape(-1, 3), axis=0)) > 3 for f in frames)  # the road is drawn
    assert native_size(4000, 6000) == (274, 182) and native_size(100, 100) == (100, 100)
