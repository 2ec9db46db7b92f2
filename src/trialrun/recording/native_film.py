"""Videos of a natively batched job: the frames of the worlds being filmed.

A batched simulator (``vectorization: native``) renders all its worlds in one
call; :class:`WorldFilm` keeps one recorder per filmed world and sends it that
world's frame after every step. Which episodes are filmed is the job's
:class:`~trialrun.recording.selection.VideoSelection` (``first``, ``all``, or
``failures``/``successes`` filmed live until the quota holds enough), so a
native job's videos sit where a sync job's do and records name them the same
way. Only the ``default`` camera exists here: it is the simulator's own
``render()``, one image per world.

Why rendering is per step and only while someone is filmed: a vector env's
``render()`` draws every world (CartPole's draws 1024 surfaces), so the film
asks for frames only on steps where at least one filmed episode is running.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> import trialrun.envs
    >>> from trialrun.config import VideoConfig
    >>> from trialrun.envs.batched import make_batched_env
    >>> from trialrun.plan import slot_for
    >>> from trialrun.recording.selection import VideoSelection
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> env = make_batched_env("trialrun/SeedProbe-v0", {"render_mode": "rgb_array"}, 2)
    >>> selection = VideoSelection(VideoConfig(episodes=1, size=[32, 32]), run / "videos" / "j", run)
    >>> film = WorldFilm(env, selection)
    >>> _ = env.reset_worlds(np.array([True, True]), [3, 4])
    >>> film.begin([0, 1], [slot_for(0, "j", 0), slot_for(0, "j", 1)])  # only episode 0 is wanted
    >>> film.filming
    True
    >>> _ = env.step(np.zeros(2, dtype=np.int64)); film.capture()
    >>> film.finish(0, {"success": True})
    {'default': 'videos/j/ep0-default.mp4'}
    >>> film.close(); env.close()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trialrun.plan import Slot
from trialrun.recording.capture import DEFAULT_CAMERA, native_size
from trialrun.recording.selection import VideoSelection
from trialrun.recording.writer import VideoWriter
from trialrun.runfiles.names import video_file_name

logger = logging.getLogger(__name__)


@runtime_checkable
class RendersWorlds(Protocol):
    """The optional hook of a :class:`~trialrun.envs.batched.BatchedEnv` that films.

    ``render_worlds`` returns one ``H x W x 3`` uint8 image per asked world,
    of the state after the last step (before any reset of that world).
    """

    def render_worlds(self, worlds: Sequence[int]) -> list[np.ndarray]: ...


class WorldFilm:
    """Films the selected episodes of a batched env's worlds (see the module docstring)."""

    def __init__(self, env: Any, selection: VideoSelection) -> None:
        if not isinstance(env, RendersWorlds):
            raise TypeError(f"{type(env).__name__} cannot render its worlds (no render_worlds)")
        self.env = env
        self.selection = selection
        self._writers: dict[int, VideoWriter] = {}
        self._names: dict[int, str] = {}
        self._slots: dict[int, Slot] = {}

    @property
    def filming(self) -> bool:
        """Whether any world is being filmed now."""
        return bool(self._writers)

    def begin(self, worlds: Sequence[int], slots: Sequence[Slot]) -> None:
        """Worlds that were just reset into ``slots``: film those the selection wants
        (their first frame is taken now)."""
        chosen: list[tuple[int, Slot, dict[str, Any]]] = []
        for world, slot in zip(worlds, slots, strict=True):
            self._drop(world)
            settings = self.selection.settings(slot)
            if settings is not None:
                chosen.append((world, slot, settings))
        if not chosen:
            return
        frames = self.env.render_worlds([world for world, _, _ in chosen])
        for (world, slot, settings), frame in zip(chosen, frames, strict=True):
            directory = Path(settings["dir"])
            directory.mkdir(parents=True, exist_ok=True)
            name = video_file_name(slot.episode, DEFAULT_CAMERA)
            given = settings.get("size")
            width, height = (int(given[0]), int(given[1])) if given else native_size(*frame.shape[:2])
            writer = VideoWriter(directory / name, width, height, float(settings["fps"]))
            self._writers[world] = writer
            self._names[world] = f"{settings['prefix']}{name}"
            self._slots[world] = slot
            writer.write(frame)

    def capture(self) -> None:
        """After a step: one frame for every world being filmed."""
        if not self._writers:
            return
        worlds = list(self._writers)
        for world, frame in zip(worlds, self.env.render_worlds(worlds), strict=True):
            self._writers[world].write(frame)

    def finish(self, world: int, outcome: dict[str, Any]) -> dict[str, str]:
        """The episode of ``world`` ended: complete its video and return what its
        record names (``{}`` when it was not filmed or is not kept)."""
        writer = self._writers.pop(world, None)
        if writer is None:
            return {}
        name = self._names.pop(world)
        slot = self._slots.pop(world)
        try:
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return self.selection.settle(slot, outcome, {DEFAULT_CAMERA: name})

    def _drop(self, world: int) -> None:
        writer = self._writers.pop(world, None)
        if writer is not None:
            writer.abort()
            self._names.pop(world, None)
            self._slots.pop(world, None)

    def close(self) -> None:
        """Discard unfinished videos (an episode cut short has no video)."""
        for world in list(self._writers):
            self._drop(world)
