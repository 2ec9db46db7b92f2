"""Train PPO on CartPole and evaluate it on a suite while it trains.

Every ``--eval-every`` environment steps, the evaluators of
``examples/suites/cartpole.yaml`` run on the current policy (nominal physics,
a long pole, a heavy cart; 20 paired episodes each), each into its own run
directory under ``runs/cartpole_ppo/evals/<evaluator>/epoch<N>/``, with metrics
in ``metrics.jsonl`` and TensorBoard (``tensorboard --logdir
runs/cartpole_ppo/evals/tensorboard``). At the end, a table shows the success
rates climbing (for how long it takes, see "How long things take" in the
README)::

    pip install torch==2.13.0 && pip install -e ".[sb3,trackers,video]"
    python examples/train_cartpole_ppo.py

The ``video`` extra is needed because the nominal evaluator films one episode
(CartPole draws its frames with pygame). The script exits 1 when any
evaluation failed, so a broken set-up cannot pass for a finished training.

Any run directory works with the other commands, for example
``trialrun report runs/cartpole_ppo/evals/nominal/final``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from trialrun.integrations.sb3 import EvalSuiteCallback
from trialrun.suites import EvalManager, EvalResult

HERE = Path(__file__).resolve().parent


def linear(start: float) -> Any:
    """A learning-rate/clip schedule decaying linearly to zero (RL Zoo's ``lin_``)."""
    return lambda progress_remaining: progress_remaining * start


def cell(result: EvalResult | None) -> str:
    if result is None:
        return "-"
    if not result.ok or result.success_rate is None:
        return "failed"
    low, high = result.success_ci_low or 0.0, result.success_ci_high or 0.0
    return f"{result.success_rate:4.0%} [{low:4.0%},{high:4.0%}]"


def failures(
    history: list[tuple[int, int, dict[str, EvalResult]]], final: dict[str, EvalResult]
) -> list[str]:
    """One line per failed evaluation (evaluator, step and its error message)."""
    runs = [(f"step {step:,}", results) for _, step, results in history] + [("final", final)]
    return [
        f"{name} at {label}: {result.error}"
        for label, results in runs
        for name, result in results.items()
        if not result.ok
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=5_000, help="environment steps between evaluations")
    parser.add_argument("--suites", type=Path, default=HERE / "suites" / "cartpole.yaml")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="overrides the suites file's output_dir"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)  # a small MLP: more threads only contend on a small machine
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("trialrun.suites.manager").setLevel(logging.INFO)  # one line per evaluation

    manager = EvalManager.from_yaml(args.suites, output_dir=args.output_dir)
    # RL Zoo's tuned PPO hyper-parameters for CartPole-v1.
    env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
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
        seed=args.seed,
        device="cpu",
    )
    callback = EvalSuiteCallback(manager, eval_every_steps=args.eval_every)
    started = time.monotonic()
    with manager:
        model.learn(args.timesteps, callback=callback)
    elapsed = time.monotonic() - started
    checkpoint = manager.output_dir / "checkpoints" / "final.zip"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(checkpoint))

    names = list(manager.enabled())
    rows = [(f"{step:>9,}", results) for _, step, results in callback.history]
    rows.append(("    final", callback.final_results))
    width = 19
    print()
    print("success rate [95% CI] on 20 episodes per evaluator")
    print(f"{'step':>9}  " + "  ".join(f"{name:>{width}}" for name in names))
    for label, results in rows:
        print(f"{label}  " + "  ".join(f"{cell(results.get(name)):>{width}}" for name in names))
    eval_seconds = sum(r.eval_seconds for _, _, res in callback.history for r in res.values())
    eval_seconds += sum(r.eval_seconds for r in callback.final_results.values())
    print(f"\ntrained {args.timesteps:,} steps in {elapsed:.0f} s, of which {eval_seconds:.0f} s evaluating")
    print(f"run directories, metrics.jsonl and TensorBoard logs: {manager.output_dir}")
    print(f"final model: {checkpoint} (trialrun suite {args.suites} --policy {checkpoint})")
    failed = failures(callback.history, callback.final_results)
    if failed:
        print(f"\n{len(failed)} evaluation(s) failed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
