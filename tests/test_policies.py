from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from trialrun.errors import ConfigError
from trialrun.policies import PolicyContext, available_policies, build_policy
from trialrun.policies.base import CallablePolicy


def _ctx(env: gym.Env[Any, Any], n: int = 1) -> PolicyContext:
    return PolicyContext("x", n, env.observation_space, env.action_space, {})


def _episode(env: gym.Env[Any, Any], policy: Any, seed: int) -> tuple[float, Any]:
    obs, _ = env.reset(seed=seed)
    policy.reset(np.array([True]), [seed])
    total, done = 0.0, False
    while not done:
        obs, reward, term, trunc, _ = env.step(policy.act(obs[None])[0])
        total += float(reward)
        done = term or trunc
    return total, obs


def test_cartpole_balance_solves_cartpole() -> None:
    env = gym.make("CartPole-v1")
    policy = build_policy("cartpole-balance", {}, _ctx(env))
    assert [_episode(env, policy, s)[0] for s in range(20)] == [500.0] * 20


def test_pendulum_swingup_swings_up_and_holds() -> None:
    env = gym.make("Pendulum-v1")
    policy = build_policy("pendulum-swingup", {}, _ctx(env))
    for seed in range(20):
        total, obs = _episode(env, policy, seed)
        assert total > -400.0
        assert obs[0] > 0.999  # cos(theta): upright at the end


def test_random_is_reproducible_per_seed_and_zero_is_zero() -> None:
    env = gym.make("Pendulum-v1")
    random = build_policy("random", {}, _ctx(env, 2))
    random.reset(np.array([True, True]), [3, 4])
    first = random.act(np.zeros((2, 3)))
    random.reset(np.array([True, False]), [3, None])
    again = random.act(np.zeros((2, 3)))
    assert first.shape == (2, 1) and first[0] == again[0] and first[1] != again[1]
    assert build_policy("zero", {}, _ctx(env, 2)).act(np.zeros((2, 3))).tolist() == [[0.0], [0.0]]


def test_module_callable_factories() -> None:
    env = gym.make("CartPole-v1")
    policy = build_policy("helpers:plain_function_factory", {}, _ctx(env, 2))
    assert isinstance(policy, CallablePolicy)
    assert policy.act(np.zeros((2, 4))).tolist() == [1, 1]
    slow = build_policy("helpers:SlowPolicy", {"delay": 0.0}, _ctx(env, 2))
    assert slow.act(np.zeros((2, 4))).tolist() == [0, 0]


def test_scripted_policies_reject_the_wrong_env() -> None:
    env = gym.make("Pendulum-v1")
    with pytest.raises(TypeError, match="policy 'cartpole-balance' needs a Box"):
        build_policy("cartpole-balance", {}, _ctx(env))


def test_unknown_policy_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        build_policy("nope", {}, _ctx(gym.make("CartPole-v1")))
    message = str(info.value)
    assert message.startswith("field 'policy.type': unknown policy 'nope'; registered policies: ")
    listed = message.split("registered policies: ")[1].split(";")[0].split(", ")
    assert listed == sorted(listed) and {"cartpole-balance", "metaworld-expert", "random", "zero"} <= set(
        listed
    )
    assert set(available_policies()) >= {"random", "zero", "cartpole-balance", "pendulum-swingup"}


_M64 = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _stream(seed: int, count: int) -> list[int]:
    """The random policy's raw values for a slot, in plain Python (SplitMix64 over a counter)."""
    key = _mix((seed + _G) & _M64)
    return [_mix((key + t * _G) & _M64) for t in range(1, count + 1)]


def _random(space: gym.Space[Any], n: int) -> Any:
    return build_policy("random", {}, PolicyContext("x", n, gym.spaces.Box(-1, 1, (2,)), space, {}))


def test_random_discrete_actions_are_the_slots_splitmix_stream() -> None:
    policy = _random(gym.spaces.Discrete(5, start=2), 3)
    policy.reset(np.ones(3, bool), [7, 8, 2**63 + 5])
    drawn = np.stack([policy.act(None) for _ in range(40)])
    assert drawn.dtype == np.int64 and drawn.shape == (40, 3)
    for column, seed in enumerate([7, 8, 2**63 + 5]):
        assert drawn[:, column].tolist() == [v % 5 + 2 for v in _stream(seed, 40)]


def test_random_box_actions_are_the_slots_stream_scaled_to_the_bounds() -> None:
    space = gym.spaces.Box(np.array([-2.0, 0.0, 10.0]), np.array([2.0, 1.0, 10.5]), dtype=np.float64)
    policy = _random(space, 2)
    policy.reset(np.ones(2, bool), [11, 12])
    drawn = np.stack([policy.act(None) for _ in range(4)])
    assert drawn.shape == (4, 2, 3) and drawn.dtype == np.float64
    for row, seed in enumerate([11, 12]):
        raw = _stream(seed, 12)
        expected = [
            [
                space.low[j] + (space.high[j] - space.low[j]) * ((raw[3 * t + j] >> 11) / 2**53)
                for j in range(3)
            ]
            for t in range(4)
        ]
        assert drawn[:, row].tolist() == expected


def test_random_actions_depend_on_the_slot_alone() -> None:
    """Whichever sub-env runs a slot, and whatever ran there before, it gets the same actions."""
    for space in (gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2, 2), np.float32)):
        wide = _random(space, 4)
        wide.reset(np.ones(4, bool), [1, 2, 3, 4])
        expected = np.stack([wide.act(None)[2] for _ in range(6)])
        narrow = _random(space, 1)
        narrow.reset(np.ones(1, bool), [99])
        for _ in range(5):
            narrow.act(None)
        narrow.reset(np.ones(1, bool), [3])
        got = np.stack([narrow.act(None)[0] for _ in range(6)])
        assert np.array_equal(got, expected) and got.dtype == space.dtype
        # Without a seed, each sub-env gets a fresh stream of its own.
        unseeded = _random(space, 2)
        unseeded.reset(np.ones(2, bool), None)
        both = np.stack([unseeded.act(None) for _ in range(20)])
        assert not np.array_equal(both[:, 0], both[:, 1])


def test_random_actions_are_uniform_and_inside_the_space() -> None:
    policy = _random(gym.spaces.Discrete(3, start=-1), 16)
    policy.reset(np.ones(16, bool), list(range(16)))
    drawn = np.stack([policy.act(None) for _ in range(3000)])
    shares = np.bincount((drawn + 1).ravel(), minlength=3) / drawn.size
    assert drawn.min() == -1 and drawn.max() == 1 and np.abs(shares - 1 / 3).max() < 0.01
    box = _random(gym.spaces.Box(-3.0, 5.0, (4,), np.float32), 16)
    box.reset(np.ones(16, bool), list(range(16)))
    values = np.stack([box.act(None) for _ in range(3000)])
    assert values.dtype == np.float32 and values.min() >= -3.0 and values.max() <= 5.0
    assert abs(float(values.mean()) - 1.0) < 0.05 and abs(float(values.std()) - 8 / 12**0.5) < 0.05
