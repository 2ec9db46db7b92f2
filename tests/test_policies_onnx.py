from __future__ import annotations

import warnings
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
OBS = gym.spaces.Box(-5, 5, (3,), dtype=np.float32)
TORQUE = gym.spaces.Box(-2, 2, (1,), dtype=np.float32)


def _ctx(obs: gym.Space, act: gym.Space, n: int) -> PolicyContext:  # type: ignore[type-arg]
    return PolicyContext("x", n, obs, act, {})


@pytest.fixture(scope="module")
def actor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1), nn.Tanh()).eval()


@pytest.fixture(scope="module")
def onnx_files(actor: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    scaled = nn.Sequential(actor, nn.Identity()).eval()
    dynamic = folder / "dynamic.onnx"
    torch.onnx.export(
        scaled,
        (torch.zeros(2, 3),),
        str(dynamic),
        input_names=["obs"],
        output_names=["action"],
        dynamic_axes={"obs": {0: "batch"}},
    )
    fixed = folder / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(actor, (torch.zeros(1, 3),), str(fixed), input_names=["obs"], dynamo=False)
    return {"dynamic": dynamic, "fixed": fixed}


@pytest.mark.parametrize("kind", ["dynamic", "fixed"])
def test_onnx_actions_equal_the_torch_model(actor: nn.Module, onnx_files: dict[str, Path], kind: str) -> None:
    policy = build_policy("onnx", {"path": str(onnx_files[kind])}, _ctx(OBS, TORQUE, 5))
    obs = np.random.default_rng(0).normal(size=(5, 3))  # float64: cast to the model's float32
    with torch.no_grad():
        want = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    got = policy.act(obs)
    assert got.shape == (5, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    if kind == "fixed":
        assert policy.fixed_batch_one  # type: ignore[attr-defined]


def test_an_onnx_policy_runs_pendulum(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    cfg = parse_run_config(
        {
            "name": "onnx",
            "seed": 3,
            "jobs": [
                {
                    "name": "o",
                    "env": "Pendulum-v1",
                    "policy": {"type": "onnx", "path": str(onnx_files["dynamic"])},
                    "episodes": 3,
                    "num_envs": 3,
                    "max_steps": 40,
                }
            ],
        }
    )
    assert run_evaluation(cfg, tmp_path / "run").statuses == {"o": "completed"}
    assert [r.outcome["length"] for r in read_episodes(tmp_path / "run" / "episodes.jsonl")] == [40, 40, 40]


def test_onnx_errors_name_the_problem(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no output 'logits'; its outputs: action"):
        build_policy(
            "onnx", {"path": str(onnx_files["dynamic"]), "output_name": "logits"}, _ctx(OBS, TORQUE, 1)
        )
    with pytest.raises(ConfigError, match=r"dynamic.onnx does not map the env's observations"):
        build_policy(
            "onnx",
            {"path": str(onnx_files["dynamic"])},
            _ctx(gym.spaces.Box(-1, 1, (4,), dtype=np.float32), TORQUE, 1),
        )
    dict_space = gym.spaces.Dict({"state": OBS})
    with pytest.raises(ConfigError, match=r"inputs \['obs'\] do not match the observation keys \['state'\]"):
        build_policy("onnx", {"path": str(onnx_files["dynamic"])}, _ctx(dict_space, TORQUE, 1))
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ConfigError, match=r"cannot load .*junk.onnx as an ONNX model"):
        build_policy("onnx", {"path": str(tmp_path / "junk.onnx")}, _ctx(OBS, TORQUE, 1))
