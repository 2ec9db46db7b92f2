"""Per-episode videos: encoding, capture in the sub-envs, and selection.

- :mod:`~trialrun.recording.writer`: :class:`VideoWriter` (one mp4, encoded in
  the background by :mod:`~trialrun.recording.encoder`) and :func:`probe_video`;
- :mod:`~trialrun.recording.capture`: :class:`FrameSource` (renders cameras)
  and :class:`EpisodeRecorder` (the recorder a sub-env's
  :class:`~trialrun.envs.slot_wrapper.SlotWrapper` is given as its
  ``recorder_factory``), :func:`camera_names`, :func:`check_video`;
- :mod:`~trialrun.recording.selection`: :class:`VideoSelection` (which
  episodes are recorded, which videos are kept).

The names below are loaded on first use: ``python -m trialrun.recording.encoder``
(the encoder process) imports this package first and must stay light.

Example:
    >>> from trialrun import recording
    >>> recording.EpisodeRecorder.__module__
    'trialrun.recording.capture'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trialrun._lazy import lazy_exports

if TYPE_CHECKING:
    from trialrun.recording.capture import (
        DEFAULT_CAMERA,
        EpisodeRecorder,
        FrameSource,
        camera_names,
        check_video,
    )
    from trialrun.recording.selection import VideoSelection
    from trialrun.recording.writer import VideoInfo, VideoWriter, probe_video

_EXPORTS = {
    "DEFAULT_CAMERA": "trialrun.recording.capture",
    "EpisodeRecorder": "trialrun.recording.capture",
    "FrameSource": "trialrun.recording.capture",
    "camera_names": "trialrun.recording.capture",
    "check_video": "trialrun.recording.capture",
    "VideoSelection": "trialrun.recording.selection",
    "VideoInfo": "trialrun.recording.writer",
    "VideoWriter": "trialrun.recording.writer",
    "probe_video": "trialrun.recording.writer",
}

__all__ = [
    "DEFAULT_CAMERA",
    "EpisodeRecorder",
    "FrameSource",
    "VideoInfo",
    "VideoSelection",
    "VideoWriter",
    "camera_names",
    "check_video",
    "probe_video",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
