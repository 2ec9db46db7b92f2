"""Per-step trajectories of chosen episodes, written as HDF5 in robomimic's layout.

:class:`TrajectoryRecorder` lives inside the sub-env like the video recorder
(it is the :class:`~trialrun.envs.slot_wrapper.SlotWrapper`'s
``step_recorder_factory``), so it works the same in this process, in async
vector-env workers and in executor workers. One file per episode,
``trajectories/<job>/ep<k>.h5``::

    data/                          attrs: total, env_args (JSON: env id, job)
      demo_0/                      attrs: num_samples, episode, seed, job,
                                          factors (JSON), factor.<name>
        obs/<key>        (T, ...)  the observation each action was chosen on
        next_obs/<key>   (T, ...)  the observation after it
        actions          (T, ...)  what the env received (clipped, when clipped)
        rewards          (T,)
        dones            (T,)      1 at the last step
        terminated, truncated (T,)
        info/<key>       (T, ...)  the job's ``info_keys``

An array observation is ``obs/state``; a dict observation is one dataset per
key (nested dicts joined with ``/``); a camera named in the job adds
``obs/<camera>_image`` (uint8, ``(T, height, width, 3)``). Dict and tuple
actions become groups under ``actions``. Rows are buffered and appended in
blocks of about :data:`BLOCK_BYTES` to resizable datasets, so memory does not
grow with the episode's length. The file is written under a hidden ``.part``
name and renamed when the episode ends; h5py and robomimic read it as is.
The HDF5 calls are :class:`~trialrun.recording.trajectory_file.EpisodeFile`'s:
made here, or, inside :func:`~trialrun.recording.trajectory_writer.writing_in_background`,
by the trajectory writer process, to which each block is sent instead.

Example:
    >>> import gymnasium as gym, tempfile, h5py
    >>> env = gym.make("CartPole-v1", max_episode_steps=3)
    >>> obs, info = env.reset(seed=0)
    >>> rec = TrajectoryRecorder(); folder = tempfile.mkdtemp()
    >>> rec.begin(env, {"dir": folder, "prefix": "trajectories/j/", "episode": 4, "seed": 0,
    ...                 "job": "j", "env_id": "CartPole-v1", "factors": {}, "info_keys": [],
    ...                 "cameras": [], "size": [84, 84]}, obs, info)
    >>> for _ in range(3):
    ...     step = env.step(1); rec.capture(env, 1, *step)
    >>> rec.finish()
    {'trajectory': 'trajectories/j/ep4.h5'}
    >>> with h5py.File(f"{folder}/ep4.h5") as f:
    ...     f["data/demo_0/obs/state"].shape, f["data/demo_0/actions"][:].tolist()
    ((3, 4), [1, 1, 1])
    >>> rec.close(); env.close()
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from trialrun.errors import ConfigError
from trialrun.recording.capture import DEFAULT_CAMERA, FrameSource
from trialrun.recording.trajectory_file import EpisodeFile, h5py_module
from trialrun.recording.trajectory_writer import BackgroundFile, background_writer
from trialrun.runfiles.names import trajectory_file_name

if TYPE_CHECKING:
    import gymnasium as gym

logger = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 2**20
"""About how many bytes of observations are buffered before a block is written."""
MAX_BLOCK_STEPS = 4096
MIN_BLOCK_STEPS = 16


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """``(path, array-like)`` for every array in a (nested) dict/tuple value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{prefix}/{index}" if prefix else str(index))
    else:
        yield prefix, value


def _block_steps(value: Any) -> int:
    """Rows per block for values like ``value``: about :data:`BLOCK_BYTES` of them."""
    row_bytes = sum(np.asarray(leaf).nbytes for _, leaf in _leaves(value, ""))
    return int(min(MAX_BLOCK_STEPS, max(MIN_BLOCK_STEPS, BLOCK_BYTES // max(row_bytes, 1))))


class _Rows:
    """Preallocated rows for the values of one kind (an array, a number, or a
    dict/tuple of them) that one block of steps gives.

    Why preallocated: a step only assigns into arrays (which also copies what
    the env may reuse); a block is then written as whole-array slices. Keeping
    per-step Python objects and stacking them cost more than the CartPole step
    itself. The dtype and shape of each leaf are the first step's; a later
    step whose keys or shapes differ is an error, since datasets are fixed.
    """

    def __init__(self, first: Any, rows: int, name: str) -> None:
        self.name = name
        self.arrays: dict[str, np.ndarray] = {}
        for path, leaf in _leaves(first, name):
            array = np.asarray(leaf)
            dtype = np.dtype(object) if array.dtype.kind in "UO" else array.dtype
            self.arrays[path] = np.empty((rows, *array.shape), dtype=dtype)
        self.single = self.arrays.get(name) if len(self.arrays) == 1 else None

    def put(self, row: int, value: Any) -> None:
        single = self.single
        if single is not None:
            if type(value) is np.ndarray and value.shape != single.shape[1:]:
                self._changed(value.shape, single.shape[1:])
            single[row] = value
            return
        count = 0
        for path, leaf in _leaves(value, self.name):
            target = self.arrays.get(path)
            if target is None:
                self._changed(f"key '{path}'", f"keys {sorted(self.arrays)}")
            if np.shape(leaf) != target.shape[1:]:
                self._changed(np.shape(leaf), target.shape[1:])
            target[row] = leaf
            count += 1
        if count != len(self.arrays):
            self._changed(f"{count} values", f"{len(self.arrays)}")

    def _changed(self, now: Any, before: Any) -> NoReturn:
        raise ValueError(
            f"trajectory values under '{self.name or 'obs'}' changed keys or shapes within an episode "
            f"(trajectories need fixed ones): {now} instead of {before}"
        )

    def head(self, count: int) -> dict[str, np.ndarray]:
        """The first ``count`` rows of every leaf (views)."""
        return {path: array[:count] for path, array in self.arrays.items()}

    def carry(self, row: int) -> None:
        """Move row ``row`` to row 0 (the observation the next block starts from)."""
        for array in self.arrays.values():
            array[0] = array[row]


class TrajectoryRecorder:
    """Records the steps of the episodes a sub-env is told to record (see the module docstring)."""

    def __init__(self) -> None:
        self._file: EpisodeFile | BackgroundFile | None = None
        self._name = ""
        self._settings: dict[str, Any] = {}
        self._steps = 0
        self._row = 0
        """Steps kept in the current block (row ``_row`` of the observations is the current one)."""
        self._observations: _Rows | None = None
        self._actions: _Rows | None = None
        self._infos: _Rows | None = None
        self._rewards = np.empty(0)
        self._terminated = np.empty(0, dtype=bool)
        self._truncated = np.empty(0, dtype=bool)
        self._frames: FrameSource | None = None
        self._frames_key: tuple[Any, ...] = ()

    @property
    def recording(self) -> bool:
        return self._file is not None

    def begin(self, env: gym.Env[Any, Any], settings: dict[str, Any], obs: Any, info: dict[str, Any]) -> None:
        """Open the episode's file; ``obs`` is its first observation."""
        self.abort()
        h5py_module()  # a clear error here when h5py is missing
        directory = Path(settings["dir"])
        name = trajectory_file_name(int(settings["episode"]))
        self._name = f"{settings['prefix']}{name}"
        self._settings = settings
        writer = background_writer()
        if writer is not None:
            self._file = BackgroundFile(writer, directory / name, self._name, settings)
        else:
            self._file = EpisodeFile(directory / name, settings)
        self._steps = 0
        self._row = 0
        self._actions = self._infos = None
        cameras = list(settings.get("cameras") or [])
        size = (int(settings["size"][0]), int(settings["size"][1]))
        if cameras:
            key = (id(env.unwrapped), tuple(cameras), size)
            if self._frames is None or self._frames_key != key:
                if self._frames is not None:
                    self._frames.close()
                self._frames = FrameSource(env, cameras, size)
                self._frames_key = key
        first = self._observation(env, obs)
        rows = _block_steps(first)
        self._observations = _Rows(first, rows + 1, "" if isinstance(first, dict) else "state")
        self._observations.put(0, first)
        self._rewards = np.empty(rows)
        self._terminated = np.empty(rows, dtype=bool)
        self._truncated = np.empty(rows, dtype=bool)

    def capture(
        self,
        env: gym.Env[Any, Any],
        action: Any,
        obs: Any,
        reward: Any,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        """Keep one step: the action taken on the previous observation and what followed."""
        if self._file is None:
            return
        observations = self._observations
        if observations is None:
            return
        try:
            row = self._row
            keys = self._settings.get("info_keys")
            if keys:
                missing = [key for key in keys if key not in info]
                if missing:
                    raise ConfigError(
                        f"info key '{missing[0]}' is missing at step {self._steps}; "
                        f"this step's info has: {', '.join(sorted(info)) or 'nothing'}",
                        field="trajectories.info_keys",
                    )
                chosen = {key: info[key] for key in keys}
                if self._infos is None:
                    self._infos = _Rows(chosen, len(self._rewards), "")
                self._infos.put(row, chosen)
            if self._actions is None:
                self._actions = _Rows(action, len(self._rewards), "actions")
            self._actions.put(row, action)
            observations.put(row + 1, self._observation(env, obs))
            self._rewards[row] = reward
            self._terminated[row] = terminated
            self._truncated[row] = truncated
            self._steps += 1
            self._row = row + 1
            if self._row == len(self._rewards):
                self._write_block()
        except BaseException:
            self.abort()
            raise

    def _write_block(self) -> None:
        """Append the kept steps to the file; the current observation becomes
        row 0 (it is the next step's ``obs``)."""
        count = self._row
        if not count or self._observations is None or self._actions is None:
            return
        file = self._file
        if file is None:
            return
        terminated, truncated = self._terminated[:count], self._truncated[:count]
        steps = {
            **self._actions.head(count),
            "rewards": self._rewards[:count],
            "dones": np.logical_or(terminated, truncated).astype(np.uint8),
            "terminated": terminated,
            "truncated": truncated,
        }
        infos = self._infos.head(count) if self._infos is not None else None
        file.append(self._observations.head(count + 1), steps, infos)
        self._observations.carry(count)
        self._row = 0

    def finish(self) -> dict[str, str]:
        """Complete the file; ``{"trajectory": name}``."""
        if self._file is None:
            return {}
        try:
            self._write_block()
            self._file.finish(self._steps)
            self._file = None
        except BaseException:
            self.abort()
            raise
        return {"trajectory": self._name}

    def abort(self) -> None:
        """Drop the episode being recorded (its partial file is deleted)."""
        if self._file is not None:
            self._file.abort()
            self._file = None
        self._observations = self._actions = self._infos = None
        self._row = 0

    def close(self) -> None:
        self.abort()
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def _observation(self, env: gym.Env[Any, Any], obs: Any) -> Any:
        """The observation as stored: ``{"state": obs}`` or its dict, plus camera images."""
        if self._frames is None:
            return obs
        stored = dict(obs) if isinstance(obs, dict) else {"state": obs}
        for camera, image in self._frames.render(env).items():
            own_size = camera == DEFAULT_CAMERA  # the env's render() comes at its own size
            stored[f"{camera}_image"] = _resized(image, self._frames.size) if own_size else image
        return stored


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to ``size`` (``[width, height]``) by nearest neighbour
    (the env's own render comes at its own size)."""
    width, height = size
    rows = (np.arange(height) * image.shape[0] // height).clip(0, image.shape[0] - 1)
    cols = (np.arange(width) * image.shape[1] // width).clip(0, image.shape[1] - 1)
    return np.ascontiguousarray(image[rows][:, cols])
