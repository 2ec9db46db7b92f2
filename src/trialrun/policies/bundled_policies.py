"""Policies shipped with trialrun as small ``.npz`` files (numpy only):

- ``cartpole-ppo``: PPO on ``CartPole-v1`` (discrete head).
- ``pendulum-ppo``: PPO (with gSDE) on ``Pendulum-v1`` (continuous head).
- ``metaworld-push-pixels``: a conv net (``trialrun-conv/1``) that pushes the
  puck in ``metaworld/push-v3`` from a 128x128 ``corner`` image (it looks at a
  64x64 window over the table) plus the hand position; it cannot see the
  state's puck and goal entries, so visual factors matter to it (the
  state-based ``metaworld-expert`` is the control).

The PPO ones were trained by ``scripts/train_bundled.py`` with fixed seeds
and exported with :func:`trialrun.policies.sb3.export_sb3_to_npz`; the pixel
one by behaviour cloning in ``scripts/train_pixel_policy.py``. Each file's
``meta`` record says how (algorithm, steps, seed, versions).

Example:
    >>> load_bundled("cartpole-ppo").meta["env_id"]
    'CartPole-v1'
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from trialrun.policies.base import PolicyContext
from trialrun.policies.npz_conv import NpzConvPolicy
from trialrun.policies.npz_mlp import NpzMlp, NpzMlpPolicy, load_npz_mlp

BUNDLED = {
    "cartpole-ppo": "cartpole-ppo.npz",
    "pendulum-ppo": "pendulum-ppo.npz",
}
PIXEL_BUNDLED = {"metaworld-push-pixels": "metaworld-push-pixels.npz"}
"""Bundled ``trialrun-conv/1`` networks (read with :func:`trialrun.policies.npz_conv.load_npz_conv`)."""


def bundled_path(name: str) -> Path:
    """The installed file of bundled policy ``name``."""
    file = BUNDLED.get(name) or PIXEL_BUNDLED[name]
    return Path(str(resources.files("trialrun.policies").joinpath("bundled").joinpath(file)))


def load_bundled(name: str) -> NpzMlp:
    """The network of bundled policy ``name``."""
    return load_npz_mlp(bundled_path(name))


class CartPolePPOPolicy(NpzMlpPolicy):
    """PPO trained on CartPole-v1, shipped as an npz MLP (numpy only)."""

    def __init__(self, context: PolicyContext) -> None:
        super().__init__(context, path=str(bundled_path("cartpole-ppo")))


class PendulumPPOPolicy(NpzMlpPolicy):
    """PPO (gSDE) trained on Pendulum-v1, shipped as an npz MLP (numpy only)."""

    def __init__(self, context: PolicyContext) -> None:
        super().__init__(context, path=str(bundled_path("pendulum-ppo")))


class MetaWorldPushPixelsPolicy(NpzConvPolicy):
    """Behaviour-cloned pixel policy for metaworld/push-v3 (corner image + hand position; numpy only)."""

    def __init__(self, context: PolicyContext) -> None:
        super().__init__(context, path=str(bundled_path("metaworld-push-pixels")))

    @staticmethod
    def observation_cameras(kwargs: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        """The bundled file's camera (``corner`` at 128x128)."""
        return NpzConvPolicy.observation_cameras({"path": str(bundled_path("metaworld-push-pixels"))})
