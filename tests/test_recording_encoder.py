"""The encoder process: its protocol, end-of-input cleanup and failures."""

from __future__ import annotations

import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from trialrun.recording import encoder as encoder_module
from trialrun.recording.encoder import EncoderError, EncoderProcess, encoder, shutdown_encoder
from trialrun.recording.writer import probe_video


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


def _decoded_levels(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        return [round(float(frame.to_ndarray(format="rgb24").mean())) for frame in container.decode(video=0)]


def _levels(count: int) -> list[int]:
    return [(37 * k) % 200 + 20 for k in range(count)]


@pytest.mark.parametrize("ring_bytes", [10_000, 1 << 20])
def test_frames_through_a_small_ring_arrive_intact_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ring_bytes: int
) -> None:
    # 40x60 frames are 7200 bytes: a 10,000-byte ring holds one at a time, so
    # every frame wraps and must wait for the encoder to free the previous one.
    monkeypatch.setattr(encoder_module, "RING_BYTES", ring_bytes)
    proc = EncoderProcess()
    try:
        assert proc._ring is not None and proc._ring.capacity == ring_bytes
        stream = proc.open(tmp_path / "g.mp4", tmp_path / ".g.part", 60, 40, Fraction(30))
        for level in _levels(30):
            proc.frame(stream, np.full((40, 60, 3), level, dtype=np.uint8))
        # larger than the small ring: goes through the pipe, scaled to 60x40
        proc.frame(stream, np.full((80, 120, 3), 99, dtype=np.uint8))
        assert proc.close(stream) is None
    finally:
        proc.shutdown()
    decoded = _decoded_levels(tmp_path / "g.mp4")
    assert len(decoded) == 31
    assert all(abs(got - want) <= 3 for got, want in zip(decoded, [*_levels(30), 99], strict=True))


def test_without_memfd_frames_go_through_the_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module._FrameRing, "create", classmethod(lambda cls, capacity: None))
    proc = EncoderProcess()
    try:
        assert proc._ring is None
        stream = proc.open(tmp_path / "h.mp4", tmp_path / ".h.part", 60, 40, Fraction(30))
        for level in _levels(12):
            proc.frame(stream, np.full((40, 60, 3), level, dtype=np.uint8))
        assert proc.close(stream) is None
    finally:
        proc.shutdown()
    decoded = _decoded_levels(tmp_path / "h.mp4")
    assert len(decoded) == 12 and all(abs(g - w) <= 3 for g, w in zip(decoded, _levels(12), strict=True))


def test_a_renderer_waiting_for_ring_space_sees_the_encoder_die(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoder_module, "RING_BYTES", 10_000)
    proc = EncoderProcess()
    stream = proc.open(tmp_path / "i.mp4", tmp_path / ".i.part", 60, 40, Fraction(30))
    proc.proc.send_signal(signal.SIGSTOP)  # it stops acknowledging
    proc.frame(stream, np.zeros((40, 60, 3), dtype=np.uint8))  # fits: no wait
    proc.proc.kill()
    proc.proc.wait()
    with pytest.raises(EncoderError, match=r"the video encoder process stopped \(code -9\)"):
        proc.frame(stream, np.zeros((40, 60, 3), dtype=np.uint8))  # must wait for the first frame's slot
    proc.shutdown()


def test_at_most_ring_frames_are_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module, "RING_FRAMES", 4)
    proc = EncoderProcess()
    try:
        assert proc._ring is not None
        stream = proc.open(tmp_path / "j.mp4", tmp_path / ".j.part", 16, 16, Fraction(30))
        for level in _levels(150):
            proc.frame(stream, np.full((16, 16, 3), level, dtype=np.uint8))
            assert len(proc._ring.pending) <= 4
        assert proc.close(stream) is None
    finally:
        proc.shutdown()
    decoded = _decoded_levels(tmp_path / "j.mp4")
    assert len(decoded) == 150 and all(abs(g - w) <= 3 for g, w in zip(decoded, _levels(150), strict=True))
