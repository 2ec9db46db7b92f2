"""The video encoder process: H.264 encoding next to, not inside, the rollout.

Why a process and not a thread: a renderer that holds the GIL while it draws
(pygame for classic-control envs, numpy copies) leaves an encoder thread
waiting for the GIL after each of its many short C calls, so rendering and
encoding end up taking turns. A separate process encodes on another core
whatever the renderer does. Each process that renders (the rollout's, an async
vector-env worker, an executor worker) starts one encoder process on first
use and sends it every frame of every file it writes. The pipe between them is
the bounded queue: at most about a megabyte of frames is in flight; a renderer
faster than the encoder waits for it.

Protocol (renderer -> encoder, on the encoder's stdin): a fixed header
``kind, stream id, a, b, c, payload length`` then the payload.

- ``OPEN``: payload is JSON ``{"path", "partial", "width", "height", "fps_num", "fps_den"}``;
- ``FRAME``: ``a, b, c`` = height, width, channels (3); payload = RGB ``uint8`` pixels;
- ``CLOSE``: finish the file (``movflags=faststart``), rename ``partial`` to ``path``;
- ``ABORT``: stop, delete ``partial``.

``CLOSE`` and ``ABORT`` are answered with one JSON line on stdout:
``{"id": ..., "ok": true}`` or ``{"id": ..., "ok": false, "error": "..."}``.
At end of input (the renderer exited or was killed) every open file is
aborted: no half-written file is left under a final name.

Run as ``python -m trialrun.recording.encoder`` (by :class:`EncoderProcess`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import struct
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

HEADER = struct.Struct("<BIIIII")
OPEN, FRAME, CLOSE, ABORT = 1, 2, 3, 4

# x264 ``veryfast``: ~0.2 ms per 224x224 frame on one core; CRF 23 is x264's
# default quality. Scaling (only for frames rendered at another size, e.g.
# pygame's 600x400 CartPole) uses swscale's area filter, the one for shrinking.
CODEC = "libx264"
CODEC_OPTIONS = {"preset": "veryfast", "crf": "23"}
SCALING = "AREA"
PIPE_BYTES = 1 << 20

_F_SETPIPE_SZ = 1031  # Linux fcntl: grow a pipe's buffer


class EncoderError(Exception):
    """The encoder process failed or went away."""


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

    def frame(self, pixels: Any) -> None:
        if self.error is not None:
            return
        import av

        try:
            frame = self.reformatter.reformat(
                av.VideoFrame.from_ndarray(pixels, format="rgb24"),
                width=self.width,
                height=self.height,
                format="yuv420p",
                interpolation=SCALING,
            )
            frame.pts = self.index
            frame.time_base = self.time_base
            self.index += 1
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except Exception as exc:
            self.fail(exc)

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


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The encoder loop (see the module docstring for the protocol)."""
    import numpy as np

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
        # The child imports trialrun from where this process did, whatever its sys.path.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trialrun.recording.encoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
        )
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
        """Send one contiguous ``H x W x 3`` uint8 image."""
        height, width, channels = pixels.shape
        self._send(FRAME, stream_id, height, width, channels, memoryview(pixels).cast("B"))

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
            self._stdin.write(HEADER.pack(kind, stream_id, a, b, c, len(payload)))
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
    serve(sys.stdin.buffer.raw, sys.stdout.buffer)  # type: ignore[union-attr]
