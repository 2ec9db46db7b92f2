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
chunks of :data:`CHUNK_STEPS` steps to resizable datasets, so memory does not
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
from typing import TYPE_CHECKING, Any

import numpy as np

from trialrun.errors import ConfigError, RunWriteError
from trialrun.recording.capture import DEFAULT_CAMERA, FrameSource
from trialrun.runfiles.names import partial_file, trajectory_file_name

if TYPE_CHECKING:
    import gymnasium as gym

logger = logging.getLogger(__name__)

CHUNK_STEPS = 256
"""Steps buffered in memory before they are appended to the file."""


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


class _Column:
    """One dataset, appended to a block of steps at a time."""

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
            name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=chunk, **compress
        )

    def append(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.dataset.shape[1:]:
            raise ValueError(
                f"trajectory value '{self.name}' changed shape within an episode: "
                f"{self.dataset.shape[1:]} then {block.shape[1:]} (trajectories need fixed shapes)"
            )
        if self.strings:
            block = block.astype(object)
        start = self.dataset.shape[0]
        self.dataset.resize(start + len(block), axis=0)
        self.dataset[start:] = block


class _Columns:
    """The datasets of one group, made on first use from the first block's shapes.

    Steps are kept as the values the env gave (no per-step array work: a
    CartPole step costs tens of microseconds) and stacked into one array per
    dataset when a block is written.
    """

    def __init__(self, group: Any) -> None:
        self.group = group
        self.columns: dict[str, _Column] = {}

    def append(self, rows: list[Any], name: str = "") -> None:
        """Write ``rows`` (one value per step: an array, a number, or a dict/tuple of them)."""
        if not rows:
            return
        paths = [path for path, _ in _leaves(rows[0], name)]
        if len(paths) == 1 and paths[0] == name:
            blocks = {name: np.asarray(rows) if not isinstance(rows[0], np.ndarray) else np.stack(rows)}
        else:
            leaves = [dict(_leaves(row, name)) for row in rows]
            try:
                blocks = {path: np.stack([np.asarray(leaf[path]) for leaf in leaves]) for path in paths}
            except (KeyError, ValueError) as exc:
                raise ValueError(
                    f"trajectory values under '{name or self.group.name}' changed keys or shapes "
                    f"within an episode (trajectories need fixed ones): {exc}"
                ) from None
        for path, block in blocks.items():
            column = self.columns.get(path)
            if column is None:
                column = self.columns[path] = _Column(self.group, path, block)
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
        self._observations: list[Any] = []
        """The observations not written yet, the current one last."""
        self._actions: list[Any] = []
        self._rewards: list[float] = []
        self._terminated: list[bool] = []
        self._truncated: list[bool] = []
        self._infos: list[dict[str, Any]] = []
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
        self._clear()
        cameras = list(settings.get("cameras") or [])
        size = (int(settings["size"][0]), int(settings["size"][1]))
        if cameras:
            key = (id(env.unwrapped), tuple(cameras), size)
            if self._frames is None or self._frames_key != key:
                if self._frames is not None:
                    self._frames.close()
                self._frames = FrameSource(env, cameras, size)
                self._frames_key = key
        self._observations.append(self._observation(env, obs))

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
        try:
            keys = self._settings.get("info_keys")
            if keys:
                missing = [key for key in keys if key not in info]
                if missing:
                    raise ConfigError(
                        f"info key '{missing[0]}' is missing at step {self._steps}; "
                        f"this step's info has: {', '.join(sorted(info)) or 'nothing'}",
                        field="trajectories.info_keys",
                    )
                self._infos.append({key: info[key] for key in keys})
            self._observations.append(self._observation(env, obs))
            self._actions.append(_copied(action))
            self._rewards.append(float(reward))
            self._terminated.append(terminated)
            self._truncated.append(truncated)
            self._steps += 1
            if len(self._rewards) >= CHUNK_STEPS:
                self._write_block()
        except BaseException:
            self.abort()
            raise

    def _write_block(self) -> None:
        """Append the kept steps to the file (the current observation stays kept:
        it is the next step's ``obs``)."""
        count = len(self._rewards)
        if not count:
            return
        observations = self._observations
        self._columns["obs"].append(observations[:count])
        self._columns["next_obs"].append(observations[1 : count + 1])
        steps = self._columns["steps"]
        steps.append(self._actions, "actions")
        steps.append(self._rewards, "rewards")
        ended = np.logical_or(self._terminated, self._truncated).astype(np.uint8)
        steps.append(list(ended), "dones")
        steps.append(self._terminated, "terminated")
        steps.append(self._truncated, "truncated")
        if self._infos:
            self._columns["info"].append(self._infos)
        self._clear(keep=observations[count])

    def _clear(self, keep: Any = None) -> None:
        self._observations = [] if keep is None else [keep]
        self._actions = []
        self._rewards = []
        self._terminated = []
        self._truncated = []
        self._infos = []

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
        self._clear()

    def close(self) -> None:
        self.abort()
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def _observation(self, env: gym.Env[Any, Any], obs: Any) -> Any:
        """The observation as stored: ``{"state": obs}`` or its dict, plus camera images."""
        stored = {k: _copied(v) for k, v in obs.items()} if isinstance(obs, dict) else {"state": _copied(obs)}
        if self._frames is not None:
            for camera, image in self._frames.render(env).items():
                own_size = camera == DEFAULT_CAMERA  # the env's render() comes at its own size
                stored[f"{camera}_image"] = _resized(image, self._frames.size) if own_size else image
        return stored


def _copied(value: Any) -> Any:
    """A value the env may reuse or change later, copied (arrays; dicts and tuples of them)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_copied(item) for item in value)
    return value


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to ``size`` (``[width, height]``) by nearest neighbour
    (the env's own render comes at its own size)."""
    width, height = size
    rows = (np.arange(height) * image.shape[0] // height).clip(0, image.shape[0] - 1)
    cols = (np.arange(width) * image.shape[1] // width).clip(0, image.shape[1] - 1)
    return np.ascontiguousarray(image[rows][:, cols])
