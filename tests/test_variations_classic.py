"""The ``attr`` variation on Gymnasium's classic-control envs (and one MuJoCo env).

It changes exactly the named attribute (plus the constants derived from it),
changes the dynamics, restores the env exactly (instance ``__dict__``
compared whole, class attributes untouched), keeps envs independent, and
gives exact messages for bad parameters.
"""

from __future__ import annotations

import doctest
import logging
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.acrobot import AcrobotEnv

import trialrun.variations.classic as classic
from trialrun.errors import ConfigError
from trialrun.variations.base import Variation, VariationError
from trialrun.variations.classic import Attr
from trialrun.variations.registry import available_variations


def attr(field: str = "v", **params: Any) -> Variation:
    return Attr(params, field=field)


def state(env: gym.Env[Any, Any]) -> dict[str, Any]:
    """The scalar instance attributes of the unwrapped env (its parameters), without episode state."""
    skip = {"state", "steps_beyond_terminated", "last_u", "_np_random_seed"}
    return {
        k: v
        for k, v in vars(env.unwrapped).items()
        if k not in skip and (v is None or isinstance(v, int | float | str | bool))
    }


def rollout(env: gym.Env[Any, Any], steps: int = 30, seed: int = 0) -> list[np.ndarray]:
    """Observations under a fixed seed and a fixed action sequence."""
    obs, _ = env.reset(seed=seed)
    space = env.action_space
    space.seed(7)
    out = [np.asarray(obs).copy()]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(space.sample())
        out.append(np.asarray(obs).copy())
        if terminated or truncated:
            break
    return out


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


CASES = [
    # env, params, value, read back, attributes that must change, a second episode's value
    ("CartPole-v1", {"name": "masspole"}, 0.5, 0.5, {"masspole", "total_mass", "polemass_length"}, 1.0),
    ("CartPole-v1", {"name": "masscart", "mode": "scale"}, 2.0, 2.0, {"masscart", "total_mass"}, 0.5),
    ("CartPole-v1", {"name": "length", "mode": "scale"}, 2.0, 2.0, {"length", "polemass_length"}, 3.0),
    ("CartPole-v1", {"name": "force_mag", "mode": "set"}, 5.0, 5.0, {"force_mag"}, 15.0),
    ("Pendulum-v1", {"name": "g", "mode": "set"}, 3.7, 3.7, {"g"}, 20.0),
    ("Pendulum-v1", {"name": "l", "mode": "scale"}, 1.5, 1.5, {"l"}, 0.5),
    ("Acrobot-v1", {"name": "LINK_MASS_2", "mode": "set"}, 2.5, 2.5, {"LINK_MASS_2"}, 0.5),
    ("MountainCar-v0", {"name": "force", "mode": "scale"}, 1.5, 1.5, {"force"}, 3.0),
    ("HalfCheetah-v5", {"name": "frame_skip", "mode": "set"}, 2, 2.0, {"frame_skip"}, 3),
]
IDS = [f"{env}-{p['name']}-{p.get('mode', 'set')}" for env, p, *_ in CASES]


@pytest.mark.parametrize(("env_id", "params", "value", "readback", "names", "value2"), CASES, ids=IDS)
def test_changes_exactly_what_it_names(
    env_id: str, params: dict[str, Any], value: float, readback: float, names: set[str], value2: float
) -> None:
    env = gym.make(env_id)
    before = state(env)
    variation = attr(**params)
    variation.bind(env)
    assert state(env) == before, "bind must not change the env"
    assert variation.apply(env, value) == pytest.approx(readback, rel=1e-12)
    after = state(env)
    assert {k for k in set(before) | set(after) if before.get(k, "?") != after.get(k, "?")} == names


@pytest.mark.parametrize(("env_id", "params", "value", "readback", "names", "value2"), CASES, ids=IDS)
def test_restore_is_exact_and_dynamics_change(
    env_id: str, params: dict[str, Any], value: float, readback: float, names: set[str], value2: float
) -> None:
    env = gym.make(env_id)
    before = state(env)
    nominal = rollout(env)
    variation = attr(**params)
    variation.bind(env)
    for episode_value in (value, value2):
        variation.restore(env)
        variation.apply(env, episode_value)
        assert not same(rollout(env), nominal)
    variation.restore(env)
    assert state(env) == before
    assert same(rollout(env), nominal)
    variation.apply(env, variation.nominal())
    assert state(env) == before


def test_cartpole_derived_constants_follow_every_change() -> None:
    env = gym.make("CartPole-v1")
    base: Any = env.unwrapped
    pole, length = attr(name="masspole"), attr(name="length", mode="scale")
    pole.bind(env)
    length.bind(env)
    pole.apply(env, 0.2)
    length.apply(env, 3.0)
    assert (base.total_mass, base.polemass_length) == (1.2, 0.2 * 1.5)
    pole.restore(env)  # restoring one factor keeps the other one's effect
    assert (base.total_mass, base.polemass_length) == (1.1, 0.1 * 1.5)
    length.restore(env)
    assert (base.total_mass, base.polemass_length) == (1.1, 0.05)


def test_class_attributes_are_shadowed_never_modified() -> None:
    """Acrobot's constants live on the class, shared by every env in the process."""
    env_a, env_b = gym.make("Acrobot-v1"), gym.make("Acrobot-v1")
    var_a, var_b = attr(name="LINK_MASS_2"), attr(name="LINK_MASS_2", mode="scale")
    var_a.bind(env_a)
    var_b.bind(env_b)
    var_a.apply(env_a, 3.0)
    var_b.apply(env_b, 0.5)
    assert AcrobotEnv.LINK_MASS_2 == 1.0
    assert (env_a.unwrapped.LINK_MASS_2, env_b.unwrapped.LINK_MASS_2) == (3.0, 0.5)  # type: ignore[attr-defined]
    var_a.restore(env_a)
    assert "LINK_MASS_2" not in vars(env_a.unwrapped)
    assert env_b.unwrapped.LINK_MASS_2 == 0.5  # type: ignore[attr-defined]
    with pytest.raises(VariationError) as info:
        var_a.apply(env_b, 2.0)
    assert str(info.value) == (
        "field 'v': variation 'attr' was bound to another env instance; bind one variation instance per sub-env"
    )


def test_two_cartpoles_do_not_affect_each_other() -> None:
    env_a, env_b = gym.make("CartPole-v1"), gym.make("CartPole-v1")
    nominal_b = state(env_b)
    var_a, var_b = attr(name="length"), attr(name="length")
    var_a.bind(env_a)
    var_b.bind(env_b)
    var_a.apply(env_a, 1.0)
    assert state(env_b) == nominal_b
    var_b.apply(env_b, 0.25)
    assert env_a.unwrapped.length == 1.0  # type: ignore[attr-defined]
    var_b.restore(env_b)
    assert state(env_b) == nominal_b
    assert env_a.unwrapped.polemass_length == 0.1  # type: ignore[attr-defined]


def test_integer_attributes_stay_integers_when_possible() -> None:
    env = gym.make("Pendulum-v1")
    variation = attr(name="max_speed")
    variation.bind(env)
    assert variation.apply(env, 9.0) == 9.0
    assert type(env.unwrapped.max_speed) is int  # type: ignore[attr-defined]
    assert variation.apply(env, 7.5) == 7.5
    variation.restore(env)
    assert env.unwrapped.max_speed == 8 and type(env.unwrapped.max_speed) is int  # type: ignore[attr-defined]


def test_space_bound_attributes_log_once(caplog: pytest.LogCaptureFixture) -> None:
    classic._NOTED.discard(("PendulumEnv", "max_torque"))
    with caplog.at_level(logging.WARNING, logger="trialrun.variations.classic"):
        for _ in range(2):
            env = gym.make("Pendulum-v1")
            attr(name="max_torque").bind(env)
    assert [r.getMessage() for r in caplog.records] == [
        "attr 'max_torque': PendulumEnv computed its action_space from it at construction; the space is left "
        "unchanged (vector envs and policies were built against it)"
    ]
    assert env.action_space.high.tolist() == [2.0]  # type: ignore[attr-defined]


def test_private_attribute_named_explicitly() -> None:
    env = gym.make("HalfCheetah-v5")
    variation = attr(name="_ctrl_cost_weight", mode="scale")
    variation.bind(env)
    assert variation.apply(env, 2.0) == 2.0
    assert env.unwrapped._ctrl_cost_weight == 0.2  # type: ignore[attr-defined]


CARTPOLE_NUMERIC = (
    "force_mag, gravity, length, masscart, masspole, screen_height, screen_width, tau, "
    "theta_threshold_radians, x_threshold"
)


@pytest.mark.parametrize(
    ("env_id", "params", "message"),
    [
        (
            "CartPole-v1",
            {"name": "lenght"},
            f"field 'v': unknown attribute 'lenght' of CartPoleEnv; numeric attributes: {CARTPOLE_NUMERIC}",
        ),
        (
            "CartPole-v1",
            {"name": "kinematics_integrator"},
            "field 'v': attribute 'kinematics_integrator' of CartPoleEnv is not numeric (str); "
            f"numeric attributes: {CARTPOLE_NUMERIC}",
        ),
        (
            "CartPole-v1",
            {"name": "step"},
            f"field 'v': unknown attribute 'step' of CartPoleEnv; numeric attributes: {CARTPOLE_NUMERIC}",
        ),
        (
            "CartPole-v1",
            {"name": "total_mass"},
            "field 'v': attribute 'total_mass' of CartPoleEnv is derived from length, masscart, masspole and "
            "recomputed when they change; vary those instead",
        ),
        (
            "Acrobot-v1",
            {"name": "torque_noise_max", "mode": "scale"},
            "field 'v': attribute 'torque_noise_max' of AcrobotEnv is 0, so mode 'scale' cannot change it; "
            "use mode 'set'",
        ),
        (
            "Pendulum-v1",
            {"name": "g", "mode": "offset"},
            "field 'v.mode': Input should be 'set' or 'scale'",
        ),
        (
            "Pendulum-v1",
            {"name": "g", "value": 3},
            "field 'v.value': unknown key 'value' for variation 'attr'; allowed keys: mode, name",
        ),
        ("Pendulum-v1", {}, "field 'v.name': Field required"),
    ],
)
def test_bad_params_give_exact_messages(env_id: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        attr(**params).bind(gym.make(env_id))
    assert str(info.value) == message


def test_bad_values_give_exact_messages() -> None:
    env = gym.make("CartPole-v1")
    variation = attr(name="length")
    with pytest.raises(VariationError) as info:
        variation.apply(env, 1.0)
    assert str(info.value) == "field 'v': variation 'attr' is not bound: call bind(env) first"
    variation.bind(env)
    cases: list[tuple[Any, str]] = [
        ("long", "field 'v': variation 'attr' needs a number, got 'long'"),
        (float("inf"), "field 'v': variation 'attr' needs a finite number, got inf"),
    ]
    for value, message in cases:
        with pytest.raises(VariationError) as info:
            variation.apply(env, value)
        assert str(info.value) == message


def test_units_and_nominal() -> None:
    env = gym.make("CartPole-v1")
    for params, units, nominal in [
        ({"name": "masspole"}, "kg", 0.1),
        ({"name": "masspole", "mode": "scale"}, "x", 1.0),
        ({"name": "force_mag"}, "N", 10.0),
        ({"name": "screen_width"}, None, 600.0),
    ]:
        variation = attr(**params)
        variation.bind(env)
        assert (variation.units, variation.nominal()) == (units, nominal)
        assert variation.describe() == {"type": "attr", "mode": "set", **params}


def test_targets_list_the_numeric_public_attributes() -> None:
    cartpole = {t.target: t for t in Attr.targets(gym.make("CartPole-v1"))}
    assert ", ".join(cartpole) == CARTPOLE_NUMERIC
    assert cartpole["masspole"].nominal == 0.1 and cartpole["masspole"].units == "kg"
    assert cartpole["masspole"].note == "recomputes polemass_length, total_mass"
    assert cartpole["screen_width"].note == "rendering only"
    pendulum = {t.target: t for t in Attr.targets(gym.make("Pendulum-v1"))}
    assert list(pendulum) == ["dt", "g", "l", "m", "max_speed", "max_torque", "screen_dim"]
    assert pendulum["max_torque"].note == "also bounds the action_space, which is not changed"
    acrobot = {t.target: t.nominal for t in Attr.targets(gym.make("Acrobot-v1"))}
    assert acrobot["LINK_MASS_1"] == 1.0 and "book_or_nips" not in acrobot
    for env_id in ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0"):
        env = gym.make(env_id)
        for target in Attr.targets(env):
            attr(name=target.target).bind(env)  # every listed target binds


def test_registered_with_runnable_docstring() -> None:
    assert available_variations()["attr"] is Attr


def test_docstring_examples_run() -> None:
    assert ">>>" in (Attr.__doc__ or "")
    result = doctest.testmod(classic)
    assert result.failed == 0 and result.attempted >= 4
