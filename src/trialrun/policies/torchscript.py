"""TorchScript modules: ``{type: torchscript, path: policy.pt}`` (extra ``torch``).

The module is called with the observation batch as a tensor (a dict of
tensors for ``Dict`` observation spaces; float64 becomes float32, images stay
``uint8``) and returns actions or logits (see
:func:`trialrun.policies.loaders.postprocess_actions`; ``output:`` and
``clip:`` tune that). A tuple output uses its first element. A stateful
(recurrent) module may export ``reset(mask: Tensor)`` with
``@torch.jit.export``; it is called with the boolean mask of sub-envs whose
episode starts.

Export one with ``torch.jit.script(actor).save("policy.pt")`` or
``torch.jit.trace(actor, example_obs).save("policy.pt")``.

Example (needs ``pip install 'trialrun[torch]'``)::

    policy: {type: torchscript, path: actor.pt, kwargs: {output: logits}}
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import (
    OutputMode,
    batch_size,
    postprocess_actions,
    require_extra,
    resolve_policy_file,
    to_model_input,
)


def dry_run_batch(space: gym.Space[Any]) -> Any:
    """A one-row observation batch inside ``space`` (zeros clipped to the
    bounds), used to check a model's output before any episode runs."""
    if isinstance(space, gym.spaces.Dict):
        return {key: dry_run_batch(sub) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Box):
        zero = np.zeros(space.shape, dtype=space.dtype)
        return np.clip(zero, space.low, space.high)[None]
    if isinstance(space, gym.spaces.Discrete):
        return np.array([space.start], dtype=np.int64)
    return np.zeros((1, *(space.shape or ())), dtype=space.dtype or np.float32)


class TorchScriptPolicy:
    """Acts with a TorchScript module (see the module docstring)."""

    def __init__(
        self,
        context: PolicyContext,
        path: str | None = None,
        output: OutputMode = "auto",
        clip: bool = True,
        torch_threads: int | None = 1,
    ) -> None:
        torch = require_extra("torch", "torch", "a 'torchscript' policy")
        if torch_threads is not None:
            torch.set_num_threads(int(torch_threads))
        self._torch = torch
        file = resolve_policy_file(path, kind="torchscript")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many export
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(file), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot load {file} as TorchScript: {first}", field="policy.path") from None
        self.module.eval()
        self.action_space = context.action_space
        self.output: OutputMode = output
        self.clip = clip
        self._has_reset = hasattr(self.module, "reset")
        try:
            self.act(dry_run_batch(context.observation_space))
        except Exception as exc:
            raise ConfigError(
                f"{file.name} does not map the env's observations {context.observation_space} to actions in "
                f"{context.action_space}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                field="policy.path",
            ) from None
        if self._has_reset:
            self.module.reset(torch.ones(1, dtype=torch.bool))

    def _tensor(self, obs: Any) -> Any:
        if isinstance(obs, dict):
            return {key: self._tensor(value) for key, value in obs.items()}
        array = np.ascontiguousarray(obs)
        if not array.flags.writeable:
            # A JAX array (a natively batched simulator's) reads as a read-only
            # view, which torch shares only with a warning; a copy is cheap.
            array = array.copy()
        return self._torch.as_tensor(array)

    def act(self, obs: Any) -> np.ndarray:
        num = batch_size(obs)
        with self._torch.inference_mode():
            out = self.module(self._tensor(to_model_input(obs)))
        if isinstance(out, tuple | list):
            out = out[0]
        return postprocess_actions(
            out.detach().cpu().numpy(), self.action_space, num, output=self.output, clip=self.clip
        )

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        if self._has_reset:
            self.module.reset(self._torch.as_tensor(np.asarray(mask, dtype=bool)))
