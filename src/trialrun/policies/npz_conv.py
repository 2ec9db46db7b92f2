"""A small convolutional policy stored as ``.npz``: pixels in, actions out, numpy only.

A policy that reads a camera image is what makes visual factors (lighting,
camera pose, textures, image noise) matter; this format lets trialrun ship
and run one without torch or ONNX Runtime. The network is a stack of
``conv2d -> relu`` layers on one camera's image, flattened, joined by a few
entries of the state observation (proprioception), then an MLP head exactly
as in ``trialrun-mlp/1`` (:mod:`trialrun.policies.npz_mlp`).

Format ``trialrun-conv/1`` (arrays of one ``numpy.savez`` file):

=============================  ====================================================
key                            meaning
=============================  ====================================================
``format``                     the string ``"trialrun-conv/1"``
``camera``                     the camera the policy looks through; it reads the
                               observation key ``camera/<camera>``
``image_shape``                ``[height, width]`` of that image (uint8, RGB)
``crop``                       optional ``[top, left, height, width]``: the net sees
                               only that window of the image (a policy can ask
                               for a larger render and look at the part that
                               matters at a finer scale)
``K0``, ``k0``, ``K1``, ...    conv layer ``i``: kernels ``(out, in, kh, kw)`` (the
                               PyTorch ``Conv2d`` layout), biases ``(out,)``; no
                               padding; pixels enter as ``value / 255``
``strides``                    one integer stride per conv layer
``state_index``                optional: which entries of the ``state`` observation
                               join the image features (default: none)
``state_mean``, ``state_std``  optional: those entries are normalised first
``W0``, ``b0``, ... and the    the MLP head, as in ``trialrun-mlp/1``; its input is
rest of ``trialrun-mlp/1``     the last conv's output flattened in ``(C, H, W)``
                               order (PyTorch's ``flatten``), then the state entries
=============================  ====================================================

Every conv layer is followed by a ReLU. The policy needs its camera in the
observation: the job's env is wrapped to render it (see
:meth:`NpzConvPolicy.observation_cameras`), so ``{type: npz-conv, path:
policy.npz}`` is all a job says.

Example:
    >>> import tempfile, pathlib, gymnasium as gym, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> kernel = np.ones((1, 3, 2, 2)) / 12  # the mean of each 2x2 patch, one channel
    >>> save_npz_conv(path, "corner", (4, 4), [(kernel, np.zeros(1), 2)],
    ...               [(np.ones((4, 1)), np.zeros(1))], activation="identity", head="continuous-clip")
    >>> net = load_npz_conv(path)
    >>> image = np.full((1, 4, 4, 3), 255, np.uint8)
    >>> net.actions(image, np.zeros((1, 0)), np.array([-1.0]), np.array([1.0]))
    array([[1.]])
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from threadpoolctl import ThreadpoolController

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import resolve_policy_file
from trialrun.policies.npz_mlp import NpzMlp, mlp_arrays, open_npz, read_mlp
from trialrun.policies.vla.mapping import CAMERA_PREFIX
from trialrun.policies.vla.mapping import STATE as STATE_KEY

FORMAT = "trialrun-conv/1"

ConvLayer = tuple[np.ndarray, np.ndarray, int]
"""``(kernels (out, in, kh, kw), biases (out,), stride)``."""


def conv2d_relu(x: np.ndarray, kernels: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """``relu(conv2d(x))`` for a channels-last batch ``x`` (B, H, W, C), no padding.

    Patches are a strided view of ``x``; one ``tensordot`` multiplies them by
    the kernels (im2col as a single BLAS call), which keeps a 64x64 image at
    well under a millisecond.
    """
    kh, kw = kernels.shape[2:]
    patches = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    # patches: (B, Ho, Wo, C, kh, kw) against kernels (out, C, kh, kw).
    out = np.tensordot(patches, kernels, axes=([3, 4, 5], [1, 2, 3])) + bias
    return np.asarray(np.maximum(out, 0.0, out=out))


@dataclass
class NpzConv:
    """A loaded ``trialrun-conv/1`` network (see the module docstring)."""

    camera: str
    image_shape: tuple[int, int]
    convs: list[ConvLayer]
    mlp: NpzMlp
    state_index: np.ndarray
    state_mean: np.ndarray | None = None
    state_std: np.ndarray | None = None
    crop: tuple[int, int, int, int] | None = None
    """``(top, left, height, width)`` of the window the conv stack sees, or the whole image."""

    @property
    def feature_size(self) -> int:
        """Values the conv stack gives one image (the MLP's input minus the state entries)."""
        height, width = self.image_shape if self.crop is None else self.crop[2:]
        channels = 3
        for kernels, _, stride in self.convs:
            channels = int(kernels.shape[0])
            height = (height - int(kernels.shape[2])) // stride + 1
            width = (width - int(kernels.shape[3])) // stride + 1
        return channels * height * width

    def forward(self, images: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The MLP's last layer for a batch of uint8 images (B, H, W, 3) and the
        batch's full state vectors (B, n)."""
        if self.crop is not None:
            top, left, height, width = self.crop
            images = np.asarray(images)[:, top : top + height, left : left + width]
        x = np.asarray(images, dtype=np.float32) * np.float32(1.0 / 255.0)
        with _one_blas_thread():
            for kernels, bias, stride in self.convs:
                x = conv2d_relu(x, kernels, bias, stride)
        features = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        part = np.asarray(state, dtype=np.float64).reshape(len(features), -1)[:, self.state_index]
        if self.state_mean is not None:
            part = part - self.state_mean
        if self.state_std is not None:
            part = part / self.state_std
        return self.mlp.forward(np.concatenate([features, part], axis=1))

    def actions(
        self,
        images: np.ndarray,
        state: np.ndarray,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> np.ndarray:
        """Actions for a batch (the head of ``trialrun-mlp/1``: argmax or bounded values)."""
        return self.mlp.head_actions(self.forward(images, state), low, high)


def save_npz_conv(
    path: str | Path,
    camera: str,
    image_shape: tuple[int, int],
    convs: Sequence[ConvLayer],
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    activation: str,
    head: str,
    state_index: Sequence[int] = (),
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    crop: tuple[int, int, int, int] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a ``trialrun-conv/1`` file and read it back (a broken export fails here)."""
    arrays = mlp_arrays(
        layers, activation=activation, head=head, action_low=action_low, action_high=action_high, meta=meta
    )
    arrays.update(
        format=np.array(FORMAT),
        camera=np.array(camera),
        image_shape=np.asarray(image_shape, dtype=np.int64),
        strides=np.asarray([stride for _, _, stride in convs], dtype=np.int64),
        state_index=np.asarray(state_index, dtype=np.int64),
    )
    if crop is not None:
        arrays["crop"] = np.asarray(crop, dtype=np.int64)
    for i, (kernels, bias, _) in enumerate(convs):
        arrays[f"K{i}"] = np.asarray(kernels, dtype=np.float32)
        arrays[f"k{i}"] = np.asarray(bias, dtype=np.float32)
    for key, value in (("state_mean", state_mean), ("state_std", state_std)):
        if value is not None:
            arrays[key] = np.asarray(value, dtype=np.float64)
    np.savez(Path(path), **arrays)
    load_npz_conv(path)


def load_npz_conv(path: str | Path) -> NpzConv:
    """Read and check a ``trialrun-conv/1`` file.

    Raises:
        ValueError: the file is not in that format (the message says what is wrong).
    """
    path = Path(path)
    with open_npz(path) as data:
        fmt = str(data["format"].item()) if "format" in data else None
        if fmt != FORMAT:
            raise ValueError(f"{path}: format '{fmt}' is not '{FORMAT}'")
        for key in ("camera", "image_shape", "strides"):
            if key not in data:
                raise ValueError(f"{path}: missing '{key}'")
        strides = [int(s) for s in np.asarray(data["strides"]).reshape(-1)]
        convs: list[ConvLayer] = []
        channels = 3
        for i, stride in enumerate(strides):
            if f"K{i}" not in data or f"k{i}" not in data:
                raise ValueError(f"{path}: conv layer {i} needs K{i} and k{i}")
            kernels = np.asarray(data[f"K{i}"], dtype=np.float32)
            bias = np.asarray(data[f"k{i}"], dtype=np.float32)
            if kernels.ndim != 4 or kernels.shape[1] != channels or bias.shape != (kernels.shape[0],):
                raise ValueError(
                    f"{path}: conv layer {i}: K{i} {kernels.shape} and k{i} {bias.shape} do not fit "
                    f"(kernels are (out, in={channels}, kh, kw))"
                )
            if stride < 1:
                raise ValueError(f"{path}: conv layer {i}: stride {stride} is not positive")
            convs.append((kernels, bias, stride))
            channels = int(kernels.shape[0])
        shape = [int(v) for v in np.asarray(data["image_shape"]).reshape(-1)]
        if len(shape) != 2:
            raise ValueError(f"{path}: image_shape must be [height, width], got {shape}")

        def optional(key: str) -> np.ndarray | None:
            return np.asarray(data[key], dtype=np.float64) if key in data else None

        index = np.asarray(data.get("state_index", []), dtype=np.int64)
        crop = _crop(data, path, (shape[0], shape[1]))
        net = NpzConv(
            camera=str(data["camera"].item()),
            image_shape=(shape[0], shape[1]),
            convs=convs,
            mlp=read_mlp(data, path),
            state_index=index.reshape(-1),
            state_mean=optional("state_mean"),
            state_std=optional("state_std"),
            crop=crop,
        )
    expected = net.feature_size + len(net.state_index)
    if net.feature_size <= 0 or net.mlp.input_size != expected:
        raise ValueError(
            f"{path}: the MLP takes {net.mlp.input_size} inputs; the conv stack gives "
            f"{net.feature_size} and the state {len(net.state_index)}"
        )
    return net


def _crop(data: Any, path: Path, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The file's ``crop`` window, checked to lie inside an image of ``shape``."""
    if "crop" not in data:
        return None
    values = [int(v) for v in np.asarray(data["crop"]).reshape(-1)]
    if len(values) != 4:
        raise ValueError(f"{path}: crop must be [top, left, height, width], got {values}")
    top, left, height, width = values
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > shape[0] or left + width > shape[1]:
        raise ValueError(
            f"{path}: crop [top, left, height, width] = {values} does not fit in the "
            f"{shape[0]}x{shape[1]} image"
        )
    return top, left, height, width


class NpzConvPolicy:
    """Runs a ``trialrun-conv/1`` network (``{type: npz-conv, path: policy.npz}``).

    Deterministic and stateless. The env's observation must hold the network's
    camera (``camera/<name>``) and, if it reads state entries, ``state``.
    """

    def __init__(self, context: PolicyContext, path: str | None = None) -> None:
        file = resolve_policy_file(path, kind="npz-conv")
        self.net = _load(file)
        self.net_path = file
        self.key = CAMERA_PREFIX + self.net.camera
        self._check(context)

    @staticmethod
    def observation_cameras(kwargs: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        """The camera (name -> (height, width)) the file at ``kwargs["path"]``
        looks through: the job's env is wrapped to render it every step."""
        net = _load(resolve_policy_file(kwargs.get("path"), kind="npz-conv"))
        return {net.camera: net.image_shape}

    def _check(self, context: PolicyContext) -> None:
        space, act_space = context.observation_space, context.action_space
        image = space.spaces.get(self.key) if isinstance(space, gym.spaces.Dict) else None
        shape = (*self.net.image_shape, 3)
        if image is None or image.shape != shape:
            raise ConfigError(
                f"{self.net_path.name} looks at '{self.key}' images of shape {shape}; the observation "
                f"space is {space}",
                field="policy.path",
            )
        state = space.spaces.get(STATE_KEY) if isinstance(space, gym.spaces.Dict) else None
        needed = int(self.net.state_index.max()) + 1 if len(self.net.state_index) else 0
        if needed and (state is None or int(np.prod(state.shape or ())) < needed):
            raise ConfigError(
                f"{self.net_path.name} reads state entries up to index {needed - 1}; the observation "
                f"space is {space}",
                field="policy.path",
            )
        if (
            not isinstance(act_space, gym.spaces.Box)
            or int(np.prod(act_space.shape)) != self.net.mlp.output_size
        ):
            raise ConfigError(
                f"{self.net_path.name} has {self.net.mlp.output_size} outputs; the env's action space "
                f"is {act_space}",
                field="policy.path",
            )
        self.low = np.asarray(act_space.low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(act_space.high, dtype=np.float64).reshape(-1)
        self.action_space = act_space

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        images = np.asarray(obs[self.key])
        state = np.asarray(obs[STATE_KEY]) if STATE_KEY in obs else np.zeros((len(images), 0))
        actions = self.net.actions(images, state, self.low, self.high)
        shape = tuple(self.action_space.shape or ())
        return np.asarray(actions.reshape(len(images), *shape), dtype=self.action_space.dtype)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless."""


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """BLAS limited to one thread for the conv stack: its matrices are small,
    and on a busy machine BLAS threads waiting for each other made one 64x64
    forward pass 25x slower (18 ms instead of 0.7 ms, measured on 2 shared cores)."""
    return _blas().limit(limits=1, user_api="blas")


def _load(file: Path) -> NpzConv:
    try:
        return load_npz_conv(file)
    except ValueError as exc:
        raise ConfigError(str(exc), field="policy.path") from None
