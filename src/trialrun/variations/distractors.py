"""``mujoco.distractors``: extra objects in the scene, placed anew every episode (visual only).

Colosseum's distractor factor puts unrelated objects next to the task; a
camera-driven policy may attend to them, a state-based one cannot. The
factor value is the number of distractors shown in the episode (0 =
none, the nominal value); shape, size, colour and position of each are
drawn from the episode's own generator.

How they get into the model: MuJoCo's sizes are fixed once a model is
compiled, so binding the factor (once per sub-env, before its first
episode) rebuilds the env's model with ``max_count`` extra geoms, through
``mujoco.MjSpec`` from the env's MJCF file (``env.unwrapped.fullpath`` in
Gymnasium's MuJoCo envs, ``.model_name`` in Meta-World). The new geoms
hang from one new body welded to the world, added last, so every existing
body and geom keeps its index; then every array of the env's live model
is copied into the new one (what the env and trialrun changed after
loading the file: Meta-World's mocap welds, the renderer settings) and
the simulation state is carried over. The env's ``model``/``data`` (and
its Gymnasium renderer's) are replaced by the new ones, and that
renderer's default free camera is aimed as without distractors
(:class:`_NominalFraming`); variations bound after this see the new
model (the factor hook binds this one first).

The geoms are visual only (``contype = conaffinity = 0``, no mass in any
moving body): the simulation steps exactly as without them, so a
state-based policy's episodes are unchanged (tested bit for bit on
HalfCheetah-v5). Hidden ones have alpha 0, which MuJoCo's renderer skips.

Per episode (at :meth:`apply`): distractor ``i`` gets a shape from
``shapes``, a half-size uniform in ``size``, a colour from ``colors`` and
a position uniform in the box ``low``..``high`` (world frame, metres),
drawn for all ``max_count`` distractors from a generator of the episode's
seed and the factor (:func:`episode_generator`) so that the first ``k``
shown are the same whatever ``k`` is; the first ``value`` are shown. The
same slot gives the same scene with any ``num_envs``, worker or replay.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("Reacher-v5")
    >>> v = Distractors({"max_count": 3, "low": [-0.2, -0.2, 0.01], "high": [0.2, 0.2, 0.01]})
    >>> v.bind(env); v.begin_episode(7)
    >>> v.apply(env, 2), v.nominal(), env.unwrapped.model.ngeom - v.first_geom
    (2, 0, 3)
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trialrun.plan import stable_hash_words
from trialrun.variations.base import FactorValue, TargetInfo, require_mujoco
from trialrun.variations.geom_rgba import PALETTE, color_names, parse_color
from trialrun.variations.mujoco import _OBJ, _MujocoVariation
from trialrun.variations.registry import register_variation

logger = logging.getLogger(__name__)

_SHAPES = {
    "box": mujoco.mjtGeom.mjGEOM_BOX,
    "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
}
_DISTRACTOR_KEY = 0x44495354  # "DIST": keeps these draws apart from any other use of the slot seed
_STRUCTS = ("opt", "stat", "vis.global_", "vis.quality", "vis.headlight", "vis.map", "vis.scale", "vis.rgba")
_STATE = (
    "qpos",
    "qvel",
    "act",
    "ctrl",
    "mocap_pos",
    "mocap_quat",
    "qacc_warmstart",
    "userdata",
    "plugin_state",
)


def episode_generator(seed: int | None, field: str) -> np.random.Generator:
    """The generator of the factor at ``field`` in the episode reset with ``seed``
    (fresh OS entropy for an unseeded reset, which is not reproducible anyway).

    Example:
        >>> a = episode_generator(3, "f").random()
        >>> a == episode_generator(3, "f").random(), a == episode_generator(4, "f").random()
        (True, False)
    """
    if seed is None:
        return np.random.default_rng()
    words = stable_hash_words(field)
    return np.random.default_rng(
        np.random.SeedSequence(entropy=int(seed), spawn_key=(_DISTRACTOR_KEY, *words))
    )


class DistractorsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_count: int = Field(
        ge=1, le=64, description="distractors added to the model; the value shows 0..max_count"
    )
    low: tuple[float, float, float] = Field(description="corner of the placement box, world frame (m)")
    high: tuple[float, float, float] = Field(description="opposite corner of the placement box (m)")
    shapes: list[str] = Field(
        default_factory=lambda: ["box", "sphere", "cylinder"], description=f"drawn from: {', '.join(_SHAPES)}"
    )
    size: tuple[float, float] = Field(
        default=(0.02, 0.05), description="half-size range (m), drawn uniformly"
    )
    colors: list[str] = Field(default_factory=lambda: list(PALETTE), description="palette names or '#rrggbb'")

    @field_validator("shapes")
    @classmethod
    def _known_shapes(cls, shapes: list[str]) -> list[str]:
        bad = [s for s in shapes if s not in _SHAPES]
        if bad or not shapes:
            raise ValueError(f"unknown shape(s) {bad or '(none given)'}; allowed: {', '.join(_SHAPES)}")
        return shapes

    @field_validator("colors")
    @classmethod
    def _known_colors(cls, colors: list[str]) -> list[str]:
        bad = [c for c in colors if parse_color(c) is None]
        if bad or not colors:
            raise ValueError(f"unknown colour(s) {bad or '(none given)'}; allowed: {color_names()}")
        return colors

    @model_validator(mode="after")
    def _ranges(self) -> DistractorsParams:
        if any(lo > hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(
                f"'low' {list(self.low)} must be <= 'high' {list(self.high)} in every coordinate"
            )
        if not 0 < self.size[0] <= self.size[1]:
            raise ValueError(
                f"'size' must be [min, max] half-sizes with 0 < min <= max, got {list(self.size)}"
            )
        return self


def mjcf_path(env: gym.Env[Any, Any]) -> str | None:
    """The MJCF file the env's model was loaded from, when the env says."""
    base = env.unwrapped
    for attr in ("fullpath", "model_name"):
        try:
            path = getattr(base, attr, None)
        except Exception:  # a property that raises (Meta-World's abstract model_name): no file
            path = None
        if isinstance(path, str) and path.endswith(".xml") and os.path.isfile(path):
            return path
    return None


def _copy_arrays(old: Any, new: Any) -> None:
    """Every array of ``old`` into ``new`` (whole, or as the prefix of a longer array
    of the objects ``new`` added at the end), except the name tables, which moved."""
    for name in dir(old):
        if name.startswith(("_", "name")) or name in ("text_data", "paths"):
            continue
        try:
            source, target = getattr(old, name), getattr(new, name)
        except Exception:  # accessors that are not plain arrays
            continue
        if not isinstance(source, np.ndarray) or not isinstance(target, np.ndarray):
            continue
        if source.shape == target.shape:
            target[...] = source
        elif source.ndim and source.shape[1:] == target.shape[1:] and source.shape[0] <= target.shape[0]:
            target[: source.shape[0]] = source
    for path in _STRUCTS:
        source, target = old, new
        for part in path.split("."):
            source, target = getattr(source, part), getattr(target, part)
        for name in dir(source):
            if name.startswith("_"):
                continue
            value = getattr(source, name)
            if isinstance(value, np.ndarray):
                getattr(target, name)[...] = value
            elif isinstance(value, int | float):
                with contextlib.suppress(AttributeError, TypeError):  # read-only fields
                    setattr(target, name, value)


class _NominalFraming:
    """Frames a Gymnasium renderer's free camera as if there were no distractors.

    Gymnasium's ``OffScreenViewer`` aims its free camera at the median of all
    geom positions when it is made (at the first ``render()``), so added
    geoms would shift the env's default view, by an amount that depends on
    where the distractors of whichever episode rendered first stood. Run
    where the renderer applies its camera config to a new viewer, this
    re-aims it at the median of the model's original geoms first.
    """

    def __init__(self, renderer: Any, set_cam_config: Any, ngeom: int) -> None:
        self.renderer = renderer
        self.set_cam_config = set_cam_config
        self.ngeom = ngeom

    def __call__(self) -> None:
        cam = getattr(self.renderer.viewer, "cam", None)
        if cam is not None and int(cam.type) == int(mujoco.mjtCamera.mjCAMERA_FREE):
            cam.lookat[:] = np.median(self.renderer.data.geom_xpos[: self.ngeom], axis=0)
        self.set_cam_config()


@register_variation
class Distractors(_MujocoVariation):
    """Extra visual-only objects shown per episode (see the module docstring)."""

    type_name = "mujoco.distractors"
    Params: ClassVar[type[BaseModel]] = DistractorsParams
    rebuilds_model: ClassVar[bool] = True

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._rng: np.random.Generator | None = None
        self.first_geom = -1

    @property
    def units(self) -> str | None:
        return "objects"

    @property
    def body_name(self) -> str:
        """The added body's name: one per factor, so two distractor factors do not collide."""
        return f"trialrun_distractors_{stable_hash_words(self.field)[0]:08x}"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        try:
            model, data = require_mujoco(env, self.type_name)
        except Exception as exc:
            raise self.error(str(exc)) from None
        body = mujoco.mj_name2id(model, _OBJ.mjOBJ_BODY, self.body_name)
        if body < 0:
            model = self._rebuild(env, model, data)
            body = mujoco.mj_name2id(model, _OBJ.mjOBJ_BODY, self.body_name)
        if int(model.body_geomnum[body]) != self.params.max_count:
            raise self.error(
                f"this env already holds {int(model.body_geomnum[body])} distractors of this factor, "
                f"not max_count {self.params.max_count}"
            )
        self._model = model
        self._dirty = False
        self._bind_model(model)

    def _rebuild(self, env: gym.Env[Any, Any], model: Any, data: Any) -> Any:
        """Recompile the env's MJCF with the distractor geoms and swap the new model in."""
        base = env.unwrapped
        path = mjcf_path(env)
        if path is None or id(getattr(base, "model", None)) != id(model):
            raise self.error(
                f"variation '{self.type_name}' rebuilds the env's model from its MJCF file, found as "
                f"env.unwrapped.fullpath (Gymnasium MuJoCo envs) or .model_name (Meta-World); "
                f"{type(base).__name__} gives neither"
            )
        spec = mujoco.MjSpec.from_file(path)
        holder = spec.worldbody.add_body(name=self.body_name)
        for i in range(self.params.max_count):
            holder.add_geom(
                name=f"{self.body_name}_{i}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[self.params.size[0]] * 3,
                rgba=[0.0, 0.0, 0.0, 0.0],
                contype=0,
                conaffinity=0,
            )
        new_model: Any = spec.compile()
        if new_model is None:  # compile raises on errors; None only in its type stubs
            raise self.error(f"the MJCF file {path} did not compile")
        added = slice(new_model.ngeom - self.params.max_count, new_model.ngeom)
        # The compiler marks geoms at their body's origin as "same frame as the body", and
        # kinematics then ignores geom_pos: these move, so their own frame is used.
        new_model.geom_sameframe[added] = int(mujoco.mjtSameFrame.mjSAMEFRAME_NONE)
        if new_model.nbody != int(model.nbody) + 1 or new_model.ngeom != model.ngeom + self.params.max_count:
            raise self.error(
                f"the MJCF file {path} does not compile to the env's model; cannot add distractors"
            )
        _copy_arrays(model, new_model)
        new_data = mujoco.MjData(new_model)
        for name in _STATE:
            getattr(new_data, name)[...] = getattr(data, name)
        new_data.time = data.time
        mujoco.mj_forward(new_model, new_data)
        setattr(base, "model", new_model)  # noqa: B010 - any env class: not a typed attribute
        setattr(base, "data", new_data)  # noqa: B010
        renderer = getattr(base, "mujoco_renderer", None)
        if renderer is not None:
            renderer.close()  # its viewers hold the old model's GPU context
            renderer._viewers, renderer.viewer = {}, None
            renderer.model, renderer.data = new_model, new_data
            if callable(getattr(renderer, "_set_cam_config", None)):
                renderer._set_cam_config = _NominalFraming(
                    renderer, renderer._set_cam_config, int(model.ngeom)
                )
        logger.debug("added %d distractor geoms to %s", self.params.max_count, path)
        return new_model

    def _bind_model(self, model: Any) -> None:
        body = mujoco.mj_name2id(model, _OBJ.mjOBJ_BODY, self.body_name)
        self.first_geom = int(model.body_geomadr[body])
        self._geoms = slice(self.first_geom, self.first_geom + self.params.max_count)
        self._type0 = model.geom_type[self._geoms].copy()
        self._size0 = model.geom_size[self._geoms].copy()
        self._rgba0 = model.geom_rgba[self._geoms].copy()
        self._pos0 = model.geom_pos[self._geoms].copy()
        self._rbound0 = model.geom_rbound[self._geoms].copy()

    def begin_episode(self, seed: int | None) -> None:
        self._rng = episode_generator(seed, self.field)

    def nominal(self) -> FactorValue:
        return 0

    def _count(self, value: FactorValue) -> int:
        number = self._number(value)
        if number != int(number) or not 0 <= number <= self.params.max_count:
            raise self.error(
                f"the number of distractors must be a whole number in 0..{self.params.max_count} "
                f"(max_count), got {value!r}"
            )
        return int(number)

    def _value(self, value: FactorValue) -> int:
        return self._count(value)

    def _apply(self, model: Any, count: int) -> FactorValue:
        rng = self._rng if self._rng is not None else episode_generator(None, self.field)
        self._rng = None
        n, p = self.params.max_count, self.params
        shapes = rng.integers(len(p.shapes), size=n)
        sizes = rng.uniform(p.size[0], p.size[1], size=n)
        colors = rng.integers(len(p.colors), size=n)
        positions = rng.uniform(np.asarray(p.low), np.asarray(p.high), size=(n, 3))
        for i in range(n):
            g = self.first_geom + i
            shape = p.shapes[int(shapes[i])]
            s = float(sizes[i])
            model.geom_type[g] = _SHAPES[shape]
            model.geom_size[g] = {"box": [s, s, s], "ellipsoid": [s, 0.7 * s, 0.5 * s]}.get(
                shape, [s, s, 0.0]
            )
            model.geom_rbound[g] = s * (
                3**0.5 if shape == "box" else 2.0 if shape in ("cylinder", "capsule") else 1.0
            )
            rgb, alpha = parse_color(p.colors[int(colors[i])]) or ((0.5, 0.5, 0.5), None)
            model.geom_rgba[g] = [*rgb, (alpha or 1.0) if i < count else 0.0]
            model.geom_pos[g] = positions[i]
        return int(np.count_nonzero(model.geom_rgba[self._geoms, 3] > 0))

    def _restore(self, model: Any) -> None:
        model.geom_type[self._geoms] = self._type0
        model.geom_size[self._geoms] = self._size0
        model.geom_rgba[self._geoms] = self._rgba0
        model.geom_pos[self._geoms] = self._pos0
        model.geom_rbound[self._geoms] = self._rbound0

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        model = cls._model_or_none(env)
        path = mjcf_path(env)
        if model is None or path is None:
            return []
        return [
            TargetInfo(
                cls.type_name,
                "worldbody",
                0,
                "objects",
                f"visual-only objects added to {os.path.basename(path)} (set low/high: the scene spans "
                f"{np.round(model.stat.center - model.stat.extent / 2, 2).tolist()}.."
                f"{np.round(model.stat.center + model.stat.extent / 2, 2).tolist()} m)",
            )
        ]
