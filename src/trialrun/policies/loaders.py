"""What every checkpoint loader shares: finding the file, importing an
optional extra, and turning a model's raw output into actions for the env.

Paths: a run file's relative policy paths are made absolute by
:func:`trialrun.config.load_run_config` (against the run file's directory).
A config built in Python (``parse_run_config``) keeps them relative, and
:func:`resolve_policy_file` then resolves them against the current working
directory.

Observations reach a model as they come from the env: a batch array, or for
``Dict`` observation spaces a dict of batch arrays; images stay ``uint8``. The
only conversion is float64 -> float32, because exported networks run in float32
and ONNX Runtime refuses a float64 input.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> postprocess_actions(np.array([[0.1, 2.0], [3.0, -1.0]]), gym.spaces.Discrete(2), 2)
    array([1, 0])
    >>> infer_policy_type("checkpoints/model.zip")
    'sb3'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError

OutputMode = Literal["auto", "logits", "action"]

# File suffix -> policy type, for ``trialrun serve-policy model.zip`` and friends.
SUFFIX_TYPES = {
    ".zip": "sb3",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".onnx": "onnx",
    ".npz": "npz",
}


def infer_policy_type(path: str | Path) -> str | None:
    """The policy type a checkpoint file's suffix implies (``None`` if unknown)."""
    return SUFFIX_TYPES.get(Path(path).suffix.lower())


def resolve_policy_file(path: str | Path | None, *, field: str = "policy.path", kind: str = "policy") -> Path:
    """An existing checkpoint file: ``~`` expanded, a relative path taken from
    the current working directory.

    Raises:
        ConfigError: naming ``field`` when no path is given or the file is missing.
    """
    if path is None or str(path) == "":
        raise _needs_file(kind, field)
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path.cwd() / resolved
    if not resolved.is_file():
        raise ConfigError(f"no such file: {resolved}", field=field)
    return resolved


def file_setting_check(kind: str) -> Callable[..., None]:
    """A registry ``check`` (see :func:`~trialrun.policies.registry.register_policy`)
    for a policy loaded from a file: it needs a ``path`` (whether the file exists
    is checked when the run file is loaded)."""

    def check(settings: Mapping[str, Any]) -> None:
        path = settings.get("path")
        if path is None or str(path) == "":
            raise _needs_file(kind, "policy.path")

    return check


def _needs_file(kind: str, field: str) -> ConfigError:
    return ConfigError(f"a '{kind}' policy needs a file: set 'path'", field=field)


def require_extra(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or say which trialrun extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs the '{module}' package ({exc}); install it with: pip install 'trialrun[{extra}]'",
            field="policy.type",
        ) from None


def to_model_input(obs: Any) -> Any:
    """``obs`` with float64 arrays turned into float32 (dicts recursively);
    every other dtype (uint8 images, ints) is passed through untouched."""
    if isinstance(obs, dict):
        return {key: to_model_input(value) for key, value in obs.items()}
    arr = np.asarray(obs)
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


def batch_size(obs: Any) -> int:
    """Number of rows in an observation batch (array or dict of arrays)."""
    if isinstance(obs, dict):
        return batch_size(next(iter(obs.values())))
    return int(np.asarray(obs).shape[0])


def postprocess_actions(
    raw: Any,
    action_space: gym.Space[Any],
    num: int,
    *,
    output: OutputMode = "auto",
    clip: bool = True,
) -> np.ndarray:
    """A batch of ``num`` actions for ``action_space`` from a model's output.

    - ``Discrete``: integer outputs are actions; float outputs of width ``n``
      are logits (or Q-values) and the argmax is taken (``output: logits``
      forces that, ``output: action`` forbids it).
    - ``MultiDiscrete``: float outputs of width ``sum(nvec)`` are per-dimension
      logits; integer outputs are actions.
    - ``Box``: the output is reshaped to the action shape, cast to its dtype and
      (``clip: true``, the default, as Stable-Baselines3's ``predict`` does)
      clipped to its bounds.

    Raises:
        ValueError: the output does not fit the action space (the message says how).
    """
    arr = np.asarray(raw)
    if arr.shape[:1] != (num,):
        raise ValueError(f"the model returned an output of shape {arr.shape} for a batch of {num}")
    if isinstance(action_space, gym.spaces.Discrete):
        n, start = int(action_space.n), int(action_space.start)
        logits = output == "logits" or (
            output == "auto" and np.issubdtype(arr.dtype, np.floating) and arr.ndim == 2 and arr.shape[1] == n
        )
        if logits:
            if arr.ndim != 2 or arr.shape[1] != n:
                raise ValueError(f"expected logits of shape ({num}, {n}), got {arr.shape}")
            return np.asarray(np.argmax(arr, axis=1) + start, dtype=np.int64)
        flat = arr.reshape(num, -1)
        if flat.shape[1] != 1:
            raise ValueError(
                f"for a Discrete({n}) action space the model must return one action or {n} logits "
                f"per row, got shape {arr.shape}"
            )
        return np.asarray(np.rint(flat[:, 0]), dtype=np.int64)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(action_space.nvec).reshape(-1)
        flat = arr.reshape(num, -1)
        if np.issubdtype(arr.dtype, np.floating) and output != "action" and flat.shape[1] == int(nvec.sum()):
            parts = np.split(flat, np.cumsum(nvec)[:-1], axis=1)
            actions = np.stack([np.argmax(p, axis=1) for p in parts], axis=1)
        elif flat.shape[1] == nvec.size:
            actions = np.rint(flat).astype(np.int64)
        else:
            raise ValueError(f"for {action_space} the model must return {nvec.size} actions per row")
        shifted = actions + np.asarray(action_space.start).reshape(-1)
        return np.asarray(shifted.reshape(num, *action_space.shape))
    if isinstance(action_space, gym.spaces.Box):
        size = int(np.prod(action_space.shape))
        if arr.size != num * size:
            raise ValueError(
                f"for an action space of shape {action_space.shape} the model must return {size} "
                f"value(s) per row, got shape {arr.shape}"
            )
        actions = arr.reshape(num, *action_space.shape).astype(action_space.dtype)
        if clip:
            actions = np.clip(actions, action_space.low, action_space.high)
        return actions
    if isinstance(action_space, gym.spaces.MultiBinary):
        return (
            arr.reshape(num, *action_space.shape) > (0.0 if np.issubdtype(arr.dtype, np.floating) else 0)
        ).astype(action_space.dtype)
    raise ValueError(f"action space {action_space} is not supported by checkpoint policies")
