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
