"""trialrun.recording.writer: one H.264 mp4, encoded in the background, and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recording_helpers import decode_frames, top_level_boxes
from trialrun.recording.writer import VideoWriter, probe_video
from trialrun.runfiles import RunWriteError


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
    boxes = top_level_boxes(path)
    assert boxes.index(b"moov") < boxes.index(b"mdat")
    frames = decode_frames(path)
    # frame 20 was a flat 200-grey on its right part: lossy but close.
    assert abs(float(frames[20][:, 16:].mean()) - 200) < 3


def test_writer_converts_rgba_and_gray_and_rejects_floats(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "b.mp4", 16, 16, 30)
    writer.write(np.full((16, 16, 4), 255, np.uint8))
    writer.write(np.zeros((16, 16), np.uint8))
    writer.close()
    frames = decode_frames(tmp_path / "b.mp4")
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
