"""``mujoco.geom_rgba``: the colour of named geoms, or of every geom of a body (visual only).

Why a colour factor: a policy that reads camera images can depend on an
object's or a table's colour (Colosseum's object/table colour factors);
a state-based policy cannot. One factor changes one thing, chosen by
``channel``:

- ``color`` (categorical, default): the value names a colour, from
  :data:`PALETTE` (``red``, ``green``, ``blue``, ...) or as ``#rrggbb`` /
  ``#rrggbbaa`` hex; every target geom gets that RGB (its alpha is kept
  unless the hex gives one). ``nominal`` is the value that leaves the
  geoms as they are. Sample it with ``choice``.
- ``r``/``g``/``b``/``a``: one channel, ``mode: offset`` (default, added)
  or ``set``, clipped to [0, 1].
- ``brightness``: RGB multiplied by the value (nominal 1), clipped to [0, 1].
- ``hue``: hue turned by the value in degrees (nominal 0), saturation and
  value kept; read back in [-180, 180]; grey geoms have no hue and are refused.

A geom with a material shows the material's colour while its own rgba is
MuJoCo's default (0.5 0.5 0.5 1); the colour this factor starts from is
then the material's, and any other rgba replaces it (a texture still
modulates it). The nominal value writes the geoms' own rgba back, bit for
bit. The value read back is computed from the first target geom's rgba.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("Reacher-v5")
    >>> v = GeomRgba({"geoms": ["target"]}); v.bind(env)
    >>> v.apply(env, "#0000ff"), env.unwrapped.model.geom_rgba[-1].tolist()
    ('#0000ff', [0.0, 0.0, 1.0, 1.0])
    >>> v.restore(env); v.apply(env, "nominal"), v.nominal(), v.kind
    ('nominal', 'nominal', 'categorical')
"""

from __future__ import annotations

import colorsys
import math
import re
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trialrun.variations.base import FactorValue, TargetInfo
from trialrun.variations.mujoco import (
    _OBJ,
    ObjectKey,
    _MujocoVariation,
    _name,
    _name_list,
    _vec,
)
from trialrun.variations.registry import register_variation

NOMINAL = "nominal"
"""The ``color`` value that leaves the geoms as they are."""

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.7, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "cyan": (0.1, 0.8, 0.85),
    "magenta": (0.85, 0.1, 0.75),
    "orange": (1.0, 0.5, 0.0),
    "purple": (0.5, 0.15, 0.7),
    "brown": (0.45, 0.28, 0.12),
    "white": (1.0, 1.0, 1.0),
    "gray": (0.5, 0.5, 0.5),
    "black": (0.02, 0.02, 0.02),
}
"""Named colours a ``color`` factor (and ``mujoco.distractors``) can take."""

_HEX = re.compile(r"#([0-9a-fA-F]{6})([0-9a-fA-F]{2})?")
_DEFAULT_RGBA = np.array([0.5, 0.5, 0.5, 1.0], dtype=np.float32)
_CHANNELS = {"r": 0, "g": 1, "b": 2, "a": 3}


def parse_color(value: str) -> tuple[tuple[float, float, float], float | None] | None:
    """``(rgb, alpha or None)`` of a palette name or hex colour, or None if it is neither.

    Example:
        >>> parse_color("#ff000080"), parse_color("red"), parse_color("reddish")
        (((1.0, 0.0, 0.0), 0.502), ((0.9, 0.1, 0.1), None), None)
    """
    name = value.strip().lower()
    if name in PALETTE:
        return PALETTE[name], None
    match = _HEX.fullmatch(name)
    if match is None:
        return None
    digits = match.group(1)
    rgb = tuple(int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    alpha = round(int(match.group(2), 16) / 255, 3) if match.group(2) else None
    return (rgb[0], rgb[1], rgb[2]), alpha


def color_names() -> str:
    """The accepted colour values, for error messages."""
    return ", ".join(PALETTE) + ", '#rrggbb' or '#rrggbbaa'"


class GeomRgbaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geoms: list[ObjectKey] | None = Field(default=None, description="geom names (or indices / '#index')")
    body: ObjectKey | None = Field(default=None, description="a body: all of its own geoms")
    channel: Literal["color", "r", "g", "b", "a", "brightness", "hue"] = Field(
        default="color",
        description="color: a named/hex colour (categorical); r/g/b/a: one channel; brightness: x RGB; "
        "hue: degrees",
    )
    mode: Literal["offset", "set"] | None = Field(
        default=None, description="r/g/b/a only: offset (default, added) or set"
    )

    @model_validator(mode="after")
    def _one_target(self) -> GeomRgbaParams:
        if (self.geoms is None) == (self.body is None):
            raise ValueError("give exactly one of 'geoms' (a list of geom names) or 'body' (a body name)")
        if self.geoms is not None and not self.geoms:
            raise ValueError("'geoms' is empty")
        if self.mode is not None and self.channel not in _CHANNELS:
            raise ValueError(f"'mode' applies to the channels r, g, b, a only, not to '{self.channel}'")
        if self.mode is None and self.channel in _CHANNELS:
            self.mode = "offset"
        return self


@register_variation
class GeomRgba(_MujocoVariation):
    """Colour of named geoms, or of all geoms of a body (visual only; see the module docstring).

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("Reacher-v5")
        >>> v = GeomRgba({"body": "fingertip", "channel": "brightness"}); v.bind(env)
        >>> round(v.apply(env, 0.5), 6), v.units
        (0.5, 'x')
    """

    type_name = "mujoco.geom_rgba"
    Params: ClassVar[type[BaseModel]] = GeomRgbaParams
    obj_type = _OBJ.mjOBJ_GEOM
    obj_what = "geom"
    obj_plural = "geoms"

    @property
    def kind(self) -> Literal["continuous", "categorical"]:  # type: ignore[override]
        return "categorical" if self.params.channel == "color" else "continuous"

    @property
    def units(self) -> str | None:
        return {"color": None, "brightness": "x", "hue": "deg"}.get(self.params.channel, "1")

    def _bind_model(self, model: Any) -> None:
        if self.params.body is not None:
            b = self._lookup(model, self.params.body, (_OBJ.mjOBJ_BODY, "body", "bodies"))
            start, count = int(model.body_geomadr[b]), int(model.body_geomnum[b])
            if count == 0:
                with_geoms = [
                    _name(model, _OBJ.mjOBJ_BODY, i) for i in range(model.nbody) if model.body_geomnum[i]
                ]
                raise self.error(
                    f"body '{_name(model, _OBJ.mjOBJ_BODY, b)}' has no geoms; bodies with geoms: "
                    f"{_name_list(with_geoms)}"
                )
            self._geoms = list(range(start, start + count))
        else:
            self._geoms = [self._lookup(model, key) for key in self.params.geoms]
        self._rgba0 = model.geom_rgba[self._geoms].copy()
        self._shown0 = self._effective(model)
        what = ", ".join(f"'{_name(model, _OBJ.mjOBJ_GEOM, g)}'" for g in self._geoms[:5])
        channel = self.params.channel
        if channel == "hue" and all(self._hsv(c)[1] == 0 for c in self._shown0):
            raise self.error(f"geoms {what} are grey: they have no hue to turn; use channel 'color'")
        if channel in _CHANNELS and self.params.mode == "set":
            k = _CHANNELS[channel]
            if len({float(c[k]) for c in self._shown0}) > 1:
                raise self.error(
                    f"geoms {what} have different nominal '{channel}' values, so no set value is nominal; "
                    "use mode 'offset'"
                )

    def _effective(self, model: Any) -> Any:
        """The rgba each target geom shows: its material's while its own is MuJoCo's default."""
        shown = self._rgba0.astype(np.float64)
        for row, g in enumerate(self._geoms):
            mat = int(model.geom_matid[g])
            if mat >= 0 and np.array_equal(model.geom_rgba[g], _DEFAULT_RGBA):
                shown[row] = model.mat_rgba[mat]
        return shown

    @staticmethod
    def _hsv(rgba: Any) -> tuple[float, float, float]:
        return colorsys.rgb_to_hsv(float(rgba[0]), float(rgba[1]), float(rgba[2]))

    def nominal(self) -> FactorValue:
        channel = self.params.channel
        if channel == "color":
            return NOMINAL
        if channel == "brightness":
            return 1.0
        if channel == "hue" or self.params.mode == "offset":
            return 0.0
        self._need_bound()
        return float(self._shown0[0, _CHANNELS[channel]])

    def _value(self, value: FactorValue) -> FactorValue:
        if self.params.channel != "color":
            return self._number(value)
        if not isinstance(value, str):
            raise self.error(f"channel 'color' needs a colour name, got {value!r}; allowed: {color_names()}")
        return value

    def _apply(self, model: Any, value: Any) -> FactorValue:
        if self.params.channel == "color":
            return self._apply_color(model, value)
        return self._apply_channel(model, value)

    def _apply_color(self, model: Any, value: str) -> FactorValue:
        if value == NOMINAL:
            self._restore(model)
            return NOMINAL
        parsed = parse_color(value)
        if parsed is None:
            raise self.error(f"unknown colour '{value}'; allowed: {NOMINAL}, {color_names()}")
        rgb, alpha = parsed
        new = self._shown0.copy()
        new[:, :3] = rgb
        if alpha is not None:
            new[:, 3] = alpha
        model.geom_rgba[self._geoms] = new
        return value

    def _apply_channel(self, model: Any, value: float) -> float:
        if value == self.nominal():
            self._restore(model)
            return value
        channel = self.params.channel
        new = self._shown0.copy()
        first = self._shown0[0]
        if channel == "brightness":
            if value < 0:
                raise self.error(f"brightness must be >= 0, got {value}")
            new[:, :3] = np.clip(new[:, :3] * value, 0.0, 1.0)
        elif channel == "hue":
            for row, rgba in enumerate(self._shown0):
                h, s, v = self._hsv(rgba)
                new[row, :3] = colorsys.hsv_to_rgb((h + value / 360.0) % 1.0, s, v)
        else:
            k = _CHANNELS[channel]
            new[:, k] = np.clip(new[:, k] + value if self.params.mode == "offset" else value, 0.0, 1.0)
        model.geom_rgba[self._geoms] = new
        got = model.geom_rgba[self._geoms[0]].astype(np.float64)
        if channel == "brightness":
            k = int(np.argmax(first[:3]))
            return float(got[k] / first[k]) if first[k] > 0 else 0.0
        if channel == "hue":
            return math.remainder((self._hsv(got)[0] - self._hsv(first)[0]) * 360.0, 360.0)
        k = _CHANNELS[channel]
        return float(got[k] - first[k]) if self.params.mode == "offset" else float(got[k])

    def _restore(self, model: Any) -> None:
        model.geom_rgba[self._geoms] = self._rgba0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        out = []
        for g in range(model.ngeom):
            mat = int(model.geom_matid[g])
            body = _name(model, _OBJ.mjOBJ_BODY, int(model.geom_bodyid[g]))
            note = f"body '{body}', group {int(model.geom_group[g])}"
            if mat >= 0:
                note += f", material '{_name(model, _OBJ.mjOBJ_MATERIAL, mat)}'"
            out.append(
                TargetInfo(
                    cls.type_name, _name(model, _OBJ.mjOBJ_GEOM, g), _vec(model.geom_rgba[g], 3), "rgba", note
                )
            )
        return out
