"""Shared checks of the per-episode video tests: real runs, real mp4 files
decoded with PyAV (used by ``test_recording_*.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles.schema import EpisodeRecord


def run_videos(tmp_path: Path, *jobs: dict[str, Any], seed: int = 5, name: str = "run") -> Path:
    config = parse_run_config({"name": "videos", "seed": seed, "jobs": list(jobs)})
    run_dir = tmp_path / name
    result = run_evaluation(config, run_dir)
    assert result.exit_code == 0, result.errors
    return run_dir


def cartpole_job(**overrides: Any) -> dict[str, Any]:
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


def top_level_boxes(path: Path) -> list[bytes]:
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


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def mp4_names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.suffix == ".mp4"} if directory.is_dir() else set()


def assert_video(run_dir: Path, record: EpisodeRecord, width: int, height: int) -> None:
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
        boxes = top_level_boxes(path)
        assert boxes.index(b"moov") < boxes.index(b"mdat")  # faststart
