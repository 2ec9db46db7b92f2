"""Policies shipped with trialrun as small ``.npz`` files (numpy only):

- ``cartpole-ppo``: PPO on ``CartPole-v1`` (discrete head).
- ``pendulum-ppo``: PPO (with gSDE) on ``Pendulum-v1`` (continuous head).

Both were trained by ``scripts/train_bundled.py`` with fixed seeds and
exported with :func:`trialrun.policies.sb3.export_sb3_to_npz`; the file's
``meta`` record says how (algorithm, steps, seed, versions).

Example:
    >>> load_bundled("cartpole-ppo").meta["env_id"]
    'CartPole-v1'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from trialrun.policies.base import PolicyContext
from trialrun.policies.npz_mlp import NpzMlp, NpzMlpPolicy, load_npz_mlp

BUNDLED = {
    "cartpole-ppo": "cartpole-ppo.npz",
    "pendulum-ppo": "pendulum-ppo.npz",
}


def bundled_path(name: str) -> Path:
    """The installed file of bundled policy ``name``."""
    return Path(str(resources.files("trialrun.policies").joinpath("bundled").joinpath(BUNDLED[name])))


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
