"""Built-in MuJoCo variations: mass, friction, gravity, damping, actuator gain,
lights and cameras of any env exposing ``env.unwrapped.model`` / ``.data``, or
a dm_control ``physics`` (dm_control suite tasks through shimmy).

Every variation here edits the compiled ``mjModel`` in place (no rebuild), so it
applies at reset: the factor hook calls :meth:`~Variation.restore` and then
:meth:`~Variation.apply` before every episode, and the env's own ``reset``
(``mj_resetData`` + ``mj_forward``) then starts the episode from the modified
model. Targets are named like in the MJCF (``body: torso``); objects without a
name are addressed by index, as an integer (``actuator: 0``) or as ``"#0"``,
which is how ``trialrun list variations ENV`` prints them.

Facts that decide how these are written (measured with mujoco 3.3.0):

- Quantities such as ``body_mass`` feed constants that the compiler derives
  once (``body_subtreemass``, ``dof_M0``, ``body_invweight0``,
  ``dof_invweight0``, ``actuator_acc0``, ``stat.meaninertia`` ...). The
  constraint solver uses the inverse weights and ``meaninertia`` at every
  step, so a mass change without ``mj_setConst`` simulates a model that no
  compiler would produce (HalfCheetah, torso mass x2: the trajectories
  differ by 1e-3 after 5 steps). After ``mj_setConst`` every model array
  equals that of the MJCF recompiled with the new mass (to 1e-9), and
  ``mj_setConst`` on an unmodified model changes nothing, so restoring the
  primary values and calling it again returns the model bit for bit to
  nominal, whatever other factors did in between.
- Tracking cameras (``mode="track"``/``"trackcom"``, e.g. the ``track`` camera
  of HalfCheetah/Hopper) are placed from ``cam_pos0``/``cam_poscom0``, which
  ``mj_setConst`` derives from ``cam_pos``: without it a position change does
  not move them at all.
- Friction, damping, gains, gravity, lights and ``fovy`` are read by the
  simulator or renderer directly and need no recomputation.
- ``mj_setConst`` uses its ``mjData`` as scratch space (it sets it to
  ``qpos0`` and runs kinematics), so it gets a private ``MjData`` here, never
  the env's.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("HalfCheetah-v5")
    >>> v = BodyMass({"body": "torso", "mode": "scale"}); v.bind(env)
    >>> v.apply(env, 2.0), v.nominal(), v.units
    (2.0, 1.0, 'x')
"""

from __future__ import annotations

import logging
import math
import re
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import gymnasium as gym
import mujoco
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from trialrun.errors import VariationError
from trialrun.variations.base import FactorValue, TargetInfo, Variation, require_mujoco
from trialrun.variations.registry import register_variation

logger = logging.getLogger(__name__)

_OBJ = mujoco.mjtObj
_MAX_LISTED = 60
"""Longest list of names an error message spells out (large scenes have hundreds)."""

_WARNED: set[tuple[str, ...]] = set()
"""Warnings already logged (one per target, not one per sub-env and episode)."""

ObjectKey = int | str
"""A MuJoCo object by name, by integer index, or by ``"#<index>"``."""


def _warn_once(key: tuple[str, ...], message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def _count(model: Any, obj: Any) -> int:
    counts = {
        _OBJ.mjOBJ_BODY: model.nbody,
        _OBJ.mjOBJ_GEOM: model.ngeom,
        _OBJ.mjOBJ_JOINT: model.njnt,
        _OBJ.mjOBJ_ACTUATOR: model.nu,
        _OBJ.mjOBJ_CAMERA: model.ncam,
        _OBJ.mjOBJ_LIGHT: model.nlight,
        _OBJ.mjOBJ_MATERIAL: model.nmat,
        _OBJ.mjOBJ_TEXTURE: model.ntex,
    }
    return int(counts[obj])


def _name(model: Any, obj: Any, index: int) -> str:
    """The object's MJCF name, or ``#index`` when it has none."""
    return mujoco.mj_id2name(model, obj, index) or f"#{index}"


def _name_list(names: list[str]) -> str:
    if len(names) <= _MAX_LISTED:
        return ", ".join(names)
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + f", ... ({more} more; see `trialrun list variations ENV`)"


def _compose(mode: str, nominal: Any, value: float) -> Any:
    """The model quantity for a factor value: nominal x value, nominal + value, or value."""
    if mode == "scale":
        return nominal * value
    if mode == "offset":
        return nominal + value
    return value


def _decompose(mode: str, actual: float, nominal: float) -> float:
    """The factor value that the model quantity ``actual`` corresponds to."""
    if mode == "scale":
        return actual / nominal
    if mode == "offset":
        return actual - nominal
    return actual


def _enum_names(enum: Any, prefix: str) -> dict[int, str]:
    """``{value: short lowercase name}`` of a MuJoCo (pybind11) enum."""
    return {int(v): k.removeprefix(prefix).lower() for k, v in enum.__members__.items()}


def _vec(values: Any, digits: int = 4) -> tuple[float, ...]:
    return tuple(round(float(x), digits) for x in np.asarray(values).ravel())


class _MujocoVariation(Variation):
    """Shared plumbing: finding the model and the named object, checking that
    ``apply``/``restore`` get the env this instance was bound to (one instance
    per sub-env), turning factor values into numbers and refreshing the
    compiler-derived constants."""

    obj_type: ClassVar[Any] = None
    obj_what: ClassVar[str] = ""
    obj_plural: ClassVar[str] = ""
    extra_names: ClassVar[tuple[str, ...]] = ()
    """Special targets listed before the model's own names in error messages."""

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._model: Any = None
        self._scratch: Any = None
        self._dirty = False

    # -- binding -----------------------------------------------------------------

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        try:
            model, _ = require_mujoco(env, self.type_name)
        except VariationError as exc:
            raise self.error(str(exc)) from None
        self._bind_model(model)
        self._model = model
        self._dirty = False

    @abstractmethod
    def _bind_model(self, model: Any) -> None:
        """Resolve the target in ``model`` and snapshot its nominal values."""

    def _lookup(self, model: Any, key: ObjectKey, kind: tuple[Any, str, str] | None = None) -> int:
        """Index of the object named (or numbered) ``key``; the error lists the names.

        ``kind`` is ``(mjtObj, what, plural)`` for an object other than this
        variation's own (e.g. the body whose geoms a colour factor changes).
        """
        obj_type, obj_what, obj_plural = kind or (self.obj_type, self.obj_what, self.obj_plural)
        extra = self.extra_names if kind is None else ()
        count = _count(model, obj_type)
        names = [*extra, *(_name(model, obj_type, i) for i in range(count))]
        listing = f"{obj_plural}: {_name_list(names)}" if names else f"this model has no {obj_plural}"
        index: int | None = None
        if isinstance(key, int) and not isinstance(key, bool):
            index = key
        else:
            found = mujoco.mj_name2id(model, obj_type, str(key))
            if found >= 0:
                return int(found)
            match = re.fullmatch(r"#(\d+)", str(key))
            if match is None:
                raise self.error(f"unknown {obj_what} '{key}'; {listing}")
            index = int(match.group(1))
        if not 0 <= index < count:
            raise self.error(f"{obj_what} index {index} is out of range; {listing}")
        return index

    def _model_of(self, env: gym.Env[Any, Any]) -> Any:
        """The bound model, after checking that ``env`` is the env it belongs to."""
        if self._model is None:
            raise self.error(f"variation '{self.type_name}' is not bound: call bind(env) first")
        try:
            model = require_mujoco(env, self.type_name)[0]
        except VariationError:
            model = None
        if model is not self._model:
            raise self.error(
                f"variation '{self.type_name}' was bound to another env instance; "
                "bind one variation instance per sub-env"
            )
        return model

    # -- values --------------------------------------------------------------------

    @property
    def units(self) -> str | None:
        """``x`` in ``scale`` mode (the value multiplies the nominal quantity),
        else the units of the quantity itself (:meth:`_quantity_units`)."""
        return "x" if self.params.mode == "scale" else self._quantity_units()

    def _quantity_units(self) -> str | None:
        """Units of the model quantity, for the ``set`` and ``offset`` modes
        (None: the quantity has no fixed units, e.g. an actuator's gain)."""
        return None

    def _number(self, value: FactorValue) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise self.error(f"variation '{self.type_name}' needs a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(f"variation '{self.type_name}' needs a finite number, got {value!r}")
        return number

    def _check_scalable(self, nominal: Any, what: str) -> None:
        """A scale factor on a zero quantity changes nothing: say so at bind time."""
        if self.params.mode == "scale" and not np.any(np.asarray(nominal) != 0):
            raise self.error(f"{what} is 0, so mode 'scale' cannot change it; use mode 'set'")

    def _refresh_constants(self, model: Any) -> None:
        """Recompute the compiler-derived constants (see the module docstring)."""
        if self._scratch is None:
            self._scratch = mujoco.MjData(model)
        mujoco.mj_setConst(model, self._scratch)

    # -- the Variation interface -------------------------------------------------------

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        model = self._model_of(env)
        checked = self._value(value)
        self._dirty = True
        return self._apply(model, checked)

    def _value(self, value: FactorValue) -> Any:
        """The factor value as :meth:`_apply` takes it (raising on a bad one):
        a finite number here; a categorical variation (a colour, a texture)
        checks its own values."""
        return self._number(value)

    def restore(self, env: gym.Env[Any, Any]) -> None:
        model = self._model_of(env)
        if self._dirty:
            self._restore(model)
            self._dirty = False

    @abstractmethod
    def _apply(self, model: Any, value: Any) -> FactorValue:
        """Write the value (from :meth:`_value`) into the model; return the value read back."""

    @abstractmethod
    def _restore(self, model: Any) -> None:
        """Write the nominal values back."""

    def _refuse_body(
        self, model: Any, b: int, why_not: Callable[[Any, int], str | None], consequence: str, usable: str
    ) -> None:
        """Raise when ``why_not`` gives a reason why body ``b`` cannot be a target,
        naming the reason and listing the bodies that can (``usable``: what they are)."""
        reason = why_not(model, b)
        if reason is None:
            return
        fine = [_name(model, _OBJ.mjOBJ_BODY, i) for i in range(model.nbody) if why_not(model, i) is None]
        raise self.error(
            f"body '{_name(model, _OBJ.mjOBJ_BODY, b)}' {reason}{consequence}; {usable}: {_name_list(fine)}"
        )

    def _need_bound(self) -> None:
        if self._model is None:
            raise self.error(f"variation '{self.type_name}' is not bound: call bind(env) first")

    @staticmethod
    def _model_or_none(env: gym.Env[Any, Any]) -> Any:
        """The env's model for :meth:`targets`, or None for a non-MuJoCo env."""
        try:
            return require_mujoco(env, "targets")[0]
        except VariationError:
            return None


# ---------------------------------------------------------------------------------------
# body mass


class BodyMassParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: ObjectKey = Field(description="body name (or index / '#index')")
    mode: Literal["scale", "set"] = Field(default="scale", description="scale: x nominal; set: kg")


@register_variation
class BodyMass(_MujocoVariation):
    """Mass of one body (its inertia scales with it, as for a denser body).

    ``mode: scale`` (default) multiplies the nominal mass, ``mode: set`` sets
    it in kg. The rotational inertia is multiplied by the same ratio so the
    body stays physically consistent (same shape, different density), and the
    compiler-derived constants are recomputed (``mj_setConst``): the model
    then equals the MJCF recompiled with that mass. Static bodies (the world
    and bodies welded to it) and mocap bodies are refused: their mass never
    enters the dynamics.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("HalfCheetah-v5")
        >>> v = BodyMass({"body": "torso", "mode": "set"}); v.bind(env)
        >>> round(v.nominal(), 3), v.apply(env, 9.0), v.units
        (6.25, 9.0, 'kg')
        >>> v.restore(env); round(float(env.unwrapped.model.body_mass[1]), 3)
        6.25
    """

    type_name = "mujoco.body_mass"
    Params: ClassVar[type[BaseModel]] = BodyMassParams
    obj_type = _OBJ.mjOBJ_BODY
    obj_what = "body"
    obj_plural = "bodies"

    def _quantity_units(self) -> str | None:
        return "kg"

    @staticmethod
    def _why_not(model: Any, b: int) -> str | None:
        """Why the mass of body ``b`` cannot matter, or None when it can."""
        if b == 0:
            return "is the world body"
        if model.body_mocapid[b] >= 0:
            return "is a mocap body (its motion is prescribed)"
        if model.body_weldid[b] == 0:
            return "is welded to the world (no joint), so it never moves"
        if model.body_mass[b] <= 0:
            return "has no mass"
        return None

    def _bind_model(self, model: Any) -> None:
        b = self._lookup(model, self.params.body)
        matters = "bodies with a mass that matters"
        self._refuse_body(model, b, self._why_not, ": its mass does not affect the simulation", matters)
        self._b = b
        self._mass0 = float(model.body_mass[b])
        self._inertia0 = model.body_inertia[b].copy()

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        self._need_bound()
        return self._mass0

    def _apply(self, model: Any, value: float) -> float:
        mass = _compose(self.params.mode, self._mass0, value)
        if not mass > 0:
            raise self.error(
                f"mass of body '{_name(model, self.obj_type, self._b)}' must be > 0, got {mass} kg"
            )
        model.body_mass[self._b] = mass
        model.body_inertia[self._b] = self._inertia0 * (mass / self._mass0)
        self._refresh_constants(model)
        return _decompose(self.params.mode, float(model.body_mass[self._b]), self._mass0)

    def _restore(self, model: Any) -> None:
        model.body_mass[self._b] = self._mass0
        model.body_inertia[self._b] = self._inertia0
        self._refresh_constants(model)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        return [
            TargetInfo(
                cls.type_name,
                _name(model, cls.obj_type, b),
                float(model.body_mass[b]),
                "kg",
                f"subtree mass {float(model.body_subtreemass[b]):.4g} kg",
            )
            for b in range(model.nbody)
            if cls._why_not(model, b) is None
        ]


# ---------------------------------------------------------------------------------------
# geom friction

_FRICTION_COMPONENTS = {"sliding": 0, "torsional": 1, "rolling": 2}


class GeomFrictionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geom: ObjectKey = Field(description="geom name (or index / '#index')")
    mode: Literal["set", "scale"] = Field(default="set", description="set: coefficient; scale: x nominal")
    component: Literal["sliding", "torsional", "rolling"] = Field(
        default="sliding", description="which of the geom's three friction coefficients"
    )
    priority: bool = Field(
        default=False, description="raise the geom's priority so its friction is the one its contacts use"
    )


@register_variation
class GeomFriction(_MujocoVariation):
    """Friction coefficient of one geom (sliding, torsional or rolling).

    MuJoCo combines the parameters of a contact pair: when both geoms have
    the same ``priority`` the contact takes the LARGER friction of the two
    (per component), so lowering an object's friction below that of the
    table or gripper it touches changes nothing in those contacts; raising
    it does. When priorities differ, the higher-priority geom's friction,
    ``condim``, ``solref`` and ``solimp`` are used as they are.

    With ``priority: true`` the geom's ``geom_priority`` is raised above
    every other geom's while the factor applies, so its own friction is the
    one used in all its contacts (lower or higher). Side effect: those
    contacts also take this geom's ``condim``/``solref``/``solimp`` instead
    of the max/mix of the pair. The nominal value (the geom's own friction,
    or 1.0 in scale mode) leaves the model untouched, priority included, so
    a ``nominal: true`` evaluation is exactly the unmodified env; any other
    value raises the priority. That switch can change more than the named
    coefficient: when a contact partner has a larger ``condim``, larger
    other friction components or a larger nominal friction (Meta-World's
    gripper pads, friction 2, against the object's 1), every value but the
    nominal one uses the geom's own, so a value just off nominal is not a
    nominal contact, and the success-rate curve can step at nominal. This
    is how MuJoCo's priority works and nothing in the config changes it, so
    it is documented here and in docs/configuration.md ("Friction and
    contact priority") and logged only at DEBUG level (which partner, which
    parameter) rather than warned about on every run. A geom with
    ``condim="1"`` (Hopper's) is refused with ``priority``: its contacts
    would become frictionless. Without ``priority`` a warning is logged
    (once per geom) when a value falls below a contact partner's friction,
    naming the fix (``priority: true``; in a batched MJX model, where the
    priority cannot differ per world, :attr:`priority_settable` is False and
    the warning names the fix that remains: a friction above the partners').

    Contacts declared explicitly with ``<contact><pair>`` carry their own
    friction and ignore both the geom's friction and its priority. The
    torsional component matters only in contacts with ``condim`` >= 4,
    rolling only with ``condim`` 6; a factor no contact would use is refused
    at bind time. Units: sliding friction is a plain
    coefficient ("1"); torsional and rolling coefficients are lengths (m).

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("HalfCheetah-v5")
        >>> v = GeomFriction({"geom": "ffoot", "mode": "scale", "priority": True}); v.bind(env)
        >>> v.apply(env, 0.5), int(env.unwrapped.model.geom_priority[8])
        (0.5, 1)
    """

    priority_settable: bool = True
    """Whether ``priority: true`` is open to this factor (False per world in MJX)."""

    type_name = "mujoco.geom_friction"
    Params: ClassVar[type[BaseModel]] = GeomFrictionParams
    obj_type = _OBJ.mjOBJ_GEOM
    obj_what = "geom"
    obj_plural = "geoms"

    def _quantity_units(self) -> str | None:
        return "1" if self.params.component == "sliding" else "m"

    @staticmethod
    def _partners(model: Any, g: int) -> list[int]:
        """Geoms that can touch geom ``g`` in a dynamic contact (same filters as
        MuJoCo's broad phase: bitmasks, same/parent weld body, excluded pairs)."""
        contype, conaff = model.geom_contype, model.geom_conaffinity
        weld, parent = model.body_weldid, model.body_parentid
        filterparent = not (model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_FILTERPARENT)
        excluded = {int(s) for s in model.exclude_signature}
        b1 = int(model.geom_bodyid[g])
        w1 = int(weld[b1])
        p1 = int(weld[parent[w1]])
        out = []
        for g2 in range(model.ngeom):
            if g2 == g or not ((contype[g] & conaff[g2]) or (contype[g2] & conaff[g])):
                continue
            b2 = int(model.geom_bodyid[g2])
            w2 = int(weld[b2])
            p2 = int(weld[parent[w2]])
            if w1 == w2:
                continue
            if filterparent and w1 != 0 and w2 != 0 and (w1 == p2 or w2 == p1):
                continue
            if (min(b1, b2) << 16) + max(b1, b2) in excluded:
                continue
            out.append(g2)
        return out

    def _bind_model(self, model: Any) -> None:
        g = self._lookup(model, self.params.geom)
        c = _FRICTION_COMPONENTS[self.params.component]
        self._g, self._c = g, c
        self._gname = _name(model, self.obj_type, g)
        self._friction0 = float(model.geom_friction[g, c])
        self._priority0 = int(model.geom_priority[g])
        self._check_scalable(self._friction0, f"{self.params.component} friction of geom '{self._gname}'")
        partners = self._partners(model, g)
        self._partner_friction = sorted(
            ((float(model.geom_friction[p, c]), _name(model, self.obj_type, p)) for p in partners),
            reverse=True,
        )
        self._check_condim(model, g, partners)
        in_pairs = int(np.sum(model.pair_geom1 == g) + np.sum(model.pair_geom2 == g))
        if in_pairs:
            _warn_once(
                (self.type_name, "pair", self._gname),
                f"geom '{self._gname}' is in {in_pairs} explicit <contact><pair> element(s); those contacts "
                "use the pair's own friction, which this factor does not change",
            )

    def _check_condim(self, model: Any, g: int, partners: list[int]) -> None:
        """Refuse a factor whose friction no contact would use (because of the
        contact dimension), and say what else ``priority`` changes."""
        own = int(model.geom_condim[g])
        partner_condim = max((int(model.geom_condim[p]) for p in partners), default=own)
        needed = {"sliding": 3, "torsional": 4, "rolling": 6}[self.params.component]
        what = f"{self.params.component} friction"
        if self.params.priority:
            if own < needed:
                raise self.error(
                    f"{what} acts only in contacts with condim >= {needed}, and with 'priority: true' "
                    f"the contacts of geom '{self._gname}' take its own condim {own}; raise its condim in "
                    "the MJCF or use 'priority: false'"
                )
            changes = []
            if partner_condim > own:
                changes.append(f"condim {own} instead of up to {partner_condim}")
            others = [k for k, i in _FRICTION_COMPONENTS.items() if i != self._c]
            for k in others:
                i = _FRICTION_COMPONENTS[k]
                higher = [p for p in partners if model.geom_friction[p, i] > model.geom_friction[g, i]]
                if higher:
                    changes.append(
                        f"{k} friction {float(model.geom_friction[g, i]):.3g} instead of up to "
                        f"{float(max(model.geom_friction[p, i] for p in higher)):.3g}"
                    )
            stronger = [n for f, n in self._partner_friction if f > self._friction0]
            if changes or stronger:
                parts = [
                    f"geom '{self._gname}' with 'priority: true': any value but the nominal one makes its "
                    "contacts use its own parameters"
                ]
                if changes:
                    parts.append(f"so also {', '.join(changes)}")
                if stronger:
                    parts.append(
                        f"its nominal {what} ({self._friction0:.3g}) is below that of "
                        f"{', '.join(repr(n) for n in stronger[:5])}, whose contacts use the larger value "
                        "at nominal: near-nominal values are not nominal contacts"
                    )
                # A fact about MuJoCo's contact model, not something the user can act on: DEBUG
                # only (the docstring and docs/configuration.md explain it), see issue 17.
                logger.debug("; ".join(parts))
        elif partners and max(own, partner_condim) < needed:
            raise self.error(
                f"{what} acts only in contacts with condim >= {needed}; geom '{self._gname}' and its contact "
                f"partners have condim <= {max(own, partner_condim)}"
            )

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        self._need_bound()
        return self._friction0

    def _apply(self, model: Any, value: float) -> float:
        friction = _compose(self.params.mode, self._friction0, value)
        if friction < 0:
            raise self.error(f"friction of geom '{self._gname}' must be >= 0, got {friction}")
        model.geom_friction[self._g, self._c] = friction
        if self.params.priority:
            if value != self.nominal():
                others = np.delete(model.geom_priority, self._g)
                top = int(others.max()) if others.size else self._priority0
                model.geom_priority[self._g] = max(self._priority0, top + 1)
        else:
            stronger = [f"'{n}' ({f:.3g})" for f, n in self._partner_friction if f > friction]
            if stronger:
                _warn_once(
                    (self.type_name, "lower", self._gname, self.params.component),
                    f"geom '{self._gname}': {self.params.component} friction {friction:.3g} is below that of "
                    f"contact partner(s) {', '.join(stronger[:5])}; MuJoCo uses the larger friction of a "
                    "contact pair, so those contacts keep the partner's value. "
                    + (
                        "Set 'priority: true' to make this geom's friction the one used"
                        if self.priority_settable
                        else "MJX cannot vary the priority per world: only values above the partners' "
                        "change those contacts"
                    ),
                )
        return _decompose(self.params.mode, float(model.geom_friction[self._g, self._c]), self._friction0)

    def _restore(self, model: Any) -> None:
        model.geom_friction[self._g, self._c] = self._friction0
        model.geom_priority[self._g] = self._priority0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        out = []
        for g in range(model.ngeom):
            if not (model.geom_contype[g] or model.geom_conaffinity[g]):
                continue  # visual-only geom: never in a contact
            fr = model.geom_friction[g]
            note = (
                f"torsional {fr[1]:.3g}, rolling {fr[2]:.3g}, condim {int(model.geom_condim[g])}, "
                f"priority {int(model.geom_priority[g])}"
            )
            out.append(TargetInfo(cls.type_name, _name(model, cls.obj_type, g), float(fr[0]), "1", note))
        return out


# ---------------------------------------------------------------------------------------
# gravity


class GravityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["scale", "set"] = Field(
        default="scale", description="scale: x nominal vector; set: magnitude along -z in m/s^2"
    )


@register_variation
class Gravity(_MujocoVariation):
    """Gravity (``model.opt.gravity``).

    ``mode: scale`` (default) multiplies the whole gravity vector;
    ``mode: set`` sets its magnitude along -z in m/s^2 (``9.81`` is Earth,
    ``1.62`` the Moon), keeping any x/y component of the nominal vector.
    The value read back is the z magnitude (set) or the ratio of the new to
    the nominal vector (scale).

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("Hopper-v5")
        >>> v = Gravity({"mode": "set"}); v.bind(env)
        >>> v.nominal(), v.apply(env, 1.62), v.units
        (9.81, 1.62, 'm/s^2')
    """

    type_name = "mujoco.gravity"
    Params: ClassVar[type[BaseModel]] = GravityParams

    def _quantity_units(self) -> str | None:
        return "m/s^2"

    def _bind_model(self, model: Any) -> None:
        self._gravity0 = model.opt.gravity.copy()
        self._check_scalable(self._gravity0, "gravity")

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        self._need_bound()
        return float(-self._gravity0[2])

    def _apply(self, model: Any, value: float) -> float:
        if self.params.mode == "scale":
            model.opt.gravity[:] = self._gravity0 * value
            g0 = self._gravity0
            return float(np.dot(model.opt.gravity, g0) / np.dot(g0, g0))
        model.opt.gravity[:] = [self._gravity0[0], self._gravity0[1], -value]
        return float(-model.opt.gravity[2])

    def _restore(self, model: Any) -> None:
        model.opt.gravity[:] = self._gravity0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        g = model.opt.gravity
        return [TargetInfo(cls.type_name, "gravity", float(-g[2]), "m/s^2", f"opt.gravity {_vec(g)}")]


# ---------------------------------------------------------------------------------------
# lights

_HEADLIGHT = "headlight"
_LIGHT_COLORS = ("diffuse", "ambient", "specular")
_AXES = {"x": 0, "y": 1, "z": 2}
_LIGHT_MODES = {
    "color": ("scale", "set"),
    "pos": ("offset", "set"),
    "rot": ("offset",),
}
"""Modes each kind of light property takes (the first is the default)."""


def _light_kind(prop: str) -> str:
    """``color``, ``pos`` (``pos_x``...) or ``rot`` (``rot_x``...)."""
    return "color" if prop in _LIGHT_COLORS else prop.split("_")[0]


def _allowed(modes: tuple[str, ...]) -> str:
    quoted = [f"'{m}'" for m in modes]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


class LightParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    light: ObjectKey = Field(description="light name, index / '#index', or 'headlight'")
    property: Literal[
        "diffuse", "ambient", "specular", "pos_x", "pos_y", "pos_z", "rot_x", "rot_y", "rot_z"
    ] = Field(
        default="diffuse",
        description="a color; a position coordinate (m); or a rotation of the direction about an axis (deg)",
    )
    mode: Literal["scale", "set", "offset"] | None = Field(
        default=None,
        description="colors: scale (default) x nominal RGB, set R=G=B; positions: offset (default) or set; "
        "rotations: offset",
    )

    @field_validator("mode")
    @classmethod
    def _mode_fits_property(cls, mode: str | None, info: ValidationInfo) -> str | None:
        modes = _LIGHT_MODES[_light_kind(str(info.data.get("property", "diffuse")))]
        if mode is not None and mode not in modes:
            raise PydanticCustomError("literal_error", f"Input should be {_allowed(modes)}")
        return mode

    @model_validator(mode="after")
    def _default_mode(self) -> LightParams:
        if self.mode is None:
            self.mode = _LIGHT_MODES[_light_kind(self.property)][0]  # type: ignore[assignment]
        return self


def _rotation_angle(before: Any, after: Any, axis: int) -> float:
    """Signed angle (deg) that turns ``before`` into ``after`` about coordinate ``axis``
    (both vectors' components across that axis)."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    cross = before[i] * after[j] - before[j] * after[i]
    dot = before[i] * after[i] + before[j] * after[j]
    return math.degrees(math.atan2(cross, dot))


def _rotate(vector: Any, axis: int, degrees: float) -> Any:
    """``vector`` rotated by ``degrees`` about coordinate ``axis`` (right-handed)."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    a = math.radians(degrees)
    out = np.array(vector, dtype=np.float64, copy=True)
    out[i] = math.cos(a) * vector[i] - math.sin(a) * vector[j]
    out[j] = math.sin(a) * vector[i] + math.cos(a) * vector[j]
    return out


@register_variation
class Light(_MujocoVariation):
    """Intensity, position or direction of a light (visual only).

    Colors (``property: diffuse`` (default), ``ambient``, ``specular``): the
    value multiplies (``mode: scale``, default) or sets (``mode: set``) all
    three RGB channels. ``light: headlight`` is the viewer's headlight
    (``model.vis.headlight``), which every MuJoCo scene has even when the
    MJCF declares no light (a model light named "headlight" can still be
    reached by its index). Colors are stored as float32, so a set value
    reads back rounded to float32.

    Position (``pos_x``/``pos_y``/``pos_z``, metres in the parent body's
    frame; ``mode: offset`` (default) adds to the nominal coordinate,
    ``set`` sets it) and direction (``rot_x``/``rot_y``/``rot_z``: the
    light's direction rotated by the value, in degrees, about that axis of
    the parent body's frame; offset only): model lights only (the headlight
    follows the camera). A directional light's position changes nothing in
    the image and is refused; a rotation about an axis the direction is
    parallel to is refused too. Tracking lights get their derived offsets
    recomputed (``mj_setConst``), as tracking cameras do.

    Only rendered frames change: use it to test vision-based policies.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("HalfCheetah-v5")
        >>> v = Light({"light": "headlight", "mode": "scale"}); v.bind(env)
        >>> v.apply(env, 0.5), float(env.unwrapped.model.vis.headlight.diffuse[0])
        (0.5, 0.20000000298023224)
        >>> tilt = Light({"light": 0, "property": "rot_y"}); tilt.bind(env)
        >>> tilt.params.mode, tilt.units, round(tilt.apply(env, 30.0), 6)
        ('offset', 'deg', 30.0)
    """

    type_name = "mujoco.light"
    Params: ClassVar[type[BaseModel]] = LightParams
    obj_type = _OBJ.mjOBJ_LIGHT
    obj_what = "light"
    obj_plural = "lights"
    extra_names = (_HEADLIGHT,)

    def _quantity_units(self) -> str | None:
        return {"color": "rgb", "pos": "m", "rot": "deg"}[_light_kind(self.params.property)]

    def _lookup(self, model: Any, key: ObjectKey, kind: tuple[Any, str, str] | None = None) -> int:
        return -1 if key == _HEADLIGHT and kind is None else super()._lookup(model, key, kind)

    def _color(self, model: Any) -> Any:
        """A writable view of the RGB color this factor changes."""
        if self._i < 0:
            return getattr(model.vis.headlight, self.params.property)
        return getattr(model, f"light_{self.params.property}")[self._i]

    def _bind_model(self, model: Any) -> None:
        self._i = self._lookup(model, self.params.light)
        self._lname = _HEADLIGHT if self._i < 0 else _name(model, self.obj_type, self._i)
        self._kind = _light_kind(self.params.property)
        if self._kind != "color":
            self._bind_pose(model)
            return
        self._rgb0 = np.array(self._color(model), copy=True)
        self._check_scalable(self._rgb0, f"{self.params.property} color of light '{self._lname}'")
        self._k = int(np.argmax(self._rgb0))

    def _bind_pose(self, model: Any) -> None:
        """Snapshot the position and direction of a model light (pos_* / rot_*)."""
        if self._i < 0:
            raise self.error(
                f"the headlight has no position or direction of its own (it follows the camera); "
                f"'{self.params.property}' needs a model light"
            )
        self._axis = _AXES[self.params.property[-1]]
        self._pos0 = model.light_pos[self._i].copy()
        self._dir0 = model.light_dir[self._i].copy()
        if self._kind == "pos" and model.light_directional[self._i]:
            raise self.error(
                f"light '{self._lname}' is directional: its position does not change the image; "
                "vary its direction (rot_x, rot_y, rot_z)"
            )
        if self._kind == "rot":
            i, j = (self._axis + 1) % 3, (self._axis + 2) % 3
            if math.hypot(float(self._dir0[i]), float(self._dir0[j])) < 1e-9:
                raise self.error(
                    f"the direction of light '{self._lname}' ({_vec(self._dir0)}) is along the "
                    f"{self.params.property[-1]} axis: '{self.params.property}' cannot change it"
                )

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        if self.params.mode == "offset":
            return 0.0
        self._need_bound()
        if self._kind == "pos":
            return float(self._pos0[self._axis])
        return float(self._rgb0[self._k])

    def _apply(self, model: Any, value: float) -> float:
        if self._kind == "pos":
            model.light_pos[self._i, self._axis] = _compose(
                str(self.params.mode), self._pos0[self._axis], value
            )
            self._refresh_constants(model)
            actual = float(model.light_pos[self._i, self._axis])
            return _decompose(str(self.params.mode), actual, float(self._pos0[self._axis]))
        if self._kind == "rot":
            model.light_dir[self._i] = _rotate(self._dir0, self._axis, value)
            self._refresh_constants(model)
            return _rotation_angle(self._dir0, model.light_dir[self._i], self._axis)
        if value < 0:
            raise self.error(f"light intensity must be >= 0, got {value}")
        color = self._color(model)
        if self.params.mode == "scale":
            color[:] = self._rgb0.astype(np.float64) * value
        else:
            color[:] = value
        return _decompose(str(self.params.mode), float(color[self._k]), float(self._rgb0[self._k]))

    def _restore(self, model: Any) -> None:
        if self._kind == "color":
            self._color(model)[:] = self._rgb0
            return
        model.light_pos[self._i] = self._pos0
        model.light_dir[self._i] = self._dir0
        self._refresh_constants(model)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        h = model.vis.headlight
        out = [
            TargetInfo(
                cls.type_name,
                _HEADLIGHT,
                _vec(h.diffuse),
                "rgb",
                f"diffuse; ambient {_vec(h.ambient)}, specular {_vec(h.specular)}; visual only",
            )
        ]
        for i in range(model.nlight):
            active = "" if model.light_active[i] else ", inactive"
            kind = "directional" if model.light_directional[i] else "spot"
            out.append(
                TargetInfo(
                    cls.type_name,
                    _name(model, cls.obj_type, i),
                    _vec(model.light_diffuse[i]),
                    "rgb",
                    f"diffuse; ambient {_vec(model.light_ambient[i])}, "
                    f"specular {_vec(model.light_specular[i])}{active}; {kind}, "
                    f"pos {_vec(model.light_pos[i])} m, dir {_vec(model.light_dir[i])}; visual only",
                )
            )
        return out


# ---------------------------------------------------------------------------------------
# cameras

_CAMERA_AXES = {"pos_x": 0, "pos_y": 1, "pos_z": 2}
_CAMERA_ANGLES = {"pitch": 0, "yaw": 1, "roll": 2}
"""Rotations about the camera's own x (right), y (up) and z (backward) axes."""
_TARGETING = (int(mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY), int(mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODYCOM))


class CameraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: ObjectKey = Field(description="camera name (or index / '#index')")
    property: Literal["fovy", "pos_x", "pos_y", "pos_z", "yaw", "pitch", "roll"] = Field(
        description="vertical field of view (deg), position in the parent body's frame (m), "
        "or a rotation about the camera's own axes (deg)"
    )
    mode: Literal["set", "offset", "scale"] | None = Field(
        default=None,
        description="default: set for fovy, offset for positions and angles (angles: offset only)",
    )

    @model_validator(mode="after")
    def _default_mode(self) -> CameraParams:
        if self.mode is None:
            self.mode = "set" if self.property == "fovy" else "offset"
        if self.property in _CAMERA_ANGLES and self.mode != "offset":
            raise PydanticCustomError(
                "angle_mode",
                f"mode '{self.mode}' is not available for property '{self.property}': camera angles are "
                "offsets from the nominal orientation, in degrees (mode 'offset')",
            )
        return self


def _quat_mul(a: Any, b: Any) -> Any:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out


@register_variation
class Camera(_MujocoVariation):
    """Field of view, position or orientation of a model camera (visual only).

    ``property: fovy`` (vertical field of view, degrees; default mode
    ``set``) or ``pos_x``/``pos_y``/``pos_z`` (position in the parent body's
    frame, metres; default mode ``offset``, added to the nominal position).
    ``mode: scale`` multiplies the nominal quantity. ``yaw``/``pitch``/``roll``
    turn the camera about its own up (y), right (x) and viewing (z) axes by
    the value in degrees, from its nominal orientation (offset only). One
    factor per axis with a symmetric sampler around 0 is a camera-extrinsics
    jitter (as Isaac Lab Arena's camera variation): e.g. ``pos_x``, ``pos_y``,
    ``pos_z`` uniform in +-2 cm and ``yaw``, ``pitch`` uniform in +-3 deg.
    Tracking cameras get their derived offsets recomputed (``mj_setConst``),
    without which they would not move. Cameras defined by a sensor size
    (intrinsics) ignore ``fovy`` and are refused for it; cameras that aim at
    a target body compute their orientation and are refused for angles; the
    viewer's free camera is not a model camera and cannot be targeted.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("HalfCheetah-v5")
        >>> v = Camera({"camera": "track", "property": "pos_z"}); v.bind(env)
        >>> v.params.mode, v.units, v.nominal(), round(v.apply(env, 0.5), 6)
        ('offset', 'm', 0.0, 0.5)
        >>> yaw = Camera({"camera": "track", "property": "yaw"}); yaw.bind(env)
        >>> yaw.units, yaw.nominal(), round(yaw.apply(env, -4.0), 6)
        ('deg', 0.0, -4.0)
    """

    type_name = "mujoco.camera"
    Params: ClassVar[type[BaseModel]] = CameraParams
    obj_type = _OBJ.mjOBJ_CAMERA
    obj_what = "camera"
    obj_plural = "cameras"

    def _quantity_units(self) -> str | None:
        return "m" if self.params.property in _CAMERA_AXES else "deg"

    def _read(self, model: Any) -> float:
        if self.params.property == "fovy":
            return float(model.cam_fovy[self._c])
        if self.params.property in _CAMERA_ANGLES:
            k = _CAMERA_ANGLES[self.params.property]
            relative = _quat_mul(self._quat0 * np.array([1.0, -1.0, -1.0, -1.0]), model.cam_quat[self._c])
            return math.degrees(2.0 * math.atan2(float(relative[1 + k]), float(relative[0])))
        return float(model.cam_pos[self._c, _CAMERA_AXES[self.params.property]])

    def _write(self, model: Any, quantity: float) -> None:
        if self.params.property == "fovy":
            model.cam_fovy[self._c] = quantity
            return
        if self.params.property in _CAMERA_ANGLES:
            turn = np.zeros(4)
            axis = np.zeros(3)
            axis[_CAMERA_ANGLES[self.params.property]] = 1.0
            mujoco.mju_axisAngle2Quat(turn, axis, math.radians(quantity))
            model.cam_quat[self._c] = _quat_mul(self._quat0, turn)
        else:
            model.cam_pos[self._c, _CAMERA_AXES[self.params.property]] = quantity
        self._refresh_constants(model)

    def _bind_model(self, model: Any) -> None:
        self._c = self._lookup(model, self.params.camera)
        self._cname = _name(model, self.obj_type, self._c)
        self._quat0 = model.cam_quat[self._c].copy()
        self._pos0 = model.cam_pos[self._c].copy()
        if self.params.property == "fovy" and np.any(model.cam_sensorsize[self._c] != 0):
            raise self.error(
                f"camera '{self._cname}' is defined by its sensor size and focal length, "
                "so MuJoCo ignores its fovy"
            )
        if self.params.property in _CAMERA_ANGLES:
            if int(model.cam_mode[self._c]) in _TARGETING:
                raise self.error(
                    f"camera '{self._cname}' aims at a target body: MuJoCo computes its orientation, "
                    f"so '{self.params.property}' cannot change it"
                )
            self._value0 = 0.0
            return
        self._value0 = self._read(model)
        self._check_scalable(self._value0, f"{self.params.property} of camera '{self._cname}'")

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        if self.params.mode == "offset":
            return 0.0
        self._need_bound()
        return self._value0

    def _apply(self, model: Any, value: float) -> float:
        quantity = _compose(str(self.params.mode), self._value0, value)
        if self.params.property == "fovy" and not 0 < quantity < 180:
            raise self.error(f"fovy of camera '{self._cname}' must be in (0, 180) degrees, got {quantity}")
        self._write(model, quantity)
        return _decompose(str(self.params.mode), self._read(model), self._value0)

    def _restore(self, model: Any) -> None:
        if self.params.property in _CAMERA_ANGLES:
            model.cam_quat[self._c] = self._quat0
            self._refresh_constants(model)
        else:
            self._write(model, self._value0)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        modes = _enum_names(mujoco.mjtCamLight, "mjCAMLIGHT_")
        return [
            TargetInfo(
                cls.type_name,
                _name(model, cls.obj_type, c),
                float(model.cam_fovy[c]),
                "deg",
                f"fovy; pos {_vec(model.cam_pos[c])} m, mode {modes.get(int(model.cam_mode[c]), '?')}; "
                "visual only",
            )
            for c in range(model.ncam)
        ]


# ---------------------------------------------------------------------------------------
# joint damping

_DOFS_PER_JOINT = {
    int(mujoco.mjtJoint.mjJNT_FREE): 6,
    int(mujoco.mjtJoint.mjJNT_BALL): 3,
    int(mujoco.mjtJoint.mjJNT_SLIDE): 1,
    int(mujoco.mjtJoint.mjJNT_HINGE): 1,
}
_DAMPING_UNITS = {
    int(mujoco.mjtJoint.mjJNT_FREE): "Ns/m | Nms/rad",
    int(mujoco.mjtJoint.mjJNT_BALL): "Nms/rad",
    int(mujoco.mjtJoint.mjJNT_SLIDE): "Ns/m",
    int(mujoco.mjtJoint.mjJNT_HINGE): "Nms/rad",
}


class DofDampingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    joint: ObjectKey = Field(description="joint name (or index / '#index'); all its DOFs change")
    mode: Literal["scale", "set"] = Field(default="scale", description="scale: x nominal; set: damping")


@register_variation
class DofDamping(_MujocoVariation):
    """Viscous damping of every DOF of one joint (``dof_damping``).

    ``mode: scale`` (default) multiplies the nominal damping (refused when
    it is 0: use ``set``), ``mode: set`` gives each DOF of the joint that
    damping (N*s/m for slide, N*m*s/rad for hinge and ball joints). The
    value read back is the damping of the joint's first DOF (set), or the
    ratio to nominal (scale).

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("HalfCheetah-v5")
        >>> v = DofDamping({"joint": "bthigh", "mode": "set"}); v.bind(env)
        >>> v.nominal(), v.apply(env, 3.0), v.units
        (6.0, 3.0, 'Nms/rad')
    """

    type_name = "mujoco.dof_damping"
    Params: ClassVar[type[BaseModel]] = DofDampingParams
    obj_type = _OBJ.mjOBJ_JOINT
    obj_what = "joint"
    obj_plural = "joints"

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._units = "Ns/m | Nms/rad"

    def _quantity_units(self) -> str | None:
        return self._units

    def _bind_model(self, model: Any) -> None:
        j = self._lookup(model, self.params.joint)
        self._jname = _name(model, self.obj_type, j)
        start = int(model.jnt_dofadr[j])
        jtype = int(model.jnt_type[j])
        self._dofs = slice(start, start + _DOFS_PER_JOINT[jtype])
        self._units = _DAMPING_UNITS[jtype]
        self._damping0 = model.dof_damping[self._dofs].copy()
        self._check_scalable(self._damping0, f"damping of joint '{self._jname}'")
        nonzero = np.flatnonzero(self._damping0)
        self._k = int(nonzero[0]) if nonzero.size else 0

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        self._need_bound()
        return float(self._damping0[0])

    def _apply(self, model: Any, value: float) -> float:
        damping = _compose(self.params.mode, self._damping0, value)
        if np.any(np.asarray(damping) < 0):
            raise self.error(f"damping of joint '{self._jname}' must be >= 0, got {value}")
        model.dof_damping[self._dofs] = damping
        return _decompose(
            self.params.mode, float(model.dof_damping[self._dofs][self._k]), float(self._damping0[self._k])
        )

    def _restore(self, model: Any) -> None:
        model.dof_damping[self._dofs] = self._damping0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        kinds = _enum_names(mujoco.mjtJoint, "mjJNT_")
        out = []
        for j in range(model.njnt):
            jtype = int(model.jnt_type[j])
            start = int(model.jnt_dofadr[j])
            n = _DOFS_PER_JOINT[jtype]
            out.append(
                TargetInfo(
                    cls.type_name,
                    _name(model, cls.obj_type, j),
                    float(model.dof_damping[start]),
                    _DAMPING_UNITS[jtype],
                    f"{kinds[jtype]} joint, {n} DOF",
                )
            )
        return out


# ---------------------------------------------------------------------------------------
# actuator gain


class ActuatorGainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actuator: ObjectKey = Field(description="actuator name (or index / '#index')")
    mode: Literal["scale", "set"] = Field(default="scale", description="scale: x nominal; set: gainprm[0]")


def _servo_kind(model: Any, a: int) -> str | None:
    """'position' or 'velocity' when actuator ``a`` is a servo whose bias
    mirrors its gain (``<position kp>``: biasprm[1] = -kp; ``<velocity kv>``:
    biasprm[2] = -kv), else None."""
    if int(model.actuator_biastype[a]) != int(mujoco.mjtBias.mjBIAS_AFFINE):
        return None
    gain = model.actuator_gainprm[a, 0]
    bias = model.actuator_biasprm[a]
    if gain == 0:
        return None
    if bias[1] == -gain:
        return "position"
    if bias[1] == 0 and bias[2] == -gain:
        return "velocity"
    return None


@register_variation
class ActuatorGain(_MujocoVariation):
    """Gain of one actuator (``actuator_gainprm[:, 0]``): motor strength or servo stiffness.

    ``mode: scale`` (default) multiplies the nominal gain, ``mode: set``
    sets it. For a position servo (``<position kp>``, recognised by
    ``biasprm[1] == -gainprm[0]``) the bias term is kept consistent
    (``biasprm[1] = -kp``) so the servo still pulls towards its target
    instead of drifting; likewise ``biasprm[2] = -kv`` for a velocity servo.
    A position servo's damping (``kv``/``dampratio``, compiled into
    ``biasprm[2]``) is left as it is. Muscle and user gain types are refused:
    their ``gainprm[0]`` is not a gain. Unnamed actuators (e.g. Hopper's) are
    addressed by index.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("Hopper-v5")
        >>> v = ActuatorGain({"actuator": "#0"}); v.bind(env)
        >>> v.apply(env, 0.5), float(env.unwrapped.model.actuator_gainprm[0, 0])
        (0.5, 0.5)
    """

    type_name = "mujoco.actuator_gain"
    Params: ClassVar[type[BaseModel]] = ActuatorGainParams
    obj_type = _OBJ.mjOBJ_ACTUATOR
    obj_what = "actuator"
    obj_plural = "actuators"

    def _bind_model(self, model: Any) -> None:
        a = self._lookup(model, self.params.actuator)
        self._a = a
        self._aname = _name(model, self.obj_type, a)
        gaintype = int(model.actuator_gaintype[a])
        if gaintype not in (int(mujoco.mjtGain.mjGAIN_FIXED), int(mujoco.mjtGain.mjGAIN_AFFINE)):
            kind = _enum_names(mujoco.mjtGain, "mjGAIN_").get(gaintype, str(gaintype))
            raise self.error(f"actuator '{self._aname}' has gain type '{kind}': its gainprm[0] is not a gain")
        self._gain0 = float(model.actuator_gainprm[a, 0])
        self._bias0 = model.actuator_biasprm[a].copy()
        self._servo = _servo_kind(model, a)
        self._check_scalable(self._gain0, f"gain of actuator '{self._aname}'")

    def nominal(self) -> FactorValue:
        if self.params.mode == "scale":
            return 1.0
        self._need_bound()
        return self._gain0

    def _apply(self, model: Any, value: float) -> float:
        gain = _compose(self.params.mode, self._gain0, value)
        model.actuator_gainprm[self._a, 0] = gain
        if self._servo == "position":
            model.actuator_biasprm[self._a, 1] = -gain
        elif self._servo == "velocity":
            model.actuator_biasprm[self._a, 2] = -gain
        return _decompose(self.params.mode, float(model.actuator_gainprm[self._a, 0]), self._gain0)

    def _restore(self, model: Any) -> None:
        model.actuator_gainprm[self._a, 0] = self._gain0
        model.actuator_biasprm[self._a] = self._bias0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        out = []
        for a in range(model.nu):
            servo = _servo_kind(model, a)
            kind = f"{servo} servo" if servo else "motor/general"
            note = kind
            if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
                joint = _name(model, _OBJ.mjOBJ_JOINT, int(model.actuator_trnid[a, 0]))
                note += f" on joint '{joint}'"
            note += f", gear {float(model.actuator_gear[a, 0]):.4g}"
            out.append(
                TargetInfo(
                    cls.type_name,
                    _name(model, cls.obj_type, a),
                    float(model.actuator_gainprm[a, 0]),
                    None,
                    note,
                )
            )
        return out
