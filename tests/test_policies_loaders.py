from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.loaders import (
    infer_policy_type,
    postprocess_actions,
    require_extra,
    resolve_policy_file,
    to_model_input,
)
from trialrun.runfiles import read_episodes


def test_postprocess_discrete_logits_integers_and_errors() -> None:
    space = gym.spaces.Discrete(3, start=1)
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(postprocess_actions(logits, space, 2), [2, 1])
    np.testing.assert_array_equal(postprocess_actions(np.array([3, 1]), space, 2), [3, 1])
    with pytest.raises(ValueError, match=r"one action or 3 logits per row, got shape \(2, 2\)"):
        postprocess_actions(np.zeros((2, 2), dtype=np.int64), space, 2)
    with pytest.raises(ValueError, match=r"output of shape \(3, 3\) for a batch of 2"):
        postprocess_actions(np.zeros((3, 3)), space, 2)


def test_postprocess_box_clips_and_reshapes() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    out = postprocess_actions(np.array([[3.0, -0.5], [-4.0, 0.25]]), space, 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1.0, -0.5], [-1.0, 0.25]])
    unclipped = postprocess_actions(np.array([[3.0, -0.5], [-4.0, 0.25]]), space, 2, clip=False)
    np.testing.assert_allclose(unclipped, [[3.0, -0.5], [-4.0, 0.25]])
    md = gym.spaces.MultiDiscrete([2, 3])
    np.testing.assert_array_equal(postprocess_actions(np.array([[0.0, 1.0, 0.0, 0.0, 5.0]]), md, 1), [[1, 2]])


def test_model_input_keeps_images_and_dicts_untouched_except_float64() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    converted = to_model_input({"image": image, "state": np.zeros((1, 3)), "id": np.array([[7]])})
    assert converted["image"] is image or converted["image"].dtype == np.uint8
    np.testing.assert_array_equal(converted["image"], image)
    assert converted["state"].dtype == np.float32 and converted["id"].dtype == np.int64


def test_file_resolution_and_type_inference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert resolve_policy_file("m.onnx") == tmp_path / "m.onnx"
    with pytest.raises(ConfigError, match=r"field 'policy.path': a 'sb3' policy needs a file: set 'path'"):
        resolve_policy_file(None, kind="sb3")
    assert [infer_policy_type(p) for p in ("a.zip", "b.PT", "c.onnx", "d.npz", "e.txt")] == [
        "sb3",
        "torchscript",
        "onnx",
        "npz",
        None,
    ]
    with pytest.raises(
        ConfigError, match=r"needs the 'no_such_pkg_xyz' package .*pip install 'trialrun\[onnx\]'"
    ):
        require_extra("no_such_pkg_xyz", "onnx", "an 'onnx' policy")


def test_policy_shorthand_keys_move_into_kwargs() -> None:
    cfg = parse_run_config(
        {
            "name": "r",
            "jobs": [
                {
                    "name": "a",
                    "env": "CartPole-v1",
                    "episodes": 1,
                    "policy": {"type": "remote", "url": "ws://127.0.0.1:1", "timeout": 3, "kwargs": {}},
                }
            ],
        }
    )
    assert cfg.jobs[0].policy.kwargs == {"url": "ws://127.0.0.1:1", "timeout": 3}
    with pytest.raises(
        ConfigError,
        match=r"field 'jobs.0.policy': unknown key 'pth'; allowed keys: action_keys, api, api_key, api_token, "
        r"ca_file, cameras, connect_timeout, host, kwargs, max_connections, obs_map, path, port,",
    ):
        parse_run_config(
            {
                "name": "r",
                "jobs": [
                    {
                        "name": "a",
                        "env": "CartPole-v1",
                        "episodes": 1,
                        "policy": {"type": "npz", "path": "x", "pth": 1},
                    }
                ],
            }
        )
    with pytest.raises(ConfigError, match=r"'path' is set both next to 'type' and in 'kwargs'"):
        parse_run_config(
            {
                "name": "r",
                "jobs": [
                    {
                        "name": "a",
                        "env": "CartPole-v1",
                        "episodes": 1,
                        "policy": {"type": "npz", "path": "x", "kwargs": {"path": "y"}},
                    }
                ],
            }
        )


# --------------------------------------------------------------------------- instructions


class InstructionEcho:
    """A language-conditioned test policy: action 1 iff the instruction says 'right'."""

    seen: ClassVar[list[str | None]] = []

    def __init__(self, context: PolicyContext) -> None:
        self.from_context = context.instruction

    def act(self, obs: Any, instruction: str) -> np.ndarray:
        InstructionEcho.seen.append(instruction)
        return np.full(len(obs), 1 if "right" in instruction else 0, dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        pass


def test_instruction_reaches_context_and_act_signature() -> None:
    ctx = PolicyContext(
        "CartPole-v1", 2, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), {}, "push right"
    )
    policy = build_policy("test_policies_loaders:InstructionEcho", {}, ctx)
    assert policy.inner.from_context == "push right"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(policy.act(np.zeros((2, 4))), [1, 1])
    with pytest.raises(ConfigError, match=r"field 'instruction': policy .* is language-conditioned"):
        build_policy(
            "test_policies_loaders:InstructionEcho",
            {},
            PolicyContext("CartPole-v1", 2, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), {}),
        )
    # Plain policies are not wrapped.
    plain = build_policy("zero", {}, ctx)
    assert type(plain).__name__ == "ZeroPolicy"


def test_a_jobs_instruction_reaches_the_policy_during_a_run(tmp_path: Path) -> None:
    InstructionEcho.seen.clear()
    cfg = parse_run_config(
        {
            "name": "lang",
            "jobs": [
                {
                    "name": "right",
                    "env": "CartPole-v1",
                    "policy": "test_policies_loaders:InstructionEcho",
                    "instruction": "always push right",
                    "episodes": 3,
                    "num_envs": 2,
                },
                {
                    "name": "left",
                    "env": "CartPole-v1",
                    "policy": "test_policies_loaders:InstructionEcho",
                    "instruction": "always push left",
                    "episodes": 3,
                    "num_envs": 2,
                },
            ],
        }
    )
    result = run_evaluation(cfg, tmp_path / "run")
    assert result.statuses == {"right": "completed", "left": "completed"}
    assert set(InstructionEcho.seen) == {"always push right", "always push left"}
    lengths = {r.job: r.outcome["length"] for r in read_episodes(tmp_path / "run" / "episodes.jsonl")}
    assert set(lengths) == {"right", "left"}
    assert all(length < 20 for length in lengths.values())  # constant pushing topples the pole fast
