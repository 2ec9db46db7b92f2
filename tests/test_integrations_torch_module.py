from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from trialrun.integrations import as_policy
from trialrun.integrations.torch_module import TorchModulePolicy
from trialrun.runfiles import read_episodes
from trialrun.suites import EvalManager

torch.set_num_threads(1)


def _linear(weights: list[list[float]]) -> torch.nn.Linear:
    w = torch.tensor(weights)
    layer = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.zero_()
    return layer


def test_argmax_for_discrete_logits_and_direct_clipped_actions() -> None:
    logits = _linear([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    policy = TorchModulePolicy(logits, action_space=gym.spaces.Discrete(3))
    assert policy.mode == "argmax"
    obs = np.array([[2.0, 1.0], [0.0, 3.0], [-1.0, -2.0]])
    np.testing.assert_array_equal(policy.act(obs), [0, 1, 2])
    assert policy.act(obs).dtype == np.int64

    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    direct = TorchModulePolicy(_linear([[1.0, 0.0], [0.0, 2.0]]), action_space=box)
    assert direct.mode == "direct"
    actions = direct.act(np.array([[0.5, 0.25], [3.0, -4.0]], dtype=np.float64))
    np.testing.assert_allclose(actions, [[0.5, 0.5], [1.0, -1.0]])
    assert actions.dtype == np.float32
    # Without a space, the mode must be given; an unknown mode is refused.
    with pytest.raises(ValueError, match=r"needs mode='argmax'"):
        TorchModulePolicy(logits)
    with pytest.raises(ValueError, match=r"mode must be"):
        TorchModulePolicy(logits, mode="greedy")  # type: ignore[arg-type]


def test_the_module_is_run_in_eval_mode_without_grad_and_its_mode_restored() -> None:
    seen: list[tuple[bool, bool]] = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)
            self.dropout = torch.nn.Dropout(0.9)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_grad_enabled()))
            return self.dropout(self.layer(x))

    net = Probe().train()
    policy = TorchModulePolicy(net, mode="argmax")
    obs = np.random.default_rng(0).normal(size=(64, 3))
    first, second = policy.act(obs), policy.act(obs)
    np.testing.assert_array_equal(first, second)  # dropout off: deterministic
    assert seen == [(False, False), (False, False)]
    assert net.training is True
    with pytest.raises(TypeError, match=r"pass recurrent=True"):
        TorchModulePolicy(torch.nn.GRU(3, 4), mode="argmax").act(obs[:, None, :])


def test_sample_mode_draws_from_each_slots_own_seed() -> None:
    uniform = _linear([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # four equally likely actions
    a = TorchModulePolicy(uniform, mode="sample")
    b = TorchModulePolicy(uniform, mode="sample")
    obs = np.zeros((3, 2))
    a.reset(np.ones(3, dtype=bool), seeds=[11, 22, 33])
    b.reset(np.ones(3, dtype=bool), seeds=[33, 11, 22])  # the same slots on other sub-envs
    draws_a = np.stack([a.act(obs) for _ in range(20)])
    draws_b = np.stack([b.act(obs) for _ in range(20)])
    np.testing.assert_array_equal(draws_a[:, 0], draws_b[:, 1])
    np.testing.assert_array_equal(draws_a[:, 2], draws_b[:, 0])
    assert set(draws_a.ravel()) == {0, 1, 2, 3}
    assert not np.array_equal(draws_a[:, 0], draws_a[:, 1])


class _GRUPolicyNet(torch.nn.Module):
    """``(obs, h) -> (logits, h)`` around an ``nn.GRU`` (h: [layers, batch, hidden])."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # fixed weights, global generator untouched
            torch.manual_seed(0)
            self.gru = torch.nn.GRU(3, 5, num_layers=2)
            self.head = torch.nn.Linear(5, 2)

    def forward(self, obs: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.gru(obs[None], h)
        return self.head(out[0]), h


def test_recurrent_state_is_reset_for_exactly_the_masked_sub_envs() -> None:
    net = _GRUPolicyNet()
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(10, 3, 3)).astype(np.float32)  # 10 steps, 3 sub-envs
    policy = TorchModulePolicy(net, mode="argmax", recurrent=True)
    policy.reset(np.ones(3, dtype=bool))
    for t in range(10):
        if t == 6:
            policy.reset(np.array([False, True, False]))  # sub-env 1 starts a new episode
        policy.act(obs[t])
    batched = policy.state.clone()

    def alone(steps: np.ndarray) -> torch.Tensor:
        single = TorchModulePolicy(net, mode="argmax", recurrent=True)
        single.reset(np.ones(1, dtype=bool))
        for row in steps:
            single.act(row[None])
        return single.state  # type: ignore[no-any-return]

    torch.testing.assert_close(batched[:, 0], alone(obs[:, 0])[:, 0])
    torch.testing.assert_close(batched[:, 1], alone(obs[6:, 1])[:, 0])  # only what followed its reset
    torch.testing.assert_close(batched[:, 2], alone(obs[:, 2])[:, 0])
    assert not torch.allclose(batched[:, 1], alone(obs[:, 1])[:, 0])


def test_lstm_tuple_state_and_a_learned_initial_state() -> None:
    class LSTMNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1)
                self.lstm = torch.nn.LSTM(2, 4)
                self.head = torch.nn.Linear(4, 3)

        def forward(self, obs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            out, state = self.lstm(obs[None], state)
            return self.head(out[0]), state

    start = (torch.full((1, 1, 4), 0.5), torch.full((1, 1, 4), -0.25))
    policy = TorchModulePolicy(
        LSTMNet(),
        mode="argmax",
        recurrent=True,
        initial_state=lambda n: (start[0].repeat(1, n, 1), start[1].repeat(1, n, 1)),
    )
    policy.reset(np.ones(2, dtype=bool))
    obs = np.ones((2, 2), dtype=np.float32)
    for _ in range(3):
        policy.act(obs)
    policy.reset(np.array([True, False]))
    h, c = policy.state
    torch.testing.assert_close(h[:, 0], start[0][:, 0])
    torch.testing.assert_close(c[:, 0], start[1][:, 0])
    assert not torch.allclose(h[:, 1], start[0][:, 0])


class _StepCounter(torch.nn.Module):
    """A recurrent module whose state counts steps per sub-env; it checks the
    count against SeedProbe's own step counter (obs[:, 1]) on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.mismatches = 0
        self.calls = 0

    def forward(self, obs: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = torch.zeros(1, obs.shape[0], 1)
        running = obs[:, 2] > 0
        self.mismatches += int(((state[0, :, 0] != obs[:, 1]) & running).sum())
        self.calls += 1
        return torch.zeros(obs.shape[0], 2), state + 1


def test_a_recurrent_torch_policy_in_a_real_suite_run(tmp_path: Path) -> None:
    net = _StepCounter()
    manager = EvalManager.from_dict(
        {
            "evaluators": {
                "probe": {
                    "jobs": [{"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 12, "num_envs": 3}],
                }
            }
        },
        output_dir=tmp_path,
        loggers=[],
    )
    policy = TorchModulePolicy(net, action_space=gym.spaces.Discrete(2), recurrent=True)
    result = manager.run("probe", policy=policy, epoch=1)
    assert result.ok and result.episodes == 12
    assert net.calls > 40 and net.mismatches == 0
    lengths = [r.outcome["length"] for r in read_episodes(result.run_dir / "episodes.jsonl")]  # type: ignore[operator]
    assert len(lengths) == 12 and len(set(lengths)) > 1


def test_as_policy_wraps_a_module_and_passes_policies_through() -> None:
    module = _linear([[1.0], [-1.0]])
    wrapped = as_policy(module)
    assert isinstance(wrapped, TorchModulePolicy) and wrapped.mode == "argmax"
    np.testing.assert_array_equal(wrapped.act(np.array([[2.0], [-2.0]])), [0, 1])
    assert as_policy(wrapped) is wrapped
    with pytest.raises(TypeError, match=r"cannot evaluate a int"):
        as_policy(3)
