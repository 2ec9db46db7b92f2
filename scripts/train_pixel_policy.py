"""Train the bundled pixel policy ``metaworld-push-pixels`` by behaviour cloning
and export it as a numpy-only ``trialrun-conv/1`` file.

The policy sees one 64x64 image of Meta-World's ``corner`` camera plus the
hand's position and the gripper opening (the first 4 entries of the state
observation), never the puck or goal positions: whatever it knows about
them comes from pixels, so visual factors can break it (the state-based
expert is the control). Push, not reach: reach's goal is a small site whose
height (0.05-0.3 m) no single camera shows, while push's puck and goal lie
on the table, where one camera locates both. ``corner``, not ``topview``:
from above, the arm hides the puck at the start of every episode.

Steps (all seeds fixed; torch only here, never in trialrun's core):

1. collect: Meta-World's scripted expert drives ``metaworld/push-v3``
   through trialrun's own camera wrapper (the renderer the policy sees at
   evaluation), with Gaussian noise added to the executed action (DART), so
   the data covers the states a slightly-off policy reaches; every frame is
   labelled with the expert's clean action. Episodes stop 10 steps after
   success.
2. train: a 4-layer conv net + MLP on the frames (MSE to the clipped expert
   action, Adam), torch on 2 CPU threads.
3. DAgger rounds: the trained net drives, the expert labels; retrain on all.
4. export with :func:`trialrun.policies.npz_conv.save_npz_conv`, check that
   the numpy forward pass matches torch, and report the file size.

    nice -n 10 python scripts/train_pixel_policy.py               # into the package
    python scripts/train_pixel_policy.py --out /tmp/push.npz --episodes 40 --epochs 3

Then measure it with trialrun (``examples/visual_robustness.yaml``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "trialrun" / "policies" / "bundled" / "metaworld-push-pixels.npz"
TASK = "push-v3"
CAMERA = "corner"
SIZE = (64, 64)
STATE_INDEX = [0, 1, 2, 3]  # hand x, y, z and gripper opening
MAX_STEPS = 150
SEED = 0

log = logging.getLogger("train_pixel_policy")


def make_env() -> Any:
    from trialrun.envs.build import make_env as build
    from trialrun.recording.camera_obs import CameraObservations

    return CameraObservations(build(f"metaworld/{TASK}", {}, MAX_STEPS), {CAMERA: SIZE})


def collect(
    env: Any, episodes: int, first_seed: int, noise: float, rng: np.random.Generator, net: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Frames, proprio and expert labels of ``episodes`` episodes; the noisy
    expert drives (or ``net``, a torch module, when given). Returns the
    driver's success rate too."""
    import metaworld.policies as experts
    import torch

    expert = experts.SawyerPushV3Policy()
    images, states, labels, wins = [], [], [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=first_seed + episode)
        after = None
        for _ in range(MAX_STEPS):
            label = np.clip(expert.get_action(obs["state"]), -1.0, 1.0)
            images.append(obs[f"camera/{CAMERA}"])
            states.append(obs["state"][STATE_INDEX])
            labels.append(label)
            if net is None:
                action = np.clip(label + noise * rng.standard_normal(4), -1.0, 1.0)
            else:
                with torch.no_grad():
                    action = net(*batch([images[-1]], [states[-1]])).numpy()[0]
            obs, _, terminated, truncated, info = env.step(action.astype(np.float32))
            if info.get("success") and after is None:
                after, wins = 10, wins + 1
            if after is not None:
                after -= 1
            if terminated or truncated or after == 0:
                break
    return np.stack(images), np.stack(states), np.stack(labels).astype(np.float32), wins / episodes


def batch(images: Any, states: Any) -> tuple[Any, Any]:
    import torch

    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.as_tensor(np.asarray(states), dtype=torch.float32)


def build_net(state_mean: np.ndarray, state_std: np.ndarray) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(3, 16, 5, stride=2),  # 64 -> 30
                    nn.Conv2d(16, 32, 3, stride=2),  # -> 14
                    nn.Conv2d(32, 32, 3, stride=2),  # -> 6
                    nn.Conv2d(32, 16, 3, stride=1),  # -> 4: 256 features
                ]
            )
            self.strides = [2, 2, 2, 1]
            self.fc = nn.ModuleList([nn.Linear(256 + len(STATE_INDEX), 128), nn.Linear(128, 4)])
            self.register_buffer("mean", torch.as_tensor(state_mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(state_std, dtype=torch.float32))

        def forward(self, image: Any, state: Any) -> Any:
            x = image
            for conv in self.convs:
                x = torch.relu(conv(x))
            x = torch.cat([x.flatten(1), (state - self.mean) / self.std], dim=1)
            return self.fc[1](torch.relu(self.fc[0](x)))

    return Net()


def train(net: Any, data: tuple[np.ndarray, np.ndarray, np.ndarray], epochs: int, seed: int) -> None:
    import torch

    images, states, labels = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = len(images)
    for epoch in range(epochs):
        started, total = time.time(), 0.0
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, 128):
            rows = order[start : start + 128]
            x, s = batch(images[rows], states[rows])
            loss = torch.nn.functional.mse_loss(net(x, s), torch.as_tensor(labels[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(rows)
        log.info("epoch %d: loss %.4f (%.0f s, %d frames)", epoch, total / n, time.time() - started, n)


def export(net: Any, path: Path, meta: dict[str, Any]) -> None:
    from trialrun.policies.npz_conv import load_npz_conv, save_npz_conv

    convs = [
        (conv.weight.detach().numpy(), conv.bias.detach().numpy(), stride)
        for conv, stride in zip(net.convs, net.strides, strict=True)
    ]
    layers = [(fc.weight.detach().numpy().T, fc.bias.detach().numpy()) for fc in net.fc]
    save_npz_conv(
        path,
        CAMERA,
        SIZE,
        convs,
        layers,
        activation="relu",
        head="continuous-clip",
        state_index=STATE_INDEX,
        state_mean=net.mean.numpy(),
        state_std=net.std.numpy(),
        action_low=-np.ones(4),
        action_high=np.ones(4),
        meta=meta,
    )
    # The numpy forward pass must be the torch one.
    import torch

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, *SIZE, 3), dtype=np.uint8)
    state = rng.normal(size=(4, 39))
    with torch.no_grad():
        expected = net(*batch(images, state[:, STATE_INDEX])).numpy()
    got = load_npz_conv(path).forward(images, state)
    log.info("numpy vs torch max difference: %.2e", float(np.abs(got - expected).max()))
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--episodes", type=int, default=150, help="noisy-expert episodes")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the DART action noise")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dagger-rounds", type=int, default=3)
    parser.add_argument("--dagger-episodes", type=int, default=40)
    parser.add_argument("--dagger-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data", type=Path, help="keep the noisy-expert frames here (read them if it exists)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    started = time.time()
    env = make_env()
    if args.data is not None and args.data.is_file():
        with np.load(args.data) as cached:
            images, states, labels = cached["images"], cached["states"], cached["labels"]
        log.info("read %d frames from %s", len(images), args.data)
    else:
        # Training seeds start at 10_000, far from the episode seeds trialrun draws.
        images, states, labels, rate = collect(env, args.episodes, 10_000, args.noise, rng)
        log.info("collected %d frames, noisy expert success %.2f", len(images), rate)
        if args.data is not None:
            np.savez(args.data, images=images, states=states, labels=labels)
    net = build_net(states.mean(axis=0), states.std(axis=0) + 1e-3)
    train(net, (images, states, labels), args.epochs, SEED)
    next_seed = 10_000 + args.episodes
    for round_ in range(args.dagger_rounds):
        net.eval()
        more = collect(env, args.dagger_episodes, next_seed, 0.0, rng, net=net)
        next_seed += args.dagger_episodes
        log.info("DAgger round %d: the net succeeds %.2f; +%d frames", round_, more[3], len(more[0]))
        images = np.concatenate([images, more[0]])
        states = np.concatenate([states, more[1]])
        labels = np.concatenate([labels, more[2]])
        net.train()
        train(net, (images, states, labels), args.dagger_epochs, SEED + round_ + 1)
    env.close()
    net.eval()
    minutes = (time.time() - started) / 60
    meta = {
        "env_id": f"metaworld/{TASK}",
        "trained_by": "scripts/train_pixel_policy.py",
        "camera": CAMERA,
        "algorithm": "behaviour cloning (DART noise + DAgger) from metaworld.policies.SawyerPushV3Policy",
        "frames": len(images),
        "episodes": args.episodes,
        "noise": args.noise,
        "epochs": args.epochs,
        "dagger_rounds": args.dagger_rounds,
        "dagger_episodes": args.dagger_episodes,
        "dagger_epochs": args.dagger_epochs,
        "seed": SEED,
        "torch": torch.__version__,
        "minutes": round(minutes, 1),
    }
    export(net, args.out, meta)
    log.info("done in %.1f min", minutes)


if __name__ == "__main__":
    main()
