"""Train the policies trialrun ships (``cartpole-ppo``, ``pendulum-ppo``) and
export them as numpy-only ``.npz`` files into ``src/trialrun/policies/bundled/``.

Reproducible: every seed is fixed, torch runs on one CPU thread, and the
hyper-parameters are RL Baselines3 Zoo's tuned ones for these tasks. With the
same torch / Stable-Baselines3 versions the files come out identical.
Needs the ``sb3`` extra; takes a few minutes on one CPU core.

    python scripts/train_bundled.py                  # both, into the package
    python scripts/train_bundled.py --only cartpole-ppo --out /tmp/bundled
    python scripts/train_bundled.py --evaluate-only  # measure the shipped files with trialrun

After exporting, each policy is evaluated with trialrun itself (100 episodes,
seed 0) and its success rate printed: CartPole succeeds when it survives 500
steps, Pendulum when the episode's return is at least -400.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUNDLED_DIR = REPO / "src" / "trialrun" / "policies" / "bundled"
SEED = 0


def linear(start: float) -> Callable[[float], float]:
    """A linearly decaying schedule (SB3 passes the remaining progress 1 -> 0)."""
    return lambda progress: progress * start


def train_cartpole() -> tuple[Any, dict[str, Any]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    steps = 100_000
    env = make_vec_env("CartPole-v1", n_envs=8, seed=SEED)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=SEED,
        device="cpu",
    )
    model.learn(total_timesteps=steps)
    return model, {"env_id": "CartPole-v1", "timesteps": steps}


def train_pendulum() -> tuple[Any, dict[str, Any]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    steps = 100_000
    env = make_vec_env("Pendulum-v1", n_envs=4, seed=SEED)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        use_sde=True,
        sde_sample_freq=4,
        seed=SEED,
        device="cpu",
    )
    model.learn(total_timesteps=steps)
    return model, {"env_id": "Pendulum-v1", "timesteps": steps}


TRAINERS: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "cartpole-ppo": train_cartpole,
    "pendulum-ppo": train_pendulum,
}

EVALUATION = {
    "cartpole-ppo": {"env": "CartPole-v1", "success": "survived", "max_steps": 500},
    "pendulum-ppo": {"env": "Pendulum-v1", "success": {"min_return": -400.0}},
}


def export(name: str, out_dir: Path) -> Path:
    import numpy as np
    import stable_baselines3
    import torch

    from trialrun.policies.sb3 import export_sb3_to_npz

    torch.manual_seed(SEED)
    started = time.monotonic()
    model, meta = TRAINERS[name]()
    elapsed = time.monotonic() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.npz"
    meta.update(
        {
            "name": name,
            "seed": SEED,
            "trained_by": "scripts/train_bundled.py",
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__.split("+")[0],
        }
    )
    export_sb3_to_npz(model, path, meta=meta)
    # The npz must act exactly like the model it came from.
    obs = model.observation_space.sample()[None].repeat(64, axis=0)
    obs = obs + np.random.default_rng(SEED).normal(0, 0.5, size=obs.shape).astype(obs.dtype)
    want, _ = model.predict(obs, deterministic=True)
    from trialrun.policies.npz_mlp import load_npz_mlp

    net = load_npz_mlp(path)
    space = model.action_space
    low = getattr(space, "low", None)
    got = net.actions(obs, None if low is None else low.astype(float), getattr(space, "high", None))
    if not np.allclose(np.asarray(got).reshape(want.shape), want, atol=1e-4):
        raise SystemExit(f"{name}: the exported npz does not reproduce the model's actions")
    print(
        f"{name}: trained {meta['timesteps']} steps in {elapsed:.0f} s -> {path} "
        f"({path.stat().st_size} bytes)"
    )
    return path


def evaluate(name: str, path: Path, episodes: int) -> float:
    from trialrun.config import parse_run_config
    from trialrun.execution.runner import run_evaluation

    job = {"name": name, "policy": {"type": "npz", "path": str(path)}, "episodes": episodes, "num_envs": 8}
    job.update(EVALUATION[name])
    config = parse_run_config({"name": f"eval-{name}", "seed": 0, "jobs": [job]})
    with tempfile.TemporaryDirectory() as tmp:
        result = run_evaluation(config, Path(tmp) / "run")
    summary = result.summary.jobs[name]
    assert summary.success_rate is not None and summary.success_ci is not None
    print(
        f"{name}: success {summary.success_rate:.1%} "
        f"[{summary.success_ci.low:.1%}, {summary.success_ci.high:.1%}] "
        f"over {summary.episodes} episodes; mean return {summary.return_mean:.1f}"
    )
    return summary.success_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=BUNDLED_DIR, help="output folder (default: the package's)"
    )
    parser.add_argument("--only", choices=sorted(TRAINERS), action="append", help="train only this policy")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per policy")
    parser.add_argument(
        "--evaluate-only", action="store_true", help="measure the files in --out, train nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    for name in args.only or sorted(TRAINERS):
        path = args.out / f"{name}.npz" if args.evaluate_only else export(name, args.out)
        evaluate(name, path, args.episodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
