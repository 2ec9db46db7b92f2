"""Array helpers shared by the adapters: tensors to numpy by duck typing."""

from __future__ import annotations

from typing import Any

import numpy as np

from trialrun.errors import ConfigError


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as a numpy array; a tensor (anything with ``.cpu()``, as torch
    tensors on any device) goes through ``.cpu().numpy()``. torch is never imported."""
    if hasattr(value, "cpu") and hasattr(value, "numpy"):
        if hasattr(value, "detach"):
            value = value.detach()
        return np.asarray(value.cpu().numpy())
    return np.asarray(value)


def world_flags(value: Any, num_worlds: int, what: str) -> np.ndarray:
    """A per-world bool array of length ``num_worlds`` (a clear error otherwise)."""
    flags = to_numpy(value).astype(bool).reshape(-1)
    if flags.shape != (num_worlds,):
        raise ValueError(f"{what} has shape {flags.shape}, expected one value per world ({num_worlds},)")
    return flags


def no_exact_mode(env_name: str) -> ConfigError:
    """The error a wave-only adapter raises from ``reset_worlds``."""
    return ConfigError(
        f"{env_name} resets all worlds together from one global seed and restarts finished worlds "
        "itself: it has no per-world seeded partial reset, so only native_mode: wave is possible",
        field="native_mode",
    )
