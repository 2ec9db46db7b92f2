"""PyBullet variations on panda-gym's PandaPush: mass, lateral friction and
restitution of the pushed object, set with ``changeDynamics``, read back with
``getDynamicsInfo`` and restored before the next episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from cli_errors import run_error_lines
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.variations.factors import FactorHook, FactorSet
from trialrun.variations.pybullet import LateralFriction, Mass, Restitution

pytest.importorskip("panda_gym")

PUSH = "panda_gym:PandaPush-v3"


@pytest.fixture(scope="module")
def env() -> Any:
    env = gym.make(PUSH)
    env.reset(seed=0)
    yield env
    env.close()


def _object(env: Any) -> tuple[Any, int]:
    sim = env.unwrapped.sim
    return sim.physics_client, sim._bodies_idx["object"]


def _pushed_velocity(env: Any) -> float:
    """x velocity of the object after 5 steps of a 5 N push along x."""
    client, body = _object(env)
    env.reset(seed=0)
    for _ in range(5):
        client.applyExternalForce(body, -1, [5.0, 0.0, 0.0], [0.0, 0.0, 0.0], client.WORLD_FRAME)
        client.stepSimulation()
    return float(client.getBaseVelocity(body)[0][0])


def _slide(env: Any) -> float:
    """How far the object slides along x in 20 steps after a 0.5 m/s kick."""
    client, body = _object(env)
    env.reset(seed=0)
    client.resetBaseVelocity(body, [0.5, 0.0, 0.0], [0.0, 0.0, 0.0])
    x0 = client.getBasePositionAndOrientation(body)[0][0]
    for _ in range(20):
        env.unwrapped.sim.step()
    return float(client.getBasePositionAndOrientation(body)[0][0] - x0)


def test_mass_is_read_back_changes_the_dynamics_and_is_restored(env: Any) -> None:
    client, body = _object(env)
    nominal_info = client.getDynamicsInfo(body, -1)
    nominal_velocity = _pushed_velocity(env)
    mass = Mass({"body": "object"})  # mode: scale (default)
    mass.bind(env)
    assert (mass.nominal(), mass.units) == (1.0, "x")
    assert mass.apply(env, 4.0) == 4.0
    info = client.getDynamicsInfo(body, -1)
    assert info[0] == 4.0
    assert info[2] == pytest.approx(tuple(4 * x for x in nominal_info[2]), rel=1e-12)  # inertia scales too
    assert _pushed_velocity(env) < 0.3 * nominal_velocity
    mass.restore(env)
    # Restored exactly: mass, friction, the inertia (not the shape's, the URDF's) and the rest.
    assert client.getDynamicsInfo(body, -1) == nominal_info


def test_lateral_friction_is_read_back_changes_the_slide_and_is_restored(env: Any) -> None:
    client, body = _object(env)
    nominal_info = client.getDynamicsInfo(body, -1)
    friction = LateralFriction({"body": "object"})
    friction.bind(env)
    assert (friction.nominal(), friction.units) == (0.5, None)
    nominal_slide = _slide(env)
    assert friction.apply(env, 0.05) == 0.05
    assert client.getDynamicsInfo(body, -1)[1] == 0.05
    assert _slide(env) > 3 * nominal_slide
    friction.restore(env)
    assert client.getDynamicsInfo(body, -1) == nominal_info


def test_restitution_is_read_back_and_restored(env: Any) -> None:
    client, body = _object(env)
    nominal_info = client.getDynamicsInfo(body, -1)
    restitution = Restitution({"body": "object"})
    restitution.bind(env)
    assert restitution.nominal() == 0.0
    assert restitution.apply(env, 0.8) == 0.8
    assert client.getDynamicsInfo(body, -1)[5] == 0.8
    restitution.restore(env)
    assert client.getDynamicsInfo(body, -1) == nominal_info


@pytest.mark.parametrize(
    "params,message",
    [
        ({"body": "obj"}, "unknown body 'obj'; bodies: panda, plane, table, object, target"),
        ({"body": "object", "link": "hand"}, "unknown link 'hand' of body 'object'; links: link0"),
        ({"body": "object", "link": 3}, "link index 3 is out of range for body 'object'; links: link0"),
        ({"body": "table"}, "body 'table' is static (mass 0): a mass would make it move; vary another body"),
    ],
)
def test_bad_targets_give_exact_messages(env: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Mass(params, field="f").bind(env)
    assert str(info.value) == f"field 'f': {message}"


def test_a_link_by_name_and_a_non_pybullet_env() -> None:
    panda = gym.make(PUSH)
    try:
        client = panda.unwrapped.sim.physics_client
        robot = panda.unwrapped.sim._bodies_idx["panda"]
        friction = LateralFriction({"body": "panda", "link": "panda_leftfinger", "mode": "scale"})
        friction.bind(panda)
        nominal = client.getDynamicsInfo(robot, 9)[1]
        assert friction.apply(panda, 2.0) == 2.0 and client.getDynamicsInfo(robot, 9)[1] == 2 * nominal
        friction.restore(panda)
        assert client.getDynamicsInfo(robot, 9)[1] == nominal
    finally:
        panda.close()
    with pytest.raises(ConfigError, match=r"needs a PyBullet env .*; CartPoleEnv is not one"):
        Mass({"body": "object"}).bind(gym.make("CartPole-v1"))


def _job(factors: dict[str, Any], episodes: int = 4) -> dict[str, Any]:
    return {
        "name": "push",
        "env": PUSH,
        "policy": "random",
        "episodes": episodes,
        "num_envs": 2,
        "max_steps": 3,
        "factors": factors,
    }


FACTORS = {
    "mass": {
        "variation": {"type": "pybullet.mass", "body": "object"},
        "sampler": {"type": "choice", "values": [0.5, 2.0]},
    },
    "friction": {
        "variation": {"type": "pybullet.lateral_friction", "body": "object"},
        "sampler": {"type": "uniform", "low": 0.1, "high": 1.0},
    },
}


def test_a_run_records_the_values_read_back(tmp_path: Path) -> None:
    cfg = parse_run_config({"name": "pb", "seed": 5, "jobs": [_job(FACTORS)]})
    run_evaluation(cfg, tmp_path / "run")
    records = sorted(read_episodes(tmp_path / "run" / "episodes.jsonl"), key=lambda r: r.episode)
    planned = {s.episode: s.factors for s in FactorSet(cfg.jobs[0]).slots(cfg.seed)}
    assert [r.episode for r in records] == [0, 1, 2, 3]
    for record in records:
        assert record.factors == pytest.approx(planned[record.episode], rel=1e-12)
    specs = {s.name: s for s in read_manifest(tmp_path / "run").jobs["push"].factors}
    assert (specs["mass"].nominal, specs["mass"].units) == (1.0, "x")
    assert (specs["friction"].nominal, specs["friction"].units) == (0.5, None)


def test_the_hook_starts_every_episode_from_nominal() -> None:
    env = gym.make(PUSH)
    try:
        client = env.unwrapped.sim.physics_client
        body = env.unwrapped.sim._bodies_idx["object"]
        nominal = client.getDynamicsInfo(body, -1)
        hook = FactorHook({name: f["variation"] for name, f in FACTORS.items()}, "push", {})
        assert hook(env, {"factors": {"mass": 2.0, "friction": 0.2}}, 1) == {"mass": 2.0, "friction": 0.2}
        assert client.getDynamicsInfo(body, -1)[:2] == (2.0, 0.2)
        # A slot without values (a one_at_a_time block that leaves them out) runs at nominal and says so.
        assert hook(env, {"factors": {}}, 2) == {"mass": nominal[0], "friction": nominal[1]}
        assert client.getDynamicsInfo(body, -1) == nominal
    finally:
        env.close()


def test_unknown_body_exits_2_with_one_line(tmp_path: Path) -> None:
    factors = {
        "m": {
            "variation": {"type": "pybullet.mass", "body": "cube"},
            "sampler": {"type": "constant", "value": 2.0},
        }
    }
    code, lines = run_error_lines(tmp_path, {"name": "pb", "jobs": [_job(factors, episodes=1)]})
    assert code == 2
    assert lines == [
        f"trialrun: error: {tmp_path / 'run.yaml'}: field 'jobs[push].factors.m.variation': unknown body 'cube'; "
        "bodies: panda, plane, table, object, target"
    ]


def test_listed_targets(env: Any) -> None:
    assert [(t.target, t.nominal, t.units) for t in Mass.targets(env)] == [("object", 1.0, "kg")]
    frictions = {t.target: (t.nominal, t.note) for t in LateralFriction.targets(env)}
    assert list(frictions) == ["panda", "plane", "table", "object", "target"]
    assert frictions["panda"] == (0.5, "base link; 12 more links (link: name or index)")
    assert frictions["object"] == (0.5, "base link")
