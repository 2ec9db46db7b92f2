"""ONNX models through ONNX Runtime: ``{type: onnx, path: policy.onnx}`` (extra ``onnx``).

A model with one input gets the observation batch; a model for a ``Dict``
observation space has one input per key, named like the key. Inputs are cast
to the dtype the model declares (values are not scaled: an image stays 0-255).
The first output (or ``output_name:``) holds actions or logits (see
:func:`trialrun.policies.loaders.postprocess_actions`). A model exported with
a fixed batch size of 1 is run once per sub-env.

Export one with ``torch.onnx.export(actor, example_obs, "policy.onnx",
input_names=["obs"], dynamic_axes={"obs": {0: "batch"}})``.

Example (needs ``pip install 'trialrun[onnx]'``)::

    policy: {type: onnx, path: actor.onnx}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import (
    OutputMode,
    batch_size,
    postprocess_actions,
    require_extra,
    resolve_policy_file,
)
from trialrun.policies.torchscript import dry_run_batch

# ONNX tensor element types -> numpy dtypes.
ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


class OnnxPolicy:
    """Acts with an ONNX model on ONNX Runtime's CPU provider (see the module docstring)."""

    def __init__(
        self,
        context: PolicyContext,
        path: str | None = None,
        output: OutputMode = "auto",
        clip: bool = True,
        output_name: str | None = None,
        threads: int = 1,
    ) -> None:
        ort = require_extra("onnxruntime", "onnx", "an 'onnx' policy")
        file = resolve_policy_file(path, kind="onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConfigError(f"cannot load {file} as an ONNX model: {exc}", field="policy.path") from None
        self.inputs = {i.name: ONNX_DTYPES.get(i.type) for i in self.session.get_inputs()}
        first = self.session.get_inputs()[0]
        self.fixed_batch_one = (
            isinstance(first.shape[0], int) and first.shape[0] == 1 if first.shape else False
        )
        outputs = [o.name for o in self.session.get_outputs()]
        if output_name is not None and output_name not in outputs:
            raise ConfigError(
                f"{file.name} has no output '{output_name}'; its outputs: {', '.join(outputs)}",
                field="policy.kwargs.output_name",
            )
        self.output_name = output_name or outputs[0]
        self.action_space = context.action_space
        self.output: OutputMode = output
        self.clip = clip
        probe = dry_run_batch(context.observation_space)
        self._feed(probe)  # input names are checked before anything runs
        try:
            self.act(probe)
        except Exception as exc:
            raise ConfigError(
                f"{file.name} does not map the env's observations {context.observation_space} to actions in "
                f"{context.action_space}: {exc}",
                field="policy.path",
            ) from None

    def _cast(self, name: str, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        dtype = self.inputs.get(name)
        return np.ascontiguousarray(arr if dtype is None or arr.dtype == dtype else arr.astype(dtype))

    def _feed(self, obs: Any) -> dict[str, np.ndarray]:
        if isinstance(obs, dict):
            missing = sorted(set(self.inputs) - set(obs))
            if missing:
                raise ConfigError(
                    f"the model's inputs {sorted(self.inputs)} do not match the observation keys "
                    f"{sorted(obs)} "
                    f"(missing {missing})",
                    field="policy.path",
                )
            return {name: self._cast(name, obs[name]) for name in self.inputs}
        if len(self.inputs) != 1:
            raise ConfigError(
                f"the model has {len(self.inputs)} inputs ({', '.join(self.inputs)}) but the env's "
                "observation is a single array",
                field="policy.path",
            )
        name = next(iter(self.inputs))
        return {name: self._cast(name, obs)}

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], feed)[0])

    def act(self, obs: Any) -> np.ndarray:
        num = batch_size(obs)
        feed = self._feed(obs)
        if self.fixed_batch_one and num > 1:
            out = np.concatenate([self._run({k: v[i : i + 1] for k, v in feed.items()}) for i in range(num)])
        else:
            out = self._run(feed)
        return postprocess_actions(out, self.action_space, num, output=self.output, clip=self.clip)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """ONNX models are stateless here."""
