"""Inside the video encoder process: the wire protocol and the loop that serves it.

The renderer's side (:class:`~trialrun.recording.encoder.EncoderProcess`)
starts ``python -m trialrun.recording.encoder [RING_FD RING_BYTES ACK_FD]``,
whose entry point is :func:`main` here. This module imports nothing of the
renderer's side (nor any heavy package before the first file is opened), so the
child stays light.

Protocol (renderer -> encoder, on the encoder's stdin): a fixed header
``kind, stream id, a, b, c, payload length`` then the payload.

- ``OPEN``: payload is JSON ``{"path", "partial", "width", "height", "fps_num", "fps_den"}``;
- ``FRAME``: ``a, b, c`` = height, width, channels (3); payload = RGB ``uint8`` pixels;
- ``RING_FRAME``: as ``FRAME``, but the payload is the pixels' byte offset in
  the ring (``<Q``); the encoder answers with one byte on the ack pipe;
- ``CLOSE``: finish the file (``movflags=faststart``), rename ``partial`` to ``path``;
- ``ABORT``: stop, delete ``partial``.

``CLOSE`` and ``ABORT`` are answered with one JSON line on stdout:
``{"id": ..., "ok": true}`` or ``{"id": ..., "ok": false, "error": "..."}``.
At end of input (the renderer exited or was killed) every open file is
aborted: no half-written file is left under a final name.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

from trialrun.boundary.parent import die_with_parent

PARENT_PID_ENV = "TRIALRUN_ENCODER_PARENT"
"""The renderer's pid, passed to the encoder (which exits when that process dies)."""

HEADER = struct.Struct("<BIIIII")
OFFSET = struct.Struct("<Q")
OPEN, FRAME, CLOSE, ABORT, RING_FRAME = 1, 2, 3, 4, 5

# x264 ``veryfast``: ~0.2 ms per 224x224 frame on one core; CRF 23 is x264's
# default quality. Scaling (only for frames rendered at another size, e.g.
# pygame's 600x400 CartPole) uses swscale's area filter, the one for shrinking.
CODEC = "libx264"
CODEC_OPTIONS = {"preset": "veryfast", "crf": "23"}
SCALING = "AREA"


class _Output:
    """One file being encoded (inside the encoder process)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import av

        self.path = Path(spec["path"])
        self.partial = Path(spec["partial"])
        self.width = int(spec["width"])
        self.height = int(spec["height"])
        rate = Fraction(int(spec["fps_num"]), int(spec["fps_den"]))
        self.index = 0
        self.error: str | None = None
        self.container: Any = None
        try:
            options = {"movflags": "+faststart"}
            self.container = av.open(str(self.partial), mode="w", format="mp4", options=options)
            stream = self.container.add_stream(CODEC, rate=rate, options=dict(CODEC_OPTIONS))
            if not isinstance(stream, av.VideoStream):
                raise RuntimeError(f"{CODEC} did not give a video stream")
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / rate
            stream.codec_context.thread_count = 1
            self.stream = stream
            self.time_base = 1 / rate
            # One scaler per file: a frame's own reformat() sets up swscale
            # (filter tables included) again for every frame.
            self.reformatter = av.video.reformatter.VideoReformatter()
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"cannot write video {self.path}: {type(exc).__name__}: {exc}"
        self._discard()

    def frame(self, pixels: Any, done_reading: Callable[[], None] | None = None) -> None:
        """Encode one frame; ``done_reading`` is called once, as soon as
        ``pixels`` are no longer needed (a ring slot is free before the encoding)."""
        converted = self._convert(pixels)
        if done_reading is not None:
            done_reading()
        if converted is None:
            return
        try:
            converted.pts = self.index
            converted.time_base = self.time_base
            self.index += 1
            for packet in self.stream.encode(converted):
                self.container.mux(packet)
        except Exception as exc:
            self.fail(exc)

    def _convert(self, pixels: Any) -> Any:
        """``pixels`` as a ``yuv420p`` frame of the file's size, or None after a failure."""
        if self.error is not None:
            return None
        import av

        try:
            # Wrapping the pixels instead of copying them (from_ndarray copies
            # line by line) makes a 600x400 frame ~3x cheaper to convert.
            wrap = getattr(av.VideoFrame, "from_numpy_buffer", av.VideoFrame.from_ndarray)
            return self.reformatter.reformat(
                wrap(pixels, format="rgb24"),
                width=self.width,
                height=self.height,
                format="yuv420p",
                interpolation=SCALING,
            )
        except Exception as exc:
            self.fail(exc)
            return None

    def close(self) -> str | None:
        if self.error is not None:
            return self.error
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
            self.container = None
            os.replace(self.partial, self.path)
        except Exception as exc:
            self.fail(exc)
        return self.error

    def _discard(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
        with contextlib.suppress(OSError):
            self.partial.unlink()

    def abort(self) -> None:
        self._discard()


def _read_exact(stream: BinaryIO, view: memoryview) -> bool:
    """Fill ``view``; False at end of input."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return False
        got += n
    return True


def serve(stdin: BinaryIO, stdout: BinaryIO, ring: Any = None, ack_fd: int | None = None) -> None:
    """The encoder loop (see the module docstring for the protocol).

    ``ring`` is the shared frame ring (a buffer) and ``ack_fd`` the pipe that
    acknowledges each ring frame, when the renderer set them up."""
    import numpy as np

    ring_pixels = np.frombuffer(ring, dtype=np.uint8) if ring is not None else None
    ack = None
    if ack_fd is not None:

        def ack(fd: int = ack_fd) -> None:
            os.write(fd, b"\x01")

    outputs: dict[int, _Output] = {}
    header = bytearray(HEADER.size)
    buffer = bytearray(1 << 20)

    def reply(stream_id: int, error: str | None) -> None:
        answer: dict[str, Any] = {"id": stream_id, "ok": error is None}
        if error is not None:
            answer["error"] = error
        stdout.write((json.dumps(answer) + "\n").encode())
        stdout.flush()

    try:
        while _read_exact(stdin, memoryview(header)):
            kind, stream_id, a, b, c, length = HEADER.unpack(header)
            if length > len(buffer):
                buffer = bytearray(length)
            payload = memoryview(buffer)[:length]
            if not _read_exact(stdin, payload):
                break
            if kind == OPEN:
                outputs[stream_id] = _Output(json.loads(bytes(payload)))
            elif kind == FRAME:
                output = outputs.get(stream_id)
                if output is not None:
                    output.frame(np.frombuffer(payload, dtype=np.uint8).reshape(a, b, c))
            elif kind == RING_FRAME:
                if ring_pixels is None or ack is None:
                    raise RuntimeError("a ring frame, but no ring was set up")
                (offset,) = OFFSET.unpack(payload)
                output = outputs.get(stream_id)
                if output is not None:
                    output.frame(ring_pixels[offset : offset + a * b * c].reshape(a, b, c), ack)
                else:
                    ack()  # an unknown stream: its slot is free all the same
            elif kind == CLOSE:
                output = outputs.pop(stream_id, None)
                reply(stream_id, output.close() if output is not None else f"unknown stream {stream_id}")
            elif kind == ABORT:
                output = outputs.pop(stream_id, None)
                if output is not None:
                    output.abort()
                reply(stream_id, None)
    finally:
        for output in outputs.values():
            output.abort()


def main(argv: Sequence[str]) -> None:
    """The encoder process: ``argv`` is ``[]`` (frames through the pipe only) or
    ``[RING_FD, RING_BYTES, ACK_FD]``; serves stdin until end of input."""
    import signal

    # Ctrl-C goes to the whole process group: the renderer decides what happens,
    # and its exit (end of input) stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # End of input stops this process when the renderer exits; a renderer killed
    # while another process still holds the pipe open must not leave it behind.
    die_with_parent(int(os.environ.get(PARENT_PID_ENV, os.getppid())))
    # Encoding is background work: when cores are short, the rollout goes first
    # (a full ring makes it wait for the encoder anyway).
    with contextlib.suppress(OSError):
        os.nice(10)
    ring_map = None
    ack = None
    if len(argv) == 3:
        ring_fd, ring_bytes, ack = (int(arg) for arg in argv)
        ring_map = mmap.mmap(ring_fd, ring_bytes)
    serve(sys.stdin.buffer.raw, sys.stdout.buffer, ring_map, ack)  # type: ignore[union-attr]
