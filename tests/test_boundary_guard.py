"""Guard: act_timeout and episode_timeout around the policy and the env, and the action check."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from trialrun.boundary.guard import DEFAULT_ACT_TIMEOUT, Guard, GuardConfig
from trialrun.errors import ActionError, CallTimeout

SPACE = gym.spaces.Discrete(2)


class _Policy:
    def __init__(self, delay: float = 0.0, action: Any = None) -> None:
        self.delay = delay
        self.action = action
        self.resets: list[list[int]] = []

    def act(self, obs: Any) -> Any:
        time.sleep(self.delay)
        return self.action if self.action is not None else np.zeros(len(obs), np.int64)

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        time.sleep(self.delay)
        self.resets.append(mask.nonzero()[0].tolist())


def test_defaults() -> None:
    config = GuardConfig()
    assert (config.act_timeout, config.episode_timeout) == (DEFAULT_ACT_TIMEOUT, None) == (60.0, None)
    assert (config.on_nonfinite, config.on_out_of_bounds, config.check_actions) == ("fail", "warn", True)


def test_act_timeout_stops_a_slow_act() -> None:
    with Guard(GuardConfig(act_timeout=0.1), SPACE, 2) as guard, pytest.raises(CallTimeout) as err:
        guard.act(_Policy(delay=10), np.zeros((2, 4)), np.ones(2, bool))
    assert str(err.value).startswith("timeout: policy.act did not return within 0.1 s (act_timeout)")


def test_act_timeout_covers_reset() -> None:
    with (
        Guard(GuardConfig(act_timeout=0.1), SPACE, 2) as guard,
        pytest.raises(CallTimeout, match=r"policy\.reset"),
    ):
        guard.reset(_Policy(delay=10), np.ones(2, bool), [1, 2])


def test_episode_timeout_counts_env_steps_and_names_the_episode() -> None:
    config = GuardConfig(act_timeout=None, episode_timeout=0.3)
    active = np.array([True, True])
    with Guard(config, SPACE, 2) as guard:
        guard.started(active, [7, 8])
        assert guard.step(active, lambda: "stepped") == "stepped"
        with pytest.raises(CallTimeout) as err:
            guard.step(active, time.sleep, 10)
    assert str(err.value).startswith("timeout: episode 7 ran for 0.3")
    assert str(err.value).endswith(" s (episode_timeout: 0.3 s; stopped in env.step)")


def test_an_episode_past_its_time_fails_before_the_next_call() -> None:
    config = GuardConfig(act_timeout=5, episode_timeout=0.05)
    active = np.array([False, True])
    with Guard(config, SPACE, 2) as guard:
        guard.started(active, [None, 3])
        time.sleep(0.1)
        with pytest.raises(CallTimeout) as err:
            guard.act(_Policy(), np.zeros((2, 4)), active)
    assert str(err.value).startswith("timeout: episode 3 ran for 0.1")
    assert str(err.value).endswith(" s (episode_timeout: 0.05 s; stopped in policy.act)")


def test_actions_are_checked_unless_turned_off() -> None:
    bad = np.array([0, 5])
    with Guard(GuardConfig(), SPACE, 2) as guard, pytest.raises(ActionError, match="action 5 outside"):
        guard.act(_Policy(action=bad), np.zeros((2, 4)), np.ones(2, bool))
    with Guard(GuardConfig.off(), SPACE, 2) as guard:
        assert guard.act(_Policy(action=bad), np.zeros((2, 4)), np.ones(2, bool)) is bad
