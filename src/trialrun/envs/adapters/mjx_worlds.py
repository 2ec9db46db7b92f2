"""Per-world factor values for a batched MJX model (MuJoCo Playground).

An ``mjx.Model`` is a tree of arrays, so N worlds can simulate N different
models in one jitted program: the fields a factor changes get a leading world
axis and are ``vmap``-ed alongside the state, while every other field stays
shared. :class:`WorldModels` keeps those per-world fields as host arrays and
sets them with the existing MuJoCo variations (``mujoco.body_mass``,
``mujoco.geom_friction``, ``mujoco.actuator_gain``, ``mujoco.gravity``, built
by :func:`trialrun.variations.mjx.per_world_variations`), so a
factor means exactly what it means for a Gymnasium MuJoCo env: the variation
writes its value into a host ``MjModel``, ``mj_setConst`` refreshes the
derived constants, and the world's row of every batched field is copied from
that model. Before each world's values the host model is restored to nominal,
so nothing leaks from one slot into the next.

The set of batched fields is fixed (:data:`BATCHED_FIELDS`, whatever factors
the job has), so their shapes never change and the jitted step compiles once:
new values are new array contents, not a new program.

Example:
    >>> import mujoco
    >>> from trialrun.variations.mjx import per_world_variations
    >>> body = '<body name="b"><freejoint/><geom size=".1" mass="2"/></body>'
    >>> xml = f"<mujoco><worldbody>{body}</worldbody></mujoco>"
    >>> worlds = WorldModels(mujoco.MjModel.from_xml_string(xml), 3,
    ...     per_world_variations({"m": {"type": "mujoco.body_mass", "body": "b", "mode": "scale"}}))
    >>> worlds.apply([1], [{"m": 1.5}])
    [{'m': 1.5}]
    >>> worlds.arrays["body_mass"][:, 1].round(3).tolist()
    [2.0, 3.0, 2.0]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import mujoco
import numpy as np

#: The model fields that get a world axis: what those variations write plus
#: the constants ``mj_setConst`` derives from them (masses feed the inverse
#: weights and ``dof_M0``; gains feed ``actuator_acc0``).
BATCHED_FIELDS = (
    "body_mass",
    "body_subtreemass",
    "body_inertia",
    "body_invweight0",
    "dof_invweight0",
    "dof_M0",
    "tendon_invweight0",
    "geom_friction",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_acc0",
    "opt.gravity",
)


def read_field(model: Any, name: str) -> Any:
    """``model.<name>`` for a dotted name such as ``opt.gravity``."""
    value = model
    for part in name.split("."):
        value = getattr(value, part)
    return value


class WorldModels:
    """The per-world rows of :data:`BATCHED_FIELDS` for ``num_worlds`` worlds.

    ``variations`` maps factor names to unbound MuJoCo variations (anything
    with ``bind(env)``, ``apply(env, value)`` and ``restore(env)`` on an env
    whose ``unwrapped`` has ``model`` and ``data``); they are bound here to a
    private copy of ``model``.
    ``arrays[field]`` has shape ``(num_worlds, *field_shape)``; ``version``
    counts changes, so a caller can upload the arrays only when they changed.
    """

    def __init__(
        self,
        model: Any,
        num_worlds: int,
        variations: Mapping[str, Any] | None = None,
    ) -> None:
        self._model = copy.copy(model)
        self._data = mujoco.MjData(self._model)
        self._env: Any = SimpleNamespace(unwrapped=SimpleNamespace(model=self._model, data=self._data))
        self.variations: dict[str, Any] = dict(variations or {})
        for variation in self.variations.values():
            variation.bind(self._env)
        self.fields = tuple(f for f in BATCHED_FIELDS if np.size(read_field(self._model, f)) > 0)
        self.nominal = {f: np.array(read_field(self._model, f), dtype=np.float64) for f in self.fields}
        self.arrays = {f: np.repeat(v[None], num_worlds, axis=0) for f, v in self.nominal.items()}
        self.version = 0

    def apply(self, worlds: Sequence[int], factors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Give world ``worlds[k]`` the values ``factors[k]`` (names without a
        per-world variation are ignored: build-time factors, for instance) and
        every other per-world quantity its nominal value; return the values
        read back from the model, per world."""
        if not self.variations:
            # Every world stays nominal: nothing changes, nothing to upload.
            return [{} for _ in worlds]
        applied: list[dict[str, Any]] = []
        nominal_worlds: list[int] = []
        for world, values in zip(worlds, factors, strict=True):
            mine = {n: v for n, v in values.items() if n in self.variations}
            if not mine:
                nominal_worlds.append(world)
                applied.append({})
                continue
            try:
                read = {n: self.variations[n].apply(self._env, v) for n, v in mine.items()}
                mujoco.mj_setConst(self._model, self._data)
                for f in self.fields:
                    self.arrays[f][world] = read_field(self._model, f)
            finally:
                for variation in self.variations.values():
                    variation.restore(self._env)
                mujoco.mj_setConst(self._model, self._data)
            applied.append(read)
        if nominal_worlds:
            for f, nominal in self.nominal.items():
                self.arrays[f][nominal_worlds] = nominal
        self.version += 1
        return applied
