"""trialrun.recording.trajectory: per-step trajectories of chosen episodes, as HDF5
files in robomimic's layout, read back with h5py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from recording_helpers import run_videos
from trialrun.config import TrajectoryConfig, parse_run_config
from trialrun.errors import ConfigError
from trialrun.recording.selection import TrajectorySelection
from trialrun.replay import replay_episode
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord


def _records(run_dir: Path) -> list[EpisodeRecord]:
    return sorted(read_episodes(run_dir / "episodes.jsonl"), key=lambda r: r.episode)


def _demo(run_dir: Path, record: EpisodeRecord) -> dict[str, Any]:
    """Every dataset of the record's file (paths under ``data/demo_0``) and its attributes."""
    assert record.trajectory == f"trajectories/{record.job}/ep{record.episode}.h5"
    out: dict[str, Any] = {}
    with h5py.File(run_dir / record.trajectory) as f:
        demo = f["data/demo_0"]
        demo.visititems(
            lambda name, item: out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
        out["attrs"] = dict(demo.attrs)
        out["total"] = int(f["data"].attrs["total"])
    return out


def _pendulum_job(**overrides: Any) -> dict[str, Any]:
    job = {
        "name": "pendulum",
        "env": "InvertedPendulum-v5",
        "policy": "random",
        "episodes": 6,
        "num_envs": 1,
        "max_steps": 25,
        "success": "survived",
        "factors": {
            "pole_mass": {
                "variation": {"type": "mujoco.body_mass", "body": "pole", "mode": "scale"},
                "sampler": {"type": "uniform", "low": 0.2, "high": 5.0},
            }
        },
        "trajectories": {"select": "all"},
    }
    job.update(overrides)
    return job


def test_every_step_is_stored_and_matches_the_record_whatever_num_envs(tmp_path: Path) -> None:
    one = run_videos(tmp_path, _pendulum_job(), name="one")
    three = run_videos(tmp_path, _pendulum_job(num_envs=3), name="three")
    records = _records(one)
    assert len(records) == 6 and all(r.trajectory for r in records)
    for record, other in zip(records, _records(three), strict=True):
        demo, again = _demo(one, record), _demo(three, other)
        length = record.outcome["length"]
        assert demo["actions"].shape == (length, 1)
        assert demo["obs/state"].shape == demo["next_obs/state"].shape == (length, 4)
        assert np.array_equal(demo["obs/state"][1:], demo["next_obs/state"][:-1])
        assert demo["rewards"].sum() == pytest.approx(record.outcome["return"])
        assert demo["dones"].tolist() == [0] * (length - 1) + [1]
        assert bool(demo["terminated"][-1]) == record.outcome["terminated"]
        assert bool(demo["truncated"][-1]) == record.outcome["truncated"]
        assert demo["attrs"]["num_samples"] == demo["total"] == length
        assert demo["attrs"]["seed"] == record.seed and demo["attrs"]["episode"] == record.episode
        assert demo["attrs"]["factor.pole_mass"] == record.factors["pole_mass"]
        # The same episode, whichever sub-env ran it.
        for key in ("actions", "obs/state", "rewards"):
            assert np.array_equal(demo[key], again[key])


def test_failures_are_re_simulated_into_the_same_trajectories(tmp_path: Path) -> None:
    every = run_videos(tmp_path, _pendulum_job(episodes=10), name="every")
    kept_run = run_videos(
        tmp_path, _pendulum_job(episodes=10, num_envs=2, trajectories={"select": "failures", "episodes": 3})
    )
    records = _records(kept_run)
    kept = [r for r in records if r.trajectory]
    assert len(kept) == 3 and all(not r.outcome["success"] for r in kept)
    assert len([r for r in records if not r.outcome["success"]]) > 3
    files = sorted(p.name for p in (kept_run / "trajectories" / "pendulum").glob("*.h5"))
    assert files == sorted(f"ep{r.episode}.h5" for r in kept)
    by_episode = {r.episode: r for r in _records(every)}
    for record in kept:
        ours, theirs = _demo(kept_run, record), _demo(every, by_episode[record.episode])
        for key in ("actions", "obs/state", "next_obs/state", "rewards", "dones"):
            assert np.array_equal(ours[key], theirs[key]), key


def test_dict_observations_text_and_info_keys(tmp_path: Path) -> None:
    grid = {
        "name": "grid",
        "env": "minigrid:MiniGrid-Empty-5x5-v0",
        "policy": "random",
        "episodes": 2,
        "max_steps": 12,
        "trajectories": {"episodes": 1},
    }
    hopper = {
        "name": "hopper",
        "env": "Hopper-v5",
        "policy": "random",
        "episodes": 1,
        "max_steps": 8,
        "trajectories": {"info_keys": ["x_position"], "cameras": ["default"], "size": [48, 32]},
    }
    run_dir = run_videos(tmp_path, grid, hopper)
    records = {(r.job, r.episode): r for r in read_episodes(run_dir / "episodes.jsonl")}
    assert records[("grid", 1)].trajectory is None  # episodes: 1 keeps the first only
    demo = _demo(run_dir, records[("grid", 0)])
    length = records[("grid", 0)].outcome["length"]
    assert demo["obs/image"].shape == (length, 7, 7, 3)
    assert demo["obs/direction"].shape == (length,)
    assert {m.decode() for m in demo["obs/mission"]} == {"get to the green goal square"}
    hop = _demo(run_dir, records[("hopper", 0)])
    steps = records[("hopper", 0)].outcome["length"]
    assert hop["info/x_position"].shape == (steps,)
    assert hop["obs/default_image"].shape == (steps, 32, 48, 3) and hop["obs/default_image"].dtype == np.uint8
    assert hop["obs/default_image"].max() > 0  # a rendered image, not an empty one


def test_a_missing_info_key_fails_the_job_naming_it(tmp_path: Path) -> None:
    from trialrun.execution.runner import run_evaluation

    job = _pendulum_job(trajectories={"info_keys": ["x_position"]})
    config = parse_run_config({"name": "t", "seed": 1, "jobs": [job]})
    result = run_evaluation(config, tmp_path / "run")
    assert result.exit_code != 0
    assert result.errors == {
        "pendulum": "ConfigError: field 'trajectories.info_keys': info key 'x_position' is missing at step 0; "
        "this step's info has: reward_survive"
    }
    assert list((tmp_path / "run" / "trajectories" / "pendulum").glob("*.h5*")) == []


def test_config_errors_and_shorthand() -> None:
    def job(trajectories: Any) -> dict[str, Any]:
        return {
            "name": "r",
            "jobs": [
                {
                    "name": "j",
                    "env": "CartPole-v1",
                    "policy": "random",
                    "episodes": 1,
                    "trajectories": trajectories,
                }
            ],
        }

    assert parse_run_config(job(True)).jobs[0].trajectories == TrajectoryConfig()
    assert parse_run_config(job(False)).jobs[0].trajectories is None
    with pytest.raises(ConfigError) as info:
        parse_run_config(job({"format": "zarr"}))
    assert info.value.field == "jobs.0.trajectories.format" and "'hdf5' or 'lerobot'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_run_config(job({"size": [85, 84]}))
    assert info.value.field == "jobs.0.trajectories.size" and "each even" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_run_config(job({"select": "worst"}))
    assert info.value.field == "jobs.0.trajectories.select"


def test_a_killed_runs_partial_trajectories_are_removed_before_a_rerun(tmp_path: Path) -> None:
    selection = TrajectorySelection.for_job(TrajectoryConfig(), "j", tmp_path)
    selection.directory.mkdir(parents=True)
    for name in (".ep3.h5.part", "ep4.h5", "ep5.h5"):
        (selection.directory / name).write_bytes(b"x")
    selection.prepare([3, 4])
    assert sorted(p.name for p in selection.directory.iterdir()) == ["ep5.h5"]


def test_replay_leaves_the_runs_trajectories_alone(tmp_path: Path) -> None:
    run_dir = run_videos(tmp_path, _pendulum_job(episodes=2))
    before = {p.name: p.read_bytes() for p in (run_dir / "trajectories" / "pendulum").iterdir()}
    assert replay_episode(run_dir, "pendulum", 1).matches
    after = {p.name: p.read_bytes() for p in (run_dir / "trajectories" / "pendulum").iterdir()}
    assert before == after


def test_preflight_checks_trajectory_cameras_and_native_cameras(tmp_path: Path) -> None:
    from trialrun.execution.preflight import preflight

    def config(**overrides: Any) -> Any:
        job = {"name": "j", "env": "CartPole-v1", "policy": "random", "episodes": 1, **overrides}
        return parse_run_config({"name": "r", "jobs": [job]})

    with pytest.raises(ConfigError) as info:
        preflight(config(trajectories={"cameras": ["top"]}))
    assert info.value.field == "jobs.0.trajectories.cameras"
    assert str(info.value).endswith("unknown camera 'top'; this env's cameras: default")
    native = {"env": "CartPole-v1", "vectorization": "native", "num_envs": 2}
    preflight(config(**native, trajectories=True))  # native trajectories: test_recording_native_steps
    with pytest.raises(ConfigError) as info:
        preflight(config(**native, trajectories={"cameras": ["default"]}))
    assert info.value.field == "jobs.0.trajectories.cameras"
    assert "a native job's trajectories hold no camera images" in str(info.value)


def test_replay_writes_one_episodes_trajectory_on_demand(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trialrun.cli import app

    job = _pendulum_job(episodes=3, trajectories={"select": "all", "info_keys": ["reward_survive"]})
    run_dir = run_videos(tmp_path, job)
    result = CliRunner().invoke(app, ["replay", str(run_dir), "pendulum", "2", "--trajectory"])
    assert result.exit_code == 0, result.output
    replayed = run_dir / "replays" / "pendulum" / "ep2.h5"
    assert f"trajectory: {replayed}" in result.output.replace("\n", "")
    record = next(r for r in _records(run_dir) if r.episode == 2)
    ours = _demo(run_dir, record)
    with h5py.File(replayed) as f:
        for key in ("actions", "obs/state", "rewards", "dones", "info/reward_survive"):
            assert np.array_equal(f[f"data/demo_0/{key}"][()], ours[key]), key
    # Without trajectories in the job, the defaults; --out chooses the folder.
    plain = run_videos(tmp_path, _pendulum_job(episodes=1, trajectories=None), name="plain")
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(
        app, ["replay", str(plain), "pendulum", "0", "--trajectory", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["ep0.h5"]
    assert not (plain / "replays").exists()


def test_a_killed_run_names_only_complete_trajectories_and_resume_completes_them(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from helpers import subprocess_env
    from recording_helpers import cartpole_job
    from trialrun.runfiles import read_manifest

    # The policy balances (300-step episodes) and sleeps 1 ms a step, so the
    # step loop sets the pace: the writer process (started beside it) keeps up
    # and each episode's file stays open, under its .part name, for ~0.3 s.
    # With the unthrottled policy a loaded machine could finish the rollout
    # before the writer started, and the writer then opened and renamed each
    # file within milliseconds: the kill below was never reached mid-file.
    EPISODES = 40
    job = cartpole_job(
        name="long",
        episodes=EPISODES,
        num_envs=2,
        max_steps=300,
        policy={"type": "helpers:SlowBalancePolicy", "kwargs": {"delay": 0.001}},
        video=None,
        trajectories={"select": "all", "format": "lerobot"},
    )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "killed", "seed": 4, "jobs": [job]}))
    run_dir = tmp_path / "run"
    directory = run_dir / "trajectories" / "long"
    command = [sys.executable, "-m", "trialrun.cli", "run", str(cfg), "--run-dir", str(run_dir), "-q"]
    child = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    episodes = run_dir / "episodes.jsonl"
    deadline = time.monotonic() + 120
    partial_seen = False
    while time.monotonic() < deadline and not partial_seen:
        if episodes.exists() and episodes.read_text().count("\n") >= 2 and directory.is_dir():
            partial_seen = any(p.name.endswith(".h5.part") for p in directory.iterdir())
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert partial_seen  # killed while a trajectory was being written
    before = read_episodes(episodes)
    assert 2 <= len(before) < EPISODES, sorted(p.name for p in directory.iterdir())
    for record in before:  # every trajectory a record names is complete
        assert _demo(run_dir, record)["attrs"]["num_samples"] == record.outcome["length"]
    assert not (directory / "lerobot").exists()  # the job did not complete

    resumed = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "run", "--resume", str(run_dir), "-q"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    records = read_episodes(episodes)
    assert sorted(r.episode for r in records) == list(range(EPISODES))
    # The killed episodes' partial files are gone: one complete file per record.
    assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(
        f"ep{k}.h5" for k in range(EPISODES)
    )
    for record in records:
        assert _demo(run_dir, record)["attrs"]["num_samples"] == record.outcome["length"] == 300
    info = json.loads((directory / "lerobot" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == EPISODES and info["total_frames"] == EPISODES * 300
    assert read_manifest(run_dir).jobs["long"].status == "completed"
