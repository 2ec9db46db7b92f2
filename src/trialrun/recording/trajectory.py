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

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from trialrun.errors import ConfigError, RunWriteError
from trialrun.recording.capture import DEFAULT_CAMERA, FrameSource
from trialrun.runfiles.names import partial_file, trajectory_file_name

if TYPE_CHECKING:
    import gymnasium as gym

logger = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 2**20
"""About how many bytes of observations are buffered before a block is written."""
MAX_BLOCK_STEPS = 4096
MIN_BLOCK_STEPS = 16
CHUNK_STEPS = 256
"""HDF5 chunk length of a small-row dataset (large rows, such as images, use 64)."""


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ConfigError(
            "trajectories are written with h5py, which is not installed: "
            "pip install 'trialrun[trajectories]' (in a clone: pip install -e \".[trajectories]\")",
            field="trajectories",
        ) from None
    return h5py


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

    def head(self, count: int, start: int = 0) -> dict[str, np.ndarray]:
        """Rows ``start .. start + count`` of every leaf (views)."""
        return {path: array[start : start + count] for path, array in self.arrays.items()}

    def carry(self, row: int) -> None:
        """Move row ``row`` to row 0 (the observation the next block starts from)."""
        for array in self.arrays.values():
            array[0] = array[row]


class _Column:
    """One dataset, made from its first block and appended to a block at a time."""

    def __init__(self, group: Any, name: str, first: np.ndarray) -> None:
        h5py = _h5py()
        self.name = name
        self.strings = first.dtype.kind in "UO"
        dtype = h5py.string_dtype() if self.strings else first.dtype
        shape = first.shape[1:]
        row_bytes = first.nbytes // max(len(first), 1)
        chunk = (64 if row_bytes > 4096 else CHUNK_STEPS, *shape)
        compress = {"compression": "gzip", "compression_opts": 1} if first.dtype == np.uint8 else {}
        self.dataset = group.create_dataset(
            name,
            data=first.astype(object) if self.strings else first,
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=chunk,
            **compress,
        )

    def append(self, block: np.ndarray) -> None:
        if self.strings:
            block = block.astype(object)
        start = self.dataset.shape[0]
        self.dataset.resize(start + len(block), axis=0)
        self.dataset[start:] = block


class _Columns:
    """The datasets of one group, made on first use from the first block."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.columns: dict[str, _Column] = {}

    def append(self, blocks: dict[str, np.ndarray]) -> None:
        """Write one block per dataset path (all the same number of rows)."""
        for path, block in blocks.items():
            if not len(block):
                continue
            column = self.columns.get(path)
            if column is None:
                self.columns[path] = _Column(self.group, path, block)
            else:
                column.append(block)


class TrajectoryRecorder:
    """Records the steps of the episodes a sub-env is told to record (see the module docstring)."""

    def __init__(self) -> None:
        self._file: Any = None
        self._path: Path | None = None
        self._name = ""
        self._settings: dict[str, Any] = {}
        self._columns: dict[str, _Columns] = {}
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
        h5py = _h5py()
        directory = Path(settings["dir"])
        name = trajectory_file_name(int(settings["episode"]))
        self._path = directory / name
        self._name = f"{settings['prefix']}{name}"
        self._settings = settings
        partial = partial_file(self._path)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(partial, "w")
        except OSError as exc:
            raise RunWriteError(f"cannot write the trajectory {partial}: {exc}") from exc
        data = self._file.create_group("data")
        env_args = {"env_name": settings.get("env_id", ""), "job": settings.get("job")}
        data.attrs["env_args"] = json.dumps(env_args)
        demo = data.create_group("demo_0")
        factors = settings.get("factors") or {}
        demo.attrs["episode"] = int(settings["episode"])
        demo.attrs["seed"] = int(settings.get("seed") or 0)
        demo.attrs["job"] = str(settings.get("job", ""))
        demo.attrs["factors"] = json.dumps(factors, sort_keys=True)
        for factor, value in factors.items():
            if value is not None:
                demo.attrs[f"factor.{factor}"] = value
        self._columns = {group: _Columns(demo.create_group(group)) for group in ("obs", "next_obs", "info")}
        self._columns["steps"] = _Columns(demo)
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
        self._columns["obs"].append(self._observations.head(count))
        self._columns["next_obs"].append(self._observations.head(count, start=1))
        terminated, truncated = self._terminated[:count], self._truncated[:count]
        self._columns["steps"].append(
            {
                **self._actions.head(count),
                "rewards": self._rewards[:count],
                "dones": np.logical_or(terminated, truncated).astype(np.uint8),
                "terminated": terminated,
                "truncated": truncated,
            }
        )
        if self._infos is not None:
            self._columns["info"].append(self._infos.head(count))
        self._observations.carry(count)
        self._row = 0

    def finish(self) -> dict[str, str]:
        """Complete the file; ``{"trajectory": name}``."""
        if self._file is None or self._path is None:
            return {}
        try:
            self._write_block()
            demo = self._file["data/demo_0"]
            demo.attrs["num_samples"] = self._steps
            self._file["data"].attrs["total"] = self._steps
            self._file.close()
            self._file = None
            os.replace(partial_file(self._path), self._path)
        except BaseException:
            self.abort()
            raise
        return {"trajectory": self._name}

    def abort(self) -> None:
        """Drop the episode being recorded (its partial file is deleted)."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # a broken file is deleted either way
                logger.debug("closing an aborted trajectory failed", exc_info=True)
            self._file = None
        if self._path is not None:
            partial_file(self._path).unlink(missing_ok=True)
        self._columns = {}
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
