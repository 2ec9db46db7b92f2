from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.runfiles import read_episodes

torch.set_num_threads(1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def _ctx(obs: gym.Space, act: gym.Space, n: int) -> PolicyContext:  # type: ignore[type-arg]
    return PolicyContext("x", n, obs, act, {})


CARTPOLE_OBS = gym.spaces.Box(-5, 5, (4,), dtype=np.float32)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_scripted_and_traced_modules_give_the_argmax_of_their_logits(tmp_path: Path, how: str) -> None:
    net = _net().eval()
    module = torch.jit.script(net) if how == "script" else torch.jit.trace(net, torch.zeros(1, 4))
    module.save(str(tmp_path / "actor.pt"))
    policy = build_policy(
        "torchscript", {"path": str(tmp_path / "actor.pt")}, _ctx(CARTPOLE_OBS, gym.spaces.Discrete(2), 9)
    )
    obs = np.random.default_rng(0).normal(size=(9, 4))  # float64 from the env: converted to float32
    with torch.no_grad():
        want = net(torch.as_tensor(obs, dtype=torch.float32)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(policy.act(obs), want)


def test_read_only_observations_are_copied_not_shared(tmp_path: Path) -> None:
    # JAX arrays (natively batched simulators) read as read-only numpy views;
    # torch shares those only with a "not writable" warning.
    net = _net().eval()
    torch.jit.script(net).save(str(tmp_path / "actor.pt"))
    policy = build_policy(
        "torchscript", {"path": str(tmp_path / "actor.pt")}, _ctx(CARTPOLE_OBS, gym.spaces.Discrete(2), 3)
    )
    obs = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    obs.flags.writeable = False
    tensor = policy._tensor(obs)  # type: ignore[attr-defined]
    assert not np.shares_memory(tensor.numpy(), obs)
    np.testing.assert_array_equal(tensor.numpy(), obs)
    writable = np.array(obs)
    assert np.shares_memory(policy._tensor(writable).numpy(), writable)  # type: ignore[attr-defined]


class DictPolicy(nn.Module):
    """Takes a dict with a uint8 image and a state vector; refuses float images."""

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = obs["image"]
        if image.dtype != torch.uint8:
            raise RuntimeError("the image must arrive as uint8")
        brightness = image.to(torch.float32).mean(dim=(1, 2, 3)) / 255.0
        return torch.stack([brightness, obs["state"].sum(dim=1)], dim=1)


def test_dict_observations_with_uint8_images_pass_through(tmp_path: Path) -> None:
    torch.jit.script(DictPolicy()).save(str(tmp_path / "dict.pt"))
    space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8), "state": gym.spaces.Box(-1, 1, (2,))}
    )
    act_space = gym.spaces.Box(-10, 10, (2,), dtype=np.float32)
    policy = build_policy("torchscript", {"path": str(tmp_path / "dict.pt")}, _ctx(space, act_space, 2))
    obs = {
        "image": np.stack([np.full((8, 8, 3), 51, np.uint8), np.full((8, 8, 3), 255, np.uint8)]),
        "state": np.array([[0.5, 0.25], [-1.0, -1.0]], dtype=np.float32),
    }
    np.testing.assert_allclose(policy.act(obs), [[0.2, 0.75], [1.0, -2.0]], atol=1e-6)


class Recurrent(nn.Module):
    """Outputs the number of steps since its last reset (per row)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(n))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self.steps += 1.0
        return self.steps[: obs.shape[0]].unsqueeze(1).clone()

    @torch.jit.export
    def reset(self, mask: torch.Tensor) -> None:
        self.steps[: mask.shape[0]][mask] = 0.0


def test_a_module_reset_method_receives_the_episode_start_mask(tmp_path: Path) -> None:
    torch.jit.script(Recurrent(3)).save(str(tmp_path / "rnn.pt"))
    act_space = gym.spaces.Box(0, 100, (1,), dtype=np.float32)
    policy = build_policy("torchscript", {"path": str(tmp_path / "rnn.pt")}, _ctx(CARTPOLE_OBS, act_space, 3))
    obs = np.zeros((3, 4))
    policy.reset(np.array([True, True, True]))
    policy.act(obs)
    policy.act(obs)
    policy.reset(np.array([False, True, False]))
    np.testing.assert_allclose(policy.act(obs)[:, 0], [3.0, 1.0, 3.0])


def test_a_torchscript_policy_runs_a_job_and_errors_are_clear(tmp_path: Path) -> None:
    torch.jit.script(_net()).save(str(tmp_path / "actor.pt"))
    cfg = parse_run_config(
        {
            "name": "ts",
            "seed": 1,
            "jobs": [
                {
                    "name": "ts",
                    "env": "CartPole-v1",
                    "policy": {"type": "torchscript", "path": str(tmp_path / "actor.pt")},
                    "episodes": 4,
                    "num_envs": 2,
                    "max_steps": 50,
                }
            ],
        }
    )
    assert run_evaluation(cfg, tmp_path / "run").statuses == {"ts": "completed"}
    assert len(read_episodes(tmp_path / "run" / "episodes.jsonl")) == 4

    with pytest.raises(
        ConfigError, match=r"actor.pt does not map the env's observations Box\(-1.0, 1.0, \(3,\)"
    ):
        build_policy(
            "torchscript",
            {"path": str(tmp_path / "actor.pt")},
            _ctx(gym.spaces.Box(-1, 1, (3,), dtype=np.float32), gym.spaces.Discrete(2), 1),
        )
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"field 'policy.path': cannot load .*junk.pt as TorchScript"):
        build_policy(
            "torchscript", {"path": str(tmp_path / "junk.pt")}, _ctx(CARTPOLE_OBS, gym.spaces.Discrete(2), 1)
        )
