from __future__ import annotations

import itertools
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from trialrun.config import load_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.npz_mlp import NpzMlpPolicy, load_npz_mlp, save_npz_mlp
from trialrun.runfiles import read_episodes


def _ctx(obs: gym.Space, act: gym.Space, n: int = 3) -> PolicyContext:  # type: ignore[type-arg]
    return PolicyContext("x", n, obs, act, {})


def _random_layers(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.normal(size=(a, b)), rng.normal(size=b)) for a, b in itertools.pairwise(sizes)]


def test_discrete_head_is_the_argmax_of_a_numpy_forward_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layers = _random_layers(rng, [4, 8, 8, 2])
    mean, std = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    path = tmp_path / "p.npz"
    save_npz_mlp(path, layers, activation="relu", head="discrete", obs_mean=mean, obs_std=std, obs_clip=3.0)
    obs = rng.normal(size=(16, 4)).astype(np.float32)
    x = np.clip((obs - mean) / std, -3.0, 3.0)
    for i, (w, b) in enumerate(layers):
        x = x @ w.astype(np.float32) + b.astype(np.float32)
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    policy = build_policy(
        "npz", {"path": str(path)}, _ctx(gym.spaces.Box(-5, 5, (4,)), gym.spaces.Discrete(2), 16)
    )
    np.testing.assert_array_equal(policy.act(obs), np.argmax(x, axis=1))


def test_continuous_head_scales_tanh_to_the_action_bounds(tmp_path: Path) -> None:
    # One identity layer: the action is low + (tanh(obs) + 1) / 2 * (high - low).
    path = tmp_path / "c.npz"
    save_npz_mlp(path, [(np.eye(2), np.zeros(2))], activation="tanh", head="continuous")
    space = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 10.0]), dtype=np.float32)
    policy = NpzMlpPolicy(_ctx(gym.spaces.Box(-9, 9, (2,)), space, 3), path=str(path))
    obs = np.array([[0.0, 0.0], [50.0, -50.0], [0.5, 1.0]])
    actions = policy.act(obs)
    assert actions.dtype == np.float32 and actions.shape == (3, 2)
    np.testing.assert_allclose(actions[0], [0.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(actions[1], [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(actions[2], [-2 + (np.tanh(0.5) + 1) * 2, (np.tanh(1.0) + 1) * 5], atol=1e-5)


def test_continuous_clip_head_and_stored_bounds(tmp_path: Path) -> None:
    path = tmp_path / "k.npz"
    save_npz_mlp(
        path,
        [(np.eye(1), np.zeros(1))],
        activation="identity",
        head="continuous-clip",
        action_low=np.array([-0.5]),
        action_high=np.array([0.5]),
        meta={"note": "clip"},
    )
    net = load_npz_mlp(path)
    assert net.meta == {"note": "clip"} and net.head == "continuous-clip"
    policy = NpzMlpPolicy(_ctx(gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-2, 2, (1,)), 3), path=str(path))
    np.testing.assert_allclose(policy.act(np.array([[-3.0], [0.25], [3.0]]))[:, 0], [-0.5, 0.25, 0.5])


def test_mismatched_spaces_and_bad_files_are_clear_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    save_npz_mlp(path, [(np.ones((4, 2)), np.zeros(2))], activation="tanh", head="discrete")
    with pytest.raises(ConfigError, match=r"p.npz takes 4 observation values, the env gives 3"):
        NpzMlpPolicy(_ctx(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)), path=str(path))
    with pytest.raises(
        ConfigError, match=r"discrete head with 2 actions; the env's action space is Discrete\(3\)"
    ):
        NpzMlpPolicy(_ctx(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3)), path=str(path))
    with pytest.raises(ConfigError, match=r"needs a Box observation space"):
        NpzMlpPolicy(
            _ctx(gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (4,))}), gym.spaces.Discrete(2)), path=str(path)
        )
    with pytest.raises(ConfigError, match=r"field 'policy.path': no such file: .*missing.npz"):
        NpzMlpPolicy(
            _ctx(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)), path=str(tmp_path / "missing.npz")
        )
    np.savez(tmp_path / "other.npz", W0=np.ones((4, 2)))
    with pytest.raises(ConfigError, match=r"other.npz: missing 'format'"):
        NpzMlpPolicy(
            _ctx(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)), path=str(tmp_path / "other.npz")
        )
    np.savez(
        tmp_path / "gap.npz",
        format=np.array("trialrun-mlp/1"),
        W0=np.ones((4, 3)),
        b0=np.zeros(3),
        W1=np.ones((2, 2)),
        b1=np.zeros(2),
        activation=np.array("tanh"),
        head=np.array("discrete"),
    )
    with pytest.raises(ValueError, match=r"layer 1 takes 2 inputs but layer 0 gives 3"):
        load_npz_mlp(tmp_path / "gap.npz")
    with pytest.raises(ValueError, match=r"activation must be one of"):
        save_npz_mlp(tmp_path / "x.npz", [(np.ones((1, 1)), np.zeros(1))], activation="gelu", head="discrete")


def test_a_run_file_resolves_the_path_against_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "project" / "models"
    models.mkdir(parents=True)
    # Push left when the pole leans left, right when it leans right: balances CartPole for a while.
    w = np.zeros((4, 2))
    w[2] = [-1.0, 1.0]
    w[3] = [-1.0, 1.0]
    save_npz_mlp(models / "pd.npz", [(w, np.zeros(2))], activation="identity", head="discrete")
    run_file = tmp_path / "project" / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "name": "npz",
                "seed": 2,
                "jobs": [
                    {
                        "name": "pd",
                        "env": "CartPole-v1",
                        "policy": {"type": "npz", "path": "models/pd.npz"},
                        "episodes": 6,
                        "num_envs": 2,
                        "max_steps": 200,
                        "success": "survived",
                    }
                ],
            }
        )
    )
    monkeypatch.chdir(tmp_path)  # the working directory is NOT the run file's directory
    config = load_run_config(run_file)
    assert config.jobs[0].policy.kwargs == {"path": str(models / "pd.npz")}
    result = run_evaluation(config, tmp_path / "run")
    assert result.statuses == {"pd": "completed"}
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert (
        len(records) == 6 and min(r.outcome["length"] for r in records) > 50
    )  # far better than random (~20)

    missing = tmp_path / "project" / "bad.yaml"
    missing.write_text(run_file.read_text().replace("models/pd.npz", "models/nope.npz"))
    with pytest.raises(
        ConfigError, match=r"bad.yaml: field 'jobs.0.policy.path': no such file: .*models/nope.npz"
    ):
        load_run_config(missing)
