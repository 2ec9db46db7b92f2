from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from trialrun.integrations import as_policy
from trialrun.integrations.sb3 import EvalSuiteCallback, SB3ModelPolicy
from trialrun.runfiles import read_manifest
from trialrun.suites import EvalManager

torch.set_num_threads(1)


def _ppo(env: object = "CartPole-v1", seed: int = 0) -> PPO:
    return PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu")


def test_actions_are_the_models_deterministic_predictions() -> None:
    model = _ppo()
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    policy = SB3ModelPolicy(model)
    policy.reset(np.ones(16, dtype=bool))
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), expected)


def test_vec_normalize_statistics_are_applied() -> None:
    venv = VecNormalize(DummyVecEnv([lambda: __import__("gymnasium").make("CartPole-v1")]), norm_reward=False)
    venv.reset()
    for _ in range(50):
        venv.step(np.array([1]))
    model = _ppo(venv)
    obs = np.random.default_rng(1).normal(scale=3.0, size=(32, 4)).astype(np.float32)
    policy = as_policy(model)
    assert isinstance(policy, SB3ModelPolicy) and policy.vec_normalize is venv
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(policy.act(obs), expected)
    raw, _ = model.predict(obs, deterministic=True)
    assert not np.array_equal(raw, expected)  # the statistics matter for these observations


def test_recurrent_ppo_state_is_cleared_per_sub_env() -> None:
    from sb3_contrib import RecurrentPPO

    model = RecurrentPPO(
        "MlpLstmPolicy",
        "CartPole-v1",
        n_steps=32,
        batch_size=32,
        seed=0,
        device="cpu",
        policy_kwargs={"lstm_hidden_size": 8, "net_arch": []},
    )
    obs = np.random.default_rng(2).normal(size=(8, 3, 4)).astype(np.float32)
    policy = SB3ModelPolicy(model)
    policy.reset(np.ones(3, dtype=bool))
    for t in range(8):
        if t == 5:
            policy.reset(np.array([False, False, True]))
        policy.act(obs[t])
    hidden = policy._state[0]  # (layers, sub-envs, hidden)

    def alone(steps: np.ndarray) -> np.ndarray:
        single = SB3ModelPolicy(model)
        single.reset(np.ones(1, dtype=bool))
        for row in steps:
            single.act(row[None])
        return single._state[0][:, 0]  # type: ignore[no-any-return,index]

    np.testing.assert_allclose(hidden[:, 0], alone(obs[:, 0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden[:, 2], alone(obs[5:, 2]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(hidden[:, 2], alone(obs[:, 2]))


def test_callback_runs_the_suite_during_learn_and_logs_to_sb3(tmp_path: Path) -> None:
    job = {
        "name": "cart",
        "env": "CartPole-v1",
        "episodes": 4,
        "num_envs": 2,
        "max_steps": 40,
        "success": "survived",
    }
    suites = tmp_path / "suites.yaml"
    suites.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "evals"),
                "loggers": ["jsonl"],
                "evaluators": {
                    "every": {"interval": 1, "jobs": [job]},
                    "second": {"interval": 2, "mode": "subprocess", "timeout": 120, "jobs": [job]},
                },
            }
        )
    )
    manager = EvalManager.from_yaml(suites)
    model = _ppo(seed=4)
    model.set_logger(configure(str(tmp_path / "sb3log"), ["csv"]))
    callback = EvalSuiteCallback(manager, eval_every_steps=128)
    model.learn(384, callback=callback)
    manager.close()

    assert [(epoch, step, sorted(results)) for epoch, step, results in callback.history] == [
        (1, 128, ["every"]),
        (2, 256, ["every", "second"]),
        (3, 384, ["every"]),
    ]
    assert all(r.ok for _, _, results in callback.history for r in results.values())
    second = callback.history[1][2]["second"]
    checkpoints = tmp_path / "evals" / "checkpoints"
    assert second.mode == "subprocess" and second.checkpoint == checkpoints / "model_step256.zip"
    assert read_manifest(second.run_dir).config["jobs"][0]["policy"]["type"] == "sb3"  # type: ignore[arg-type]
    # The saved checkpoint is the model at step 256: the child's episodes match an inline run of it.
    inline = manager.run("every", checkpoint=second.checkpoint, epoch=99)
    assert (inline.success_rate, inline.return_mean) == (second.success_rate, second.return_mean)
    # At the end of training every enabled evaluator ran once more.
    assert sorted(callback.final_results) == ["every", "second"]
    assert callback.final_results["every"].run_dir == tmp_path / "evals" / "every" / "final"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model_step256.zip", "model_step384.zip"]
    assert sorted(p.name for p in (tmp_path / "evals" / "every").iterdir()) == [
        "epoch1",
        "epoch2",
        "epoch3",
        "epoch99",
        "final",
    ]

    # SB3's own logger got the metrics at the trainer's step.
    with open(tmp_path / "sb3log" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [
        (int(row["time/total_timesteps"]), float(row["every/success_rate"]))
        for row in rows
        if row.get("every/success_rate") not in (None, "")
    ]
    expected = [(step, results["every"].success_rate) for _, step, results in callback.history]
    expected.append((384, callback.final_results["every"].success_rate))
    assert logged == expected
    assert any(row.get("second/return_mean") not in (None, "") for row in rows)


def test_callback_rejects_a_bad_interval() -> None:
    manager = EvalManager.from_dict(
        {"evaluators": {"e": {"jobs": [{"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 1}]}}},
        loggers=[],
    )
    with pytest.raises(ValueError, match="eval_every_steps must be at least 1"):
        EvalSuiteCallback(manager, eval_every_steps=0)
