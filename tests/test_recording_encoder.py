"""The encoder process: its protocol, end-of-input cleanup and failures."""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from trialrun.recording import encoder as encoder_module
from trialrun.recording.encoder import EncoderError, EncoderProcess, encoder, shutdown_encoder
from trialrun.recording.video import probe_video


def _frames(count: int, height: int = 40, width: int = 60) -> list[np.ndarray]:
    return [np.full((height, width, 3), (10 * k) % 256, dtype=np.uint8) for k in range(count)]


def test_interleaved_files_in_one_process(tmp_path: Path) -> None:
    proc = EncoderProcess()
    try:
        a = proc.open(tmp_path / "a.mp4", tmp_path / ".a.part", 32, 24, Fraction(30))
        b = proc.open(tmp_path / "b.mp4", tmp_path / ".b.part", 16, 16, Fraction(15))
        for frame in _frames(12):
            proc.frame(a, frame)
            proc.frame(b, frame[:16, :16].copy())
        proc.frame(a, _frames(1)[0])
        assert proc.close(b) is None
        assert proc.close(a) is None
    finally:
        proc.shutdown()
    info_a, info_b = probe_video(tmp_path / "a.mp4"), probe_video(tmp_path / "b.mp4")
    assert (info_a.frames, info_a.width, info_a.height, info_a.fps) == (13, 32, 24, 30.0)
    assert (info_b.frames, info_b.width, info_b.height, info_b.fps) == (12, 16, 16, 15.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
    assert proc.proc.returncode == 0


def test_end_of_input_aborts_open_files(tmp_path: Path) -> None:
    """What happens when the rendering process dies: no partial file stays."""
    proc = EncoderProcess()
    stream = proc.open(tmp_path / "c.mp4", tmp_path / ".c.part", 32, 32, Fraction(30))
    for frame in _frames(60, 32, 32):  # enough for x264 to emit packets: the partial file exists
        proc.frame(stream, frame)
    deadline = time.monotonic() + 30
    while not (tmp_path / ".c.part").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / ".c.part").exists()
    proc.shutdown()
    assert proc.proc.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_errors_are_reported_not_raised_in_the_encoder(tmp_path: Path) -> None:
    proc = EncoderProcess()
    try:
        missing = tmp_path / "no" / "such" / "dir"
        stream = proc.open(missing / "d.mp4", missing / ".d.part", 16, 16, Fraction(30))
        proc.frame(stream, _frames(1, 16, 16)[0])
        error = proc.close(stream)
        assert error is not None and error.startswith(f"cannot write video {missing / 'd.mp4'}: ")
        # the encoder goes on with the next file
        ok = proc.open(tmp_path / "e.mp4", tmp_path / ".e.part", 16, 16, Fraction(30))
        proc.frame(ok, _frames(1, 16, 16)[0])
        assert proc.close(ok) is None
        assert proc.close(999) == "unknown stream 999"
    finally:
        proc.shutdown()
    assert probe_video(tmp_path / "e.mp4").frames == 1


def test_a_dead_encoder_raises_encoder_error(tmp_path: Path) -> None:
    proc = EncoderProcess()
    stream = proc.open(tmp_path / "f.mp4", tmp_path / ".f.part", 16, 16, Fraction(30))
    proc.proc.kill()
    proc.proc.wait()
    with pytest.raises(EncoderError, match="the video encoder process"):
        for frame in _frames(200, 16, 16):
            proc.frame(stream, frame)
        proc.close(stream)
    proc.shutdown()


def test_one_encoder_per_process_restarted_when_gone() -> None:
    first = encoder()
    assert encoder() is first and first.pid == os.getpid() and first.alive
    first.proc.kill()
    first.proc.wait()
    second = encoder()
    assert second is not first and second.alive
    shutdown_encoder()
    assert encoder_module._encoder is None and not second.alive
