"""The variations a batched MJX model can set per world.

MuJoCo Playground's adapter (``trialrun.envs.adapters.playground``) gives
each world its own values of a few model fields
(``trialrun.envs.adapters.mjx_worlds``). The values are written by the
ordinary MuJoCo variations, so a factor means the same as on a Gymnasium
MuJoCo env; this module builds them from a job's ``variation:`` configs and
refuses the types whose fields are not batched.

Example:
    >>> sorted(per_world_variations({"m": {"type": "mujoco.gravity", "mode": "scale"}}))
    ['m']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trialrun.errors import ConfigError
from trialrun.variations.base import Variation
from trialrun.variations.mujoco import GeomFriction
from trialrun.variations.registry import build_variation

#: Variation types that can differ per world in a batched MJX model.
PER_WORLD_TYPES = ("mujoco.body_mass", "mujoco.geom_friction", "mujoco.actuator_gain", "mujoco.gravity")


def per_world_variations(
    configs: Mapping[str, Mapping[str, Any]], *, field: str = "factors"
) -> dict[str, Variation]:
    """The (unbound) variation of every factor in ``configs`` (name -> the
    factor's ``variation:`` mapping).

    Raises:
        ConfigError: a type other than :data:`PER_WORLD_TYPES`, ``priority: true``
            on a friction (a compile-time constant in MJX), or bad parameters.
    """
    built = {}
    for name, config in configs.items():
        kind = config.get("type")
        if kind not in PER_WORLD_TYPES:
            raise ConfigError(
                f"factor '{name}': variation type {kind!r} cannot be set per world in a batched MJX model; "
                f"per-world types: {', '.join(PER_WORLD_TYPES)}",
                field=f"{field}.{name}.type",
            )
        if kind == "mujoco.geom_friction" and config.get("priority"):
            raise ConfigError(
                f"factor '{name}': priority: true changes geom_priority, which MJX reads as a constant when "
                "it compiles the step (it picks the contact functions), so it cannot differ per world; "
                "leave priority out and give the geom a friction above its contact partners' instead",
                field=f"{field}.{name}.priority",
            )
        variation = build_variation(dict(config), f"{field}.{name}")
        if isinstance(variation, GeomFriction):
            variation.priority_settable = False  # its warning must not advise what was just refused
        built[name] = variation
    return built
