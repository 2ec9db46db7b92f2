"""Trajectories of a natively batched job: each recorded world's steps, sliced from the batch.

:class:`WorldSteps` keeps one
:class:`~trialrun.recording.trajectory.TrajectoryRecorder` per recorded world
and hands it that world's row of the batch after every step: observation
(arrays, or dicts of arrays), action, reward, ``terminated``, ``truncated``
and the job's ``info_keys``. Files, names and selection rules are those of a
sync job (``trajectories/<job>/ep<k>.h5``; ``failures``/``successes`` are kept
live until the quota holds enough). Camera images are not recorded here: a
batched simulator renders all its worlds at once, so preflight refuses
``cameras`` on a native job.

Why only recorded worlds are sliced: the step path of a native job stays array
operations; the Python below runs for the few worlds being recorded.

Example:
    >>> import tempfile, pathlib, numpy as np, h5py
    >>> import trialrun.envs
    >>> from trialrun.config import TrajectoryConfig
    >>> from trialrun.envs.batched import make_batched_env
    >>> from trialrun.plan import slot_for
    >>> from trialrun.recording.selection import TrajectorySelection
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> env = make_batched_env("trialrun/SeedProbe-v0", {}, 2)
    >>> steps = WorldSteps(TrajectorySelection.for_job(TrajectoryConfig(episodes=1), "j", run))
    >>> obs, infos = env.reset_worlds(np.array([True, True]), [3, 4])
    >>> steps.begin([0, 1], [slot_for(0, "j", 0), slot_for(0, "j", 1)], obs, infos)
    >>> actions = np.zeros(2, dtype=np.int64)
    >>> obs, rewards, terminated, truncated, infos = env.step(actions)
    >>> steps.capture(actions, obs, rewards, terminated, truncated, infos)
    >>> steps.finish(0, {"success": False})
    {'trajectory': 'trajectories/j/ep0.h5'}
    >>> with h5py.File(run / "trajectories/j/ep0.h5") as f:
    ...     f["data/demo_0/obs/state"].shape, f["data/demo_0/rewards"][:].tolist()
    ((1, 3), [1.0])
    >>> steps.close(); env.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trialrun.plan import Slot
from trialrun.recording.selection import TrajectorySelection
from trialrun.recording.trajectory import TrajectoryRecorder


def world_row(batch: Any, world: int) -> Any:
    """World ``world``'s part of a batched value (arrays, dicts and tuples of them)."""
    if isinstance(batch, dict):
        return {key: world_row(value, world) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(world_row(value, world) for value in batch)
    return np.asarray(batch)[world]


def _world_info(infos: dict[str, Any], world: int, keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` a world reported this step (Gymnasium's ``_key`` masks say which)."""
    row: dict[str, Any] = {}
    for key in keys:
        if key not in infos:
            continue
        present = infos.get(f"_{key}")
        if present is not None and not bool(np.asarray(present)[world]):
            continue
        row[key] = world_row(infos[key], world)
    return row


class WorldSteps:
    """Records the steps of the selected episodes of a batched env's worlds."""

    def __init__(self, selection: TrajectorySelection) -> None:
        self.selection = selection
        self._recorders: dict[int, TrajectoryRecorder] = {}
        self._slots: dict[int, Slot] = {}
        self._spare: list[TrajectoryRecorder] = []
        self._keys = list(selection.config.info_keys)

    @property
    def recording(self) -> bool:
        """Whether any world is being recorded now."""
        return bool(self._recorders)

    def begin(self, worlds: Sequence[int], slots: Sequence[Slot], obs: Any, infos: dict[str, Any]) -> None:
        """Worlds just reset into ``slots`` (``obs`` is the whole batch): record
        those the selection wants."""
        for world, slot in zip(worlds, slots, strict=True):
            self._drop(world)
            settings = self.selection.settings(slot)
            if settings is None:
                continue
            recorder = self._spare.pop() if self._spare else TrajectoryRecorder()
            recorder.begin(None, settings, world_row(obs, world), _world_info(infos, world, self._keys))  # type: ignore[arg-type]
            self._recorders[world] = recorder
            self._slots[world] = slot

    def capture(
        self,
        actions: Any,
        obs: Any,
        rewards: Any,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> None:
        """After a step of the whole batch: one row for every recorded world."""
        for world, recorder in self._recorders.items():
            recorder.capture(
                None,  # type: ignore[arg-type]
                world_row(actions, world),
                world_row(obs, world),
                float(np.asarray(rewards)[world]),
                bool(terminated[world]),
                bool(truncated[world]),
                _world_info(infos, world, self._keys),
            )

    def finish(self, world: int, outcome: dict[str, Any]) -> dict[str, str]:
        """The episode of ``world`` ended: complete its file and return what its
        record names (``{}`` when it was not recorded or is not kept)."""
        recorder = self._recorders.pop(world, None)
        if recorder is None:
            return {}
        slot = self._slots.pop(world)
        names = recorder.finish()
        self._spare.append(recorder)
        return self.selection.settle(slot, outcome, names)

    def _drop(self, world: int) -> None:
        recorder = self._recorders.pop(world, None)
        if recorder is not None:
            recorder.abort()
            self._slots.pop(world, None)
            self._spare.append(recorder)

    def close(self) -> None:
        """Discard unfinished trajectories (an episode cut short has none)."""
        for world in list(self._recorders):
            self._drop(world)
        for recorder in self._spare:
            recorder.close()
        self._spare.clear()
