"""Sensor and actuation perturbations (obs_noise, image_noise, action_noise,
action_delay, action_repeat): what the policy gets, what the env gets,
reproducible per slot whatever num_envs, and bad settings refused (exit 2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from cli_errors import run_error_lines
from recording_helpers import decode_frames
from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.replay import replay_episode
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord
from trialrun.variations.perturbations import episode_generator
from trialrun.variations.registry import available_variations

SEEN: dict[str, list[tuple[Any, Any]]] = {}
"""Per policy tag: (observation batch, action batch) of every act() call."""


class FeedbackPolicy:
    """Pendulum torque from the observation (so noisy observations change the
    actions); notes every observation and action."""

    def __init__(self, context: Any, tag: str) -> None:
        self.tag = tag
        SEEN[tag] = []

    def act(self, obs: Any) -> np.ndarray:
        obs = np.array(obs, copy=True)
        action = np.clip(-0.5 * obs[:, 2:3] - 1.5 * obs[:, 1:2], -2.0, 2.0).astype(np.float32)
        SEEN[self.tag].append((obs, action))
        return action

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless."""


class ImagePolicy:
    """Zero torque; notes the camera image it gets (its obs_map names the camera)."""

    def __init__(self, context: Any, tag: str, obs_map: dict[str, Any]) -> None:
        self.tag = tag
        SEEN[tag] = []

    def act(self, obs: Any) -> np.ndarray:
        image = np.array(obs["camera/default"], copy=True)
        action = np.zeros((len(image), 1), dtype=np.float32)
        SEEN[self.tag].append((image, action))
        return action

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless."""


def _pendulum(tag: str, factors: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "pend",
        "env": "Pendulum-v1",
        "policy": {"type": "test_variations_perturbations:FeedbackPolicy", "kwargs": {"tag": tag}},
        "episodes": 4,
        "num_envs": 1,
        "max_steps": 12,
        "factors": factors,
        "trajectories": {"select": "all"},
    }
    job.update(overrides)
    return job


def _run(tmp_path: Path, name: str, *jobs: dict[str, Any]) -> list[EpisodeRecord]:
    config = parse_run_config({"name": name, "seed": 21, "jobs": list(jobs)})
    result = run_evaluation(config, tmp_path / name)
    assert result.exit_code == 0, result.errors
    return sorted(read_episodes(tmp_path / name / "episodes.jsonl"), key=lambda r: r.episode)


def _trajectory(run_dir: Path, record: EpisodeRecord) -> dict[str, np.ndarray]:
    assert record.trajectory is not None
    with h5py.File(run_dir / record.trajectory) as f:
        demo = f["data/demo_0"]
        return {key: demo[key][()] for key in ("actions", "obs/state", "next_obs/state", "rewards")}


def _per_episode(tag: str, records: list[EpisodeRecord]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One sub-env: the policy's (observations, actions) split into the records' episodes."""
    calls = SEEN[tag]
    out, start = [], 0
    for record in records:
        n = int(record.outcome["length"])
        chunk = calls[start : start + n]
        out.append((np.stack([o[0] for o, _ in chunk]), np.stack([a[0] for _, a in chunk])))
        start += n
    assert start == len(calls)
    return out


def _grid(name: str, variation: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    return {name: {"variation": variation, "sampler": {"type": "choice", "values": values}}}


def test_obs_noise_reaches_the_policy_and_not_the_trajectory(tmp_path: Path) -> None:
    factors = _grid("noise", {"type": "obs_noise", "param": "std", "scale": [1.0, 1.0, 4.0]}, [0.0, 0.05])
    records = _run(tmp_path, "obs", _pendulum("obs", factors, design="grid"))
    assert [r.factors["noise"] for r in records] == [0.0, 0.05, 0.0, 0.05]
    for record, (seen, _) in zip(records, _per_episode("obs", records), strict=True):
        clean = _trajectory(tmp_path / "obs", record)["obs/state"]
        assert seen.shape == clean.shape == (12, 3)
        if record.factors["noise"] == 0.0:
            assert np.array_equal(seen, clean)
            continue
        rng = episode_generator(record.seed, "noise")
        expected = np.stack(
            [(row + rng.normal(0.0, 0.05, 3) * [1.0, 1.0, 4.0]).astype(np.float32) for row in clean]
        )
        assert np.array_equal(seen, expected)
        assert not np.array_equal(seen, clean)


def test_action_noise_is_the_slot_generator_s_draws_clipped_to_the_bounds(tmp_path: Path) -> None:
    factors = _grid("jitter", {"type": "action_noise", "param": "std"}, [0.0, 1.5])
    records = _run(tmp_path, "act", _pendulum("act", factors, design="grid"))
    for record, (_, chosen) in zip(records, _per_episode("act", records), strict=True):
        got = _trajectory(tmp_path / "act", record)["actions"]
        if record.factors["jitter"] == 0.0:
            assert np.array_equal(got, chosen)
            continue
        rng = episode_generator(record.seed, "jitter")
        expected = np.stack(
            [np.clip(a + rng.normal(0.0, 1.5, (1,)), -2.0, 2.0).astype(np.float32) for a in chosen]
        )
        assert np.array_equal(got, expected)
        assert np.abs(got).max() == 2.0  # std 1.5 reaches the bounds within 12 steps


@pytest.mark.parametrize("fill", [None, 0.5])
def test_action_delay_shifts_the_actions_by_exactly_k_steps(tmp_path: Path, fill: float | None) -> None:
    variation: dict[str, Any] = {"type": "action_delay", "param": "steps"}
    if fill is not None:
        variation["fill"] = fill
    tag = f"delay{fill}"
    records = _run(
        tmp_path, tag, _pendulum(tag, _grid("lag", variation, [0, 2, 5]), design="grid", episodes=3)
    )
    assert [r.factors["lag"] for r in records] == [0, 2, 5]
    for record, (_, chosen) in zip(records, _per_episode(tag, records), strict=True):
        k = int(record.factors["lag"])
        got = _trajectory(tmp_path / tag, record)["actions"]
        assert got.shape == chosen.shape == (12, 1)
        assert np.array_equal(got[k:], chosen[: 12 - k])
        assert np.array_equal(got[:k], np.full((k, 1), fill or 0.0, np.float32))


def test_action_repeat_counts_policy_steps_and_sums_rewards(tmp_path: Path) -> None:
    factors = _grid("hold", {"type": "action_repeat", "param": "steps"}, [1, 3, 5])
    records = _run(tmp_path, "rep", _pendulum("rep", factors, design="grid", episodes=3, max_steps=10))
    for record, (_, chosen) in zip(records, _per_episode("rep", records), strict=True):
        n = int(record.factors["hold"])
        steps = _trajectory(tmp_path / "rep", record)
        assert len(steps["actions"]) == 10  # max_steps counts env steps
        assert record.outcome["length"] == math.ceil(10 / n) == len(chosen)
        assert np.array_equal(steps["actions"], np.repeat(chosen, n, axis=0)[:10])
        assert record.outcome["return"] == pytest.approx(float(steps["rewards"].sum()), rel=1e-6)


def _mixed(tag: str, num_envs: int) -> dict[str, Any]:
    factors = {
        "noise": {
            "variation": {"type": "obs_noise"},
            "sampler": {"type": "uniform", "low": 0.0, "high": 0.3},
        },
        "jitter": {
            "variation": {"type": "action_noise"},
            "sampler": {"type": "uniform", "low": 0.0, "high": 0.5},
        },
        **_grid("lag", {"type": "action_delay"}, [0, 1, 3]),
        **_grid("hold", {"type": "action_repeat"}, [1, 2]),
    }
    return _pendulum(tag, factors, episodes=7, num_envs=num_envs, max_steps=15)


def test_perturbed_episodes_replay_exactly_whatever_num_envs(tmp_path: Path) -> None:
    one = _run(tmp_path, "one", _mixed("one", 1))
    three = _run(tmp_path, "three", _mixed("three", 3))
    assert {r.env_index for r in three} == {0, 1, 2}
    assert [r.factors for r in one] == [r.factors for r in three]
    assert [r.outcome for r in one] == [r.outcome for r in three]
    for a, b in zip(one, three, strict=True):
        ta, tb = _trajectory(tmp_path / "one", a), _trajectory(tmp_path / "three", b)
        assert all(np.array_equal(ta[key], tb[key]) for key in ta)
    # In worker processes (async sub-envs) the same.
    job = {**_mixed("async", 2), "vectorization": "async"}
    workers = _run(tmp_path, "async", job)
    assert [r.outcome for r in workers] == [r.outcome for r in one]
    # trialrun replay re-runs a perturbed episode exactly.
    assert all(replay_episode(tmp_path / "three", "pend", k).matches for k in (2, 5))
    # The perturbations did something: the same slots without them end elsewhere.
    plain = _run(tmp_path, "plain", _pendulum("plain", {}, episodes=7, max_steps=15))
    assert [r.outcome["return"] for r in plain] != [r.outcome["return"] for r in one]


def test_kept_failures_are_re_simulated_with_the_same_perturbations(tmp_path: Path) -> None:
    every = _run(tmp_path, "every", {**_mixed("every", 2), "success": {"min_return": -60}})
    job = {
        **_mixed("kept", 2),
        "success": {"min_return": -60},
        "trajectories": {"select": "failures", "episodes": 2},
    }
    kept = [r for r in _run(tmp_path, "kept", job) if r.trajectory]
    assert len(kept) == 2 and not any(r.outcome["success"] for r in kept)
    by_episode = {r.episode: r for r in every}
    for record in kept:
        ours, theirs = (
            _trajectory(tmp_path / "kept", record),
            _trajectory(tmp_path / "every", by_episode[record.episode]),
        )
        assert all(np.array_equal(ours[key], theirs[key]) for key in ours)


def _camera_job(tag: str, variation: dict[str, Any], value: Any) -> dict[str, Any]:
    return {
        "name": "cam",
        "env": "InvertedPendulum-v5",
        "policy": {
            "type": "test_variations_perturbations:ImagePolicy",
            "kwargs": {"tag": tag, "obs_map": {"image": {"camera": "default", "size": [40, 40]}}},
        },
        "episodes": 2,
        "num_envs": 1,
        "max_steps": 4,
        "factors": {"look": {"variation": variation, "sampler": {"type": "constant", "value": value}}},
        "video": {"select": "all", "size": [40, 40]},
        "trajectories": {"select": "all"},
    }


def _seen_and_clean(tmp_path: Path, tag: str, variation: dict[str, Any], value: Any) -> Any:
    """The images the policy got, the clean ones (the trajectory holds the env's
    observations), the videos' frames, and the records."""
    records = _run(tmp_path, tag, _camera_job(tag, variation, value))
    seen = np.stack([image[0] for image, _ in SEEN[tag]])
    clean, frames = [], []
    for record in records:
        assert record.trajectory is not None and record.outcome["length"] == 4
        with h5py.File(tmp_path / tag / record.trajectory) as f:
            clean.append(f["data/demo_0/obs/camera/default"][()])
        frames.extend(decode_frames(tmp_path / tag / record.video["default"])[:4])
    return seen, np.concatenate(clean), np.stack(frames), records


def test_image_noise_changes_what_the_policy_sees_and_not_the_videos(tmp_path: Path) -> None:
    seen, clean, frames, _ = _seen_and_clean(tmp_path, "clean", {"type": "image_noise", "param": "std"}, 0.0)
    assert seen.shape == clean.shape == (8, 40, 40, 3) and clean.std() > 0
    assert np.array_equal(seen, clean)  # std 0: untouched
    # The video shows the simulator: the same picture as the clean observation.
    assert abs(frames.mean() - clean.mean()) < 0.2 * clean.mean()

    seen, clean, frames, _ = _seen_and_clean(
        tmp_path, "dim", {"type": "image_noise", "param": "brightness"}, 0.5
    )
    assert np.array_equal(seen, np.clip(np.rint(clean * 0.5), 0, 255).astype(np.uint8))
    assert seen.mean() < 0.6 * clean.mean()
    assert abs(frames.mean() - clean.mean()) < 0.2 * clean.mean()

    seen, clean, frames, records = _seen_and_clean(
        tmp_path, "noisy", {"type": "image_noise", "param": "std"}, 20.0
    )
    rngs = [episode_generator(r.seed, "look") for r in records]
    expected = [
        np.clip(np.rint(image + rngs[i // 4].normal(0.0, 20.0, image.shape)), 0, 255).astype(np.uint8)
        for i, image in enumerate(clean)
    ]
    assert np.array_equal(seen, np.stack(expected))
    assert abs(frames.astype(float) - clean).mean() < 0.5 * abs(seen.astype(float) - clean).mean()

    variation = {"type": "image_noise", "param": "jpeg_quality", "blur": 1.5}
    seen, clean, _, _ = _seen_and_clean(tmp_path, "jpeg", variation, 10)
    assert not np.array_equal(seen, clean) and np.abs(seen.astype(float) - clean).mean() < 30


@pytest.mark.parametrize(
    ("variation", "sampler", "message"),
    [
        (
            {"type": "obs_noise", "param": "steps"},
            {"type": "uniform", "low": 0, "high": 1},
            "Input should be 'std'",
        ),
        (
            {"type": "action_delay", "fill": [1.0, 2.0]},
            {"type": "choice", "values": [0, 1]},
            "action_delay: fill [1.0, 2.0] is not an action of Box(-2.0, 2.0, (1,), float32)",
        ),
        (
            {"type": "obs_noise", "scale": [1.0, 2.0]},
            {"type": "uniform", "low": 0, "high": 1},
            "obs_noise: scale has 2 entries but the observation has 3 dimensions (shape (3,))",
        ),
        (
            {"type": "image_noise", "param": "blur", "blur": 2},
            {"type": "uniform", "low": 0, "high": 1},
            "image_noise: 'blur' is the factor's param (its value is sampled); remove 'blur' from the "
            "variation or sample another param",
        ),
        (
            {"type": "obs_noise", "keys": ["state"]},
            {"type": "uniform", "low": 0, "high": 1},
            "obs_noise: keys name entries of a Dict observation; this env's is Box(",
        ),
        (
            {"type": "image_noise", "jpeg_quality": 0},
            {"type": "uniform", "low": 0, "high": 1},
            "Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_settings_exit_2_naming_the_field(
    tmp_path: Path, variation: dict[str, Any], sampler: dict[str, Any], message: str
) -> None:
    doc = {
        "name": "bad",
        "jobs": [
            {
                "name": "pend",
                "env": "Pendulum-v1",
                "policy": "zero",
                "episodes": 2,
                "factors": {"f": {"variation": variation, "sampler": sampler}},
            }
        ],
    }
    code, lines = run_error_lines(tmp_path, doc)
    assert code == 2, lines
    assert len(lines) == 1 and "jobs" in lines[0] and "factors.f.variation" in lines[0], lines
    assert message in lines[0], lines


def test_listing_shows_the_perturbations_that_fit_the_env_s_spaces() -> None:
    types = available_variations()
    names = ["obs_noise", "image_noise", "action_noise", "action_delay", "action_repeat"]

    def listed(env_id: str) -> list[tuple[str, str, Any]]:
        env = gym.make(env_id)
        return [(t.variation, t.target, t.nominal) for n in names for t in types[n].targets(env)]

    image = ("image_noise", "camera images", "std 0, blur 0, jpeg 100, brightness 1")
    timing = [("action_delay", "action", 0), ("action_repeat", "action", 1)]
    assert listed("Pendulum-v1") == [
        ("obs_noise", "observation", 0.0),
        image,
        ("action_noise", "action", 0.0),
        *timing,
    ]
    assert listed("FrozenLake-v1") == [image, *timing]  # Discrete observations and actions


def test_a_bad_sampled_value_fails_the_job_with_the_allowed_values(tmp_path: Path) -> None:
    job = _pendulum("bad", _grid("lag", {"type": "action_delay"}, [0.5]), episodes=1)
    result = run_evaluation(parse_run_config({"name": "v", "seed": 1, "jobs": [job]}), tmp_path / "v")
    assert result.statuses == {"pend": "failed"}
    assert "action_delay: steps must be a whole number >= 0, got 0.5" in result.errors["pend"]
