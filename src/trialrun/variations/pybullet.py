"""Built-in PyBullet variations: mass, lateral friction and restitution of a
named body (or one of its links), for envs simulated with PyBullet (panda-gym).

Each edits the running simulation with ``changeDynamics(body, link, ...)``
(no rebuild), so it applies at reset: the factor hook restores the nominal
dynamics and applies the episode's value before every reset, and the value
recorded is the one read back with ``getDynamicsInfo``.

Where the simulation is found: the env's ``BulletClient`` (panda-gym keeps
it as ``env.unwrapped.sim.physics_client``, pybullet_envs as
``env.unwrapped._p``). Bodies are named as the env names them (panda-gym's
``sim._bodies_idx``: ``panda``, ``table``, ``object`` ...), else by their
URDF/MJCF body name, or as ``#<id>``; links by name or index, ``-1`` (the
default) being the base.

Facts that shape it (pybullet 3.2.7):

- ``changeDynamics(mass=m)`` also recomputes the local inertia from the
  collision shape, which is not the URDF's inertia for links that give one;
  so the inertia is set explicitly: nominal inertia x (m / nominal mass), the
  same body with a different density, and put back exactly on restore.
- Bullet combines the friction (and restitution) of two touching bodies by
  multiplying them: the object's friction on the table is object x table.
- A body of mass 0 is static; giving it a mass would make it fall, so mass
  variations refuse static bodies.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("panda_gym:PandaPush-v3")  # doctest: +SKIP
    >>> v = Mass({"body": "object", "mode": "set"}); v.bind(env)  # doctest: +SKIP
    >>> v.apply(env, 2.5), v.nominal()  # doctest: +SKIP
    (2.5, 1.0)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation

_MASS, _LATERAL_FRICTION, _LOCAL_INERTIA, _RESTITUTION = 0, 1, 2, 5
"""Indices into ``getDynamicsInfo``'s tuple."""

_CLIENT_PATHS = (("sim", "physics_client"), ("physics_client",), ("_p",), ("bullet_client",))
"""Where envs keep their ``BulletClient`` (panda-gym, pybullet_envs, others);
an env that calls the ``pybullet`` module with a bare client id is not found."""


def _follow(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def find_bullet_client(env: gym.Env[Any, Any]) -> Any | None:
    """The env's PyBullet client (an object with ``changeDynamics`` and
    ``getDynamicsInfo``), or None when the env does not use PyBullet."""
    base = env.unwrapped
    for path in _CLIENT_PATHS:
        client = _follow(base, path)
        if client is not None and callable(getattr(client, "getDynamicsInfo", None)):
            return client
    return None


def body_names(env: gym.Env[Any, Any], client: Any) -> dict[str, int]:
    """``{name: body id}`` of every body: the env's own names first
    (panda-gym's ``sim._bodies_idx``), then the body names of the URDF/MJCF
    files, then ``#<id>``."""
    names: dict[str, int] = {}
    own = _follow(env.unwrapped, ("sim", "_bodies_idx"))
    if isinstance(own, dict):
        names.update({str(k): int(v) for k, v in own.items()})
    named = set(names.values())
    for index in range(client.getNumBodies()):
        body = int(client.getBodyUniqueId(index))
        if body in named:
            continue
        name = client.getBodyInfo(body)[1].decode(errors="replace")
        names.setdefault(name or f"#{body}", body)
    return names


def link_names(client: Any, body: int) -> dict[str, int]:
    """``{name: link index}`` of a body, its base (``-1``) first."""
    names = {client.getBodyInfo(body)[0].decode(errors="replace") or "base": -1}
    for joint in range(client.getNumJoints(body)):
        names.setdefault(client.getJointInfo(body, joint)[12].decode(errors="replace"), joint)
    return names


class PyBulletParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str | int = Field(description="body name (panda-gym: object, table, panda ...) or id / '#id'")
    link: str | int = Field(default=-1, description="link name or index; -1 (default) is the base")
    mode: Literal["set", "scale"] = Field(default="set", description="set: the value; scale: x nominal")


class MassParams(PyBulletParams):
    mode: Literal["set", "scale"] = Field(default="scale", description="scale: x nominal; set: kg")


class _PyBulletVariation(Variation):
    """Shared plumbing: finding the client, the body and the link, checking
    that ``apply``/``restore`` get the env this instance was bound to, and
    reading values back."""

    Params: ClassVar[type[BaseModel]] = PyBulletParams
    index: ClassVar[int] = _LATERAL_FRICTION
    """Which entry of ``getDynamicsInfo`` this variation changes."""
    keyword: ClassVar[str] = ""
    """The ``changeDynamics`` keyword argument."""
    quantity_units: ClassVar[str | None] = None

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._client: Any = None
        self._root: Any = None
        self._body = -1
        self._link = -1
        self._nominal_info: tuple[Any, ...] = ()

    @property
    def units(self) -> str | None:
        return "x" if self.params.mode == "scale" else self.quantity_units

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        client = find_bullet_client(env)
        if client is None:
            raise self.error(
                f"variation '{self.type_name}' needs a PyBullet env (a BulletClient such as panda-gym's "
                f"sim.physics_client); {type(env.unwrapped).__name__} is not one"
            )
        bodies = body_names(env, client)
        key = self.params.body
        if isinstance(key, str) and key in bodies:
            body = bodies[key]
        elif isinstance(key, int) and key in bodies.values():
            body = key
        elif (
            isinstance(key, str)
            and key.startswith("#")
            and key[1:].isdigit()
            and int(key[1:]) in bodies.values()
        ):
            body = int(key[1:])
        else:
            raise self.error(f"unknown body '{key}'; bodies: {', '.join(bodies) or '(none)'}")
        links = link_names(client, body)
        link = self.params.link
        if isinstance(link, str):
            if link not in links:
                raise self.error(f"unknown link '{link}' of body '{key}'; links: {', '.join(links)}")
            link = links[link]
        elif link not in links.values():
            raise self.error(f"link index {link} is out of range for body '{key}'; links: {', '.join(links)}")
        self._client, self._root, self._body, self._link = client, env.unwrapped, body, int(link)
        self._nominal_info = tuple(client.getDynamicsInfo(body, self._link))
        self._check_target()

    def _check_target(self) -> None:
        """Refuse targets the variation cannot change (at bind time)."""
        if self.params.mode == "scale" and self._nominal_info[self.index] == 0:
            raise self.error(
                f"{self._what()} of body '{self.params.body}' is 0, so mode 'scale' cannot change it; "
                "use mode 'set'"
            )

    def _what(self) -> str:
        return self.type_name.removeprefix("pybullet.").replace("_", " ")

    def _checked_client(self, env: gym.Env[Any, Any]) -> Any:
        if self._client is None:
            raise self.error(f"variation '{self.type_name}' is not bound: call bind(env) first")
        if env.unwrapped is not self._root:
            raise self.error(
                f"variation '{self.type_name}' was bound to another env instance; "
                "bind one variation instance per sub-env"
            )
        return self._client

    def _number(self, value: FactorValue) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise self.error(f"variation '{self.type_name}' needs a number, got {value!r}")
        number = float(value)
        if not np.isfinite(number) or number < 0:
            raise self.error(f"variation '{self.type_name}' needs a finite number >= 0, got {value!r}")
        return number

    def nominal(self) -> FactorValue:
        if not self._nominal_info:
            raise self.error(f"variation '{self.type_name}' is not bound: call bind(env) first")
        return 1.0 if self.params.mode == "scale" else float(self._nominal_info[self.index])

    def _settings(self, quantity: float) -> dict[str, Any]:
        """The ``changeDynamics`` keyword arguments that set ``quantity``."""
        return {self.keyword: quantity}

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        client = self._checked_client(env)
        number = self._number(value)
        nominal = float(self._nominal_info[self.index])
        quantity = nominal * number if self.params.mode == "scale" else number
        client.changeDynamics(self._body, self._link, **self._settings(quantity))
        actual = float(client.getDynamicsInfo(self._body, self._link)[self.index])
        return actual / nominal if self.params.mode == "scale" else actual

    def restore(self, env: gym.Env[Any, Any]) -> None:
        client = self._checked_client(env)
        client.changeDynamics(self._body, self._link, **self._settings(float(self._nominal_info[self.index])))

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        client = find_bullet_client(env)
        if client is None:
            return []
        out = []
        for name, body in body_names(env, client).items():
            value = float(client.getDynamicsInfo(body, -1)[cls.index])
            if cls.index == _MASS and value == 0:
                continue  # static: refused (its links, if any, can be named with link:)
            links = client.getNumJoints(body)
            note = f"base link; {links} more links (link: name or index)" if links else "base link"
            out.append(TargetInfo(cls.type_name, name, round(value, 6), cls.quantity_units, note))
        return out


@register_variation
class Mass(_PyBulletVariation):
    """Mass of a PyBullet body's link (base by default); its inertia scales
    with it (same shape, different density). ``mode: scale`` (default)
    multiplies the nominal mass, ``mode: set`` sets it in kg.

    Example:
        >>> Mass({"body": "object"}).units
        'x'
    """

    type_name = "pybullet.mass"
    Params: ClassVar[type[BaseModel]] = MassParams
    index: ClassVar[int] = _MASS
    keyword: ClassVar[str] = "mass"
    quantity_units: ClassVar[str | None] = "kg"

    def _check_target(self) -> None:
        if self._nominal_info[_MASS] == 0:
            raise self.error(
                f"body '{self.params.body}' is static (mass 0): a mass would make it move; vary another body"
            )

    def _settings(self, quantity: float) -> dict[str, Any]:
        ratio = quantity / float(self._nominal_info[_MASS])
        inertia = [float(x) * ratio for x in self._nominal_info[_LOCAL_INERTIA]]
        return {"mass": quantity, "localInertiaDiagonal": inertia}


@register_variation
class LateralFriction(_PyBulletVariation):
    """Lateral (sliding) friction coefficient of a PyBullet body's link. Bullet
    multiplies the coefficients of two touching bodies.

    Example:
        >>> LateralFriction({"body": "object", "mode": "scale"}).units
        'x'
    """

    type_name = "pybullet.lateral_friction"
    index: ClassVar[int] = _LATERAL_FRICTION
    keyword: ClassVar[str] = "lateralFriction"


@register_variation
class Restitution(_PyBulletVariation):
    """Restitution (bounciness) of a PyBullet body's link. Bullet multiplies
    the coefficients of two touching bodies.

    Example:
        >>> Restitution({"body": "object"}).params.link
        -1
    """

    type_name = "pybullet.restitution"
    index: ClassVar[int] = _RESTITUTION
    keyword: ClassVar[str] = "restitution"
