"""``mujoco.texture``: which of the model's textures a material's geoms show (visual only, categorical).

Colosseum varies the textures of the table and objects. Here a factor
names a material, and every geom using it (Meta-World's ``table_wood``
covers the table) shows another texture of the model instead: the value is
a texture name (``#index`` for unnamed ones); the nominal value is the
material's own texture (``none`` when it has none). Textures that only a
skybox uses are not offered. Sample it with ``choice``.

How: the geoms are switched to the first material that shows that texture
(``geom_matid``), and with it come that material's colour, shininess and
texture repeat; the nominal value switches them back to their own
material. Why not ``mat_texid``: every renderer copies each material's
texture ids into its GPU context when it is made (``mjr_makeContext``), so
changing the model's ``mat_texid`` later shows in no existing renderer
(measured with mujoco 3.3.0: 0 pixels change in a live renderer, 523 of
48x64 in a new one), while the geom's material is read at every frame.
Loading an image file is not offered for the same reason: a new or
rewritten texture reaches a renderer only through ``mjr_uploadTexture`` on
that renderer's own context, which a variation does not own (the env's,
trialrun's video and camera renderers each hold one). Add the image to the
MJCF as a texture with a material, and swap to it.

Example:
    >>> import trialrun.envs
    >>> from trialrun.envs.build import make_env
    >>> env = make_env("metaworld/reach-v3", {})
    >>> v = Texture({"material": "table_wood"}); v.bind(env)
    >>> v.nominal(), v.apply(env, "T_wallmetal"), v.choices()
    ('T_table', 'T_wallmetal', ['T_table', 'T_floor', 'T_wallmetal', 'T_block_wood'])
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import mujoco
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import FactorValue, TargetInfo
from trialrun.variations.mujoco import _OBJ, ObjectKey, _MujocoVariation, _name, _name_list
from trialrun.variations.registry import register_variation

NONE = "none"
"""The nominal value of a material without a texture."""

_RGB = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)
_SKYBOX = int(mujoco.mjtTexture.mjTEXTURE_SKYBOX)


class TextureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    material: ObjectKey = Field(description="material name (or index / '#index'); its rgb texture is swapped")


@register_variation
class Texture(_MujocoVariation):
    """The texture a material shows, among the model's textures (see the module docstring).

    Example:
        >>> import trialrun.envs
        >>> from trialrun.envs.build import make_env
        >>> env = make_env("metaworld/reach-v3", {})
        >>> v = Texture({"material": "block_wood"}); v.bind(env)
        >>> v.apply(env, "T_table"), int(env.unwrapped.model.geom_matid[36])
        ('T_table', 1)
    """

    type_name = "mujoco.texture"
    Params: ClassVar[type[BaseModel]] = TextureParams
    kind: ClassVar[Literal["continuous", "categorical"]] = "categorical"
    obj_type = _OBJ.mjOBJ_MATERIAL
    obj_what = "material"
    obj_plural = "materials"

    @property
    def units(self) -> str | None:
        return None

    @staticmethod
    def _texture_name(model: Any, t: int) -> str:
        return NONE if t < 0 else _name(model, _OBJ.mjOBJ_TEXTURE, t)

    @staticmethod
    def _shown_by(model: Any) -> dict[str, int]:
        """Each non-skybox texture some material shows, with the first such material."""
        out: dict[str, int] = {}
        for m in range(model.nmat):
            t = int(model.mat_texid[m, _RGB])
            if t >= 0 and int(model.tex_type[t]) != _SKYBOX:
                out.setdefault(_name(model, _OBJ.mjOBJ_TEXTURE, t), m)
        return out

    def _bind_model(self, model: Any) -> None:
        self._m = self._lookup(model, self.params.material)
        material = _name(model, _OBJ.mjOBJ_MATERIAL, self._m)
        self._geoms = [g for g in range(model.ngeom) if int(model.geom_matid[g]) == self._m]
        if not self._geoms:
            used = sorted({int(model.geom_matid[g]) for g in range(model.ngeom)} - {-1})
            raise self.error(
                f"no geom uses material '{material}'; materials in use: "
                f"{_name_list([_name(model, _OBJ.mjOBJ_MATERIAL, m) for m in used])}"
            )
        self._nominal = self._texture_name(model, int(model.mat_texid[self._m, _RGB]))
        self._choices = {self._nominal: self._m}
        for name, m in self._shown_by(model).items():
            self._choices.setdefault(name, m)

    def choices(self) -> list[str]:
        """The values this factor accepts in the bound model (the nominal one first)."""
        self._need_bound()
        return list(self._choices)

    def nominal(self) -> FactorValue:
        self._need_bound()
        return self._nominal

    def _value(self, value: FactorValue) -> int:
        """The material that shows texture ``value``."""
        m = self._choices.get(value) if isinstance(value, str) else None
        if m is None:
            material = _name(self._model, _OBJ.mjOBJ_MATERIAL, self._m)
            raise self.error(
                f"unknown texture {value!r} for material '{material}'; "
                f"textures: {_name_list(list(self._choices))}"
            )
        return m

    def _apply(self, model: Any, value: int) -> FactorValue:
        model.geom_matid[self._geoms] = value
        return self._texture_name(model, int(model.mat_texid[int(model.geom_matid[self._geoms[0]]), _RGB]))

    def _restore(self, model: Any) -> None:
        model.geom_matid[self._geoms] = self._m

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        if model is None:
            return []
        shown = list(cls._shown_by(model))
        out = []
        for m in range(model.nmat):
            users = sum(int(model.geom_matid[g]) == m for g in range(model.ngeom))
            if not users:
                continue
            own = cls._texture_name(model, int(model.mat_texid[m, _RGB]))
            others = [n for n in shown if n != own]
            out.append(
                TargetInfo(
                    cls.type_name,
                    _name(model, _OBJ.mjOBJ_MATERIAL, m),
                    own,
                    None,
                    f"{users} geom(s); can show: {', '.join(others) or '(no other texture)'}",
                )
            )
        return out
