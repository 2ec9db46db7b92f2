"""The built-in MuJoCo variations on real Gymnasium envs and two tiny MJCF models.

For every variation: it changes exactly what it names (whole model arrays
compared before/after), it changes the dynamics (or, for lights and cameras,
only the rendered pixels), ``restore`` puts the model back bit for bit, two
instances bound to two envs do not interact, and bad parameters give exact
messages.
"""

from __future__ import annotations

import doctest
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium import spaces

import trialrun.variations.mujoco as mjv
from trialrun.errors import ConfigError
from trialrun.variations.base import TargetInfo, Variation, VariationError
from trialrun.variations.registry import available_variations

CLASSES: dict[str, Any] = {
    cls.type_name: cls
    for cls in [
        mjv.BodyMass,
        mjv.GeomFriction,
        mjv.Gravity,
        mjv.Light,
        mjv.Camera,
        mjv.DofDamping,
        mjv.ActuatorGain,
    ]
}


def build_variation(config: dict[str, Any], field: str) -> Variation:
    """Like the registry's ``build_variation``, without importing the other built-in modules."""
    params = {k: v for k, v in config.items() if k != "type"}
    variation: Variation = CLASSES[config["type"]](params, field=field)
    return variation


# Constants that mj_setConst derives from primary model fields (allowed to change with them).
SETCONST_FIELDS = frozenset(
    {
        "body_subtreemass",
        "body_invweight0",
        "dof_M0",
        "dof_invweight0",
        "actuator_acc0",
        "actuator_length0",
        "tendon_length0",
        "tendon_invweight0",
        "cam_pos0",
        "cam_poscom0",
        "cam_mat0",
        "light_pos0",
        "light_poscom0",
        "light_dir0",
        "stat.meaninertia",
        "stat.meanmass",
        "stat.meansize",
        "stat.extent",
        "stat.center",
    }
)

SLOPE_XML = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom name="slope" type="plane" size="2 2 0.1" euler="0 20 0" friction="1 0.005 0.0001"/>
    <body name="box" pos="0.0174 0 0.0479" euler="0 20 0">
      <freejoint name="box_free"/>
      <geom name="box_geom" type="box" size="0.05 0.05 0.05" mass="1" friction="1 0.005 0.0001"/>
    </body>
  </worldbody>
</mujoco>
"""

SERVO_XML = """
<mujoco>
  <worldbody>
    <body name="arm">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom name="rod" type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" mass="0.5"/>
    </body>
  </worldbody>
  <actuator>
    <position name="servo" joint="hinge" kp="5"/>
    <velocity name="damper" joint="hinge" kv="0.2"/>
  </actuator>
</mujoco>
"""


class XmlEnv(gym.Env[np.ndarray, np.ndarray]):
    """The smallest MuJoCo env the variations accept: ``.model`` and ``.data``."""

    def __init__(self, xml: str, frame_skip: int = 10) -> None:
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.frame_skip = frame_skip
        self.action_space = spaces.Box(-1.0, 1.0, (self.model.nu,), np.float64)
        size = self.model.nq + self.model.nv
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        return self._obs(), 0.0, False, False, {}


def make(env_id: str) -> gym.Env[Any, Any]:
    if env_id == "slope":
        return XmlEnv(SLOPE_XML)
    if env_id == "servo":
        return XmlEnv(SERVO_XML)
    return gym.make(env_id)


def model_of(env: gym.Env[Any, Any]) -> Any:
    return env.unwrapped.model  # type: ignore[attr-defined]


def snapshot(model: Any) -> dict[str, np.ndarray]:
    """Every array of the model, plus the option, statistic and headlight structs."""
    out: dict[str, np.ndarray] = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        try:
            value = getattr(model, name)
        except Exception:  # a few accessors are not plain data
            continue
        if isinstance(value, np.ndarray):
            out[name] = value.copy()
    for prefix, struct in [("opt", model.opt), ("stat", model.stat), ("vis.headlight", model.vis.headlight)]:
        for name in dir(struct):
            if name.startswith("_"):
                continue
            value = getattr(struct, name)
            if isinstance(value, np.ndarray | int | float):
                out[f"{prefix}.{name}"] = np.array(value, copy=True)
    return out


def changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """``{field: rows that differ}`` (elements for 1-D fields)."""
    out = {}
    for key, old in before.items():
        new = after[key]
        if np.array_equal(old, new):
            continue
        diff = old != new
        rows = (
            np.flatnonzero(diff.reshape(diff.shape[0], -1).any(axis=1))
            if diff.ndim > 1
            else np.flatnonzero(diff)
        )
        out[key] = tuple(int(r) for r in rows)
    return out


def assert_model_equal(before: dict[str, np.ndarray], model: Any) -> None:
    assert changed(before, snapshot(model)) == {}


def rollout(env: gym.Env[Any, Any], steps: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Observations under a fixed seed and a fixed random action sequence."""
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    space = env.action_space
    assert isinstance(space, spaces.Box)
    out = [np.asarray(obs).copy()]
    for _ in range(steps):
        action = np.asarray(rng.uniform(space.low, space.high), dtype=space.dtype)
        obs, _, terminated, truncated, _ = env.step(action)
        out.append(np.asarray(obs).copy())
        if terminated or truncated:
            break
    return out


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def render(env: gym.Env[Any, Any], renderer: mujoco.Renderer, camera: str) -> np.ndarray:
    renderer.update_scene(env.unwrapped.data, camera=camera)  # type: ignore[attr-defined]
    return np.array(renderer.render(), copy=True)


def fast_renderer(model: Any) -> mujoco.Renderer:
    """A small offscreen renderer without multisampling, shadows or reflections."""
    model.vis.quality.offsamples = 0
    renderer = mujoco.Renderer(model, 48, 64)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return renderer


def idx(kind: Any, name: str) -> Callable[[Any], int]:
    return lambda model: mujoco.mj_name2id(model, kind, name)


BODY, GEOM, JOINT, ACT = (
    mujoco.mjtObj.mjOBJ_BODY,
    mujoco.mjtObj.mjOBJ_GEOM,
    mujoco.mjtObj.mjOBJ_JOINT,
    mujoco.mjtObj.mjOBJ_ACTUATOR,
)


@dataclass
class Case:
    id: str
    env_id: str
    config: dict[str, Any]
    value: float
    readback: float
    expect: Callable[[Any], dict[str, tuple[int, ...]]]
    visual: bool = False
    setconst: bool = False
    camera: str = "track"
    extra: dict[str, Any] = field(default_factory=dict)


def _rows(**fields: tuple[Callable[[Any], int] | int, ...]) -> Callable[[Any], dict[str, tuple[int, ...]]]:
    def expect(model: Any) -> dict[str, tuple[int, ...]]:
        return {
            name.replace("__", "."): tuple(r(model) if callable(r) else r for r in rows)
            for name, rows in fields.items()
        }

    return expect


CASES = [
    Case(
        "mass-scale",
        "HalfCheetah-v5",
        {"type": "mujoco.body_mass", "body": "torso"},
        1.5,
        1.5,
        _rows(body_mass=(idx(BODY, "torso"),), body_inertia=(idx(BODY, "torso"),)),
        setconst=True,
    ),
    Case(
        "mass-set",
        "Hopper-v5",
        {"type": "mujoco.body_mass", "body": "foot", "mode": "set"},
        3.0,
        3.0,
        _rows(body_mass=(idx(BODY, "foot"),), body_inertia=(idx(BODY, "foot"),)),
        setconst=True,
    ),
    Case(
        "friction-set",
        "HalfCheetah-v5",
        {"type": "mujoco.geom_friction", "geom": "ffoot"},
        0.9,
        0.9,
        _rows(geom_friction=(idx(GEOM, "ffoot"),)),
    ),
    Case(
        "friction-scale-priority",
        "HalfCheetah-v5",
        {"type": "mujoco.geom_friction", "geom": "bfoot", "mode": "scale", "priority": True},
        0.5,
        0.5,
        _rows(geom_friction=(idx(GEOM, "bfoot"),), geom_priority=(idx(GEOM, "bfoot"),)),
    ),
    Case("gravity-scale", "HalfCheetah-v5", {"type": "mujoco.gravity"}, 0.5, 0.5, _rows(opt__gravity=(2,))),
    Case(
        "gravity-set",
        "InvertedPendulum-v5",
        {"type": "mujoco.gravity", "mode": "set"},
        3.0,
        3.0,
        _rows(opt__gravity=(2,)),
    ),
    Case(
        "damping-scale",
        "HalfCheetah-v5",
        {"type": "mujoco.dof_damping", "joint": "bthigh"},
        3.0,
        3.0,
        _rows(dof_damping=(3,)),
    ),
    Case(
        "damping-set",
        "InvertedPendulum-v5",
        {"type": "mujoco.dof_damping", "joint": "hinge", "mode": "set"},
        0.2,
        0.2,
        _rows(dof_damping=(1,)),
    ),
    Case(
        "gain-scale-unnamed",
        "Hopper-v5",
        {"type": "mujoco.actuator_gain", "actuator": "#1"},
        0.5,
        0.5,
        _rows(actuator_gainprm=(1,)),
    ),
    Case(
        "gain-set",
        "HalfCheetah-v5",
        {"type": "mujoco.actuator_gain", "actuator": "fthigh", "mode": "set"},
        2.0,
        2.0,
        _rows(actuator_gainprm=(idx(ACT, "fthigh"),)),
    ),
    Case(
        "gain-position-servo",
        "servo",
        {"type": "mujoco.actuator_gain", "actuator": "servo"},
        4.0,
        4.0,
        _rows(actuator_gainprm=(0,), actuator_biasprm=(0,)),
    ),
    Case(
        "gain-velocity-servo",
        "servo",
        {"type": "mujoco.actuator_gain", "actuator": "damper", "mode": "set"},
        2.0,
        2.0,
        _rows(actuator_gainprm=(1,), actuator_biasprm=(1,)),
    ),
    Case(
        "light-scale",
        "HalfCheetah-v5",
        {"type": "mujoco.light", "light": 0},
        0.25,
        0.25,
        _rows(light_diffuse=(0,)),
        visual=True,
    ),
    Case(
        "headlight-set",
        "HalfCheetah-v5",
        {"type": "mujoco.light", "light": "headlight", "property": "ambient", "mode": "set"},
        0.5,
        0.5,
        _rows(vis__headlight__ambient=(0, 1, 2)),
        visual=True,
    ),
    Case(
        "camera-pos-offset",
        "HalfCheetah-v5",
        {"type": "mujoco.camera", "camera": "track", "property": "pos_z"},
        0.5,
        0.5,
        _rows(cam_pos=(0,), cam_poscom0=(0,)),
        visual=True,
        setconst=True,
    ),
    Case(
        "camera-fovy-set",
        "HalfCheetah-v5",
        {"type": "mujoco.camera", "camera": "track", "property": "fovy"},
        30.0,
        30.0,
        _rows(cam_fovy=(0,)),
        visual=True,
    ),
]


def build(case: Case, env: gym.Env[Any, Any]) -> Variation:
    variation = build_variation(dict(case.config), "factors.f.variation")
    variation.bind(env)
    return variation


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_changes_exactly_what_it_names(case: Case) -> None:
    env = make(case.env_id)
    model = model_of(env)
    before = snapshot(model)
    variation = build(case, env)
    assert changed(before, snapshot(model)) == {}, "bind must not change the model"
    got = variation.apply(env, case.value)
    assert isinstance(got, float)
    assert got == pytest.approx(case.readback, rel=1e-6)
    diff = changed(before, snapshot(model))
    expected = case.expect(model)
    for name, rows in expected.items():
        assert diff.get(name) == rows, name
    extra = set(diff) - set(expected)
    assert extra <= (SETCONST_FIELDS if case.setconst else set()), extra


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_restore_is_exact_and_dynamics_change(case: Case) -> None:
    env = make(case.env_id)
    model = model_of(env)
    before = snapshot(model)
    nominal = rollout(env)
    variation = build(case, env)
    for value in (case.value, case.value * 0.8):  # two episodes with different values
        variation.restore(env)
        variation.apply(env, value)
        varied = rollout(env)
        if case.visual:
            assert same(varied, nominal), "a visual variation must not change the dynamics"
        else:
            assert not same(varied, nominal), "the variation did not change the dynamics"
    variation.restore(env)
    assert_model_equal(before, model)
    assert same(rollout(env), nominal)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_nominal_value_leaves_the_model_unchanged(case: Case) -> None:
    env = make(case.env_id)
    model = model_of(env)
    before = snapshot(model)
    variation = build(case, env)
    assert variation.apply(env, variation.nominal()) == pytest.approx(variation.nominal())
    assert_model_equal(before, model)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_two_envs_do_not_affect_each_other(case: Case) -> None:
    env_a, env_b = make(case.env_id), make(case.env_id)
    nominal_b = snapshot(model_of(env_b))
    var_a, var_b = build(case, env_a), build(case, env_b)
    var_a.apply(env_a, case.value)
    assert_model_equal(nominal_b, model_of(env_b))
    var_b.apply(env_b, case.value * 0.8)
    varied_a = snapshot(model_of(env_a))
    var_b.restore(env_b)
    assert_model_equal(varied_a, model_of(env_a))
    assert_model_equal(nominal_b, model_of(env_b))
    with pytest.raises(VariationError) as info:
        var_a.apply(env_b, case.value)
    assert str(info.value) == (
        f"field 'factors.f.variation': variation '{case.config['type']}' was bound to another env "
        "instance; bind one variation instance per sub-env"
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.visual], ids=lambda c: c.id)
def test_visual_variations_change_rendered_pixels(case: Case) -> None:
    env = make(case.env_id)
    env.reset(seed=0)
    renderer = fast_renderer(model_of(env))
    try:
        nominal = render(env, renderer, case.camera)
        variation = build(case, env)
        variation.apply(env, case.value)
        env.reset(seed=0)  # as in a run: the factor hook applies, then the env resets
        varied = render(env, renderer, case.camera)
        assert np.abs(varied.astype(int) - nominal).sum() > 1000
        variation.restore(env)
        env.reset(seed=0)
        assert np.array_equal(render(env, renderer, case.camera), nominal)
    finally:
        renderer.close()


# -- body mass ------------------------------------------------------------------------------


def test_body_mass_equals_the_recompiled_model() -> None:
    """After apply, every model constant equals the MJCF compiled with that mass."""
    env = make("HalfCheetah-v5")
    model = model_of(env)
    variation = build_variation({"type": "mujoco.body_mass", "body": "bfoot", "mode": "scale"}, "v")
    variation.bind(env)
    variation.apply(env, 2.0)

    spec = mujoco.MjSpec.from_file(env.unwrapped.fullpath)  # type: ignore[attr-defined]
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_FALSE
    spec.compiler.settotalmass = -1  # half_cheetah.xml rescales to 14 kg otherwise
    for b in range(1, model.nbody):
        body = spec.body(mujoco.mj_id2name(model, BODY, b))
        body.explicitinertial = True
        body.mass = model.body_mass[b]
        body.inertia = model.body_inertia[b]
        body.ipos = model.body_ipos[b]
        body.iquat = model.body_iquat[b]
    compiled = snapshot(spec.compile())
    ours = snapshot(model)
    for name in sorted(SETCONST_FIELDS & set(compiled)):
        np.testing.assert_allclose(ours[name], compiled[name], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ours["body_inertia"], compiled["body_inertia"], rtol=1e-12)


def test_body_mass_scales_inertia_with_mass() -> None:
    env = make("Hopper-v5")
    model = model_of(env)
    b = mujoco.mj_name2id(model, BODY, "thigh")
    mass0, inertia0 = float(model.body_mass[b]), model.body_inertia[b].copy()
    variation = build_variation({"type": "mujoco.body_mass", "body": "thigh", "mode": "set"}, "v")
    variation.bind(env)
    assert variation.nominal() == mass0
    assert variation.units == "kg"
    assert variation.apply(env, 2 * mass0) == 2 * mass0
    np.testing.assert_array_equal(model.body_inertia[b], inertia0 * 2)


# -- friction ---------------------------------------------------------------------------------


def box_travel(env: gym.Env[Any, Any]) -> float:
    """How far the box moves in 0.6 s on the 20-degree slope (tan 20 = 0.36)."""
    trajectory = rollout(env, steps=30)
    return float(np.linalg.norm(trajectory[-1][:3] - trajectory[0][:3]))


def test_a_per_world_friction_warns_without_advising_the_priority_mjx_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trialrun.variations.mjx import per_world_variations

    mjv._WARNED.clear()
    env = make("slope")
    low = per_world_variations({"f": {"type": "mujoco.geom_friction", "geom": "box_geom", "mode": "set"}})[
        "f"
    ]
    low.bind(env)
    with caplog.at_level(logging.WARNING, logger="trialrun.variations.mujoco"):
        low.apply(env, 0.1)
    low.restore(env)
    assert [r.getMessage() for r in caplog.records] == [
        "geom 'box_geom': sliding friction 0.1 is below that of contact partner(s) 'slope' (1); MuJoCo uses "
        "the larger friction of a contact pair, so those contacts keep the partner's value. MJX cannot vary "
        "the priority per world: only values above the partners' change those contacts"
    ]


def test_lowered_friction_slides_only_with_priority(caplog: pytest.LogCaptureFixture) -> None:
    mjv._WARNED.clear()  # warnings are logged once per process and target
    env = make("slope")
    nominal = rollout(env, steps=30)
    assert box_travel(env) < 0.005  # friction 1.0 holds the box

    low = build_variation({"type": "mujoco.geom_friction", "geom": "box_geom", "mode": "set"}, "v")
    low.bind(env)
    with caplog.at_level(logging.WARNING, logger="trialrun.variations.mujoco"):
        low.apply(env, 0.1)
        assert same(rollout(env, steps=30), nominal)  # max(0.1, 1.0): the slope's friction wins
        low.restore(env)
        low.apply(env, 0.1)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "geom 'box_geom': sliding friction 0.1 is below that of contact partner(s) 'slope' (1); MuJoCo uses "
        "the larger friction of a contact pair, so those contacts keep the partner's value. Set "
        "'priority: true' to make this geom's friction the one used"
    ]
    low.restore(env)

    slippery = build_variation(
        {"type": "mujoco.geom_friction", "geom": "box_geom", "mode": "set", "priority": True}, "v"
    )
    slippery.bind(env)
    assert slippery.apply(env, 0.1) == 0.1
    assert model_of(env).geom_priority.tolist() == [0, 1]
    assert box_travel(env) > 0.1  # g (sin 20 - 0.1 cos 20) = 2.4 m/s^2
    slippery.restore(env)
    assert model_of(env).geom_priority.tolist() == [0, 0]
    assert same(rollout(env, steps=30), nominal)


def test_halfcheetah_foot_friction_scaled_down_needs_priority() -> None:
    """Every HalfCheetah geom has friction 0.4: lowering one foot's does nothing
    without priority (bit-identical trajectory) and changes the gait with it."""
    env = make("HalfCheetah-v5")
    nominal = rollout(env)
    for priority, expect_same in [(False, True), (True, False)]:
        variation = build_variation(
            {"type": "mujoco.geom_friction", "geom": "ffoot", "mode": "scale", "priority": priority}, "v"
        )
        variation.bind(env)
        variation.apply(env, 0.25)
        assert same(rollout(env), nominal) is expect_same
        variation.restore(env)


FLOOR_XML = """
<mujoco>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1" condim="4" friction="1 0.1 0.01"/>
    <body name="box" pos="0 0 0.1">
      <freejoint/>
      <geom name="box_geom" type="box" size="0.1 0.1 0.1" friction="0.5 0.005 0.0001"/>
    </body>
  </worldbody>
</mujoco>
"""


def test_priority_explains_everything_else_it_switches_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What else ``priority`` switches is a fact of MuJoCo's contact model the
    user cannot act on (issue 17): documented, and logged at DEBUG, never WARNING."""
    mjv._WARNED.clear()
    env = XmlEnv(FLOOR_XML)
    variation = build_variation({"type": "mujoco.geom_friction", "geom": "box_geom", "priority": True}, "v")
    with caplog.at_level(logging.DEBUG, logger="trialrun.variations.mujoco"):
        variation.bind(env)
        variation.apply(env, 0.3)
        variation.restore(env)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert [r.getMessage() for r in caplog.records] == [
        "geom 'box_geom' with 'priority: true': any value but the nominal one makes its contacts use its own "
        "parameters; so also condim 3 instead of up to 4, torsional friction 0.005 instead of up to 0.1, "
        "rolling friction 0.0001 instead of up to 0.01; its nominal sliding friction (0.5) is below that of "
        "'floor', whose contacts use the larger value at nominal: near-nominal values are not nominal contacts"
    ]


def test_friction_component_changes_only_its_column() -> None:
    env = XmlEnv(FLOOR_XML)  # the floor's condim 4 makes torsional friction act
    model = model_of(env)
    before = model.geom_friction.copy()
    variation = build_variation(
        {"type": "mujoco.geom_friction", "geom": "box_geom", "component": "torsional", "mode": "scale"}, "v"
    )
    variation.bind(env)
    assert (variation.units, variation.nominal()) == ("x", 1.0)
    assert variation.apply(env, 40.0) == 40.0
    assert np.argwhere(model.geom_friction != before).tolist() == [[1, 1]]
    assert model.geom_friction[1, 1] == pytest.approx(0.2)
    set_mode = build_variation(
        {"type": "mujoco.geom_friction", "geom": "box_geom", "component": "torsional"}, "v"
    )
    set_mode.bind(XmlEnv(FLOOR_XML))
    assert set_mode.units == "m"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Meta-World's own space and policy warnings
def test_metaworld_object_mass_and_friction() -> None:
    """The manipulation case: the pushed object's mass and (with priority) its
    friction change what the scripted expert's push does; restore is exact."""
    pytest.importorskip("metaworld")
    from metaworld.policies import SawyerPushV3Policy

    env = gym.make("Meta-World/MT1", env_name="push-v3")
    model = model_of(env)
    expert = SawyerPushV3Policy()

    def push() -> np.ndarray:
        env.unwrapped.seed(0)  # type: ignore[attr-defined]  # Meta-World ignores reset(seed=...)
        obs, _ = env.reset(seed=0)
        out = []
        for _ in range(80):
            obs, *_ = env.step(expert.get_action(obs))
            out.append(obs.copy())
        return np.array(out)

    nominal = push()
    before = snapshot(model)  # after a reset: Meta-World moves its goal site (site_pos) at reset
    mass = build_variation({"type": "mujoco.body_mass", "body": "obj", "mode": "scale"}, "v")
    friction = build_variation(
        {"type": "mujoco.geom_friction", "geom": "objGeom", "mode": "scale", "priority": True}, "v"
    )
    for variation, value in [(mass, 5.0), (friction, 0.2)]:
        variation.bind(env)
        assert variation.apply(env, value) == pytest.approx(value)
        assert not np.array_equal(push(), nominal)
        variation.restore(env)
    # Meta-World's reset writes the goal site's height (model.site_pos) from where the object
    # settled, which depends on its mass: the model is nominal again after the next reset.
    assert np.array_equal(push(), nominal)
    assert_model_equal(before, model)


@pytest.mark.slow
def test_the_bundled_metaworld_example_logs_no_warning(tmp_path: Path) -> None:
    """Issue 17: every Meta-World run printed a warning about ``priority: true``
    that the user could not act on. The bundled example, run as the README
    runs it (2 episodes per job), prints no warning at all on stderr."""
    pytest.importorskip("metaworld")
    example = Path(__file__).resolve().parents[1] / "examples" / "pick_place_sweep.yaml"
    shutil.copy(example, tmp_path / "pick_place_sweep.yaml")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "run", "pick_place_sweep.yaml", "--no-report", "--quiet",
         "--set", "jobs.0.episodes=2", "--set", "jobs.1.episodes=2", "--run-dir", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "episodes.jsonl").read_text().count("\n") == 4
    assert "warning" not in done.stderr.lower(), done.stderr


# -- actuators ------------------------------------------------------------------------------


def test_position_servo_keeps_its_bias_consistent() -> None:
    env = make("servo")
    model = model_of(env)
    variation = build_variation({"type": "mujoco.actuator_gain", "actuator": "servo"}, "v")
    variation.bind(env)

    def sag() -> float:
        """Steady-state error of the servo holding 0.5 rad against gravity."""
        env.reset(seed=0)
        for _ in range(300):
            env.step(np.array([0.5, 0.0]))
        return abs(float(env.unwrapped.data.qpos[0]) - 0.5)  # type: ignore[attr-defined]

    nominal_sag = sag()
    variation.apply(env, 4.0)
    assert model.actuator_gainprm[0, 0] == 20.0
    assert model.actuator_biasprm[0, 1] == -20.0
    assert sag() < nominal_sag / 2  # a stiffer servo, still converging to its target
    variation.restore(env)
    assert model.actuator_biasprm[0, :3].tolist() == [0.0, -5.0, 0.0]


# -- params and errors -----------------------------------------------------------------------


def error_of(config: dict[str, Any], env_id: str | None = None) -> str:
    """The message raised while building (and binding to ``env_id``) a variation."""
    with pytest.raises(ConfigError) as info:
        variation = build_variation(config, "jobs[j].factors.f.variation")
        if env_id is not None:
            variation.bind(make(env_id))
    return str(info.value)


F = "field 'jobs[j].factors.f.variation"


@pytest.mark.parametrize(
    ("config", "env_id", "message"),
    [
        (
            {"type": "mujoco.body_mass", "body": "torso", "mass": 2},
            None,
            f"{F}.mass': unknown key 'mass' for variation 'mujoco.body_mass'; allowed keys: body, mode",
        ),
        (
            {"type": "mujoco.body_mass", "body": "torso", "mode": "multiply"},
            None,
            f"{F}.mode': Input should be 'scale' or 'set'",
        ),
        ({"type": "mujoco.body_mass"}, None, f"{F}.body': Field required"),
        (
            {"type": "mujoco.geom_friction", "geom": "ffoot", "component": "spin"},
            None,
            f"{F}.component': Input should be 'sliding', 'torsional' or 'rolling'",
        ),
        (
            {"type": "mujoco.camera", "camera": "track", "property": "pos_z", "mode": "set", "zoom": 1},
            None,
            f"{F}.zoom': unknown key 'zoom' for variation 'mujoco.camera'; allowed keys: camera, mode, property",
        ),
        (
            {"type": "mujoco.camera", "camera": "track", "property": "zoom"},
            None,
            f"{F}.property': Input should be 'fovy', 'pos_x', 'pos_y', 'pos_z', 'yaw', 'pitch' or 'roll'",
        ),
        (
            {"type": "mujoco.light", "light": 0, "mode": "offset"},
            None,
            f"{F}.mode': Input should be 'scale' or 'set'",
        ),
        (
            {"type": "mujoco.gravity", "mode": "add"},
            None,
            f"{F}.mode': Input should be 'scale' or 'set'",
        ),
        (
            {"type": "mujoco.body_mass", "body": "torsoo"},
            "HalfCheetah-v5",
            f"{F}': unknown body 'torsoo'; bodies: world, torso, bthigh, bshin, bfoot, fthigh, fshin, ffoot",
        ),
        (
            {"type": "mujoco.body_mass", "body": "world"},
            "Hopper-v5",
            f"{F}': body 'world' is the world body: its mass does not affect the simulation; "
            "bodies with a mass that matters: torso, thigh, leg, foot",
        ),
        (
            {"type": "mujoco.body_mass", "body": 9},
            "Hopper-v5",
            f"{F}': body index 9 is out of range; bodies: world, torso, thigh, leg, foot",
        ),
        (
            {"type": "mujoco.geom_friction", "geom": "foot"},
            "Hopper-v5",
            f"{F}': unknown geom 'foot'; geoms: floor, torso_geom, thigh_geom, leg_geom, foot_geom",
        ),
        (
            {"type": "mujoco.geom_friction", "geom": "foot_geom", "priority": True},
            "Hopper-v5",
            f"{F}': sliding friction acts only in contacts with condim >= 3, and with 'priority: true' the "
            "contacts of geom 'foot_geom' take its own condim 1; raise its condim in the MJCF or use "
            "'priority: false'",
        ),
        (
            {"type": "mujoco.geom_friction", "geom": "ffoot", "component": "torsional"},
            "HalfCheetah-v5",
            f"{F}': torsional friction acts only in contacts with condim >= 4; geom 'ffoot' and its contact "
            "partners have condim <= 3",
        ),
        (
            {"type": "mujoco.dof_damping", "joint": "knee"},
            "InvertedPendulum-v5",
            f"{F}': unknown joint 'knee'; joints: slider, hinge",
        ),
        (
            {"type": "mujoco.dof_damping", "joint": "rootx"},
            "HalfCheetah-v5",
            f"{F}': damping of joint 'rootx' is 0, so mode 'scale' cannot change it; use mode 'set'",
        ),
        (
            {"type": "mujoco.actuator_gain", "actuator": "thigh"},
            "Hopper-v5",
            f"{F}': unknown actuator 'thigh'; actuators: #0, #1, #2",
        ),
        (
            {"type": "mujoco.light", "light": "sun"},
            "HalfCheetah-v5",
            f"{F}': unknown light 'sun'; lights: headlight, #0",
        ),
        (
            {"type": "mujoco.light", "light": 0, "property": "ambient"},
            "HalfCheetah-v5",
            f"{F}': ambient color of light '#0' is 0, so mode 'scale' cannot change it; use mode 'set'",
        ),
        (
            {"type": "mujoco.camera", "camera": "side", "property": "fovy"},
            "HalfCheetah-v5",
            f"{F}': unknown camera 'side'; cameras: track",
        ),
        (
            {"type": "mujoco.camera", "camera": "side", "property": "fovy"},
            "InvertedPendulum-v5",
            f"{F}': unknown camera 'side'; this model has no cameras",
        ),
        (
            {"type": "mujoco.gravity"},
            "CartPole-v1",
            f"{F}': variation 'mujoco.gravity' needs a MuJoCo env (with .model and .data, or a dm_control .physics); "
            "CartPoleEnv is not one",
        ),
    ],
)
def test_bad_params_give_exact_messages(config: dict[str, Any], env_id: str | None, message: str) -> None:
    assert error_of(config, env_id) == message


def test_bad_values_give_exact_messages() -> None:
    env = make("HalfCheetah-v5")
    mass = build_variation({"type": "mujoco.body_mass", "body": "torso", "mode": "set"}, "v")
    with pytest.raises(VariationError) as info:
        mass.apply(env, 1.0)
    assert str(info.value) == "field 'v': variation 'mujoco.body_mass' is not bound: call bind(env) first"
    mass.bind(env)
    cases: list[tuple[Any, str]] = [
        (-1.0, "field 'v': mass of body 'torso' must be > 0, got -1.0 kg"),
        ("heavy", "field 'v': variation 'mujoco.body_mass' needs a number, got 'heavy'"),
        (True, "field 'v': variation 'mujoco.body_mass' needs a number, got True"),
        (float("nan"), "field 'v': variation 'mujoco.body_mass' needs a finite number, got nan"),
    ]
    for value, message in cases:
        with pytest.raises(VariationError) as info:
            mass.apply(env, value)
        assert str(info.value) == message
    fovy = build_variation({"type": "mujoco.camera", "camera": "track", "property": "fovy"}, "v")
    fovy.bind(env)
    with pytest.raises(VariationError) as info:
        fovy.apply(env, 200)
    assert str(info.value) == "field 'v': fovy of camera 'track' must be in (0, 180) degrees, got 200.0"


# -- defaults, units, listing, registry -------------------------------------------------------


def test_defaults_units_and_nominals() -> None:
    env = make("HalfCheetah-v5")
    expected = [
        ({"type": "mujoco.body_mass", "body": "torso"}, "scale", "x", 1.0),
        ({"type": "mujoco.geom_friction", "geom": "floor"}, "set", "1", 0.4),
        ({"type": "mujoco.gravity", "mode": "set"}, "set", "m/s^2", 9.81),
        ({"type": "mujoco.light", "light": "headlight", "mode": "set"}, "set", "rgb", pytest.approx(0.4)),
        ({"type": "mujoco.camera", "camera": "track", "property": "fovy"}, "set", "deg", 45.0),
        ({"type": "mujoco.camera", "camera": "track", "property": "pos_x"}, "offset", "m", 0.0),
        (
            {"type": "mujoco.camera", "camera": "track", "property": "pos_y", "mode": "scale"},
            "scale",
            "x",
            1.0,
        ),
        ({"type": "mujoco.dof_damping", "joint": "bthigh", "mode": "set"}, "set", "Nms/rad", 6.0),
        ({"type": "mujoco.actuator_gain", "actuator": "bthigh"}, "scale", "x", 1.0),
    ]
    for config, mode, units, nominal in expected:
        variation = build_variation(config, "v")
        variation.bind(env)
        assert variation.describe()["mode"] == mode, config
        assert variation.units == units, config
        assert variation.nominal() == nominal, config
        assert variation.applies_at == "reset"


MUJOCO_TYPES = {
    "mujoco.body_mass": "body",
    "mujoco.geom_friction": "geom",
    "mujoco.gravity": None,
    "mujoco.light": "light",
    "mujoco.camera": "camera",
    "mujoco.dof_damping": "joint",
    "mujoco.actuator_gain": "actuator",
}


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_every_listed_target_can_be_bound(env_id: str) -> None:
    env = make(env_id)
    classes = CLASSES
    for type_name, key in MUJOCO_TYPES.items():
        targets = classes[type_name].targets(env)
        assert targets, type_name
        for target in targets:
            assert isinstance(target, TargetInfo) and target.variation == type_name
            config: dict[str, Any] = {"type": type_name, "mode": "set"}
            if key is not None:
                config[key] = target.target
            if type_name == "mujoco.camera":
                config["property"] = "fovy"
            variation = build_variation(config, "v")
            variation.bind(env)
            if isinstance(target.nominal, float):
                assert variation.nominal() == pytest.approx(target.nominal), (type_name, target)
    names = [t.target for t in CLASSES["mujoco.body_mass"].targets(env)]
    assert "world" not in names


def test_targets_of_a_non_mujoco_env_are_empty() -> None:
    env = make("CartPole-v1")
    for type_name in MUJOCO_TYPES:
        assert CLASSES[type_name].targets(env) == []


def test_registered_under_their_type_names() -> None:
    registered = available_variations()
    for type_name, cls in CLASSES.items():
        assert registered[type_name] is cls


def test_docstring_examples_run() -> None:
    for type_name, cls in CLASSES.items():
        assert ">>>" in (cls.__doc__ or ""), type_name
    result = doctest.testmod(mjv, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 8
