"""The video encoder process: H.264 encoding next to, not inside, the rollout.

Why a process and not a thread: a renderer that holds the GIL while it draws
(pygame for classic-control envs, numpy copies) leaves an encoder thread
waiting for the GIL after each of its many short C calls, so rendering and
encoding end up taking turns. A separate process encodes on another core
whatever the renderer does. Each process that renders (the rollout's, an async
vector-env worker, an executor worker) starts one encoder process on first
use and sends it every frame of every file it writes.

Frames travel through a ring of shared memory (an anonymous ``memfd`` both
processes map, Linux): the renderer copies a frame into the ring (~10 us for a
600x400 image, where writing it into a pipe cost ~130 us, 15% of the time
pygame takes to draw it) and sends only its offset. The encoder acknowledges
each ring frame on a second pipe once it has copied it out; the ring is the
bounded queue (at most ``RING_BYTES`` and ``RING_FRAMES`` frames in flight; a
renderer faster than the encoder waits). Without ``memfd`` (not Linux), or for a frame larger than the
ring, the pixels go through the pipe itself.

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

Run as ``python -m trialrun.recording.encoder [RING_FD RING_BYTES ACK_FD]`` (by
:class:`EncoderProcess`).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import json
import mmap
import os
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

from trialrun.errors import EncoderError

HEADER = struct.Struct("<BIIIII")
OFFSET = struct.Struct("<Q")
OPEN, FRAME, CLOSE, ABORT, RING_FRAME = 1, 2, 3, 4, 5
RING_BYTES = 8 << 20
RING_FRAMES = 64

# x264 ``veryfast``: ~0.2 ms per 224x224 frame on one core; CRF 23 is x264's
# default quality. Scaling (only for frames rendered at another size, e.g.
# pygame's 600x400 CartPole) uses swscale's area filter, the one for shrinking.
CODEC = "libx264"
CODEC_OPTIONS = {"preset": "veryfast", "crf": "23"}
SCALING = "AREA"
PIPE_BYTES = 1 << 20

_F_SETPIPE_SZ = 1031  # Linux fcntl: grow a pipe's buffer


# --------------------------------------------------------------------------- encoder side


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


# --------------------------------------------------------------------------- renderer side


class EncoderProcess:
    """The encoder process of this process (see :func:`encoder`).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> enc = EncoderProcess()
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> sid = enc.open(d / "a.mp4", d / ".a.part", 16, 16, Fraction(30))
        >>> enc.frame(sid, np.zeros((16, 16, 3), np.uint8))
        >>> enc.close(sid) is None, (d / "a.mp4").exists()
        (True, True)
        >>> enc.shutdown()
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._next_id = 0
        self._lock = threading.Lock()
        self._ring = _FrameRing.create(RING_BYTES)
        # The child imports trialrun from where this process did, whatever its sys.path.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        ring_args = self._ring.child_args() if self._ring is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trialrun.recording.encoder", *ring_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            pass_fds=self._ring.child_fds() if self._ring is not None else (),
        )
        if self._ring is not None:
            self._ring.started(self.proc)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._stdout = self.proc.stdout
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._stdin.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)

    def open(self, path: Path, partial: Path, width: int, height: int, fps: Fraction) -> int:
        """Start a file; returns its stream id."""
        with self._lock:
            self._next_id += 1
            stream_id = self._next_id
        spec = {
            "path": str(path),
            "partial": str(partial),
            "width": width,
            "height": height,
            "fps_num": fps.numerator,
            "fps_den": fps.denominator,
        }
        self._send(OPEN, stream_id, payload=json.dumps(spec).encode())
        return stream_id

    def frame(self, stream_id: int, pixels: Any) -> None:
        """Send one contiguous ``H x W x 3`` uint8 image (through the ring when it fits)."""
        height, width, channels = pixels.shape
        data = memoryview(pixels).cast("B")
        with self._lock:
            ring = self._ring
            if ring is not None and len(data) <= ring.capacity:
                offset = ring.put(data)
                self._send_locked(RING_FRAME, stream_id, height, width, channels, OFFSET.pack(offset))
            else:
                self._send_locked(FRAME, stream_id, height, width, channels, data)

    def close(self, stream_id: int) -> str | None:
        """Finish the file; returns None, or the encoder's error message."""
        return self._request(CLOSE, stream_id)

    def abort(self, stream_id: int) -> None:
        """Drop the file (the encoder deletes its partial file)."""
        self._request(ABORT, stream_id)

    def _request(self, kind: int, stream_id: int) -> str | None:
        with self._lock:
            self._send_locked(kind, stream_id, 0, 0, 0, b"")
            line = self._stdout.readline()
        if not line:
            raise EncoderError(f"the video encoder process exited (code {self.proc.poll()})")
        answer = json.loads(line)
        if answer.get("id") != stream_id:
            raise EncoderError(f"the video encoder answered for stream {answer.get('id')}, not {stream_id}")
        return None if answer.get("ok") else str(answer.get("error"))

    def _send(
        self, kind: int, stream_id: int, a: int = 0, b: int = 0, c: int = 0, payload: Any = b""
    ) -> None:
        with self._lock:
            self._send_locked(kind, stream_id, a, b, c, payload)

    def _send_locked(self, kind: int, stream_id: int, a: int, b: int, c: int, payload: Any) -> None:
        try:
            header = HEADER.pack(kind, stream_id, a, b, c, len(payload))
            if len(payload) <= 4096:  # header and small payload in one write
                payload = header + bytes(payload)
            else:
                self._stdin.write(header)
            view = memoryview(payload)
            while len(view):
                written = self._stdin.write(view)
                view = view[written or 0 :]
        except (BrokenPipeError, ValueError, OSError) as exc:
            code = self.proc.poll()
            raise EncoderError(f"the video encoder process stopped (code {code}): {exc}") from None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def shutdown(self) -> None:
        """End of input: the encoder aborts what is still open and exits."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._stdout.close()
        if self._ring is not None:
            self._ring.close()


class _FrameRing:
    """The renderer's side of the shared frame ring (see the module docstring).

    Frames are placed one after another and wrap to the start when the next
    one does not fit before the end; ``pending`` holds the byte ranges the
    encoder has not acknowledged yet, oldest first (it acknowledges in order).
    """

    def __init__(self, fd: int, capacity: int) -> None:
        self.fd = fd
        self.capacity = capacity
        self.map = mmap.mmap(fd, capacity)
        self.ack_read, self.ack_write = os.pipe()
        os.set_blocking(self.ack_read, False)
        self.head = 0
        self.pending: collections.deque[tuple[int, int]] = collections.deque()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, capacity: int) -> _FrameRing | None:
        """A ring of ``capacity`` bytes, or None where ``memfd_create`` is missing."""
        if not hasattr(os, "memfd_create"):
            return None
        fd = os.memfd_create("trialrun-frames")
        try:
            os.ftruncate(fd, capacity)  # pages are allocated as frames first touch them
            return cls(fd, capacity)
        except OSError:
            os.close(fd)
            return None

    def child_args(self) -> list[str]:
        return [str(self.fd), str(self.capacity), str(self.ack_write)]

    def child_fds(self) -> tuple[int, int]:
        return (self.fd, self.ack_write)

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """The encoder holds the ack pipe's write end now: when it dies, reads see EOF."""
        self.proc = proc
        os.close(self.ack_write)

    def put(self, data: memoryview) -> int:
        """Copy ``data`` into the ring and return its offset; waits while the
        encoder still holds the bytes it would overwrite."""
        size = len(data)
        start = self.head if self.head + size <= self.capacity else 0
        self._collect_acks(block=False)
        # At most RING_FRAMES in flight keeps this overlap scan short for small frames.
        while len(self.pending) >= RING_FRAMES or any(
            lo < start + size and start < hi for lo, hi in self.pending
        ):
            self._collect_acks(block=True)
        self.map[start : start + size] = data
        self.head = start + size
        self.pending.append((start, start + size))
        return start

    def _collect_acks(self, block: bool) -> None:
        if block:  # poll, not select: fd numbers can exceed select's 1024 in busy processes
            waiter = select.poll()
            waiter.register(self.ack_read, select.POLLIN)
            waiter.poll()
        try:
            acks = os.read(self.ack_read, 4096)
        except BlockingIOError:
            return
        if not acks:
            code = self.proc.poll() if self.proc is not None else None
            raise EncoderError(f"the video encoder process stopped (code {code})")
        for _ in range(len(acks)):
            self.pending.popleft()

    def close(self) -> None:
        with contextlib.suppress(OSError, BufferError):
            self.map.close()
        for fd in (self.fd, self.ack_read):
            with contextlib.suppress(OSError):
                os.close(fd)


_encoder: EncoderProcess | None = None
_encoder_lock = threading.Lock()


def encoder() -> EncoderProcess:
    """This process's encoder process, started on first use (a forked child
    starts its own)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None or _encoder.pid != os.getpid() or not _encoder.alive:
            _encoder = EncoderProcess()
        return _encoder


def shutdown_encoder() -> None:
    """Stop this process's encoder process (it restarts on next use)."""
    global _encoder
    with _encoder_lock:
        if _encoder is not None and _encoder.pid == os.getpid():
            _encoder.shutdown()
        _encoder = None


atexit.register(shutdown_encoder)


if __name__ == "__main__":
    import signal

    # Ctrl-C goes to the whole process group: the renderer decides what happens,
    # and its exit (end of input) stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Encoding is background work: when cores are short, the rollout goes first
    # (a full ring makes it wait for the encoder anyway).
    with contextlib.suppress(OSError):
        os.nice(10)
    ring_map = None
    ack = None
    if len(sys.argv) == 4:
        ring_fd, ring_bytes, ack = (int(arg) for arg in sys.argv[1:])
        ring_map = mmap.mmap(ring_fd, ring_bytes)
    serve(sys.stdin.buffer.raw, sys.stdout.buffer, ring_map, ack)  # type: ignore[union-attr]
