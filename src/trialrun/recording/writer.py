"""Encoding one video file, and reading one back.

One mp4 per (job, episode, camera), ``videos/<job>/ep<k>-<camera>.mp4`` in the
run directory (the names are :mod:`trialrun.runfiles.names`'): H.264, yuv420p,
``movflags=faststart`` (the index comes first, so a browser starts playing
before the whole file has arrived), written with PyAV.

:class:`VideoWriter` encodes one file. Frames go through a bounded ring of
shared memory to an encoder process (:mod:`trialrun.recording.encoder`, one
per rendering process), so encoding runs on another core while the simulation
goes on, and at most the ring's 8 MB of frames is in flight, whatever the
episode length. The file is written under a hidden ``.part`` name and renamed
when complete, so a killed run never leaves a half-written video under a final
name (and the encoder deletes its partial files when the renderer dies).
:func:`probe_video` reads a finished file back (frames, size, codec, pixel
format, frame rate, faststart).

A writer also notices a video whose frames are all one colour (a renderer
that draws nothing: pygame-ce under SDL's dummy driver, a camera inside a
body), cheaply: it looks at frames 0, 1, 2, 4, 8, ... only (about
``log2(length)`` frames), and in each first at a 1-in-64 grid of pixels,
reading the whole frame only when that grid is one colour. The recorder
warns about it (:class:`~trialrun.recording.capture.EpisodeRecorder`).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ep0-default.mp4"
    >>> writer = VideoWriter(path, width=32, height=32, fps=10)
    >>> for shade in range(0, 250, 50):
    ...     writer.write(np.full((32, 32, 3), shade, dtype=np.uint8))
    >>> writer.close() == path
    True
    >>> info = probe_video(path)
    >>> info.frames, info.codec, info.pix_fmt, info.faststart
    (5, 'h264', 'yuv420p', True)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from trialrun.errors import EncoderError, RunWriteError
from trialrun.recording.encoder import encoder
from trialrun.runfiles.names import partial_file

logger = logging.getLogger(__name__)


class VideoWriter:
    """Encodes frames to one H.264 mp4 in this process's encoder process.

    :meth:`write` sends an RGB ``uint8`` image (``H x W x 3``; RGBA and
    grayscale are converted, other sizes are scaled to ``width x height``) to
    the encoder process (:mod:`trialrun.recording.encoder`) and returns once
    the frame is in the encoder's ring: encoding runs on another core, and at
    most the ring's 8 MB of frames is in flight (a renderer faster than the
    encoder waits). :meth:`close` waits for the encoder to finish the file, which it
    writes under a hidden ``.part`` name and renames to ``path`` when complete;
    :meth:`abort` discards it. Encoder failures (disk full...) raise
    :class:`~trialrun.runfiles.RunWriteError`.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> w = VideoWriter(pathlib.Path(tempfile.mkdtemp()) / "a.mp4", 16, 16, 30)
        >>> w.write(np.zeros((16, 16, 3), np.uint8)); w.close().name
        'a.mp4'
    """

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even sides, got {width}x{height}")
        self.path = Path(path)
        self.partial = partial_file(self.path)
        self.width = width
        self.height = height
        self.rate = Fraction(fps).limit_denominator(100_000)
        self.frames = 0
        self._colour: tuple[int, ...] | bool | None = None
        """One-colour check: None before the first checked frame, the colour of
        every checked frame so far, or False once two differ or one is not uniform."""
        self._finished = False
        self._encoder = encoder()
        try:
            self._id = self._encoder.open(self.path, self.partial, width, height, self.rate)
        except EncoderError as exc:
            raise RunWriteError(f"cannot write video {self.path}: {exc}") from None

    def write(self, image: np.ndarray) -> None:
        """Send one frame (blocks only while the encoder's ring is full)."""
        if self._finished:
            raise RuntimeError(f"{self.path}: write after close")
        pixels = _as_rgb24(image)
        if self._colour is not False and self.frames & (self.frames - 1) == 0:  # frames 0, 1, 2, 4, 8 ...
            colour = one_colour(pixels)
            self._colour = colour if colour is not None and self._colour in (None, colour) else False
        try:
            self._encoder.frame(self._id, pixels)
        except EncoderError as exc:
            self._finished = True
            raise RunWriteError(f"cannot write video {self.path}: {exc}") from None
        self.frames += 1

    @property
    def uniform_colour(self) -> tuple[int, ...] | None:
        """The RGB colour of every frame checked (0, 1, 2, 4, 8 ...), when all
        of them are that one colour; None when the video shows anything."""
        return self._colour if isinstance(self._colour, tuple) else None

    def close(self) -> Path:
        """Finish the file and give it its final name; returns ``path``."""
        if self._finished:
            return self.path
        self._finished = True
        try:
            error = self._encoder.close(self._id)
        except EncoderError as exc:
            error = f"cannot write video {self.path}: {exc}"
        if error is not None:
            self.partial.unlink(missing_ok=True)
            raise RunWriteError(error)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file (nothing keeps its name)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._encoder.abort(self._id)
        except EncoderError:
            logger.debug("the encoder went away while aborting %s", self.path, exc_info=True)
        self.partial.unlink(missing_ok=True)


def _as_rgb24(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 images, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"video frames must be H x W x 3 (RGB) images, got shape {array.shape}")
    return np.ascontiguousarray(array)


def one_colour(pixels: np.ndarray) -> tuple[int, ...] | None:
    """The colour of an ``H x W x 3`` image whose pixels are all that colour,
    else None. A 1-in-64 grid of pixels is compared first, so an image that
    shows anything costs a few microseconds; the whole image is read only
    when the grid is uniform.

    Example:
        >>> black, stripe = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)
        >>> stripe[2] = 255
        >>> one_colour(black), one_colour(stripe)
        ((0, 0, 0), None)
    """
    first = pixels[0, 0]
    if not (pixels[::8, ::8] == first).all() or not (pixels == first).all():
        return None
    return tuple(int(c) for c in first)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads back from an mp4."""

    frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str
    fps: float
    faststart: bool


def probe_video(path: Path, decode: bool = True) -> VideoInfo:
    """Open an mp4 with PyAV and report its frames, size, codec, pixel format,
    frame rate and whether the ``moov`` index precedes the media data
    (``faststart``). ``decode`` counts frames by decoding them all (exact);
    otherwise the container's frame count is used.

    Example:
        >>> # probe_video(Path("runs/r/videos/j/ep0-default.mp4")).frames
    """
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream)) if decode else int(stream.frames)
        info = VideoInfo(
            frames=frames,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            codec=str(stream.codec_context.name),
            pix_fmt=str(stream.codec_context.pix_fmt),
            fps=float(stream.average_rate or 0.0),
            faststart=_moov_before_mdat(path),
        )
    return info


def _moov_before_mdat(path: Path) -> bool:
    """Walk the top-level mp4 boxes: is ``moov`` before ``mdat``?"""
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            header = f.read(16)
            size = int.from_bytes(header[0:4], "big")
            kind = header[4:8]
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if size < 8:
                return False
            offset += size
    return False
