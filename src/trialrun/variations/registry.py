"""The variation registry: ``type:`` names usable in a factor's ``variation``.

Built-ins register themselves when :mod:`trialrun.variations` is imported.
Users register theirs with :func:`register_variation` or name a
:class:`~trialrun.variations.base.Variation` subclass directly as
``package.module:ClassName``.

Example:
    >>> import trialrun.variations
    >>> "mujoco.body_mass" in available_variations()
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from trialrun._imports import load_object
from trialrun.errors import ConfigError, did_you_mean
from trialrun.variations.base import Variation

_REGISTRY: dict[str, type[Variation]] = {}
_BUILTIN_MODULES = (
    "trialrun.variations.classic",
    "trialrun.variations.mujoco",
    "trialrun.variations.pybullet",
    "trialrun.variations.metaworld",
    "trialrun.variations.env_kwarg",
    "trialrun.variations.language",
    "trialrun.variations.geom_rgba",
    "trialrun.variations.texture",
    "trialrun.variations.body_pos",
    "trialrun.variations.distractors",
    "trialrun.variations.perturbations",
    "trialrun.variations.image_noise",
)


def _ensure_builtins() -> None:
    """Import the built-in variation modules (they register on import); done on
    first use so that reading configs does not import MuJoCo."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def register_variation(cls: type[Variation]) -> type[Variation]:
    """Register ``cls`` under ``cls.type_name`` (usable as a class decorator)."""
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    existing = _REGISTRY.get(cls.type_name)
    if existing is not None and existing is not cls:
        raise ValueError(f"variation type '{cls.type_name}' is already registered by {existing.__name__}")
    _REGISTRY[cls.type_name] = cls
    return cls


def available_variations() -> dict[str, type[Variation]]:
    """Registered variation classes by type name."""
    _ensure_builtins()
    return dict(_REGISTRY)


def variation_class(type_name: str, field: str = "variation.type") -> type[Variation]:
    """The class for a registered type name or a ``module:Class`` spec."""
    _ensure_builtins()
    if type_name in _REGISTRY:
        return _REGISTRY[type_name]
    if ":" in type_name:
        obj = load_object(type_name, field=field)
        if not (isinstance(obj, type) and issubclass(obj, Variation)):
            raise ConfigError(
                f"'{type_name}' is not a subclass of trialrun.variations.Variation", field=field
            )
        return obj
    known = ", ".join(sorted(_REGISTRY))
    raise ConfigError(
        f"unknown variation type '{type_name}'; registered types: {known}; "
        f"or name your own as 'package.module:ClassName'{did_you_mean(type_name, _REGISTRY)}",
        field=field,
    )


def build_variation(config: dict[str, Any], field: str) -> Variation:
    """A fresh (unbound) variation from its config dict ``{type: ..., **params}``."""
    if not isinstance(config, dict) or "type" not in config:
        raise ConfigError("must be a mapping with a 'type' key", field=field)
    params = {k: v for k, v in config.items() if k != "type"}
    cls = variation_class(str(config["type"]), field=f"{field}.type")
    return cls(params, field=field)
