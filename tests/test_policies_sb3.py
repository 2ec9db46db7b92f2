from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from trialrun.config import load_run_config, parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.npz_mlp import load_npz_mlp
from trialrun.policies.sb3 import detect_algorithm, export_sb3_to_npz
from trialrun.runfiles import read_episodes

torch.set_num_threads(1)
CARTPOLE = gym.make("CartPole-v1")
PENDULUM = gym.make("Pendulum-v1")


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PPO model trained for a few hundred steps and saved as a zip."""
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    path = tmp_path_factory.mktemp("sb3") / "ppo_cartpole.zip"
    model.save(path)
    return path


def _ctx(env: gym.Env, n: int) -> PolicyContext:  # type: ignore[type-arg]
    return PolicyContext("x", n, env.observation_space, env.action_space, {})


def test_the_algorithm_is_detected_from_the_zip(tmp_path: Path) -> None:
    made = {
        "PPO": PPO("MlpPolicy", "CartPole-v1", device="cpu"),
        "A2C": A2C("MlpPolicy", "CartPole-v1", device="cpu"),
        "DQN": DQN("MlpPolicy", "CartPole-v1", device="cpu", buffer_size=100),
        "SAC": SAC("MlpPolicy", "Pendulum-v1", device="cpu", buffer_size=100),
        "TD3": TD3("MlpPolicy", "Pendulum-v1", device="cpu", buffer_size=100),
        "DDPG": DDPG("MlpPolicy", "Pendulum-v1", device="cpu", buffer_size=100),
    }
    for name, model in made.items():
        model.save(tmp_path / f"{name}.zip")
        assert detect_algorithm(tmp_path / f"{name}.zip") == name
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"junk.zip is not a Stable-Baselines3 model zip"):
        detect_algorithm(tmp_path / "junk.zip")


def test_deterministic_actions_equal_sb3_predict(ppo_zip: Path) -> None:
    model = PPO.load(ppo_zip, device="cpu")
    policy = build_policy("sb3", {"path": str(ppo_zip)}, _ctx(CARTPOLE, 32))
    obs = np.random.default_rng(1).normal(0, 0.5, size=(32, 4)).astype(np.float32)
    want, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), want)
    assert policy.algorithm == "PPO"  # type: ignore[attr-defined]


def test_a_run_file_names_the_zip_relative_to_itself(ppo_zip: Path, tmp_path: Path) -> None:
    run_file = ppo_zip.parent / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "name": "sb3",
                "seed": 4,
                "jobs": [
                    {
                        "name": "ppo",
                        "env": "CartPole-v1",
                        "policy": {"type": "sb3", "path": ppo_zip.name},
                        "episodes": 5,
                        "num_envs": 2,
                        "max_steps": 60,
                    }
                ],
            }
        )
    )
    result = run_evaluation(load_run_config(run_file), tmp_path / "run")
    assert result.statuses == {"ppo": "completed"}
    assert sorted(r.episode for r in read_episodes(tmp_path / "run" / "episodes.jsonl")) == [0, 1, 2, 3, 4]


def test_stochastic_actions_depend_only_on_the_slot_and_leave_torch_rng_alone(
    ppo_zip: Path, tmp_path: Path
) -> None:
    def run(num_envs: int, name: str) -> dict[int, tuple[float, int]]:
        cfg = parse_run_config(
            {
                "name": "s",
                "seed": 9,
                "jobs": [
                    {
                        "name": "ppo",
                        "env": "CartPole-v1",
                        "episodes": 6,
                        "num_envs": num_envs,
                        "max_steps": 80,
                        "policy": {"type": "sb3", "path": str(ppo_zip), "kwargs": {"deterministic": False}},
                    }
                ],
            }
        )
        run_evaluation(cfg, tmp_path / name)
        return {
            r.episode: (r.outcome["return"], r.outcome["length"])
            for r in read_episodes(tmp_path / name / "episodes.jsonl")
        }

    torch.manual_seed(123)
    np.random.seed(123)
    before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    one, three = run(1, "one"), run(3, "three")
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert one == three
    # Sampling really happens: the stochastic run differs from the deterministic one.
    det = build_policy("sb3", {"path": str(ppo_zip)}, _ctx(CARTPOLE, 1))
    sto = build_policy("sb3", {"path": str(ppo_zip), "deterministic": False}, _ctx(CARTPOLE, 1))
    obs = np.zeros((1, 4), dtype=np.float32)
    sto.reset(np.array([True]), [5])
    draws = [int(sto.act(obs)[0]) for _ in range(40)]
    assert len(set(draws)) == 2 and int(det.act(obs)[0]) in draws


def test_dqn_epsilon_greedy_is_seeded_per_slot(tmp_path: Path) -> None:
    model = DQN("MlpPolicy", "CartPole-v1", device="cpu", buffer_size=100, exploration_final_eps=0.5)
    model.exploration_rate = 0.5
    model.save(tmp_path / "dqn.zip")
    policy = build_policy(
        "sb3", {"path": str(tmp_path / "dqn.zip"), "deterministic": False}, _ctx(CARTPOLE, 2)
    )
    obs = np.zeros((2, 4), dtype=np.float32)
    policy.reset(np.array([True, True]), [7, 7])
    draws = np.stack([policy.act(obs) for _ in range(50)])
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])  # same seed, same draws
    greedy = int(model.predict(obs[:1], deterministic=True)[0][0])
    share = float(np.mean(draws[:, 0] != greedy))
    assert 0.1 < share < 0.45  # about eps / 2 of the actions are the other one


def test_vecnormalize_statistics_are_applied(ppo_zip: Path, tmp_path: Path) -> None:
    venv = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0), norm_reward=False)
    venv.reset()
    for _ in range(30):
        venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
    venv.save(tmp_path / "vecnormalize.pkl")
    with open(tmp_path / "vecnormalize.pkl", "rb") as f:
        stats = pickle.load(f)
    policy = build_policy(
        "sb3",
        {"path": str(ppo_zip), "vecnormalize_path": str(tmp_path / "vecnormalize.pkl")},
        _ctx(CARTPOLE, 8),
    )
    obs = np.random.default_rng(2).normal(0, 1, size=(8, 4)).astype(np.float32)
    want, _ = PPO.load(ppo_zip, device="cpu").predict(stats.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), want)


def test_space_mismatch_and_bad_algorithm_are_config_errors(ppo_zip: Path) -> None:
    with pytest.raises(ConfigError, match=r"trained on observations Box\(4,\), the env gives Box\(3,\)"):
        build_policy("sb3", {"path": str(ppo_zip)}, _ctx(PENDULUM, 1))
    with pytest.raises(ConfigError, match=r"unknown algorithm 'PPG'; use one of PPO, A2C"):
        build_policy("sb3", {"path": str(ppo_zip), "algorithm": "PPG"}, _ctx(CARTPOLE, 1))


def test_export_to_npz_reproduces_predict(ppo_zip: Path, tmp_path: Path) -> None:
    ppo = PPO.load(ppo_zip, device="cpu")
    export_sb3_to_npz(ppo, tmp_path / "ppo.npz")
    obs = np.random.default_rng(3).normal(0, 1, size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        load_npz_mlp(tmp_path / "ppo.npz").actions(obs), ppo.predict(obs, deterministic=True)[0]
    )
    sac = SAC("MlpPolicy", "Pendulum-v1", device="cpu", buffer_size=100, seed=1)
    export_sb3_to_npz(sac, tmp_path / "sac.npz")
    pobs = np.random.default_rng(4).normal(0, 1, size=(64, 3)).astype(np.float32)
    net = load_npz_mlp(tmp_path / "sac.npz")
    assert net.head == "continuous"
    np.testing.assert_allclose(net.actions(pobs), sac.predict(pobs, deterministic=True)[0], atol=1e-5)
