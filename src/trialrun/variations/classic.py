"""``attr``: a numeric attribute of ``env.unwrapped`` as a factor.

This is how the physics constants of Gymnasium's classic-control envs
(CartPole's ``masspole``/``length``/``force_mag``, Pendulum's ``g``/``m``/``l``,
Acrobot's ``LINK_MASS_1`` ..., MountainCar's ``force``/``gravity``) become
factors, and it works on any env that reads a plain attribute at step time.

Facts from the gymnasium 1.x sources that shape it:

- CartPole computes ``total_mass = masspole + masscart`` and
  ``polemass_length = masspole * length`` once in ``__init__`` and its step
  uses those, so changing ``masspole`` alone would change nothing but the
  pole's angular term: they are recomputed after every change (and the two
  derived names are refused as targets, since any recomputation would
  overwrite them).
- Acrobot, Pendulum and MountainCar have no derived dynamics constants;
  their ``__init__`` only turns some attributes into space bounds
  (Pendulum ``max_torque`` -> ``action_space``, ``max_speed`` ->
  ``observation_space``; MountainCar position/speed limits ->
  ``observation_space``; Acrobot ``MAX_VEL_*`` -> ``observation_space``).
  Spaces are left as built, because vector envs and policies were built
  against them; a note is logged once when such an attribute is varied.
- Acrobot's constants are class attributes. Setting one on the instance
  shadows the class value for that env only; restore deletes the instance
  attribute again, so the class (shared by every env in the process) is
  never modified.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1")
    >>> v = Attr({"name": "masspole", "mode": "set"}); v.bind(env)
    >>> v.apply(env, 0.5), env.unwrapped.total_mass, env.unwrapped.polemass_length
    (0.5, 1.5, 0.25)
    >>> v.restore(env); env.unwrapped.total_mass
    1.1
"""

from __future__ import annotations

import inspect
import logging
import math
import types
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation

logger = logging.getLogger(__name__)

_MISSING = object()
_NOTED: set[tuple[str, str]] = set()


def _recompute_cartpole(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


_DERIVED: list[tuple[type, frozenset[str], frozenset[str], Callable[[Any], None]]] = [
    # (env class, attributes read, attributes derived from them, recompute)
    (
        CartPoleEnv,
        frozenset({"masspole", "masscart", "length"}),
        frozenset({"total_mass", "polemass_length"}),
        _recompute_cartpole,
    ),
]
"""Constants an env computes once from other attributes, and how to recompute them."""

_SPACE_BOUNDS: dict[tuple[type, str], str] = {
    (PendulumEnv, "max_torque"): "action_space",
    (PendulumEnv, "max_speed"): "observation_space",
    (MountainCarEnv, "min_position"): "observation_space",
    (MountainCarEnv, "max_position"): "observation_space",
    (MountainCarEnv, "max_speed"): "observation_space",
    (Continuous_MountainCarEnv, "min_position"): "observation_space",
    (Continuous_MountainCarEnv, "max_position"): "observation_space",
    (Continuous_MountainCarEnv, "max_speed"): "observation_space",
    (Continuous_MountainCarEnv, "min_action"): "action_space",
    (Continuous_MountainCarEnv, "max_action"): "action_space",
    (AcrobotEnv, "MAX_VEL_1"): "observation_space",
    (AcrobotEnv, "MAX_VEL_2"): "observation_space",
}
"""Attributes that ``__init__`` turned into space bounds (spaces are not rebuilt)."""

_UNITS: dict[tuple[type, str], str] = {
    **{(CartPoleEnv, n): u for n, u in [("masscart", "kg"), ("masspole", "kg"), ("length", "m")]},
    **{(CartPoleEnv, n): u for n, u in [("gravity", "m/s^2"), ("force_mag", "N"), ("tau", "s")]},
    **{(CartPoleEnv, n): u for n, u in [("x_threshold", "m"), ("theta_threshold_radians", "rad")]},
    **{(PendulumEnv, n): u for n, u in [("g", "m/s^2"), ("m", "kg"), ("l", "m"), ("dt", "s")]},
    **{(PendulumEnv, n): u for n, u in [("max_torque", "N*m"), ("max_speed", "rad/s")]},
    **{(AcrobotEnv, n): "kg" for n in ("LINK_MASS_1", "LINK_MASS_2")},
    **{(AcrobotEnv, n): "m" for n in ("LINK_LENGTH_1", "LINK_LENGTH_2", "LINK_COM_POS_1", "LINK_COM_POS_2")},
    **{(AcrobotEnv, n): u for n, u in [("LINK_MOI", "kg*m^2"), ("dt", "s"), ("torque_noise_max", "N*m")]},
    **{(AcrobotEnv, n): "rad/s" for n in ("MAX_VEL_1", "MAX_VEL_2")},
}

_RENDER_ONLY = frozenset({"screen_width", "screen_height", "screen_dim", "SCREEN_DIM", "width", "height"})
_RUNTIME_STATE = frozenset({"steps_beyond_terminated", "last_u", "isopen"})
"""Attributes that hold episode state, not parameters (never listed)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _lookup(obj: Any, name: str) -> tuple[Any, bool]:
    """``(value, on_instance)`` of a plain data attribute, or ``(_MISSING, False)``.

    Reads ``vars()`` of the instance and of its classes instead of
    ``getattr`` so that properties (e.g. ``np_random``, which creates a
    generator on first access) are never triggered, and methods are skipped.
    """
    instance = getattr(obj, "__dict__", {})  # objects with __slots__ (or pybind11's) have none
    if name in instance:
        return instance[name], True
    for klass in type(obj).__mro__:
        if klass is object or name not in vars(klass):
            continue
        value = vars(klass)[name]
        if hasattr(type(value), "__get__"):  # function, property, classmethod ...
            return _MISSING, False
        return value, False
    return _MISSING, False


def _public_data(obj: Any) -> dict[str, Any]:
    """Public data attributes of ``obj`` (instance first, then classes; no
    methods or properties, no episode state), sorted by name."""
    names: dict[str, None] = dict.fromkeys(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        if klass is not object:
            names.update(dict.fromkeys(vars(klass)))
    out = {}
    for name in names:
        if name.startswith("_") or name in _RUNTIME_STATE:
            continue
        value, _ = _lookup(obj, name)
        if value is not _MISSING and not inspect.isroutine(value):  # a bound method kept on the instance
            out[name] = value
    return dict(sorted(out.items()))


def _public_numeric(obj: Any) -> dict[str, Any]:
    """Public numeric data attributes of ``obj``, sorted by name."""
    return {name: value for name, value in _public_data(obj).items() if _is_number(value)}


def _is_object(value: Any) -> bool:
    """Whether ``value`` is an object a dotted name can go into (not a number,
    string, None, container or array, whose attributes are not settings)."""
    plain = (
        int,
        float,
        complex,
        str,
        bytes,
        bool,
        type(None),
        np.generic,
        np.ndarray,
        list,
        tuple,
        dict,
        set,
    )
    return not isinstance(value, plain)


def _derived_names(obj: Any) -> dict[str, frozenset[str]]:
    """``{derived attribute: attributes it is computed from}`` for this env."""
    out: dict[str, frozenset[str]] = {}
    for klass, sources, derived, _ in _DERIVED:
        if isinstance(obj, klass):
            out.update(dict.fromkeys(derived, sources))
    return out


def _recompute(obj: Any, changed: str) -> None:
    for klass, sources, _, recompute in _DERIVED:
        if isinstance(obj, klass) and changed in sources:
            recompute(obj)


def _class_note(obj: Any, name: str, table: dict[tuple[type, str], str]) -> str | None:
    for (klass, attr), value in table.items():
        if attr == name and isinstance(obj, klass):
            return value
    return None


class AttrParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        min_length=1,
        pattern=r"^[^.]+(\.[^.]+)*$",
        description="a numeric attribute of env.unwrapped; a dotted name reaches a nested object's",
    )
    mode: Literal["set", "scale"] = Field(default="set", description="set: the value; scale: x nominal")


@register_variation
class Attr(Variation):
    """A numeric attribute of ``env.unwrapped`` (e.g. CartPole ``masspole``, Pendulum ``g``).

    ``mode: set`` (default) assigns the value, ``mode: scale`` multiplies
    the nominal one. Constants the env derived from the attribute in its
    ``__init__`` are recomputed (CartPole ``total_mass`` and
    ``polemass_length``); spaces are not rebuilt (see the module
    docstring). An integer attribute stays an integer when the new value is
    integral (``frame_skip``-like counters must remain ints). Private names
    (leading underscore) are accepted when named explicitly but not listed.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("Pendulum-v1")
        >>> v = Attr({"name": "g", "mode": "scale"}); v.bind(env)
        >>> v.apply(env, 0.5), env.unwrapped.g, v.units
        (0.5, 5.0, 'x')
    """

    type_name = "attr"
    Params: ClassVar[type[BaseModel]] = AttrParams

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._attr = self.params.name.rsplit(".", 1)[-1]
        """The attribute set (the last segment of a dotted name)."""
        self._root: Any = None
        self._base: Any = None
        self._nominal: Any = None
        self._on_instance = False
        self._units: str | None = None

    @property
    def units(self) -> str | None:
        return "x" if self.params.mode == "scale" else self._units

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        root = env.unwrapped
        base = self._walk(root)
        name = self._attr
        cls_name = type(base).__name__
        if base is not root:
            cls_name += f" (at '{self.params.name}')"
        derived = _derived_names(base)
        value, on_instance = _lookup(base, name)
        numeric = [n for n in _public_numeric(base) if n not in derived]
        listing = ", ".join(numeric) if numeric else "(none)"
        if name in derived:
            sources = ", ".join(sorted(derived[name]))
            raise self.error(
                f"attribute '{name}' of {cls_name} is derived from {sources} and recomputed when they "
                f"change; vary those instead"
            )
        if value is _MISSING:
            raise self.error(f"unknown attribute '{name}' of {cls_name}; numeric attributes: {listing}")
        if not _is_number(value):
            raise self.error(
                f"attribute '{name}' of {cls_name} is not numeric ({type(value).__name__}); "
                f"numeric attributes: {listing}"
            )
        if self.params.mode == "scale" and value == 0:
            raise self.error(
                f"attribute '{name}' of {cls_name} is 0, so mode 'scale' cannot change it; use mode 'set'"
            )
        space = _class_note(base, name, _SPACE_BOUNDS)
        if space is not None and (cls_name, name) not in _NOTED:
            _NOTED.add((cls_name, name))
            logger.warning(
                "attr '%s': %s computed its %s from it at construction; the space is left unchanged "
                "(vector envs and policies were built against it)",
                name,
                cls_name,
                space,
            )
        self._root = root
        self._base = base
        self._nominal = value
        self._on_instance = on_instance
        self._units = _class_note(base, name, _UNITS)

    def _walk(self, root: Any) -> Any:
        """The object holding the last segment of a dotted name (``task`` of
        ``task.distance_threshold``); ``root`` itself for a plain name. Each
        segment must be a data attribute holding an object; the error names the
        segment and lists the public attributes where it was looked up."""
        *path, _ = self.params.name.split(".")
        node = root
        for depth, segment in enumerate(path):
            value, _ = _lookup(node, segment)
            if value is _MISSING:
                where = f" (at '{'.'.join(path[:depth])}')" if depth else ""
                listing = ", ".join(_public_data(node)) or "(none)"
                raise self.error(
                    f"unknown attribute '{segment}' of {type(node).__name__}{where} in '{self.params.name}'; "
                    f"public attributes: {listing}"
                )
            if not _is_object(value):
                raise self.error(
                    f"'{'.'.join(path[: depth + 1])}' is a {type(value).__name__}, not an object, so "
                    f"'{self.params.name}' cannot be reached"
                )
            node = value
        return node

    def _checked_base(self, env: gym.Env[Any, Any]) -> Any:
        if self._base is None:
            raise self.error("variation 'attr' is not bound: call bind(env) first")
        if env.unwrapped is not self._root:
            raise self.error(
                "variation 'attr' was bound to another env instance; bind one variation instance per sub-env"
            )
        return self._base

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        if self._base is None:
            raise self.error("variation 'attr' is not bound: call bind(env) first")
        return float(self._nominal)

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        base = self._checked_base(env)
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise self.error(f"variation 'attr' needs a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(f"variation 'attr' needs a finite number, got {value!r}")
        new: float | int = number * float(self._nominal) if self.params.mode == "scale" else number
        if isinstance(self._nominal, int | np.integer) and float(new).is_integer():
            new = int(new)
        if not self._on_instance and new == self._nominal and type(new) is type(self._nominal):
            self.restore(env)  # the nominal value of a class attribute: no instance copy needed
        else:
            setattr(base, self._attr, new)
            _recompute(base, self._attr)
        actual = float(getattr(base, self._attr))
        return actual / float(self._nominal) if self.params.mode == "scale" else actual

    def restore(self, env: gym.Env[Any, Any]) -> None:
        base = self._checked_base(env)
        name = self._attr
        if self._on_instance:
            setattr(base, name, self._nominal)
        elif name in vars(base):
            delattr(base, name)  # unshadow the class attribute
        _recompute(base, name)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        base = env.unwrapped
        derived = _derived_names(base)
        out = []
        for name, value in _public_numeric(base).items():
            if name in derived:
                continue  # recomputed from its sources; listed in their notes
            notes = []
            space = _class_note(base, name, _SPACE_BOUNDS)
            if space is not None:
                notes.append(f"also bounds the {space}, which is not changed")
            if name in _RENDER_ONLY:
                notes.append("rendering only")
            if any(name in sources for sources in derived.values()):
                recomputed = sorted(d for d, sources in derived.items() if name in sources)
                notes.append(f"recomputes {', '.join(recomputed)}")
            out.append(
                TargetInfo(cls.type_name, name, value, _class_note(base, name, _UNITS), "; ".join(notes))
            )
        for holder, obj in _parts(base).items():
            for name, value in _public_numeric(obj).items():
                out.append(
                    TargetInfo(cls.type_name, f"{holder}.{name}", value, None, f"of the env's {holder}")
                )
        return out


def _parts(base: Any) -> dict[str, Any]:
    """The env's public objects a dotted ``attr`` name can reach, one level
    deep (panda-gym's ``task``, ``sim``, ``robot``), for ``list variations``;
    spaces, the spec, random generators, classes, modules and renderers
    (``mujoco_renderer``, ``viewer``: their sizes are not the simulation's) are
    not parts."""
    skipped = (gym.Space, gym.envs.registration.EnvSpec, np.random.Generator, type, types.ModuleType)
    return {
        name: value
        for name, value in _public_data(base).items()
        if _is_object(value)
        and not isinstance(value, skipped)
        and not callable(value)
        and not any(word in name for word in ("render", "viewer"))
    }
