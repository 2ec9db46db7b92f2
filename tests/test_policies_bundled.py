from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.policies.bundled_policies import bundled_path, load_bundled
from trialrun.policies.registry import available_policies


def test_bundled_files_are_small_npz_mlps_with_provenance() -> None:
    for name, env_id, head in [
        ("cartpole-ppo", "CartPole-v1", "discrete"),
        ("pendulum-ppo", "Pendulum-v1", "continuous-clip"),
    ]:
        path = bundled_path(name)
        assert path.is_file() and path.stat().st_size < 100_000
        net = load_bundled(name)
        assert net.head == head
        assert net.meta["env_id"] == env_id and net.meta["trained_by"] == "scripts/train_bundled.py"
        assert net.meta["seed"] == 0 and net.meta["algorithm"] == "PPO"
        assert name in available_policies()


def test_bundled_policies_solve_their_tasks(tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "bundled",
            "seed": 5,
            "jobs": [
                {
                    "name": "cartpole",
                    "env": "CartPole-v1",
                    "policy": "cartpole-ppo",
                    "episodes": 8,
                    "num_envs": 4,
                    "success": "survived",
                },
                {
                    "name": "pendulum",
                    "env": "Pendulum-v1",
                    "policy": "pendulum-ppo",
                    "episodes": 8,
                    "num_envs": 4,
                    "success": {"min_return": -400},
                },
                {
                    "name": "pendulum-zero",
                    "env": "Pendulum-v1",
                    "policy": "zero",
                    "episodes": 8,
                    "num_envs": 4,
                    "success": {"min_return": -400},
                },
            ],
        }
    )
    summary = run_evaluation(cfg, tmp_path / "run").summary.jobs
    assert summary["cartpole"].success_rate == 1.0 and summary["cartpole"].return_mean == 500.0
    assert summary["pendulum"].success_rate == 1.0
    assert summary["pendulum"].return_mean > -250  # doing nothing averages far below
    assert summary["pendulum-zero"].return_mean < -600


def test_bundled_policies_load_without_torch_or_sb3() -> None:
    code = (
        "import sys, numpy as np, gymnasium as gym\n"
        "sys.modules['torch'] = None; sys.modules['stable_baselines3'] = None\n"
        "from trialrun.policies import PolicyContext, build_policy\n"
        "env = gym.make('CartPole-v1')\n"
        "p = build_policy('cartpole-ppo', {}, PolicyContext('CartPole-v1', 1, env.observation_space, env.action_space, {}))\n"
        "obs, _ = env.reset(seed=0); total = 0.0\n"
        "for _ in range(500):\n"
        "    obs, r, term, trunc, _ = env.step(int(p.act(obs[None])[0])); total += r\n"
        "    if term or trunc: break\n"
        "print(total)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) == 500.0
    assert np.isfinite(float(proc.stdout))
