"""The visual MuJoCo variations (issue 18): geom colour, material texture, body
position (layout), light position and direction, camera orientation jitter.

For each, on real Gymnasium and Meta-World envs: it changes exactly the
model rows it names (whole model compared before/after), the rendered image
changes, ``restore`` returns the model bit for bit, the nominal value leaves
the model as it is, and through the factor hook an episode at nominal after
a varied one starts from the nominal model. Bad targets list the available
names, also as ``trialrun run``'s exit 2; ``trialrun list variations`` shows
what each type can target.
"""

from __future__ import annotations

import doctest
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from typer.testing import CliRunner

import trialrun.envs  # noqa: F401  (registers metaworld/* ids)
import trialrun.variations.body_pos as body_pos_module
import trialrun.variations.geom_rgba as geom_rgba_module
import trialrun.variations.texture as texture_module
from cli_errors import run_error_lines
from test_variations_mujoco import SETCONST_FIELDS, changed, fast_renderer, snapshot
from trialrun.cli import app
from trialrun.envs.build import make_env
from trialrun.errors import ConfigError
from trialrun.variations.base import Variation
from trialrun.variations.factors import FactorHook
from trialrun.variations.registry import available_variations, build_variation

GEOM, BODY, MAT, CAM = (
    mujoco.mjtObj.mjOBJ_GEOM,
    mujoco.mjtObj.mjOBJ_BODY,
    mujoco.mjtObj.mjOBJ_MATERIAL,
    mujoco.mjtObj.mjOBJ_CAMERA,
)
F = "field 'jobs[j].factors.f.variation"


def make(env_id: str) -> gym.Env[Any, Any]:
    return make_env(env_id, {}) if "/" in env_id else gym.make(env_id)


def model_of(env: gym.Env[Any, Any]) -> Any:
    return env.unwrapped.model  # type: ignore[attr-defined]


def image(env: gym.Env[Any, Any], renderer: mujoco.Renderer, camera: str | int) -> np.ndarray:
    data = env.unwrapped.data  # type: ignore[attr-defined]
    mujoco.mj_forward(model_of(env), data)
    if camera == -1:  # the free camera, placed as MuJoCo's viewer places it
        free = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(model_of(env), free)
        renderer.update_scene(data, camera=free)
    else:
        renderer.update_scene(data, camera=camera)
    return np.array(renderer.render(), copy=True)


@dataclass
class Case:
    id: str
    env_id: str
    config: dict[str, Any]
    value: Any
    readback: Any
    rows: dict[str, tuple[tuple[Any, str] | int, ...]]
    camera: str | int = -1
    setconst: bool = False


def resolve(model: Any, rows: dict[str, tuple[tuple[Any, str] | int, ...]]) -> dict[str, tuple[int, ...]]:
    return {
        field.replace("__", "."): tuple(
            r if isinstance(r, int) else mujoco.mj_name2id(model, *r) for r in ids
        )
        for field, ids in rows.items()
    }


CASES = [
    Case(
        "rgba-color",
        "InvertedPendulum-v5",
        {"type": "mujoco.geom_rgba", "geoms": ["cart"]},
        "blue",
        "blue",
        {"geom_rgba": ((GEOM, "cart"),)},
    ),
    Case(
        "rgba-body-brightness",
        "HalfCheetah-v5",
        {"type": "mujoco.geom_rgba", "body": "torso", "channel": "brightness"},
        0.5,
        0.5,
        {"geom_rgba": ((GEOM, "torso"), (GEOM, "head"))},
        camera="track",
    ),
    Case(
        "rgba-hue",
        "InvertedPendulum-v5",
        {"type": "mujoco.geom_rgba", "geoms": ["cpole", "cart"], "channel": "hue"},
        120.0,
        120.0,
        {"geom_rgba": ((GEOM, "cart"), (GEOM, "cpole"))},
    ),
    Case(
        "rgba-channel-offset",
        "InvertedPendulum-v5",
        {"type": "mujoco.geom_rgba", "geoms": ["cart"], "channel": "b"},
        0.5,
        0.5,
        {"geom_rgba": ((GEOM, "cart"),)},
    ),
    Case(
        "rgba-material-geom",
        "metaworld/reach-v3",
        {"type": "mujoco.geom_rgba", "geoms": ["floor"], "channel": "color"},
        "#ff0000",
        "#ff0000",
        {"geom_rgba": ((GEOM, "floor"),)},
        camera="corner",
    ),
    Case(
        "texture-swap",
        "metaworld/reach-v3",
        {"type": "mujoco.texture", "material": "table_wood"},
        "T_wallmetal",
        "T_wallmetal",
        {"geom_matid": (1, 2)},  # the table's two (unnamed) geoms use table_wood
        camera="corner",
    ),
    Case(
        "texture-wall",
        "metaworld/reach-v3",
        {"type": "mujoco.texture", "material": "wall_metal"},
        "T_table",
        "T_table",
        {"geom_matid": (4, 5, 6, 7)},  # the retaining wall's four (unnamed) geoms
        camera="corner",
    ),
    Case(
        "body-pos-table",
        "metaworld/reach-v3",
        {"type": "mujoco.body_pos", "body": "tablelink", "axis": "z"},
        -0.1,
        -0.1,
        {"body_pos": ((BODY, "tablelink"),)},
        camera="corner",
        setconst=True,
    ),
    Case(
        "body-pos-set",
        "InvertedPendulum-v5",
        {"type": "mujoco.body_pos", "body": "cart", "axis": "x", "mode": "set"},
        0.5,
        0.5,
        {"body_pos": ((BODY, "cart"),)},
        setconst=True,
    ),
    Case(
        "light-pos",
        "Pusher-v5",
        {"type": "mujoco.light", "light": 0, "property": "pos_x"},
        1.0,
        1.0,
        {"light_pos": (0,)},
        setconst=True,
    ),
    Case(
        "light-rot",
        "HalfCheetah-v5",
        {"type": "mujoco.light", "light": 0, "property": "rot_y"},
        40.0,
        40.0,
        {"light_dir": (0,)},
        camera="track",
        setconst=True,
    ),
    Case(
        "camera-yaw",
        "HalfCheetah-v5",
        {"type": "mujoco.camera", "camera": "track", "property": "yaw"},
        5.0,
        5.0,
        {"cam_quat": ((CAM, "track"),)},
        camera="track",
        setconst=True,
    ),
    Case(
        "camera-pitch",
        "metaworld/reach-v3",
        {"type": "mujoco.camera", "camera": "corner", "property": "pitch"},
        -3.0,
        -3.0,
        {"cam_quat": ((CAM, "corner"),)},
        camera="corner",
        setconst=True,
    ),
    Case(
        "camera-roll",
        "metaworld/reach-v3",
        {"type": "mujoco.camera", "camera": "corner", "property": "roll"},
        10.0,
        10.0,
        {"cam_quat": ((CAM, "corner"),)},
        camera="corner",
        setconst=True,
    ),
]


def bound(case: Case, env: gym.Env[Any, Any]) -> Variation:
    variation = build_variation(dict(case.config), "jobs[j].factors.f.variation")
    variation.bind(env)
    return variation


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_changes_exactly_what_it_names_in_model_and_image(case: Case) -> None:
    env = make(case.env_id)
    env.reset(seed=0)
    model = model_of(env)
    renderer = fast_renderer(model)
    before, picture = snapshot(model), image(env, renderer, case.camera)
    variation = bound(case, env)
    assert changed(before, snapshot(model)) == {}, "bind must not change the model"
    got = variation.apply(env, case.value)
    assert got == (pytest.approx(case.readback, abs=1e-6) if isinstance(got, float) else case.readback)
    diff = changed(before, snapshot(model))
    expected = resolve(model, case.rows)
    for name, rows in expected.items():
        assert diff.get(name) == rows, (name, diff)
    extra = set(diff) - set(expected)
    assert extra <= (SETCONST_FIELDS if case.setconst else set()), extra
    after = image(env, renderer, case.camera)
    assert int(np.count_nonzero((after != picture).any(axis=-1))) > 20
    variation.restore(env)
    assert changed(before, snapshot(model)) == {}
    assert np.array_equal(image(env, renderer, case.camera), picture)
    variation.apply(env, variation.nominal())
    assert changed(before, snapshot(model)) == {}, "the nominal value leaves the model as it is"
    renderer.close()


def test_colours_are_the_ones_named() -> None:
    env = make("InvertedPendulum-v5")
    model = model_of(env)
    cart = mujoco.mj_name2id(model, GEOM, "cart")
    rgba = build_variation({"type": "mujoco.geom_rgba", "geoms": ["cart"]}, "v")
    rgba.bind(env)
    rgba.apply(env, "#336699cc")
    assert model.geom_rgba[cart].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8], abs=1e-6)
    rgba.apply(env, "green")
    assert model.geom_rgba[cart].tolist() == pytest.approx([0.1, 0.7, 0.1, 1.0], abs=1e-6)  # alpha kept
    rgba.restore(env)
    half = build_variation({"type": "mujoco.geom_rgba", "geoms": ["cart"], "channel": "brightness"}, "v")
    half.bind(env)
    assert half.apply(env, 0.5) == pytest.approx(0.5)
    assert model.geom_rgba[cart].tolist() == pytest.approx([0.35, 0.35, 0.0, 1.0], abs=1e-6)
    assert half.apply(env, 2.0) == pytest.approx(1 / 0.7)  # clipped at 1: what the model holds
    alpha = build_variation(
        {"type": "mujoco.geom_rgba", "geoms": ["cart"], "channel": "a", "mode": "set"}, "v"
    )
    alpha.bind(env)
    assert alpha.nominal() == 1.0 and alpha.apply(env, 0.25) == 0.25


def test_a_material_colour_is_the_starting_point() -> None:
    """Meta-World's floor shows its material's colour (its rgba is MuJoCo's default):
    a brightness factor scales that colour, not the unused 0.5 grey."""
    env = make("metaworld/reach-v3")
    model = model_of(env)
    floor = mujoco.mj_name2id(model, GEOM, "floor")
    material = model.mat_rgba[model.geom_matid[floor]].copy()
    v = build_variation({"type": "mujoco.geom_rgba", "geoms": ["floor"], "channel": "brightness"}, "v")
    v.bind(env)
    v.apply(env, 0.5)
    assert model.geom_rgba[floor, :3].tolist() == pytest.approx((material[:3] * 0.5).tolist(), abs=1e-6)


def test_light_and_camera_readback_follows_the_model() -> None:
    env = make("HalfCheetah-v5")
    model = model_of(env)
    tilt = build_variation({"type": "mujoco.light", "light": 0, "property": "rot_x"}, "v")
    tilt.bind(env)
    assert tilt.apply(env, 90.0) == pytest.approx(90.0)
    assert model.light_dir[0].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)  # down, turned about x
    cam = build_variation({"type": "mujoco.camera", "camera": "track", "property": "roll"}, "v")
    cam.bind(env)
    cam.apply(env, 180.0)
    track = mujoco.mj_name2id(model, CAM, "track")
    xmat = np.zeros(9)
    mujoco.mju_quat2Mat(xmat, model.cam_quat[track])
    nominal = np.zeros(9)
    mujoco.mju_quat2Mat(nominal, cam._quat0)  # type: ignore[attr-defined]
    # rolled by 180 degrees: the camera's x and y axes flip, its viewing axis stays
    xm, nm = xmat.reshape(3, 3), nominal.reshape(3, 3)
    assert xm[:, 0].tolist() == pytest.approx((-nm[:, 0]).tolist(), abs=1e-9)
    assert xm[:, 2].tolist() == pytest.approx(nm[:, 2].tolist(), abs=1e-9)


def test_defaults_units_nominals_and_kinds() -> None:
    env = make("metaworld/reach-v3")
    expected: list[tuple[dict[str, Any], Any, str | None, Any]] = [
        ({"type": "mujoco.geom_rgba", "geoms": ["objGeom"]}, None, None, "nominal"),
        ({"type": "mujoco.geom_rgba", "geoms": ["objGeom"], "channel": "hue"}, None, "deg", 0.0),
        ({"type": "mujoco.geom_rgba", "body": "obj", "channel": "r"}, "offset", "1", 0.0),
        ({"type": "mujoco.geom_rgba", "geoms": ["objGeom"], "channel": "r", "mode": "set"}, "set", "1", 1.0),
        ({"type": "mujoco.texture", "material": "block_wood"}, None, None, "T_block_wood"),
        ({"type": "mujoco.body_pos", "body": "tablelink", "axis": "y"}, "offset", "m", 0.0),
        ({"type": "mujoco.body_pos", "body": "tablelink", "axis": "z", "mode": "set"}, "set", "m", 0.0),
        ({"type": "mujoco.light", "light": 1, "property": "rot_z"}, "offset", "deg", 0.0),
        ({"type": "mujoco.camera", "camera": "corner", "property": "yaw"}, "offset", "deg", 0.0),
    ]
    for config, mode, units, nominal in expected:
        variation = build_variation(config, "v")
        variation.bind(env)
        assert variation.describe().get("mode") == mode, config
        assert variation.units == units, config
        assert variation.nominal() == nominal, config
    kinds = {
        "color": build_variation({"type": "mujoco.geom_rgba", "geoms": [0]}, "v").kind,
        "hue": build_variation({"type": "mujoco.geom_rgba", "geoms": [0], "channel": "hue"}, "v").kind,
        "texture": build_variation({"type": "mujoco.texture", "material": 0}, "v").kind,
    }
    assert kinds == {"color": "categorical", "hue": "continuous", "texture": "categorical"}


def test_an_episode_at_nominal_after_a_varied_one_starts_from_the_nominal_model() -> None:
    """Through the factor hook, as the rollout runs it: every visual factor varied in
    one episode, all at nominal in the next: the model equals the untouched one."""
    env = make("metaworld/reach-v3")
    env.reset(seed=0)
    before = snapshot(model_of(env))
    configs = {
        "color": {"type": "mujoco.geom_rgba", "body": "obj"},
        "table_texture": {"type": "mujoco.texture", "material": "table_wood"},
        "table_z": {"type": "mujoco.body_pos", "body": "tablelink", "axis": "z"},
        "light_tilt": {"type": "mujoco.light", "light": 2, "property": "rot_x"},
        "cam_yaw": {"type": "mujoco.camera", "camera": "corner", "property": "yaw"},
        "cam_x": {"type": "mujoco.camera", "camera": "corner", "property": "pos_x"},
    }
    hook = FactorHook(configs, "j", {})
    varied = {
        "color": "red",
        "table_texture": "T_block_wood",
        "table_z": -0.05,
        "light_tilt": 20.0,
        "cam_yaw": 3.0,
        "cam_x": 0.02,
    }
    applied = hook(env, {"factors": varied}, 11)
    assert set(applied) == set(varied)
    assert applied["color"] == "red" and applied["table_texture"] == "T_block_wood"
    assert applied["table_z"] == pytest.approx(-0.05) and applied["cam_yaw"] == pytest.approx(3.0)
    env.reset(seed=0)
    assert changed(before, snapshot(model_of(env))).keys() >= {
        "geom_rgba",
        "geom_matid",
        "body_pos",
        "light_dir",
        "cam_quat",
    }
    nominal = {
        "color": "nominal",
        "table_texture": "T_table",
        "table_z": 0.0,
        "light_tilt": 0.0,
        "cam_yaw": 0.0,
        "cam_x": 0.0,
    }
    hook(env, {"factors": nominal}, 12)
    env.reset(seed=0)
    assert changed(before, snapshot(model_of(env))) == {}


# -- errors --------------------------------------------------------------------------------------


def error_of(config: dict[str, Any], env_id: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        variation = build_variation(config, "jobs[j].factors.f.variation")
        if env_id is not None:
            variation.bind(make(env_id))
    return str(info.value)


@pytest.mark.parametrize(
    ("config", "env_id", "message"),
    [
        (
            {"type": "mujoco.geom_rgba", "geoms": ["cart", "poll"]},
            "InvertedPendulum-v5",
            f"{F}': unknown geom 'poll'; geoms: rail, cart, cpole",
        ),
        (
            {"type": "mujoco.geom_rgba", "body": "arm"},
            "InvertedPendulum-v5",
            f"{F}': unknown body 'arm'; bodies: world, cart, pole",
        ),
        (
            {"type": "mujoco.geom_rgba", "geoms": ["cart"], "body": "cart"},
            None,
            f"{F}': Value error, give exactly one of 'geoms' (a list of geom names) or 'body' (a body name)",
        ),
        (
            {"type": "mujoco.geom_rgba", "geoms": ["cart"], "channel": "hue", "mode": "set"},
            None,
            f"{F}': Value error, 'mode' applies to the channels r, g, b, a only, not to 'hue'",
        ),
        (
            {"type": "mujoco.geom_rgba", "geoms": ["floor"], "channel": "hue"},
            "metaworld/reach-v3",
            f"{F}': geoms 'floor' are grey: they have no hue to turn; use channel 'color'",
        ),
        (
            {"type": "mujoco.texture", "material": "wood"},
            "metaworld/reach-v3",
            f"{F}': unknown material 'wood'; materials: basic_floor, table_wood, table_col, wall_metal, "
            "block_col, block_wood, block_red, xyz_col",
        ),
        (
            {"type": "mujoco.texture", "material": "wood"},
            "InvertedPendulum-v5",
            f"{F}': unknown material 'wood'; this model has no materials",
        ),
        (
            {"type": "mujoco.body_pos", "body": "obj", "axis": "z"},
            "metaworld/reach-v3",
            f"{F}': body 'obj' has a free joint (the env's reset sets its position in qpos); bodies with a "
            "position to vary: tablelink, RetainingWall, base, controller_box, pedestal_feet, torso, pedestal, "
            "right_arm_base_link, right_l0, head, screen, head_camera, right_torso_itb, right_l1, right_l2, "
            "right_l3, right_l4, right_arm_itb, right_l5, right_hand_camera, right_wrist, right_l6, right_hand, "
            "hand, rightclaw, rightpad, leftclaw, leftpad, right_l4_2, right_l2_2, right_l1_2",
        ),
        (
            {"type": "mujoco.body_pos", "body": "pole", "axis": "w"},
            None,
            f"{F}.axis': Input should be 'x', 'y' or 'z'",
        ),
        (
            {"type": "mujoco.light", "light": 0, "property": "pos_z"},
            "HalfCheetah-v5",
            f"{F}': light '#0' is directional: its position does not change the image; vary its direction "
            "(rot_x, rot_y, rot_z)",
        ),
        (
            {"type": "mujoco.light", "light": 0, "property": "rot_z"},
            "HalfCheetah-v5",
            f"{F}': the direction of light '#0' ((-0.0, 0.0, -1.0)) is along the z axis: 'rot_z' cannot change it",
        ),
        (
            {"type": "mujoco.light", "light": "headlight", "property": "rot_x"},
            "HalfCheetah-v5",
            f"{F}': the headlight has no position or direction of its own (it follows the camera); 'rot_x' "
            "needs a model light",
        ),
        (
            {"type": "mujoco.light", "light": 0, "property": "rot_x", "mode": "set"},
            None,
            f"{F}.mode': Input should be 'offset'",
        ),
        (
            {"type": "mujoco.light", "light": 0, "property": "pos_x", "mode": "scale"},
            None,
            f"{F}.mode': Input should be 'offset' or 'set'",
        ),
        (
            {"type": "mujoco.camera", "camera": "track", "property": "yaw", "mode": "set"},
            None,
            f"{F}': mode 'set' is not available for property 'yaw': camera angles are offsets from the nominal "
            "orientation, in degrees (mode 'offset')",
        ),
        (
            {"type": "mujoco.camera", "camera": "behind", "property": "yaw"},
            "metaworld/reach-v3",
            f"{F}': unknown camera 'behind'; cameras: topview, corner, corner2, corner3, corner4, behindGripper, "
            "gripperPOV",
        ),
    ],
)
def test_bad_targets_list_the_available_names(
    config: dict[str, Any], env_id: str | None, message: str
) -> None:
    assert error_of(config, env_id) == message


def test_bad_values_give_exact_messages() -> None:
    env = make("metaworld/reach-v3")
    texture = build_variation({"type": "mujoco.texture", "material": "table_wood"}, "v")
    texture.bind(env)
    with pytest.raises(ConfigError) as info:
        texture.apply(env, "T_sky")
    assert str(info.value) == (
        "field 'v': unknown texture 'T_sky' for material 'table_wood'; textures: "
        "T_table, T_floor, T_wallmetal, T_block_wood"
    )
    rgba = build_variation({"type": "mujoco.geom_rgba", "geoms": ["objGeom"]}, "v")
    rgba.bind(env)
    with pytest.raises(ConfigError) as info:
        rgba.apply(env, "reddish")
    assert str(info.value) == (
        "field 'v': unknown colour 'reddish'; allowed: nominal, red, green, blue, yellow, cyan, magenta, "
        "orange, purple, brown, white, gray, black, '#rrggbb' or '#rrggbbaa'"
    )


def test_an_unknown_geom_exits_2_through_trialrun_run(tmp_path: Path) -> None:
    doc = {
        "name": "bad",
        "jobs": [
            {
                "name": "j",
                "env": "InvertedPendulum-v5",
                "policy": "zero",
                "episodes": 1,
                "max_steps": 2,
                "factors": {
                    "cart_colour": {
                        "variation": {"type": "mujoco.geom_rgba", "geoms": ["kart"]},
                        "sampler": {"type": "choice", "values": ["red", "nominal"]},
                    }
                },
            }
        ],
    }
    code, lines = run_error_lines(tmp_path, doc)
    assert code == 2
    assert any(
        "field 'jobs[j].factors.cart_colour.variation': unknown geom 'kart'; geoms: rail, cart, cpole" in line
        for line in lines
    ), lines


# -- listing, registry, docs ---------------------------------------------------------------------


def test_list_variations_shows_what_each_visual_type_can_target() -> None:
    result = CliRunner().invoke(app, ["list", "variations", "metaworld/reach-v3"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:3])
        for line in result.output.splitlines()
        if "│" in line
    }
    for row in [
        ("mujoco.geom_rgba", "objGeom"),
        ("mujoco.geom_rgba", "floor"),
        ("mujoco.texture", "table_wood"),
        ("mujoco.body_pos", "tablelink"),
        ("mujoco.camera", "corner"),
        ("mujoco.light", "#2"),
        ("mujoco.distractors", "worldbody"),
    ]:
        assert row in rows, row
    assert ("mujoco.body_pos", "obj") not in rows  # a free body: refused, so not listed
    assert "T_wallmetal" in result.output  # the textures table_wood can show


@pytest.mark.parametrize("env_id", ["metaworld/reach-v3", "HalfCheetah-v5"])
def test_every_listed_target_can_be_bound(env_id: str) -> None:
    env = make(env_id)
    keys = {"mujoco.geom_rgba": "geoms", "mujoco.texture": "material", "mujoco.body_pos": "body"}
    for type_name, key in keys.items():
        cls = available_variations()[type_name]
        targets = cls.targets(env)
        assert targets, type_name
        for target in targets:
            config: dict[str, Any] = {
                "type": type_name,
                key: [target.target] if key == "geoms" else target.target,
            }
            if type_name == "mujoco.body_pos":
                config["axis"] = "z"
            variation = build_variation(config, "v")
            variation.bind(env)
            if type_name == "mujoco.texture":
                assert variation.nominal() == target.nominal


def test_docstring_examples_run() -> None:
    for module in (geom_rgba_module, texture_module, body_pos_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 4, module.__name__
