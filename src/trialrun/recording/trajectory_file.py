"""One episode's HDF5 file in robomimic's layout, written block by block.

:class:`EpisodeFile` is the part of trajectory recording that touches h5py:
it creates the file under its hidden ``.part`` name with the episode's groups
and attributes, appends blocks of rows to resizable datasets, and renames the
file when the episode is complete. The recorder
(:class:`~trialrun.recording.trajectory.TrajectoryRecorder`) uses it in its
own process, or the trajectory writer process
(:mod:`~trialrun.recording.trajectory_writer`) uses it on the recorder's
behalf, so both write byte-for-byte the same layout (the module docstring of
:mod:`~trialrun.recording.trajectory` describes it).

This module imports neither gymnasium nor the rest of trialrun until it
needs them (an error, a file name to compute): the writer process imports it
and starts in the time numpy and h5py take.

Example:
    >>> import tempfile, pathlib, numpy as np, h5py
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ep0.h5"
    >>> f = EpisodeFile(path, {"episode": 0, "seed": 1, "job": "j", "env_id": "E", "factors": {}})
    >>> f.append({"state": np.zeros((3, 4))}, {"actions": np.array([1, 0]), "rewards": np.ones(2)})
    >>> f.finish(2)
    >>> with h5py.File(path) as h5:
    ...     h5["data/demo_0/actions"][:].tolist(), int(h5["data"].attrs["total"])
    ([1, 0], 2)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CHUNK_STEPS = 256
"""HDF5 chunk length of a small-row dataset (large rows, such as images, use 64)."""


def h5py_module() -> Any:
    """h5py, or a :class:`~trialrun.errors.ConfigError` saying how to install it."""
    try:
        import h5py
    except ImportError:
        from trialrun.errors import ConfigError

        raise ConfigError(
            "trajectories are written with h5py, which is not installed: "
            "pip install 'trialrun[trajectories]' (in a clone: pip install -e \".[trajectories]\")",
            field="trajectories",
        ) from None
    return h5py


class _Column:
    """One dataset, made from its first block and appended to a block at a time."""

    def __init__(self, group: Any, name: str, first: np.ndarray) -> None:
        h5py = h5py_module()
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


class EpisodeFile:
    """One episode's trajectory file: created at once under its ``.part`` name,
    appended to a block at a time, renamed to ``path`` by :meth:`finish`.

    ``settings`` are the recorder's (``episode``, ``seed``, ``job``,
    ``env_id``, ``factors``): they become the episode's attributes.
    ``partial`` is the hidden name (default: the run files' ``.part`` name
    of ``path``; the writer process is given it).

    Raises:
        RunWriteError: the folder or the file cannot be created.
    """

    def __init__(self, path: Path, settings: dict[str, Any], partial: Path | None = None) -> None:
        h5py = h5py_module()
        self.path = Path(path)
        if partial is None:
            from trialrun.runfiles.names import partial_file

            partial = partial_file(self.path)
        self.partial = partial
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: Any = h5py.File(self.partial, "w")
        except OSError as exc:
            from trialrun.errors import RunWriteError

            raise RunWriteError(f"cannot write the trajectory {self.partial}: {exc}") from exc
        data = self._file.create_group("data")
        data.attrs["env_args"] = json.dumps(
            {"env_name": settings.get("env_id", ""), "job": settings.get("job")}
        )
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

    def append(
        self,
        observations: dict[str, np.ndarray],
        steps: dict[str, np.ndarray],
        infos: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Append one block: ``observations`` has one row more than ``steps``
        (row ``i`` is step ``i``'s ``obs``, row ``i + 1`` its ``next_obs``);
        ``steps`` holds the actions, rewards and flags, ``infos`` the info keys."""
        self._columns["obs"].append({path: rows[:-1] for path, rows in observations.items()})
        self._columns["next_obs"].append({path: rows[1:] for path, rows in observations.items()})
        self._columns["steps"].append(steps)
        if infos is not None:
            self._columns["info"].append(infos)

    def finish(self, steps: int) -> None:
        """Write the step count, close the file and give it its final name."""
        self._file["data/demo_0"].attrs["num_samples"] = steps
        self._file["data"].attrs["total"] = steps
        self._file.close()
        self._file = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Close and delete the partial file (a broken file is deleted either way)."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                logger.debug("closing an aborted trajectory failed", exc_info=True)
            self._file = None
        self.partial.unlink(missing_ok=True)
