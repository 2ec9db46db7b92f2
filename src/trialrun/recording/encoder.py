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

The wire protocol and the loop inside the encoder process are in
:mod:`trialrun.recording.encoder_server`; this module is the renderer's side.

Run as ``python -m trialrun.recording.encoder [RING_FD RING_BYTES ACK_FD]`` (by
:class:`EncoderProcess`): the entry point of the encoder process
(:func:`trialrun.recording.encoder_server.main`).
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
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

from trialrun.errors import EncoderError
from trialrun.recording.encoder_server import (
    ABORT,
    CLOSE,
    FRAME,
    HEADER,
    OFFSET,
    OPEN,
    PARENT_PID_ENV,
    RING_FRAME,
    main,
)

RING_BYTES = 8 << 20
RING_FRAMES = 64

PIPE_BYTES = 1 << 20

_F_SETPIPE_SZ = 1031  # Linux fcntl: grow a pipe's buffer


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
        env[PARENT_PID_ENV] = str(os.getpid())
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
    main(sys.argv[1:])
