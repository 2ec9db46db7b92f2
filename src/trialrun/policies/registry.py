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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trialrun._imports import load_object
from trialrun._signatures import Keywords, keywords_of
from trialrun.config import policy_field
from trialrun.errors import ConfigError, did_you_mean
from trialrun.policies.base import CallablePolicy, InstructedPolicy, Policy, PolicyContext
from trialrun.policies.builtin import RandomPolicy, ZeroPolicy
from trialrun.policies.bundled_policies import CartPolePPOPolicy, MetaWorldPushPixelsPolicy, PendulumPPOPolicy
from trialrun.policies.loaders import file_setting_check
from trialrun.policies.metaworld_expert import MetaWorldExpertPolicy
from trialrun.policies.npz_conv import NpzConvPolicy
from trialrun.policies.npz_mlp import NpzMlpPolicy
from trialrun.policies.onnx import OnnxPolicy
from trialrun.policies.remote import RemotePolicy, check_remote_settings
from trialrun.policies.sb3 import SB3Policy
from trialrun.policies.scripted import CartPoleBalancePolicy, CartpolePDPolicy, PendulumSwingUpPolicy
from trialrun.policies.torchscript import TorchScriptPolicy
from trialrun.policies.vla.factories import (
    check_gr00t_settings,
    check_openpi_settings,
    gr00t_policy,
    openpi_policy,
)
from trialrun.policies.vla.mapping import camera_sizes

PolicyFactory = Callable[..., Any]
SettingsCheck = Callable[[Mapping[str, Any]], None]
"""Checks a factory's settings, each as given or at the factory's default (see :func:`register_policy`)."""


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    factory: PolicyFactory
    description: str
    check: SettingsCheck | None = None
    """Checks the factory's settings without building anything (preflight)."""


_REGISTRY: dict[str, PolicyEntry] = {}


def register_policy(
    name: str, factory: PolicyFactory, description: str = "", check: SettingsCheck | None = None
) -> None:
    """Make ``factory`` available as ``policy: name``.

    ``check``, if given, receives the factory's settings (each as given, or at
    the factory's default) and raises a :class:`~trialrun.errors.ConfigError`
    for a bad one without connecting or loading anything: preflight calls it,
    so a run with a bad setting fails in a second with exit code 2, before any
    job runs.
    """
    if name in _REGISTRY and _REGISTRY[name].factory is not factory:
        raise ValueError(f"policy '{name}' is already registered")
    _REGISTRY[name] = PolicyEntry(
        name, factory, description or (factory.__doc__ or "").strip().split("\n")[0], check
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
        f"or name a factory as 'package.module:callable'{did_you_mean(type_name, _REGISTRY)}",
        field=field,
    )


def policy_cameras(
    type_name: str, kwargs: Mapping[str, Any], field: str = "policy"
) -> dict[str, tuple[int, int]]:
    """The cameras (name -> (height, width)) a policy reads from its observation.

    Three sources, merged: the server policies' ``obs_map`` camera entries;
    a ``cameras: {NAME: [HEIGHT, WIDTH]}`` setting, which any policy may carry
    (a local policy that looks); and the factory's own
    ``observation_cameras(kwargs)`` (a pixel network knows its camera from its
    file). Whoever builds the env wraps it to render exactly these each step
    (:class:`~trialrun.recording.camera_obs.CameraObservations`).

    Example:
        >>> policy_cameras("zero", {"cameras": {"corner": [64, 48]}})
        {'corner': (64, 48)}

    Raises:
        ConfigError: a malformed ``cameras`` setting, or one camera asked at two sizes.
    """
    cameras = camera_sizes(kwargs, field=field)
    found = [(f"{field}.obs_map", cameras)]
    raw = kwargs.get("cameras")
    if raw is not None:
        found.append((f"{field}.cameras", _camera_setting(raw, f"{field}.cameras")))
    factory = resolve_policy_factory(type_name)
    declared = getattr(factory, "observation_cameras", None)
    if callable(declared):
        found.append((field, dict(declared(kwargs))))
    merged: dict[str, tuple[int, int]] = {}
    for where, sizes in found:
        for name, size in sizes.items():
            if merged.setdefault(name, size) != size:
                raise ConfigError(
                    f"camera '{name}' is asked at {list(size)} here and at {list(merged[name])} elsewhere",
                    field=where,
                )
    return merged


def _camera_setting(raw: Any, field: str) -> dict[str, tuple[int, int]]:
    """``{NAME: [HEIGHT, WIDTH]}`` read as the ``obs_map`` camera entries are."""
    if not isinstance(raw, Mapping) or not all(isinstance(name, str) and name for name in raw):
        raise ConfigError(f"cameras must map camera names to [HEIGHT, WIDTH], got {raw!r}", field=field)
    cameras: dict[str, tuple[int, int]] = {}
    for name, size in raw.items():
        if not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in size)
        ):
            raise ConfigError(
                f"a camera's size is [HEIGHT, WIDTH], integers in 8..4096, got {size!r}",
                field=f"{field}.{name}",
            )
        cameras[name] = (int(size[0]), int(size[1]))
    return cameras


def build_policy(type_name: str, kwargs: dict[str, Any], context: PolicyContext) -> Policy:
    """Build a policy for ``context`` from a registered name or ``module:callable``.

    A ``cameras`` setting (see :func:`policy_cameras`) reaches the factory only
    if it takes a ``cameras`` (or ``**kwargs``) parameter: it is for the env.
    """
    factory = resolve_policy_factory(type_name)
    shape = _FactoryShape.of(factory)
    kwargs = shape.settings_of(kwargs)
    policy = factory(context, **kwargs) if shape.takes_context else factory(**kwargs)
    if not hasattr(policy, "act"):
        if callable(policy):
            return _with_instruction(CallablePolicy(policy), policy, type_name, context)
        raise TypeError(f"policy factory '{type_name}' returned {type(policy).__name__}, which has no act()")
    if not hasattr(policy, "reset"):
        policy.reset = lambda mask, seeds=None: None
    return _with_instruction(policy, policy.act, type_name, context)


def check_policy_settings(type_name: str, kwargs: Mapping[str, Any]) -> None:
    """Check a policy's settings before anything is built: every setting is one
    the factory takes, every setting it needs is given, and a registered
    ``check`` (the server policies': URL, port, timeouts...) accepts them.

    Example:
        >>> check_policy_settings("openpi", {"url": "ws://gpu-box:8000", "max_conections": 4})
        Traceback (most recent call last):
        ...
        trialrun.errors.ConfigError: field 'policy.kwargs.max_conections': policy 'openpi' has no setting \
'max_conections'; its settings: api_key, ca_file, max_connections, obs_map, replan_steps, timeout, url; \
did you mean 'max_connections'?

    Raises:
        ConfigError: naming ``policy.<setting>`` (see :func:`~trialrun.config.policy_field`).
    """
    factory = resolve_policy_factory(type_name)
    shape = _FactoryShape.of(factory)
    settings = shape.settings_of(kwargs)
    taken = shape.keywords
    if taken is not None:
        taken.check(settings, f"policy '{type_name}'", policy_field)
    entry = _REGISTRY.get(type_name)
    if entry is not None and entry.check is not None:
        entry.check({**(taken.defaults if taken is not None else {}), **settings})


@dataclass(frozen=True)
class _FactoryShape:
    """How a factory is called: whether it takes the context first (by
    position), and what it takes by name (``keywords`` None: its signature
    cannot be read)."""

    takes_context: bool
    keywords: Keywords | None

    @classmethod
    def of(cls, factory: PolicyFactory) -> _FactoryShape:
        try:
            params = list(inspect.signature(factory).parameters.values())
        except (TypeError, ValueError):
            return cls(False, None)
        takes_context = bool(params) and (
            any(p.name == "context" for p in params) or params[0].kind is inspect.Parameter.POSITIONAL_ONLY
        )
        return cls(takes_context, keywords_of(factory, skip_first=takes_context))

    def settings_of(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` as the factory is called with them: a ``cameras`` setting
        (see :func:`policy_cameras`) reaches it only if it takes one; it is for the env."""
        taken = self.keywords
        if "cameras" in kwargs and not (taken is not None and (taken.takes_any or "cameras" in taken.names)):
            return {key: value for key, value in kwargs.items() if key != "cameras"}
        return dict(kwargs)


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
register_policy(
    "cartpole-pd", CartpolePDPolicy, "PD balance for the Control Suite cartpole (playground/CartpoleBalance)"
)
register_policy("metaworld-expert", MetaWorldExpertPolicy, "Meta-World's scripted expert for the env's task")
register_policy(
    "npz",
    NpzMlpPolicy,
    "a numpy MLP stored as .npz (path: policy.npz; numpy only)",
    file_setting_check("npz"),
)
register_policy(
    "npz-conv",
    NpzConvPolicy,
    "a numpy conv net on a camera image stored as .npz (path: policy.npz; numpy only)",
    file_setting_check("npz-conv"),
)
register_policy(
    "sb3",
    SB3Policy,
    "a Stable-Baselines3 model zip (path: model.zip; extra 'sb3')",
    file_setting_check("sb3"),
)
register_policy(
    "torchscript",
    TorchScriptPolicy,
    "a TorchScript module (path: policy.pt; extra 'torch')",
    file_setting_check("torchscript"),
)
register_policy(
    "onnx",
    OnnxPolicy,
    "an ONNX model on ONNX Runtime (path: policy.onnx; extra 'onnx')",
    file_setting_check("onnx"),
)
register_policy(
    "remote", RemotePolicy, "a policy served by trialrun serve-policy (url: ws://...)", check_remote_settings
)
register_policy(
    "openpi",
    openpi_policy,
    "an openpi policy server, e.g. pi0 / pi0.5 (url: ws://...; extra 'remote')",
    check_openpi_settings,
)
register_policy(
    "gr00t", gr00t_policy, "an Isaac GR00T policy server (host, port; extra 'remote')", check_gr00t_settings
)
register_policy("cartpole-ppo", CartPolePPOPolicy, "bundled PPO policy for CartPole-v1 (npz, numpy only)")
register_policy("pendulum-ppo", PendulumPPOPolicy, "bundled PPO policy for Pendulum-v1 (npz, numpy only)")
register_policy(
    "metaworld-push-pixels",
    MetaWorldPushPixelsPolicy,
    "bundled pixel policy for metaworld/push-v3 (64x64 corner + hand position; npz conv, numpy only)",
)
