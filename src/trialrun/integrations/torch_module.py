"""A torch ``nn.Module`` as a trialrun policy.

:class:`TorchModulePolicy` turns the observation batch into a tensor, runs the
module under ``torch.no_grad()`` in eval mode (restoring the module's mode
afterwards, so a trainer's module is left as it was), and turns the output
into actions:

- ``argmax`` (discrete logits, the deterministic default for ``Discrete``
  spaces), ``sample`` (draws from ``softmax(logits)`` with a generator per
  sub-env seeded by the slot's policy seed, so a slot's actions do not depend
  on which sub-env ran it), or ``direct`` (the output is the action: the
  default for ``Box`` spaces, clipped to the bounds when a space is given);
- a recurrent module is called as ``module(obs, state) -> (out, state)``
  (``state=None`` at first, as ``nn.GRU``/``nn.LSTM`` accept). ``state`` may be
  a tensor or a tuple/list of tensors (an LSTM's ``(h, c)``) with the sub-env
  axis at ``state_batch_dim`` (1 for ``nn.GRU``/``nn.LSTM`` layouts).
  ``reset(mask)`` puts the state of exactly the masked sub-envs back to the
  initial state (zeros, or ``initial_state(batch)``).

Example:
    >>> import numpy as np, torch
    >>> torch.set_num_threads(1)
    >>> net = torch.nn.Linear(4, 2)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])); _ = net.bias.zero_()
    >>> policy = TorchModulePolicy(net, mode="argmax")
    >>> policy.reset(np.array([True, True]))
    >>> policy.act(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    array([0, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

ActionMode = Literal["argmax", "sample", "direct"]
State = Any  # a tensor, or a tuple/list of tensors


class TorchModulePolicy:
    """Adapts an ``nn.Module`` (obs batch -> logits or actions) to the Policy protocol.

    Args:
        module: the network. Non-recurrent: ``module(obs) -> out``. Recurrent:
            ``module(obs, state) -> (out, state)``.
        action_space: the env's action space; decides the default ``mode``
            (``Discrete``/``MultiDiscrete`` -> ``argmax``, ``Box`` -> ``direct``)
            and the clipping of direct actions.
        mode: ``argmax``, ``sample`` or ``direct``; required when no
            ``action_space`` is given.
        recurrent: call the module with a state and carry it per sub-env.
        state_batch_dim: the sub-env axis of each state tensor.
        initial_state: ``batch -> state``; the state a new episode starts from
            (default: ``None`` for the first call, zeros on later resets).
        device: where to run (default: the device of the module's parameters).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        action_space: gym.Space[Any] | None = None,
        mode: ActionMode | None = None,
        recurrent: bool = False,
        state_batch_dim: int = 1,
        initial_state: Callable[[int], State] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if mode is None:
            if isinstance(action_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
                mode = "argmax"
            elif isinstance(action_space, gym.spaces.Box):
                mode = "direct"
            else:
                raise ValueError(
                    "TorchModulePolicy needs mode='argmax' (discrete logits), 'sample' or 'direct' "
                    f"(continuous actions), or a Discrete/Box action_space to infer it (got {action_space!r})"
                )
        if mode not in ("argmax", "sample", "direct"):
            raise ValueError(f"mode must be 'argmax', 'sample' or 'direct', got {mode!r}")
        self.module = module
        self.action_space = action_space
        self.mode: ActionMode = mode
        self.recurrent = recurrent
        self.state_batch_dim = state_batch_dim
        self.initial_state = initial_state
        if device is None:
            first = next(iter(module.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.state: State = None
        self._batch: int | None = None
        self._rngs: list[np.random.Generator] = []

    # ------------------------------------------------------------------ protocol

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """New episodes start in the sub-envs of ``mask``: their recurrent state
        and sampling generator (and only theirs) start over."""
        mask = np.asarray(mask, dtype=bool)
        if self._batch != len(mask):
            self._batch = len(mask)
            self.state = None
            self._rngs = [np.random.default_rng() for _ in range(len(mask))]
        for i in np.flatnonzero(mask).tolist():
            seed = None if seeds is None else seeds[i]
            self._rngs[i] = np.random.default_rng(seed)
        if self.state is not None and mask.any():
            if mask.all() and self.initial_state is None:
                self.state = None
            else:
                self.state = self._reset_state(self.state, mask)

    def act(self, obs: Any) -> np.ndarray:
        x = self._to_tensor(obs)
        batch = _batch_size(x)
        if self._batch != batch:
            self.reset(np.ones(batch, dtype=bool))
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                if self.recurrent:
                    if self.state is None and self.initial_state is not None:
                        self.state = self._move(self.initial_state(batch))
                    output = self.module(x, self.state)
                    if not isinstance(output, tuple | list) or len(output) != 2:
                        raise TypeError("a recurrent module must return (output, state)")
                    out, self.state = output
                else:
                    out = self.module(x)
                    if isinstance(out, tuple | list):
                        raise TypeError(
                            "the module returned a tuple; if it is recurrent ((obs, state) -> (out, state)) "
                            "pass recurrent=True, else return only the logits/actions"
                        )
        finally:
            self.module.train(was_training)
        return self._actions(out)

    # ------------------------------------------------------------------ helpers

    def _to_tensor(self, obs: Any) -> Any:
        if isinstance(obs, dict):
            return {k: self._to_tensor(v) for k, v in obs.items()}
        array = np.asarray(obs)
        dtype = torch.float32 if array.dtype.kind in "fiub" else None
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    def _move(self, state: State) -> State:
        if isinstance(state, torch.Tensor):
            return state.to(self.device)
        return type(state)(self._move(s) for s in state)

    def _reset_state(self, state: State, mask: np.ndarray) -> State:
        index = torch.as_tensor(np.flatnonzero(mask), device=self.device)
        fresh = self._move(self.initial_state(len(mask))) if self.initial_state is not None else None
        return _reset_leaves(state, fresh, index, self.state_batch_dim)

    def _actions(self, out: torch.Tensor) -> np.ndarray:
        values = out.detach().float().cpu().numpy()
        if self.mode == "argmax":
            return np.asarray(values.argmax(axis=-1), dtype=np.int64)
        if self.mode == "sample":
            logits = values - values.max(axis=-1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=-1, keepdims=True)
            rows = probs.reshape(len(probs), -1, probs.shape[-1])
            actions = np.array(
                [
                    [rng.choice(p.shape[-1], p=p) for p in row]
                    for rng, row in zip(self._rngs, rows, strict=True)
                ],
                dtype=np.int64,
            )
            return np.asarray(actions.reshape(probs.shape[:-1]))
        if isinstance(self.action_space, gym.spaces.Box):
            values = np.clip(values, self.action_space.low, self.action_space.high).astype(
                self.action_space.dtype
            )
        return values


def _batch_size(x: Any) -> int:
    if isinstance(x, dict):
        return _batch_size(next(iter(x.values())))
    return int(x.shape[0])


def _reset_leaves(state: State, fresh: State, index: torch.Tensor, dim: int) -> State:
    if isinstance(state, torch.Tensor):
        state = state.clone()
        if fresh is None:
            state.index_fill_(dim, index, 0.0)
        else:
            state.index_copy_(dim, index, fresh.index_select(dim, index).to(state.dtype))
        return state
    if fresh is None:
        return type(state)(_reset_leaves(s, None, index, dim) for s in state)
    return type(state)(_reset_leaves(s, f, index, dim) for s, f in zip(state, fresh, strict=True))
