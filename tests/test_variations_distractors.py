"""``mujoco.distractors`` on real envs: the rebuilt model keeps every nominal
array and the dynamics bit for bit; distractors appear in rendered images
(MuJoCo's renderer, the env's own ``rgb_array`` render, trialrun's trajectory
camera) and are gone in the next episode drawn with 0; placement follows the
slot's seed, so records and images are the same with ``num_envs`` 1 and 3;
bad params and envs give exact messages (exit 2 through ``trialrun run``).
"""

from __future__ import annotations

import doctest
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import h5py
import numpy as np
import pytest

import trialrun.variations.distractors as distractors_module
from cli_errors import run_error_lines
from test_variations_mujoco import XmlEnv, fast_renderer, snapshot
from trialrun.config import parse_run_config
from trialrun.envs.build import make_env
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.variations.distractors import Distractors
from trialrun.variations.factors import FactorHook

REACH = "metaworld/reach-v3"
ON_TABLE = {"low": [-0.25, 0.45, 0.05], "high": [0.25, 0.75, 0.05], "size": [0.03, 0.04]}
"""A box on Meta-World's table, in front of the arm (world frame, metres)."""
NEAR_CHEETAH = {"low": [-0.5, 0.6, 0.1], "high": [1.0, 0.9, 0.4], "size": [0.08, 0.1]}
"""Beside HalfCheetah's start, in view of its ``track`` camera."""
MAGENTA = ["#ff00ff"]


def model_of(env: gym.Env[Any, Any]) -> Any:
    return env.unwrapped.model  # type: ignore[attr-defined]


def corner_image(env: gym.Env[Any, Any]) -> np.ndarray:
    model = model_of(env)
    renderer = fast_renderer(model)
    renderer.update_scene(env.unwrapped.data, camera="corner")  # type: ignore[attr-defined]
    out = np.array(renderer.render(), copy=True)
    renderer.close()
    return out


def magenta_pixels(image: np.ndarray) -> int:
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((r > 120) & (b > 120) & (g < 0.6 * np.minimum(r, b))))


def test_the_rebuilt_model_keeps_every_nominal_array() -> None:
    env = make_env(REACH, {})
    env.reset(seed=0)
    old_model, old_data = model_of(env), env.unwrapped.data  # type: ignore[attr-defined]
    before = snapshot(old_model)
    qpos = old_data.qpos.copy()
    v = Distractors({"max_count": 4, **ON_TABLE}, field="f")
    v.bind(env)
    model = model_of(env)
    assert model is not old_model and model.nbody == old_model.nbody + 1
    assert model.ngeom == old_model.ngeom + 4 and v.first_geom == old_model.ngeom  # added last
    assert env.unwrapped.mujoco_renderer.model is model  # type: ignore[attr-defined]
    assert np.array_equal(env.unwrapped.data.qpos, qpos)  # type: ignore[attr-defined]
    after = snapshot(model)
    compared = 0
    for key, old in before.items():
        if key.startswith("name") or key in ("paths", "text_data"):
            continue  # the name tables move when names are added
        new = after[key]
        part = new if new.shape == old.shape else new[: old.shape[0]]
        assert np.array_equal(part, old), key
        compared += 1
    assert compared > 300  # including what Meta-World (mocap welds) and trialrun (shadows) set after loading
    v.bind(env)  # binding again (another factor pass, a preflight env) reuses the rebuilt model
    assert model_of(env) is model


def test_the_dynamics_do_not_change() -> None:
    plain, varied = gym.make("HalfCheetah-v5"), gym.make("HalfCheetah-v5")
    hook = FactorHook({"d": {"type": "mujoco.distractors", "max_count": 3, **NEAR_CHEETAH}}, "j", {})
    assert hook(varied, {"factors": {"d": 3}}, 4) == {"d": 3}
    runs = []
    for env in (plain, varied):
        obs, _ = env.reset(seed=4)
        rng = np.random.default_rng(0)
        steps = [obs]
        for _ in range(60):
            obs, reward, *_ = env.step(rng.uniform(-1, 1, 6))
            steps.append(np.append(obs, reward))
        runs.append(steps)
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_distractors_appear_in_the_image_and_are_gone_when_drawn_absent() -> None:
    plain, varied = make_env(REACH, {}), make_env(REACH, {})
    config = {"type": "mujoco.distractors", "max_count": 3, "colors": MAGENTA, **ON_TABLE}
    hook = FactorHook({"d": config}, "j", {})
    assert hook(varied, {"factors": {"d": 3}}, 5) == {"d": 3}
    plain.reset(seed=5)
    varied.reset(seed=5)
    nominal, shown = corner_image(plain), corner_image(varied)
    assert magenta_pixels(nominal) == 0
    assert magenta_pixels(shown) > 20
    assert int(np.count_nonzero((shown != nominal).any(axis=-1))) == pytest.approx(
        magenta_pixels(shown), rel=0.5
    )
    assert hook(varied, {"factors": {"d": 0}}, 6) == {"d": 0}
    plain.reset(seed=6)
    varied.reset(seed=6)
    assert np.array_equal(corner_image(varied), corner_image(plain))


def test_the_envs_own_rgb_array_render_shows_them() -> None:
    plain = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=96, height=96)
    varied = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=96, height=96)
    varied.reset(seed=1)
    varied.render()  # a viewer made before the rebuild is replaced, not left on the old model
    hook = FactorHook(
        {
            "d": {
                "type": "mujoco.distractors",
                "max_count": 2,
                "colors": MAGENTA,
                **NEAR_CHEETAH,
                "size": [0.15, 0.2],
            }
        },
        "j",
        {},
    )
    hook(varied, {"factors": {"d": 2}}, 1)
    plain.reset(seed=1)
    varied.reset(seed=1)
    nominal, shown = plain.render(), varied.render()
    assert isinstance(nominal, np.ndarray) and isinstance(shown, np.ndarray)
    assert magenta_pixels(nominal) == 0 and magenta_pixels(shown) > 30
    hook(varied, {"factors": {"d": 0}}, 2)
    plain.reset(seed=2)
    varied.reset(seed=2)
    assert np.array_equal(plain.render(), varied.render())  # type: ignore[arg-type]


def placement(v: Distractors, env: gym.Env[Any, Any]) -> list[list[float]]:
    model = model_of(env)
    rows = slice(v.first_geom, v.first_geom + v.params.max_count)
    return np.concatenate(
        [model.geom_pos[rows], model.geom_size[rows], model.geom_rgba[rows], model.geom_type[rows, None]],
        axis=1,
    ).tolist()


def test_placement_is_a_function_of_the_slot_seed() -> None:
    a, b = gym.make("HalfCheetah-v5"), gym.make("HalfCheetah-v5")
    va = Distractors({"max_count": 4, **NEAR_CHEETAH}, field="jobs[j].factors.d.variation")
    vb = Distractors({"max_count": 4, **NEAR_CHEETAH}, field="jobs[j].factors.d.variation")
    va.bind(a)
    vb.bind(b)
    va.begin_episode(123)
    vb.begin_episode(123)
    assert va.apply(a, 4) == 4 and vb.apply(b, 4) == 4
    assert placement(va, a) == placement(vb, b)
    vb.begin_episode(123)
    assert vb.apply(b, 1) == 1
    shown = placement(vb, b)
    assert shown[0] == placement(va, a)[0]  # the first distractor is the same whatever the count
    assert [row[9] for row in shown] == [1.0, 0.0, 0.0, 0.0]  # alpha: one shown
    vb.begin_episode(124)
    vb.apply(b, 4)
    assert placement(vb, b)[0][:3] != placement(va, a)[0][:3]
    low, high = np.array(NEAR_CHEETAH["low"]), np.array(NEAR_CHEETAH["high"])
    positions = np.array(placement(vb, b))[:, :3]
    assert np.all((positions >= low) & (positions <= high))
    vb.restore(b)
    assert all(row[9] == 0.0 for row in placement(vb, b))


def _job(num_envs: int) -> dict[str, Any]:
    return {
        "name": f"d{num_envs}",
        "seed": 8,
        "jobs": [
            {
                "name": "cheetah",
                "env": "HalfCheetah-v5",
                "policy": "zero",
                "episodes": 6,
                "num_envs": num_envs,
                "max_steps": 2,
                "factors": {
                    "distractors": {
                        "variation": {"type": "mujoco.distractors", "max_count": 3, **NEAR_CHEETAH},
                        "sampler": {"type": "choice", "values": [0, 1, 2, 3]},
                    }
                },
                "trajectories": {"select": "all", "episodes": 6, "cameras": ["track"], "size": [64, 64]},
            }
        ],
    }


def test_records_and_images_are_the_same_with_1_and_3_envs(tmp_path: Path) -> None:
    runs = {}
    for n in (1, 3):
        run_dir = tmp_path / f"n{n}"
        run_evaluation(parse_run_config(_job(n)), run_dir)
        records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
        frames = {}
        for record in records:
            with h5py.File(run_dir / record["trajectory"]) as f:
                frames[record["episode"]] = np.array(f["data/demo_0/obs/track_image"][0])
        runs[n] = ({r["episode"]: (r["seed"], r["factors"], r["outcome"]["return"]) for r in records}, frames)
    assert runs[1][0] == runs[3][0]
    assert len(runs[1][0]) == 6
    assert all(np.array_equal(runs[1][1][k], runs[3][1][k]) for k in range(6))
    counts = {k: v[1]["distractors"] for k, v in runs[1][0].items()}
    assert set(counts.values()) >= {0} and max(counts.values()) > 0, counts
    # the policy's camera sees them: episodes with distractors differ from those without
    empty = [k for k, c in counts.items() if c == 0]
    full = [k for k, c in counts.items() if c > 0]
    assert empty and full
    for k in full:
        assert not np.array_equal(runs[1][1][k], runs[1][1][empty[0]])


# -- errors -------------------------------------------------------------------------------------------

F = "field 'jobs[j].factors.d.variation"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"max_count": 2, "low": [0, 0, 0], "high": [1, 1, 1], "shapes": ["box", "pyramid"]},
            f"{F}.shapes': Value error, unknown shape(s) ['pyramid']; allowed: box, sphere, cylinder, capsule, "
            "ellipsoid",
        ),
        (
            {"max_count": 2, "low": [0, 0, 0], "high": [1, 1, 1], "colors": ["teal"]},
            f"{F}.colors': Value error, unknown colour(s) ['teal']; allowed: red, green, blue, yellow, cyan, "
            "magenta, orange, purple, brown, white, gray, black, '#rrggbb' or '#rrggbbaa'",
        ),
        (
            {"max_count": 2, "low": [0, 0, 1], "high": [1, 1, 0]},
            f"{F}': Value error, 'low' [0.0, 0.0, 1.0] must be <= 'high' [1.0, 1.0, 0.0] in every coordinate",
        ),
        (
            {"max_count": 0, "low": [0, 0, 0], "high": [1, 1, 1]},
            f"{F}.max_count': Input should be greater than or equal to 1",
        ),
        ({"low": [0, 0, 0], "high": [1, 1, 1]}, f"{F}.max_count': Field required"),
    ],
)
def test_bad_params_give_exact_messages(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Distractors(params, field="jobs[j].factors.d.variation")
    assert str(info.value) == message


def test_bad_envs_and_values_give_exact_messages() -> None:
    params = {"max_count": 2, "low": [0, 0, 0], "high": [1, 1, 1]}
    from_string = XmlEnv("<mujoco><worldbody><geom size='1 1 0.1' type='plane'/></worldbody></mujoco>")
    with pytest.raises(ConfigError) as info:
        Distractors(params, field="v").bind(from_string)
    assert str(info.value) == (
        "field 'v': variation 'mujoco.distractors' rebuilds the env's model from its MJCF file, found as "
        "env.unwrapped.fullpath (Gymnasium MuJoCo envs) or .model_name (Meta-World); XmlEnv gives neither"
    )
    with pytest.raises(ConfigError) as info:
        Distractors(params, field="v").bind(gym.make("CartPole-v1"))
    assert "needs a MuJoCo env" in str(info.value)
    env = gym.make("InvertedPendulum-v5")
    v = Distractors(params, field="v")
    v.bind(env)
    for value in (3, -1, 1.5, "two"):
        with pytest.raises(ConfigError) as info:
            v.apply(env, value)
        expected = (
            f"field 'v': the number of distractors must be a whole number in 0..2 (max_count), got {value!r}"
            if value != "two"
            else "field 'v': variation 'mujoco.distractors' needs a number, got 'two'"
        )
        assert str(info.value) == expected


def test_a_bad_shape_exits_2_through_trialrun_run(tmp_path: Path) -> None:
    doc = _job(1)
    doc["jobs"][0].pop("trajectories")
    doc["jobs"][0]["factors"]["distractors"]["variation"]["shapes"] = ["cone"]
    code, lines = run_error_lines(tmp_path, doc)
    assert code == 2
    assert any(
        "field 'jobs[cheetah].factors.distractors.variation.shapes': Value error, unknown shape(s) ['cone']; "
        "allowed: box, sphere, cylinder, capsule, ellipsoid" in line
        for line in lines
    ), lines


def test_docstring_examples_run() -> None:
    result = doctest.testmod(distractors_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 4
