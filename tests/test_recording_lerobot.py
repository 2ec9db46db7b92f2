"""trialrun.recording.lerobot: a job's trajectories as a LeRobot v3.0 dataset.

``lerobot`` itself cannot be installed next to this project's pins (it pulls a
CUDA torch and numpy 2.2), so the dataset is checked against the format as
LeRobot's loader reads it (src/lerobot/datasets: ``DatasetInfo``,
``load_nested_dataset`` = ``datasets.Dataset.from_parquet`` over
``data/*/*.parquet`` with the features of ``info.json`` mapped by
``get_hf_features_from_features``, ``load_tasks``, ``load_episodes``), using
the real Hugging Face ``datasets`` library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import datasets
import h5py
import numpy as np
import pandas as pd
import pytest

from recording_helpers import run_videos
from trialrun.runfiles import read_episodes

INFO_KEYS = {
    "codebase_version",
    "fps",
    "features",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "chunks_size",
    "data_files_size_in_mb",
    "video_files_size_in_mb",
    "data_path",
    "video_path",
    "robot_type",
    "splits",
}


def _hf_features(features: dict[str, Any]) -> datasets.Features:
    """LeRobot's ``get_hf_features_from_features`` for the dtypes written here."""
    out: dict[str, Any] = {}
    for key, ft in features.items():
        if ft["dtype"] == "video":
            continue
        if tuple(ft["shape"]) == (1,):
            out[key] = datasets.Value(dtype=ft["dtype"])
        else:
            out[key] = datasets.Sequence(length=ft["shape"][0], feature=datasets.Value(dtype=ft["dtype"]))
    return datasets.Features(out)


def _job(**trajectories: Any) -> dict[str, Any]:
    return {
        "name": "pendulum",
        "env": "InvertedPendulum-v5",
        "policy": "random",
        "episodes": 5,
        "num_envs": 2,
        "max_steps": 20,
        "success": "survived",
        "trajectories": {"format": "lerobot", "fps": 25, **trajectories},
    }


def test_the_dataset_loads_as_lerobot_reads_it(tmp_path: Path) -> None:
    run_dir = run_videos(tmp_path, _job(select="all", cameras=["default"], size=[32, 24]))
    root = run_dir / "trajectories" / "pendulum" / "lerobot"
    records = sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)
    lengths = [r.outcome["length"] for r in records]

    info = json.loads((root / "meta" / "info.json").read_text())
    assert set(info) == INFO_KEYS
    assert info["codebase_version"] == "v3.0" and info["fps"] == 25
    assert info["total_episodes"] == 5 and info["total_frames"] == sum(lengths) and info["total_tasks"] == 1
    assert info["splits"] == {"train": "0:5"}
    features = info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [4], "names": None}
    assert features["action"] == {"dtype": "float32", "shape": [1], "names": None}
    assert features["next.reward"]["shape"] == [1] and features["next.done"]["dtype"] == "bool"
    video = features["observation.images.default"]
    assert video["dtype"] == "video" and video["shape"] == [24, 32, 3] and video["info"]["video.fps"] == 25

    # The frames, as load_nested_dataset loads them.
    paths = sorted(str(p) for p in (root / "data").glob("*/*.parquet"))
    assert len(paths) == 5
    frames = datasets.Dataset.from_parquet(paths, features=_hf_features(features))
    assert len(frames) == sum(lengths)
    assert frames["index"] == list(range(sum(lengths)))
    assert frames["episode_index"] == [i for i, n in enumerate(lengths) for _ in range(n)]
    assert frames["frame_index"] == [t for n in lengths for t in range(n)]
    assert frames["timestamp"] == pytest.approx([t / 25 for n in lengths for t in range(n)])
    assert set(frames["task_index"]) == {0}

    # Episodes and tasks, as load_episodes and load_tasks read them.
    episodes = datasets.Dataset.from_parquet(str(root / "meta/episodes/chunk-000/file-000.parquet"))
    assert episodes["episode_index"] == [0, 1, 2, 3, 4] and episodes["length"] == lengths
    assert episodes["trialrun_episode"] == [r.episode for r in records]
    assert episodes["tasks"] == [["InvertedPendulum-v5"]] * 5
    assert episodes["dataset_from_index"] == list(np.cumsum([0, *lengths[:-1]]))
    assert episodes["dataset_to_index"] == list(np.cumsum(lengths))
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert list(tasks.index) == ["InvertedPendulum-v5"] and list(tasks["task_index"]) == [0]

    for i, record in enumerate(records):
        start, stop = episodes["dataset_from_index"][i], episodes["dataset_to_index"][i]
        with h5py.File(run_dir / str(record.trajectory)) as f:
            actions = f["data/demo_0/actions"][:]
            rewards = f["data/demo_0/rewards"][:]
        assert np.allclose(np.array(frames["action"][start:stop]), actions.reshape(-1).astype(np.float32))
        assert sum(frames["next.reward"][start:stop]) == pytest.approx(record.outcome["return"])
        assert frames["next.done"][start:stop] == [False] * (len(rewards) - 1) + [True]
        # The camera's video: one per episode, a frame per step.
        key = "observation.images.default"
        chunk, file = episodes[f"videos/{key}/chunk_index"][i], episodes[f"videos/{key}/file_index"][i]
        mp4 = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        with av.open(str(mp4)) as container:
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(decoded) == record.outcome["length"] and decoded[0].shape == (24, 32, 3)
        assert episodes[f"videos/{key}/to_timestamp"][i] == pytest.approx(record.outcome["length"] / 25)

    # Dataset stats pool the episodes' (LeRobot normalizes with them).
    stats = json.loads((root / "meta" / "stats.json").read_text())
    states = np.array(frames["observation.state"], dtype=np.float64)
    assert np.allclose(stats["observation.state"]["mean"], states.mean(axis=0))
    assert np.allclose(stats["observation.state"]["std"], states.std(axis=0))
    assert stats["observation.state"]["count"] == [sum(lengths)]
    assert np.array(stats["observation.images.default"]["mean"]).shape == (3, 1, 1)


def test_a_failures_dataset_holds_the_kept_episodes_in_order(tmp_path: Path) -> None:
    run_dir = run_videos(tmp_path, {**_job(select="failures", episodes=3), "episodes": 10})
    records = sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)
    kept = [r.episode for r in records if r.trajectory]
    assert len(kept) == 3
    root = run_dir / "trajectories" / "pendulum" / "lerobot"
    episodes = datasets.Dataset.from_parquet(str(root / "meta/episodes/chunk-000/file-000.parquet"))
    assert episodes["trialrun_episode"] == sorted(kept)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and info["video_path"] is None
    assert not (root.parent / "lerobot.part").exists()
