"""A job's trajectories as a LeRobot dataset (format v3.0), for ``format: lerobot``.

Episodes are recorded as HDF5 files while the job runs (crash-safe, one per
episode, written wherever the episode ran: see
:mod:`trialrun.recording.trajectory`); when the job ends,
:func:`write_lerobot_dataset` gathers the kept ones, in episode order, into
``trajectories/<job>/lerobot/``, the layout LeRobot's ``LeRobotDataset``
loads (codebase version 3.0)::

    meta/info.json                                  features, counts, paths, fps
    meta/stats.json                                 per-feature min/max/mean/std/count
    meta/tasks.parquet                              task text -> task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks,
                                                    data/video file and frame ranges, stats
    data/chunk-000/file-<i>.parquet                 one file per episode: one row per step
    videos/observation.images.<camera>/chunk-000/file-<i>.mp4   one per episode and camera

Columns: ``observation.state`` (an array observation) or
``observation.<key>`` (each key of a dict observation; arrays of more than
one axis are flattened, text is left out), ``action``, ``next.reward``,
``next.done``, and LeRobot's index columns (``timestamp``, ``frame_index``,
``episode_index``, ``index``, ``task_index``). Camera images become H.264
videos written with the encoder trialrun's videos use. The episode's task is
its instruction (a ``language`` factor or the job's ``instruction``), or the
env id. ``trialrun_episode`` in the episodes table maps a dataset episode
back to trialrun's episode index (the record of that episode names its
HDF5 file).

The whole dataset is written under ``lerobot.part`` and renamed at the end:
a job that runs again (``--resume``) rewrites it with every kept episode.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialrun.errors import RunWriteError
from trialrun.recording.writer import VideoWriter

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
IMAGE_SUFFIX = "_image"


@dataclass(frozen=True)
class LerobotEpisode:
    """One kept trajectory to put in the dataset."""

    episode: int
    """trialrun's episode index."""
    path: Path
    """Its HDF5 file."""
    task: str


@dataclass(frozen=True)
class LerobotDataset:
    """What was written."""

    root: Path
    episodes: int
    frames: int


def _pa() -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def _read_episode(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of ``data/demo_0`` (``obs/state``, ``actions``, ...)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        demo = f["data/demo_0"]

        def take(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                arrays[name] = item[()]

        demo.visititems(take)
    return arrays


def _columns(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(numeric columns, camera frames) of one episode, named as LeRobot names them."""
    numeric: dict[str, np.ndarray] = {}
    frames: dict[str, np.ndarray] = {}
    for name, values in arrays.items():
        group, _, key = name.partition("/")
        if group == "obs":
            if key.endswith(IMAGE_SUFFIX) and values.dtype == np.uint8 and values.ndim == 4:
                frames[f"observation.images.{key[: -len(IMAGE_SUFFIX)]}"] = values
                continue
            if values.dtype.kind in "OSU":
                continue  # text (a mission string): LeRobot features hold numbers
            column = "observation.state" if key == "state" else "observation." + key.replace("/", ".")
        elif group == "actions":
            column = "action" if not key else "action." + key.replace("/", ".")
        elif name == "rewards":
            column = "next.reward"
        elif name == "dones":
            column = "next.done"
        else:
            continue
        numeric[column] = values.reshape(len(values), -1) if values.ndim != 1 else values
    return numeric, frames


def _dtype(values: np.ndarray, column: str) -> np.dtype[Any]:
    if column == "next.done":
        return np.dtype(bool)
    if values.dtype.kind == "f":
        return np.dtype(np.float32)
    if values.dtype.kind == "b":
        return np.dtype(bool)
    return np.dtype(np.int64)


def _feature(values: np.ndarray, column: str) -> dict[str, Any]:
    width = 1 if values.ndim == 1 else int(values.shape[1])
    return {"dtype": str(_dtype(values, column)), "shape": [width], "names": None}


def _stats(values: np.ndarray) -> dict[str, Any]:
    data = values.astype(np.float64).reshape(len(values), -1)
    return {
        "min": data.min(axis=0).tolist(),
        "max": data.max(axis=0).tolist(),
        "mean": data.mean(axis=0).tolist(),
        "std": data.std(axis=0).tolist(),
        "count": [len(data)],
    }


def _image_stats(frames: np.ndarray) -> dict[str, Any]:
    """Per-channel stats in [0, 1], shaped (3, 1, 1) as LeRobot keeps them."""
    pixels = frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0

    def shaped(values: np.ndarray) -> list[Any]:
        return [[[float(v)]] for v in values]

    return {
        "min": shaped(pixels.min(axis=0)),
        "max": shaped(pixels.max(axis=0)),
        "mean": shaped(pixels.mean(axis=0)),
        "std": shaped(pixels.std(axis=0)),
        "count": [len(frames)],
    }


def _aggregate(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dataset stats from episode stats (pooled mean and variance)."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    means = np.array([p["mean"] for p in parts], dtype=np.float64)
    stds = np.array([p["std"] for p in parts], dtype=np.float64)
    weights = (counts / counts.sum()).reshape((-1,) + (1,) * (means.ndim - 1))
    mean = (weights * means).sum(axis=0)
    variance = (weights * (stds**2 + (means - mean) ** 2)).sum(axis=0)
    return {
        "min": np.min([p["min"] for p in parts], axis=0).tolist(),
        "max": np.max([p["max"] for p in parts], axis=0).tolist(),
        "mean": mean.tolist(),
        "std": np.sqrt(variance).tolist(),
        "count": [int(counts.sum())],
    }


def write_lerobot_dataset(
    episodes: Sequence[LerobotEpisode], out: Path, fps: int, robot_type: str | None = None
) -> LerobotDataset:
    """Write ``episodes`` (in this order: dataset episode ``i`` is ``episodes[i]``)
    as a LeRobot v3.0 dataset at ``out`` (replacing what is there)."""
    pa, pq = _pa()
    out = Path(out)
    staging = out.with_name(out.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    features: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    stats_parts: dict[str, list[dict[str, Any]]] = {}
    tasks: dict[str, int] = {}
    total = 0
    try:
        for index, item in enumerate(episodes):
            numeric, frames = _columns(_read_episode(item.path))
            length = len(next(iter(numeric.values()))) if numeric else 0
            task_index = tasks.setdefault(item.task, len(tasks))
            chunk, file = divmod(index, CHUNKS_SIZE)
            table: dict[str, Any] = {}
            episode_stats: dict[str, dict[str, Any]] = {}
            for column, values in numeric.items():
                dtype = _dtype(values, column)
                feature = _feature(values, column)
                if features.setdefault(column, feature) != feature:
                    raise RunWriteError(
                        f"{item.path}: '{column}' is {feature}, other episodes have {features[column]}"
                    )
                typed = values.astype(dtype)
                if typed.ndim == 1 or typed.shape[1] == 1:
                    # LeRobot reads a feature of shape [1] as a plain value column.
                    table[column] = pa.array(typed.reshape(-1))
                else:
                    flat = pa.array(typed.reshape(-1))
                    table[column] = pa.FixedSizeListArray.from_arrays(flat, typed.shape[1])
                episode_stats[column] = _stats(typed)
            frame_index = np.arange(length, dtype=np.int64)
            index_columns: dict[str, np.ndarray] = {
                "timestamp": (frame_index / fps).astype(np.float32),
                "frame_index": frame_index,
                "episode_index": np.full(length, index, dtype=np.int64),
                "index": total + frame_index,
                "task_index": np.full(length, task_index, dtype=np.int64),
            }
            for column, series in index_columns.items():
                table[column] = pa.array(series)
                features.setdefault(column, {"dtype": str(series.dtype), "shape": [1], "names": None})
                episode_stats[column] = _stats(series)
            data_path = staging / DATA_PATH.format(chunk_index=chunk, file_index=file)
            data_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(table), data_path)
            row: dict[str, Any] = {
                "episode_index": index,
                "tasks": [item.task],
                "length": length,
                "data/chunk_index": chunk,
                "data/file_index": file,
                "dataset_from_index": total,
                "dataset_to_index": total + length,
            }
            for key, images in frames.items():
                height, width = int(images.shape[1]), int(images.shape[2])
                video_path = staging / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                video_path.parent.mkdir(parents=True, exist_ok=True)
                writer = VideoWriter(video_path, width, height, float(fps))
                try:
                    for image in images[:length]:
                        writer.write(image)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                features.setdefault(key, _video_feature(height, width, fps))
                row[f"videos/{key}/chunk_index"] = chunk
                row[f"videos/{key}/file_index"] = file
                row[f"videos/{key}/from_timestamp"] = 0.0
                row[f"videos/{key}/to_timestamp"] = length / fps
                episode_stats[key] = _image_stats(images[:length])
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            for column, column_stats in episode_stats.items():
                stats_parts.setdefault(column, []).append(column_stats)
                for name, stat in column_stats.items():
                    row[f"stats/{column}/{name}"] = stat
            row["trialrun_episode"] = item.episode
            rows.append(row)
            total += length
        _write_meta(staging, features, rows, stats_parts, tasks, total, fps, robot_type)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RunWriteError(f"cannot write the LeRobot dataset {out}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote a LeRobot dataset of %d episodes (%d frames) to %s", len(rows), total, out)
    return LerobotDataset(root=out, episodes=len(rows), frames=total)


def _video_feature(height: int, width: int, fps: int) -> dict[str, Any]:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": "h264",
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }


def _write_meta(
    root: Path,
    features: dict[str, dict[str, Any]],
    rows: list[dict[str, Any]],
    stats_parts: dict[str, list[dict[str, Any]]],
    tasks: dict[str, int],
    total: int,
    fps: int,
    robot_type: str | None,
) -> None:
    pa, pq = _pa()
    meta = root / "meta"
    (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    has_video = any(f["dtype"] == "video" for f in features.values())
    info = {
        "codebase_version": CODEBASE_VERSION,
        "fps": fps,
        "features": features,
        "total_episodes": len(rows),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if has_video else None,
        "robot_type": robot_type,
        "splits": {"train": f"0:{len(rows)}"},
    }
    (meta / "info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    stats = {column: _aggregate(parts) for column, parts in stats_parts.items()}
    (meta / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    task_table = pa.table(
        {"task_index": pa.array(list(tasks.values()), type=pa.int64()), "task": list(tasks)}
    ).to_pandas()
    task_table.set_index("task").to_parquet(meta / "tasks.parquet")
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), root / EPISODES_PATH)
