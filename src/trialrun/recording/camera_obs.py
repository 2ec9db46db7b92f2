"""Camera images as part of the observation, for policies that look (VLA servers).

A server policy whose ``obs_map`` names a camera needs that image every step.
The env is wrapped so its observation becomes a Dict: the original
observation under ``state`` (or a Dict observation's own keys) plus one uint8
``H x W x 3`` image per camera under ``camera/<name>``. Only mapped cameras
are rendered. Named cameras render at the asked size through the same
renderer as videos (:class:`~trialrun.recording.capture.FrameSource`);
``default`` (the env's own ``render()``) is resized with Pillow.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("InvertedPendulum-v5", render_mode="rgb_array")
    >>> env = CameraObservations(env, {"default": (64, 48)})
    >>> obs, _ = env.reset(seed=0)
    >>> sorted(obs), obs["camera/default"].shape, obs["camera/default"].dtype
    (['camera/default', 'state'], (64, 48, 3), dtype('uint8'))
    >>> env.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.recording.capture import DEFAULT_CAMERA, FrameSource

CAMERA_PREFIX = "camera/"
"""Observation key prefix of a camera image (``trialrun.policies.vla.mapping`` reads the same)."""
STATE_KEY = "state"


class CameraObservations(gym.ObservationWrapper[dict[str, Any], Any, Any]):
    """Adds ``camera/<name>`` images of ``cameras`` (name -> (height, width)) to the observation."""

    def __init__(self, env: gym.Env[Any, Any], cameras: Mapping[str, tuple[int, int]]) -> None:
        super().__init__(env)
        self.cameras = {name: (int(h), int(w)) for name, (h, w) in cameras.items()}
        # The renderers are made at the first observation, not here: an async
        # vector env builds (and closes) one env in the parent only to read its
        # spaces, and a GL context made there would hang the forked workers.
        self._sources: list[FrameSource] | None = None
        base = env.observation_space
        spaces: dict[str, gym.Space[Any]] = (
            dict(base.spaces) if isinstance(base, gym.spaces.Dict) else {STATE_KEY: base}
        )
        for name, (h, w) in self.cameras.items():
            spaces[CAMERA_PREFIX + name] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: Any) -> dict[str, Any]:
        out: dict[str, Any] = (
            dict(observation) if isinstance(observation, Mapping) else {STATE_KEY: observation}
        )
        if self._sources is None:
            # FrameSource renders all its cameras at one size: one source per size.
            by_size: dict[tuple[int, int], list[str]] = {}
            for name, size in self.cameras.items():
                by_size.setdefault(size, []).append(name)
            self._sources = [FrameSource(self.env, names, (w, h)) for (h, w), names in by_size.items()]
        for source in self._sources:
            for name, image in source.render(self.env).items():
                out[CAMERA_PREFIX + name] = _sized(image, self.cameras[name], name == DEFAULT_CAMERA)
        return out

    def close(self) -> None:
        for source in self._sources or []:
            source.close()
        super().close()


def _sized(image: np.ndarray, size: tuple[int, int], may_resize: bool) -> np.ndarray:
    height, width = size
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    if image.shape[:2] == (height, width) or not may_resize:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
