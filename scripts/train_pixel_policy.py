"""Train the bundled pixel policy ``metaworld-push-pixels`` by behaviour cloning
and export it as a numpy-only ``trialrun-conv/1`` file.

The policy sees a 64x64 window of a 128x128 image of Meta-World's ``corner``
camera plus the hand's position and the gripper opening (the first 4
entries of the state observation), never the puck or goal positions:
whatever it knows about them comes from pixels, so visual factors can break
it (the state-based expert is the control). Push, not reach: reach's goal is
a small site whose height (0.05-0.3 m) no single camera shows, while push's
puck and goal lie on the table, where one camera locates both. ``corner``,
not ``topview``: from above, the arm hides the puck at the start of every
episode. The window, not the whole image at 64x64: there the puck and the
goal are 1-2 pixels wide, and most failures were grasps that missed the
puck; the window shows the table area where puck, goal and gripper move at
twice that scale, for the same conv cost (MuJoCo renders 128x128 about as
fast as 64x64).

Stages (all seeds fixed; torch only here, never in trialrun's core):

0. collect: Meta-World's scripted expert drives ``metaworld/push-v3``
   through trialrun's own camera wrapper (the renderer the policy sees at
   evaluation), with Gaussian noise added to the executed action (DART), so
   the data covers the states a slightly-off policy reaches; every frame is
   labelled with the expert's clean action. Episodes stop 10 steps after
   success. Then train a 4-layer conv net + MLP on the frames (MSE to the
   clipped expert action, Adam, torch on one thread), each frame seen
   through a window shifted by up to 4 pixels (augmentation: the net
   locates the puck relative to the gripper it sees, not to fixed pixels).
1. .. N. DAgger rounds: the trained net drives, the expert labels; retrain
   on all frames.

Then export with :func:`trialrun.policies.npz_conv.save_npz_conv`, check that
the numpy forward pass matches torch, and report the file size.

``--data DIR`` keeps each stage's frames and the net after it there, and a
later call resumes after the last finished stage (``--stages K`` stops after
K stages, so a long training splits into shorter jobs). Resuming gives the
same net as one uninterrupted run: every stage seeds its own generators and
renders through a fresh env (checked: the expert frames, the stage-0 net and a
DAgger round's frames come out bit-identical across processes; torch's
training is bit-identical at a fixed ``--threads``, not across thread
counts). The directory records the settings that made it and refuses others.

    nice -n 10 python scripts/train_pixel_policy.py               # into the package
    nice -n 10 python scripts/train_pixel_policy.py --data /tmp/push --stages 2  # then again
    python scripts/train_pixel_policy.py --out /tmp/push.npz --episodes 40 --epochs 3 --dagger-rounds 1

Then measure it with trialrun (``examples/visual_robustness.yaml``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "trialrun" / "policies" / "bundled" / "metaworld-push-pixels.npz"
TASK = "push-v3"
CAMERA = "corner"
SIZE = (128, 128)  # what the camera renders
CROP = (36, 33, 64, 64)  # top, left, height, width: the window the net sees
SHIFT = 4  # training shifts the window by up to this many pixels
STATE_INDEX = [0, 1, 2, 3]  # hand x, y, z and gripper opening
MAX_STEPS = 150
SEED = 0
# The stored frames: the window grown by SHIFT on every side.
STORED = (CROP[0] - SHIFT, CROP[1] - SHIFT, CROP[2] + 2 * SHIFT, CROP[3] + 2 * SHIFT)

log = logging.getLogger("train_pixel_policy")


def make_env() -> Any:
    from trialrun.envs.build import make_env as build
    from trialrun.recording.camera_obs import CameraObservations

    return CameraObservations(build(f"metaworld/{TASK}", {}, MAX_STEPS), {CAMERA: SIZE})


def stored_window(image: np.ndarray) -> np.ndarray:
    top, left, height, width = STORED
    return image[top : top + height, left : left + width]


def collect(
    env: Any, episodes: int, first_seed: int, noise: float, rng: np.random.Generator, net: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Frames (the stored window), proprio and expert labels of ``episodes``
    episodes; the noisy expert drives (or ``net``, a torch module, when
    given). Returns the driver's success rate too."""
    import metaworld.policies as experts
    import torch

    expert = experts.SawyerPushV3Policy()
    images, states, labels, wins = [], [], [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=first_seed + episode)
        after = None
        for _ in range(MAX_STEPS):
            label = np.clip(expert.get_action(obs["state"]), -1.0, 1.0)
            images.append(stored_window(obs[f"camera/{CAMERA}"]))
            states.append(obs["state"][STATE_INDEX])
            labels.append(label)
            if net is None:
                action = np.clip(label + noise * rng.standard_normal(4), -1.0, 1.0)
            else:
                with torch.no_grad():
                    action = net(*batch(centre([images[-1]]), [states[-1]])).numpy()[0]
            obs, _, terminated, truncated, info = env.step(action.astype(np.float32))
            if info.get("success") and after is None:
                after, wins = 10, wins + 1
            if after is not None:
                after -= 1
            if terminated or truncated or after == 0:
                break
    return np.stack(images), np.stack(states), np.stack(labels).astype(np.float32), wins / episodes


def centre(images: Any) -> np.ndarray:
    """The net's window of stored frames (no shift)."""
    return np.asarray(images)[:, SHIFT : SHIFT + CROP[2], SHIFT : SHIFT + CROP[3]]


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
                    nn.Conv2d(32, 32, 3, stride=1),  # -> 12
                    nn.Conv2d(32, 16, 3, stride=2),  # -> 5: 400 features
                ]
            )
            self.strides = [2, 2, 1, 2]
            self.fc = nn.ModuleList(
                [nn.Linear(400 + len(STATE_INDEX), 128), nn.Linear(128, 128), nn.Linear(128, 4)]
            )
            self.register_buffer("mean", torch.as_tensor(state_mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(state_std, dtype=torch.float32))

        def forward(self, image: Any, state: Any) -> Any:
            x = image
            for conv in self.convs:
                x = torch.relu(conv(x))
            x = torch.cat([x.flatten(1), (state - self.mean) / self.std], dim=1)
            for fc in self.fc[:-1]:
                x = torch.relu(fc(x))
            return self.fc[-1](x)

    return Net()


def train(net: Any, data: tuple[np.ndarray, np.ndarray, np.ndarray], epochs: int, seed: int) -> None:
    """Adam on shifted windows; the learning rate falls from 1e-3 to 3e-4 for
    the last third of the epochs and to 1e-4 for the last one."""
    import torch

    images, states, labels = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = len(images)
    height, width = CROP[2], CROP[3]
    for epoch in range(epochs):
        lr = 1e-4 if epoch == epochs - 1 else 3e-4 if epoch >= epochs * 2 // 3 else 1e-3
        for group in optimizer.param_groups:
            group["lr"] = lr
        started, total = time.time(), 0.0
        order = torch.randperm(n, generator=generator).numpy()
        shifts = torch.randint(0, 2 * SHIFT + 1, (n, 2), generator=generator).numpy()
        for start in range(0, n, 128):
            rows = order[start : start + 128]
            windows = np.stack(
                [
                    images[r, dy : dy + height, dx : dx + width]
                    for r, (dy, dx) in zip(rows, shifts[rows], strict=True)
                ]
            )
            x, s = batch(windows, states[rows])
            loss = torch.nn.functional.mse_loss(net(x, s), torch.as_tensor(labels[rows]))
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss) * len(rows)
        log.info(
            "epoch %d: loss %.4f (lr %.0e, %.0f s, %d frames)", epoch, total / n, lr, time.time() - started, n
        )


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
        crop=CROP,
        meta=meta,
    )
    # The numpy forward pass must be the torch one.
    import torch

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, *SIZE, 3), dtype=np.uint8)
    state = rng.normal(size=(4, 39))
    top, left, height, width = CROP
    with torch.no_grad():
        window = images[:, top : top + height, left : left + width]
        expected = net(*batch(window, state[:, STATE_INDEX])).numpy()
    got = load_npz_conv(path).forward(images, state)
    log.info("numpy vs torch max difference: %.2e", float(np.abs(got - expected).max()))
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)


def check_settings(data: Path, settings: dict[str, Any]) -> None:
    """Record the settings in a new data directory; refuse a directory made with others."""
    file = data / "settings.json"
    if file.is_file():
        made = json.loads(file.read_text())
        if made != settings:
            raise SystemExit(f"{data} was made with {made}, not {settings}: use another --data")
    else:
        data.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(settings, indent=1))


def read_frames(data: Path, stages: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [np.load(data / f"frames-{k}.npz") for k in range(stages)]
    return tuple(np.concatenate([part[key] for part in parts]) for key in ("images", "states", "labels"))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--episodes", type=int, default=200, help="noisy-expert episodes")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the DART action noise")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dagger-rounds", type=int, default=2)
    parser.add_argument("--dagger-episodes", type=int, default=50)
    parser.add_argument("--dagger-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, help="keep each stage's frames and net here, and resume")
    parser.add_argument("--stages", type=int, help="stop after this many stages (resume later)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    settings = {
        key: getattr(args, key)
        for key in (
            "episodes",
            "noise",
            "epochs",
            "dagger_rounds",
            "dagger_episodes",
            "dagger_epochs",
            "threads",
        )
    }
    settings.update(seed=SEED, size=list(SIZE), crop=list(CROP), shift=SHIFT, torch=torch.__version__)
    scratch = None
    if args.data is None:
        scratch = tempfile.TemporaryDirectory(prefix="train_pixel_policy-")
        args.data = Path(scratch.name)
    data: Path = args.data
    check_settings(data, settings)
    done = 0
    while (data / f"net-{done}.pt").is_file():
        done += 1
    total = 1 + args.dagger_rounds
    net: Any = None
    if done:
        net = build_net(np.zeros(len(STATE_INDEX)), np.ones(len(STATE_INDEX)))
        net.load_state_dict(torch.load(data / f"net-{done - 1}.pt"))
        log.info("resumed after stage %d from %s", done - 1, data)
    started, ran = time.time(), 0
    while done < total and (args.stages is None or ran < args.stages):
        stage_started = time.time()
        # A fresh env per stage, as in a resumed run: the image rendered at
        # reset shows the previous episode's goal marker (Meta-World moves the
        # goal site without recomputing positions until the first step), so
        # frames depend on the env's earlier episodes.
        env = make_env()
        if done == 0:
            # Training seeds start at 10_000, far from the episode seeds trialrun draws.
            rng = np.random.default_rng(SEED)
            more = collect(env, args.episodes, 10_000, args.noise, rng)
            log.info("collected %d frames, noisy expert success %.2f", len(more[0]), more[3])
            torch.manual_seed(SEED)
            net = build_net(more[1].mean(axis=0), more[1].std(axis=0) + 1e-3)
        else:
            net.eval()
            first = 10_000 + args.episodes + (done - 1) * args.dagger_episodes
            more = collect(env, args.dagger_episodes, first, 0.0, np.random.default_rng(SEED), net=net)
            log.info("DAgger round %d: the net succeeds %.2f; +%d frames", done, more[3], len(more[0]))
        env.close()
        np.savez(data / f"frames-{done}.npz", images=more[0], states=more[1], labels=more[2])
        net.train()
        epochs = args.epochs if done == 0 else args.dagger_epochs
        train(net, read_frames(data, done + 1), epochs, SEED + done)
        torch.save(net.state_dict(), data / f"net-{done}.pt")
        log.info("stage %d done in %.1f min", done, (time.time() - stage_started) / 60)
        done, ran = done + 1, ran + 1
    if done < total:
        log.info("stopped after stage %d of %d; run again with --data %s to go on", done - 1, total - 1, data)
        return
    net.eval()
    frames = len(read_frames(data, total)[0])
    meta = {
        "env_id": f"metaworld/{TASK}",
        "trained_by": "scripts/train_pixel_policy.py",
        "camera": CAMERA,
        "algorithm": "behaviour cloning (DART noise + DAgger) from metaworld.policies.SawyerPushV3Policy",
        "frames": frames,
        **settings,
    }
    export(net, args.out, meta)
    log.info("this call took %.1f min", (time.time() - started) / 60)
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
