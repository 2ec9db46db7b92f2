from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trialrun.envs.vector import ActiveSubsetAsyncVectorEnv, ActiveSubsetSyncVectorEnv


@pytest.mark.parametrize("cls", [ActiveSubsetSyncVectorEnv, ActiveSubsetAsyncVectorEnv])
def test_idle_sub_envs_are_not_stepped(cls: type) -> None:
    vec = cls([lambda: gym.make("trialrun/SeedProbe-v0")] * 3)
    try:
        obs, _ = vec.reset(seed=[1, 2, 3])
        active = np.array([True, False, True])
        for _ in range(1):
            obs, rewards, term, trunc, _ = vec.step_active(np.zeros(3, dtype=np.int64), active)
        assert obs[:, 1].tolist() == [1.0, 0.0, 1.0]  # the probe's step counter
        assert rewards.tolist() == [1.0, 0.0, 1.0]
        assert not term[1] and not trunc[1]
        obs, _ = vec.reset(seed=[None, 7, None], options={"reset_mask": np.array([False, True, False])})
        assert obs[:, 0].tolist() == [1.0, 7.0, 3.0]
        assert obs[:, 1].tolist() == [1.0, 0.0, 1.0]
    finally:
        vec.close()
