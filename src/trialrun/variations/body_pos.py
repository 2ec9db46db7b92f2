"""``mujoco.body_pos``: where a body sits in its parent's frame, along one axis (layout).

Colosseum and LIBERO-Plus vary the layout of a scene: table height, where
fixed furniture or a goal marker stands. This factor moves one body
(``model.body_pos``), with everything attached to it (geoms, sites,
cameras, child bodies), by an offset along ``axis`` (``mode: offset``,
default, metres) or to a coordinate (``mode: set``). The
compiler-derived constants that depend on positions (``dof_M0``,
``cam_pos0``...) are recomputed, as for a mass change.

Which bodies it makes sense for: bodies welded to the world or to their
parent (tables, walls, fixed markers), and bodies whose joints hang below
them (moving a robot's base moves the arm). A body with a free joint has
no fixed position (the env's reset writes it into ``qpos``) and a mocap
body is moved by ``data.mocap_pos``: both are refused. In Meta-World the
object and goal are placed by the env at every reset (use
``metaworld.obj_range``/``goal_range`` for them); ``tablelink`` can move,
but the env still places objects at its nominal height, so only small
offsets (or the table's x/y) keep a task meaningful.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("Reacher-v5")
    >>> v = BodyPos({"body": "target", "axis": "z"}); v.bind(env)
    >>> v.nominal(), round(v.apply(env, 0.05), 6), v.units
    (0.0, 0.05, 'm')
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import mujoco
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import FactorValue, TargetInfo
from trialrun.variations.mujoco import (
    _OBJ,
    ObjectKey,
    _compose,
    _decompose,
    _MujocoVariation,
    _name,
    _vec,
)
from trialrun.variations.registry import register_variation

_AXES = {"x": 0, "y": 1, "z": 2}
_FREE = int(mujoco.mjtJoint.mjJNT_FREE)


class BodyPosParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: ObjectKey = Field(description="body name (or index / '#index')")
    axis: Literal["x", "y", "z"] = Field(description="axis of the parent body's frame")
    mode: Literal["offset", "set"] = Field(
        default="offset", description="offset: + nominal (m); set: coordinate"
    )


@register_variation
class BodyPos(_MujocoVariation):
    """Position of a body along one axis of its parent's frame (see the module docstring)."""

    type_name = "mujoco.body_pos"
    Params: ClassVar[type[BaseModel]] = BodyPosParams
    obj_type = _OBJ.mjOBJ_BODY
    obj_what = "body"
    obj_plural = "bodies"

    @property
    def units(self) -> str | None:
        return "m"

    @staticmethod
    def _why_not(model: Any, b: int) -> str | None:
        """Why body ``b`` has no position to vary, or None when it has one."""
        if b == 0:
            return "is the world body"
        if model.body_mocapid[b] >= 0:
            return "is a mocap body (data.mocap_pos moves it)"
        start, count = int(model.body_jntadr[b]), int(model.body_jntnum[b])
        if any(int(model.jnt_type[j]) == _FREE for j in range(start, start + count)):
            return "has a free joint (the env's reset sets its position in qpos)"
        return None

    def _bind_model(self, model: Any) -> None:
        b = self._lookup(model, self.params.body)
        self._refuse_body(model, b, self._why_not, "", "bodies with a position to vary")
        self._b = b
        self._k = _AXES[self.params.axis]
        self._pos0 = float(model.body_pos[b, self._k])

    def nominal(self) -> FactorValue:
        if self.params.mode == "offset":
            return 0.0
        self._need_bound()
        return self._pos0

    def _apply(self, model: Any, value: float) -> float:
        model.body_pos[self._b, self._k] = _compose(self.params.mode, self._pos0, value)
        self._refresh_constants(model)
        return _decompose(self.params.mode, float(model.body_pos[self._b, self._k]), self._pos0)

    def _restore(self, model: Any) -> None:
        model.body_pos[self._b, self._k] = self._pos0
        self._refresh_constants(model)

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        out = []
        for b in range(model.nbody):
            if cls._why_not(model, b) is not None:
                continue
            parent = _name(model, _OBJ.mjOBJ_BODY, int(model.body_parentid[b]))
            fixed = "fixed" if int(model.body_jntnum[b]) == 0 else f"{int(model.body_jntnum[b])} joint(s)"
            out.append(
                TargetInfo(
                    cls.type_name,
                    _name(model, _OBJ.mjOBJ_BODY, b),
                    _vec(model.body_pos[b]),
                    "m",
                    f"in '{parent}' frame; {fixed}, {int(model.body_geomnum[b])} geom(s)",
                )
            )
        return out
