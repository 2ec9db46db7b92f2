"""Per-step action and reward of an episode, read from its trajectory file for the report.

A job with ``trajectories:`` names each kept episode's HDF5 file in its record
(``"trajectory": "trajectories/<job>/ep17.h5"``, robomimic's layout, see
docs/trajectories.md). The report reads only what its charts draw:
``data/demo_0/actions`` (a dataset, or a group of datasets for dict and tuple
actions) flattened to ``(T, D)``, and ``data/demo_0/rewards`` with their
running sum. It reads the file with h5py directly and imports nothing of the
recording side, so a report builds wherever the run directory is copied.

Long episodes are thinned to at most :data:`MAX_POINTS` points per line (the
smallest and largest value of each of ``MAX_POINTS / 2`` equal slices, so a
single spike of reward survives), and at most :data:`MAX_DIMS` action
dimensions are drawn, so one episode adds tens of kilobytes to the page, not
megabytes. A file that is missing or cannot be read is logged and the episode
simply has no charts: the report never fails because of a trajectory.

Example:
    >>> import numpy as np
    >>> idx, vals = downsample(np.arange(10.0), 4)
    >>> idx.tolist(), vals.tolist()
    ([0, 4, 5, 9], [0.0, 4.0, 5.0, 9.0])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trialrun.report.payload import safe_relpath
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)

MAX_POINTS = 500
"""Points per line at most; longer episodes are thinned (min and max per slice)."""
MAX_DIMS = 8
"""Action dimensions drawn at most; the chart says how many were left out."""
MAX_EPISODES = 200
"""Episodes whose charts are embedded at most (the first ones in table order),
so a run that kept every trajectory of thousands of episodes stays a page that
a browser opens; the others say so and link their file."""

_DEMO = "data/demo_0"


@dataclass
class Series:
    """One line of a chart: the step of each kept point and its value."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    discrete: bool = False
    """Integer or boolean values (a discrete action): drawn as steps, not slopes."""


@dataclass
class TrajectoryData:
    """What the report draws of one episode's trajectory."""

    length: int
    actions: list[Series] = field(default_factory=list)
    action_dims: int = 0
    """Action dimensions in the file (``len(actions)`` of them are drawn)."""
    reward: Series | None = None
    ret: Series | None = None
    """The cumulative return (the running sum of the rewards, before thinning)."""
    notes: list[str] = field(default_factory=list)

    @property
    def dims_left_out(self) -> int:
        """Action dimensions in the file that the chart does not draw."""
        return self.action_dims - len(self.actions)


def downsample(values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of at most ``max_points`` points of a 1-D series.

    A series that fits is kept whole. A longer one is cut into ``max_points // 2``
    slices of (nearly) equal length and keeps, from each, the points where it is
    smallest and largest, in step order: the line keeps its extremes (a reward
    spike of one step, an action at its bound), unlike taking every k-th step.
    A flat slice keeps its first and last step, so the result always has exactly
    ``min(len(values), max_points)`` points (``max_points`` rounded down to even).
    Non-finite values never win the min or max of a slice that has finite ones.
    """
    values = np.asarray(values)
    n = len(values)
    if n <= max_points:
        return np.arange(n), values
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).round().astype(np.int64)
    as_float = values.astype(np.float64)
    finite = np.isfinite(as_float)
    low_key = np.where(finite, as_float, np.inf)
    high_key = np.where(finite, as_float, -np.inf)
    picked = np.empty(2 * buckets, dtype=np.int64)
    for b in range(buckets):
        start, stop = int(edges[b]), int(edges[b + 1])
        lo = start + int(np.argmin(low_key[start:stop]))
        hi = start + int(np.argmax(high_key[start:stop]))
        if lo == hi:
            lo, hi = start, stop - 1
        picked[2 * b : 2 * b + 2] = (min(lo, hi), max(lo, hi))
    return picked, values[picked]


def _h5py() -> Any:
    """h5py, or None when it is not installed (the ``trajectories`` extra)."""
    try:
        import h5py
    except ImportError:
        return None
    return h5py


def _action_columns(h5py: Any, node: Any, length: int) -> list[tuple[str, np.ndarray]]:
    """``(name, (T,) column)`` for every numeric action value, in file order.

    A dataset of shape ``(T,)`` is one column named ``action``; ``(T, ...)`` is
    flattened to ``a[0]``, ``a[1]``... A group (dict or tuple actions) gives its
    datasets by path (``arm[0]``, ``gripper``). Text values are left out.
    """
    datasets: list[tuple[str, Any]] = []
    if isinstance(node, h5py.Dataset):
        datasets.append(("", node))
    else:
        node.visititems(
            lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None
        )
    columns: list[tuple[str, np.ndarray]] = []
    for name, ds in datasets:
        if ds.dtype.kind not in "biuf":
            continue
        data = np.asarray(ds[:length])
        flat = data.reshape(len(data), -1)
        if flat.dtype.kind == "b":
            flat = flat.astype(np.int8)
        width = flat.shape[1]
        for j in range(width):
            if not name:
                label = "action" if data.ndim == 1 else f"a[{j}]"
            else:
                label = name if width == 1 and data.ndim == 1 else f"{name}[{j}]"
            columns.append((label, flat[:, j]))
    return columns


def read_trajectory(
    path: Path, *, max_points: int = MAX_POINTS, max_dims: int = MAX_DIMS
) -> TrajectoryData | None:
    """The action and reward series of one trajectory file, thinned for the page.

    Returns None (after a logged warning) when h5py is missing or the file is
    missing or unreadable: the report then shows no charts for the episode.
    """
    h5py = _h5py()
    if h5py is None:
        logger.warning(
            "%s: h5py is not installed, so the report draws no trajectory charts "
            "(pip install 'trialrun[trajectories]')",
            path,
        )
        return None
    try:
        with h5py.File(path, "r") as f:
            demo = f[_DEMO]
            rewards = np.asarray(demo["rewards"][:], dtype=np.float64).reshape(-1)
            length = len(rewards)
            columns = _action_columns(h5py, demo["actions"], length) if "actions" in demo else []
    except Exception as exc:  # any unreadable file (OSError, KeyError, bad HDF5): no charts
        logger.warning("%s: cannot read the trajectory, the report shows no charts for it: %s", path, exc)
        return None
    data = TrajectoryData(length=length, action_dims=len(columns))
    short = [name for name, column in columns if len(column) < length]
    if short:
        data.notes.append(f"actions shorter than the rewards ({', '.join(short)})")
    for name, column in columns[:max_dims]:
        steps, values = downsample(column, max_points)
        data.actions.append(Series(name, steps, values, discrete=column.dtype.kind in "biu"))
    steps, values = downsample(rewards, max_points)
    data.reward = Series("reward", steps, values)
    running = np.cumsum(np.where(np.isfinite(rewards), rewards, 0.0))
    steps, values = downsample(running, max_points)
    data.ret = Series("cumulative return", steps, values)
    return data


@dataclass
class EpisodeTrajectory:
    """One record's trajectory as the page shows it.

    ``state`` is ``"charted"`` (``data`` holds the series), ``"unreadable"``
    (missing or broken file, warned about), ``"not-charted"`` (beyond
    :data:`MAX_EPISODES`) or ``"outside"`` (a path that leaves the run,
    ignored). ``row`` is the record's row in the episode table.
    """

    row: int
    path: str
    state: str
    data: TrajectoryData | None = None


def episode_trajectories(
    run_dir: Path, records: list[EpisodeRecord], *, max_episodes: int = MAX_EPISODES
) -> list[EpisodeTrajectory]:
    """Read the trajectory of every record that names one, in row order.

    Only the first ``max_episodes`` readable files are drawn (reading a file
    takes about a millisecond, and each adds tens of kilobytes to the page).
    """
    found: list[EpisodeTrajectory] = []
    charted = 0
    readable = _h5py() is not None
    if not readable and any(rec.trajectory for rec in records):
        logger.warning(
            "%s: h5py is not installed, so the report draws no trajectory charts "
            "(pip install 'trialrun[trajectories]')",
            run_dir,
        )
    for row, rec in enumerate(records):
        rel = rec.trajectory
        if not rel:
            continue
        if not safe_relpath(rel):
            logger.warning(
                "episode (%s, %d): ignoring trajectory path %r (not inside the run)",
                rec.job,
                rec.episode,
                rel,
            )
            found.append(EpisodeTrajectory(row, rel, "outside"))
            continue
        if charted >= max_episodes:
            found.append(EpisodeTrajectory(row, rel, "not-charted"))
            continue
        data = read_trajectory(run_dir / rel) if readable else None
        if data is None:
            found.append(EpisodeTrajectory(row, rel, "unreadable"))
            continue
        charted += 1
        found.append(EpisodeTrajectory(row, rel, "charted", data))
    left = sum(t.state == "not-charted" for t in found)
    if left:
        logger.info(
            "the report draws the trajectories of the first %d episodes; %d more are linked only",
            max_episodes,
            left,
        )
    return found
