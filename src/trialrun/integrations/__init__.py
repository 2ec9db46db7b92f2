"""Trainer integrations: policies from trainer objects, and training callbacks.

- :mod:`trialrun.integrations.sb3`: ``SB3ModelPolicy`` (a live Stable-Baselines3
  model), ``load_sb3_model``, and ``EvalSuiteCallback`` for ``model.learn``.
- :mod:`trialrun.integrations.torch_module`: ``TorchModulePolicy`` (an
  ``nn.Module``, recurrent or not).

:func:`as_policy` picks the adapter for whatever a trainer hands to
:meth:`trialrun.suites.EvalManager.maybe_run`. The heavy imports happen only
when such an object is passed.

Example:
    >>> import numpy as np
    >>> policy = as_policy(lambda obs: np.zeros(len(obs), dtype=np.int64))
    >>> policy.act(np.zeros((3, 4)))
    array([0, 0, 0])
"""

from __future__ import annotations

import sys
from typing import Any

from trialrun.policies.base import CallablePolicy, Policy


def as_policy(obj: Any, *, deterministic: bool = True) -> Policy:
    """A trialrun policy for ``obj``.

    - an object with ``act`` (and optionally ``reset``): used as it is;
    - a Stable-Baselines3 algorithm (has ``predict`` and ``policy``):
      :class:`~trialrun.integrations.sb3.SB3ModelPolicy`;
    - a torch ``nn.Module``: :class:`~trialrun.integrations.torch_module.TorchModulePolicy`
      with ``mode="argmax"`` (build a ``TorchModulePolicy`` yourself for continuous
      actions or a recurrent module);
    - any other callable ``obs_batch -> actions``: a stateless policy.
    """
    if hasattr(obj, "act"):
        if not hasattr(obj, "reset"):
            return CallablePolicy(obj.act)
        return obj  # type: ignore[no-any-return]
    if hasattr(obj, "predict") and hasattr(obj, "policy"):
        from trialrun.integrations.sb3 import SB3ModelPolicy

        vec_normalize = obj.get_vec_normalize_env() if hasattr(obj, "get_vec_normalize_env") else None
        return SB3ModelPolicy(obj, deterministic=deterministic, vec_normalize=vec_normalize)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        from trialrun.integrations.torch_module import TorchModulePolicy

        return TorchModulePolicy(obj, mode="argmax")
    if callable(obj):
        return CallablePolicy(obj)
    raise TypeError(
        f"cannot evaluate a {type(obj).__name__}: pass a trialrun policy (act/reset), a Stable-Baselines3 "
        "model, a torch nn.Module, or a callable obs_batch -> actions"
    )


__all__ = ["as_policy"]
