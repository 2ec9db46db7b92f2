"""A numpy MLP stored as ``.npz``: a policy file that needs nothing but numpy.

Format ``trialrun-mlp/1`` (arrays of one ``numpy.savez`` file):

============================  =====================================================
key                           meaning
============================  =====================================================
``format``                    the string ``"trialrun-mlp/1"``
``W0``, ``b0``, ``W1``, ...   layer ``i`` computes ``x @ W{i} + b{i}``; ``W{i}`` has
                              shape ``(in, out)``
``activation``                ``tanh``, ``relu``, ``elu``, ``sigmoid``, ``leaky_relu``
                              or ``identity``, applied after every layer but the last
``head``                      ``discrete``: argmax of the last layer;
                              ``continuous``: ``tanh``, then scaled to the action bounds;
                              ``continuous-clip``: the last layer clipped to the bounds
                              (Stable-Baselines3's deterministic PPO/A2C action)
``obs_mean``, ``obs_std``     optional: observations are normalised as
                              ``(obs - obs_mean) / obs_std`` first ...
``obs_clip``                  ... and clipped to ``[-obs_clip, obs_clip]`` (optional)
``action_low``/``action_high``  optional bounds for the continuous heads (default:
                              the env's action space)
``meta``                      optional JSON text: provenance (env, algorithm, seed...)
============================  =====================================================

Observations must be a flat ``Box`` (other shapes are flattened per row).

Example:
    >>> import tempfile, pathlib, gymnasium as gym, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> save_npz_mlp(path, [(np.eye(2), np.zeros(2))], activation="tanh", head="discrete")
    >>> ctx = PolicyContext("x", 2, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), {})
    >>> NpzMlpPolicy(ctx, path=str(path)).act(np.array([[1.0, 0.0], [0.0, 1.0]]))
    array([0, 1])
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import resolve_policy_file

FORMAT = "trialrun-mlp/1"
HEADS = ("discrete", "continuous", "continuous-clip")

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "identity": lambda x: x,
}


@dataclass
class NpzMlp:
    """A loaded ``trialrun-mlp/1`` network (see the module docstring)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    head: str
    obs_mean: np.ndarray | None = None
    obs_std: np.ndarray | None = None
    obs_clip: float | None = None
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def output_size(self) -> int:
        return int(self.weights[-1].shape[1])

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """The last layer's output (before the head) for a batch of flat observations."""
        x = np.asarray(obs, dtype=np.float64)
        if self.obs_mean is not None:
            x = x - self.obs_mean
        if self.obs_std is not None:
            x = x / self.obs_std
        if self.obs_clip is not None:
            x = np.clip(x, -self.obs_clip, self.obs_clip)
        act = ACTIVATIONS[self.activation]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < last:
                x = act(x)
        return x

    def actions(
        self, obs: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None
    ) -> np.ndarray:
        """Actions for a batch: argmax for ``discrete``, bounded values otherwise."""
        return self.head_actions(self.forward(obs), low, high)

    def head_actions(
        self, out: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None
    ) -> np.ndarray:
        """The head applied to the last layer's output ``out``."""
        if self.head == "discrete":
            return np.asarray(np.argmax(out, axis=1), dtype=np.int64)
        low = self.action_low if self.action_low is not None else low
        high = self.action_high if self.action_high is not None else high
        if low is None or high is None:
            raise ValueError("a continuous head needs action bounds")
        if self.head == "continuous":
            return np.asarray(low + (np.tanh(out) + 1.0) * 0.5 * (high - low))
        return np.asarray(np.clip(out, low, high))


def save_npz_mlp(path: str | Path, layers: Sequence[tuple[np.ndarray, np.ndarray]], **fields: Any) -> None:
    """Write a ``trialrun-mlp/1`` file (layers as ``(W, b)`` with ``W`` of shape
    ``(in, out)``; ``fields``: ``activation``, ``head`` and the optional ones of
    :func:`mlp_arrays`)."""
    np.savez(Path(path), format=np.array(FORMAT), **mlp_arrays(layers, **fields))
    # Validate what was written, so a broken export fails here and not at evaluation.
    load_npz_mlp(path)


def mlp_arrays(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    activation: str,
    head: str,
    obs_mean: np.ndarray | None = None,
    obs_std: np.ndarray | None = None,
    obs_clip: float | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The arrays of an MLP as :func:`read_mlp` reads them (all keys but ``format``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got '{activation}'")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got '{head}'")
    arrays: dict[str, Any] = {"activation": np.array(activation), "head": np.array(head)}
    for i, (w, b) in enumerate(layers):
        arrays[f"W{i}"] = np.asarray(w, dtype=np.float32)
        arrays[f"b{i}"] = np.asarray(b, dtype=np.float32)
    optional = {
        "obs_mean": obs_mean,
        "obs_std": obs_std,
        "action_low": action_low,
        "action_high": action_high,
    }
    for key, value in optional.items():
        if value is not None:
            arrays[key] = np.asarray(value, dtype=np.float64)
    if obs_clip is not None:
        arrays["obs_clip"] = np.array(float(obs_clip))
    if meta:
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def _text(data: Any, key: str, path: Path) -> str:
    if key not in data:
        raise ValueError(f"{path}: missing '{key}'")
    return str(data[key].item())


def load_npz_mlp(path: str | Path) -> NpzMlp:
    """Read and check a ``trialrun-mlp/1`` file.

    Raises:
        ValueError: the file is not in that format (the message says what is wrong).
    """
    path = Path(path)
    with open_npz(path) as data:
        fmt = _text(data, "format", path)
        if fmt != FORMAT:
            hint = (
                " (a conv network: load it with policy type 'npz-conv')"
                if fmt.startswith("trialrun-conv/")
                else ""
            )
            raise ValueError(f"{path}: format '{fmt}' is not '{FORMAT}'{hint}")
        return read_mlp(data, path)


def open_npz(path: Path) -> Any:
    """``numpy.load`` without pickles (a context manager), or a ValueError naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None


def read_mlp(data: Any, path: Path) -> NpzMlp:
    """The MLP part (``W{i}``, ``b{i}``, activation, head, normalisation, bounds,
    meta) of an opened ``.npz`` file; ``trialrun-conv/1`` files hold one too.

    Raises:
        ValueError: naming ``path`` and what is wrong.
    """
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    while f"W{len(weights)}" in data:
        i = len(weights)
        weights.append(np.asarray(data[f"W{i}"], dtype=np.float64))
        if f"b{i}" not in data:
            raise ValueError(f"{path}: layer {i} has W{i} but no b{i}")
        biases.append(np.asarray(data[f"b{i}"], dtype=np.float64))
    if not weights:
        raise ValueError(f"{path}: no layers (W0, b0, ...)")
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"{path}: layer {i}: W{i} {w.shape} and b{i} {b.shape} do not fit")
        if i and w.shape[0] != weights[i - 1].shape[1]:
            raise ValueError(
                f"{path}: layer {i} takes {w.shape[0]} inputs but layer {i - 1} gives "
                f"{weights[i - 1].shape[1]}"
            )
    activation = _text(data, "activation", path)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path}: activation '{activation}' is not one of {sorted(ACTIVATIONS)}")
    head = _text(data, "head", path)
    if head not in HEADS:
        raise ValueError(f"{path}: head '{head}' is not one of {list(HEADS)}")

    def optional(key: str) -> np.ndarray | None:
        return np.asarray(data[key], dtype=np.float64) if key in data else None

    meta = json.loads(_text(data, "meta", path)) if "meta" in data else {}
    clip = optional("obs_clip")
    return NpzMlp(
        weights=weights,
        biases=biases,
        activation=activation,
        head=head,
        obs_mean=optional("obs_mean"),
        obs_std=optional("obs_std"),
        obs_clip=None if clip is None else float(clip),
        action_low=optional("action_low"),
        action_high=optional("action_high"),
        meta=meta,
    )


class NpzMlpPolicy:
    """Runs a ``trialrun-mlp/1`` network (``{type: npz, path: policy.npz}``).

    Deterministic and stateless: the same observation always gives the same action.
    """

    def __init__(self, context: PolicyContext, path: str | None = None) -> None:
        file = resolve_policy_file(path, kind="npz")
        try:
            self.net = load_npz_mlp(file)
        except ValueError as exc:
            raise ConfigError(str(exc), field="policy.path") from None
        self.net_path = file
        self._check(context)

    def _check(self, context: PolicyContext) -> None:
        obs_space, act_space = context.observation_space, context.action_space
        if not isinstance(obs_space, gym.spaces.Box):
            raise ConfigError(
                f"an npz MLP needs a Box observation space, the env has {obs_space}", field="policy.path"
            )
        obs_size = int(np.prod(obs_space.shape))
        if obs_size != self.net.input_size:
            raise ConfigError(
                f"{self.net_path.name} takes {self.net.input_size} observation values, the env gives "
                f"{obs_size} (shape {obs_space.shape})",
                field="policy.path",
            )
        if self.net.head == "discrete":
            if not isinstance(act_space, gym.spaces.Discrete) or int(act_space.n) != self.net.output_size:
                raise ConfigError(
                    f"{self.net_path.name} has a discrete head with {self.net.output_size} actions; "
                    f"the env's action space is {act_space}",
                    field="policy.path",
                )
            self.start = int(act_space.start)
        else:
            if (
                not isinstance(act_space, gym.spaces.Box)
                or int(np.prod(act_space.shape)) != self.net.output_size
            ):
                raise ConfigError(
                    f"{self.net_path.name} has a {self.net.head} head with {self.net.output_size} outputs; "
                    f"the env's action space is {act_space}",
                    field="policy.path",
                )
            self.low = np.asarray(act_space.low, dtype=np.float64).reshape(-1)
            self.high = np.asarray(act_space.high, dtype=np.float64).reshape(-1)
        self.action_space = act_space

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        flat = obs.reshape(obs.shape[0], -1)
        if self.net.head == "discrete":
            return self.net.actions(flat) + self.start
        actions = self.net.actions(flat, self.low, self.high)
        shape = tuple(self.action_space.shape or ())
        return np.asarray(actions.reshape(obs.shape[0], *shape), dtype=self.action_space.dtype)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""
