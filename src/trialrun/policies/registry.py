"""The policy registry: names usable as ``policy:`` in a job.

A policy source is a factory ``factory(context, **kwargs) -> Policy``. Users
add theirs with :func:`register_policy` or name them directly as
``package.module:factory``. A factory that takes no ``context`` parameter is
called with the kwargs only; a returned plain callable is wrapped as a
stateless policy.

Example:
    >>> "random" in available_policies()
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trialrun._imports import load_object
from trialrun.errors import ConfigError
from trialrun.policies.base import CallablePolicy, InstructedPolicy, Policy, PolicyContext
from trialrun.policies.builtin import RandomPolicy, ZeroPolicy
from trialrun.policies.bundled_policies import CartPolePPOPolicy, PendulumPPOPolicy
from trialrun.policies.metaworld_expert import MetaWorldExpertPolicy
from trialrun.policies.npz_mlp import NpzMlpPolicy
from trialrun.policies.onnx import OnnxPolicy
from trialrun.policies.remote import RemotePolicy
from trialrun.policies.sb3 import SB3Policy
from trialrun.policies.scripted import CartPoleBalancePolicy, PendulumSwingUpPolicy
from trialrun.policies.torchscript import TorchScriptPolicy
from trialrun.policies.vla.factories import gr00t_policy, openpi_policy

PolicyFactory = Callable[..., Any]


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    factory: PolicyFactory
    description: str


_REGISTRY: dict[str, PolicyEntry] = {}


def register_policy(name: str, factory: PolicyFactory, description: str = "") -> None:
    """Make ``factory`` available as ``policy: name``."""
    if name in _REGISTRY and _REGISTRY[name].factory is not factory:
        raise ValueError(f"policy '{name}' is already registered")
    _REGISTRY[name] = PolicyEntry(
        name, factory, description or (factory.__doc__ or "").strip().split("\n")[0]
    )


def available_policies() -> dict[str, PolicyEntry]:
    """Registered policies by name."""
    return dict(_REGISTRY)


def resolve_policy_factory(type_name: str, field: str = "policy.type") -> PolicyFactory:
    """The factory for a registered name or a ``module:callable`` spec."""
    if type_name in _REGISTRY:
        return _REGISTRY[type_name].factory
    if ":" in type_name:
        factory = load_object(type_name, field=field)
        if not callable(factory):
            raise ConfigError(f"'{type_name}' is not callable", field=field)
        return factory  # type: ignore[no-any-return]
    known = ", ".join(sorted(_REGISTRY))
    raise ConfigError(
        f"unknown policy '{type_name}'; registered policies: {known}; "
        "or name a factory as 'package.module:callable'",
        field=field,
    )


def build_policy(type_name: str, kwargs: dict[str, Any], context: PolicyContext) -> Policy:
    """Build a policy for ``context`` from a registered name or ``module:callable``."""
    factory = resolve_policy_factory(type_name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes_context = "context" in params or (
        params and next(iter(params.values())).kind is inspect.Parameter.POSITIONAL_ONLY
    )
    policy = factory(context, **kwargs) if takes_context else factory(**kwargs)
    if not hasattr(policy, "act"):
        if callable(policy):
            return _with_instruction(CallablePolicy(policy), policy, type_name, context)
        raise TypeError(f"policy factory '{type_name}' returned {type(policy).__name__}, which has no act()")
    if not hasattr(policy, "reset"):
        policy.reset = lambda mask, seeds=None: None
    return _with_instruction(policy, policy.act, type_name, context)


def takes_instruction(fn: Any) -> bool | None:
    """``None`` if ``fn`` has no ``instruction`` parameter, else whether it is
    optional (has a default)."""
    try:
        param = inspect.signature(fn).parameters.get("instruction")
    except (TypeError, ValueError):
        return None
    if param is None or param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
        return None
    return param.default is not inspect.Parameter.empty


def _with_instruction(policy: Any, act: Any, type_name: str, context: PolicyContext) -> Policy:
    """Pass the job's instruction to a policy whose ``act`` declares an
    ``instruction`` parameter; refuse to run one that requires it without it."""
    optional = takes_instruction(act)
    if optional is None:
        return policy  # type: ignore[no-any-return]
    if context.instruction is None and not optional and not context.episode_instructions:
        raise ConfigError(
            f"policy '{type_name}' is language-conditioned (its act() takes an 'instruction'); "
            "set the job's 'instruction' (or a 'language' factor)",
            field="instruction",
        )
    if isinstance(policy, CallablePolicy):
        return InstructedPolicy(policy, context.instruction, act=policy._fn)
    return InstructedPolicy(policy, context.instruction)


register_policy("random", RandomPolicy, "uniform random actions, seeded per episode")
register_policy("zero", ZeroPolicy, "the zero action (a floor)")
register_policy("cartpole-balance", CartPoleBalancePolicy, "LQR balance controller for CartPole-v1")
register_policy("pendulum-swingup", PendulumSwingUpPolicy, "energy swing-up + LQR hold for Pendulum-v1")
register_policy("metaworld-expert", MetaWorldExpertPolicy, "Meta-World's scripted expert for the env's task")
register_policy("npz", NpzMlpPolicy, "a numpy MLP stored as .npz (path: policy.npz; numpy only)")
register_policy("sb3", SB3Policy, "a Stable-Baselines3 model zip (path: model.zip; extra 'sb3')")
register_policy("torchscript", TorchScriptPolicy, "a TorchScript module (path: policy.pt; extra 'torch')")
register_policy("onnx", OnnxPolicy, "an ONNX model on ONNX Runtime (path: policy.onnx; extra 'onnx')")
register_policy("remote", RemotePolicy, "a policy served by trialrun serve-policy (url: ws://...)")
register_policy(
    "openpi", openpi_policy, "an openpi policy server, e.g. pi0 / pi0.5 (url: ws://...; extra 'remote')"
)
register_policy("gr00t", gr00t_policy, "an Isaac GR00T policy server (host, port; extra 'remote')")
register_policy("cartpole-ppo", CartPolePPOPolicy, "bundled PPO policy for CartPole-v1 (npz, numpy only)")
register_policy("pendulum-ppo", PendulumPPOPolicy, "bundled PPO policy for Pendulum-v1 (npz, numpy only)")
