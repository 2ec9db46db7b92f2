"""``trialrun/SeedProbe-v0``: an env whose episode is a known function of its reset seed.

Why it exists: to check an evaluation loop end to end. Its episode length and
success depend only on the reset seed, so every record can be checked against
its seed: a loop that mixes up seeds and sub-envs, drops an episode in flight
or cuts one short is caught at once. Actions are ignored; reward is 1 per step
(so return == length); ``info["success"]`` is reported at every step and turns
true at the last step of a successful episode.

Example:
    >>> env = SeedProbeEnv()
    >>> obs, info = env.reset(seed=12)
    >>> n = 0
    >>> while True:
    ...     obs, r, term, trunc, info = env.step(0); n += 1
    ...     if term: break
    >>> n == probe_length(12), info["success"] == probe_success(12)
    (True, True)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

MAX_PROBE_LENGTH = 40


def probe_length(seed: int) -> int:
    """Episode length for ``seed`` (1..MAX_PROBE_LENGTH)."""
    return 1 + int(np.random.default_rng(seed).integers(0, MAX_PROBE_LENGTH))


def probe_success(seed: int) -> bool:
    """Whether the episode for ``seed`` succeeds."""
    rng = np.random.default_rng(seed)
    rng.integers(0, MAX_PROBE_LENGTH)
    return bool(rng.random() < 0.5)


class SeedProbeEnv(gym.Env[np.ndarray, np.int64]):
    """Episode length and success are pure functions of the reset seed.

    Observation: ``[seed mod 2**20, step, steps_left]`` as float32.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}  # noqa: RUF012 (gymnasium's own convention)

    def __init__(self, render_mode: str | None = None, frame_size: int = 32) -> None:
        self.observation_space = gym.spaces.Box(0.0, float(2**20), shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.frame_size = frame_size
        self._seed = 0
        self._length = 1
        self._success = False
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._seed % 2**20, self._t, self._length - self._t], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**32))
        self._seed = seed
        self._length = probe_length(seed)
        self._success = probe_success(seed)
        self._t = 0
        return self._obs(), {"success": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t >= self._length:
            raise RuntimeError("SeedProbe stepped after its episode ended (reset it first)")
        self._t += 1
        done = self._t >= self._length
        return self._obs(), 1.0, done, False, {"success": bool(done and self._success)}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.zeros((self.frame_size, self.frame_size, 3), dtype=np.uint8)
        frame[..., 0] = (self._t * 6) % 256
        frame[..., 1] = (self._seed * 7) % 256
        frame[: max(1, self.frame_size * self._t // self._length), :, 2] = 255
        return frame
