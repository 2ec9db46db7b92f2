"""Samplers: distributions, inverse CDFs, grid levels, specs and validation messages."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError
from scipy import stats

import trialrun.variations.samplers as samplers_module
from trialrun.config import format_validation_error
from trialrun.runfiles.schema import FactorSpec
from trialrun.variations.samplers import (
    ChoiceSampler,
    ConstantSampler,
    LogUniformSampler,
    NormalSampler,
    SamplerConfig,
    UniformSampler,
    parse_sampler,
)

N_DRAWS = 5000
P_MIN = 0.01  # the seeds are fixed, so these tests are deterministic, not flaky


class _Holder(BaseModel):
    """A config model with a sampler field, as config.py will have."""

    sampler: SamplerConfig


def _draws(sampler: Any, seed: int = 12345, n: int = N_DRAWS) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [sampler.draw(rng) for _ in range(n)]


def _error(raw: Any) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as info:
        _Holder(sampler=raw)
    err = info.value.errors()[0]
    return tuple(err["loc"]), err["msg"].removeprefix("Value error, ")


# --------------------------------------------------------------------------- distributions


def test_uniform_draws_lie_in_bounds_and_are_uniform() -> None:
    s = parse_sampler({"type": "uniform", "low": -2.0, "high": 3.0})
    x = _draws(s)
    assert all(type(v) is float for v in x)
    assert min(x) >= -2.0 and max(x) <= 3.0
    assert stats.kstest(x, stats.uniform(loc=-2.0, scale=5.0).cdf).pvalue > P_MIN


def test_loguniform_draws_are_uniform_in_log_space() -> None:
    s = parse_sampler({"type": "loguniform", "low": 0.1, "high": 100})
    x = np.array(_draws(s))
    assert x.min() >= 0.1 and x.max() <= 100.0
    logs = np.log(x)
    assert stats.kstest(logs, stats.uniform(loc=math.log(0.1), scale=math.log(1000.0)).cdf).pvalue > P_MIN
    # Every decade gets about a third of the draws (a plain uniform would put 90% in the last one).
    decades = np.histogram(np.log10(x), bins=[-1, 0, 1, 2])[0] / len(x)
    assert np.all(np.abs(decades - 1 / 3) < 0.03)
    # Not uniform on the linear scale.
    assert stats.kstest(x, stats.uniform(loc=0.1, scale=99.9).cdf).pvalue < 1e-6


def test_normal_draws_follow_the_truncated_normal() -> None:
    s = parse_sampler({"type": "normal", "mean": 1.0, "std": 0.5, "low": 0.2, "high": 2.5})
    x = np.array(_draws(s))
    assert x.min() >= 0.2 and x.max() <= 2.5
    dist = stats.truncnorm((0.2 - 1.0) / 0.5, (2.5 - 1.0) / 0.5, loc=1.0, scale=0.5)
    assert stats.kstest(x, dist.cdf).pvalue > P_MIN


def test_normal_without_bounds_is_truncated_at_four_std() -> None:
    s = NormalSampler(mean=10.0, std=2.0)
    assert s.bounds == (2.0, 18.0)
    x = np.array(_draws(s))
    assert x.min() >= 2.0 and x.max() <= 18.0
    assert stats.kstest(x, stats.norm(loc=10.0, scale=2.0).cdf).pvalue > P_MIN
    assert NormalSampler(mean=0.0, std=1.0, low=-1.0).bounds == (-1.0, 4.0)
    assert NormalSampler(mean=0.0, std=1.0, high=1.0).bounds == (-4.0, 1.0)


def test_normal_one_sided_truncation_keeps_the_tail_shape() -> None:
    # A half-normal-like window: the mean lies on the lower bound.
    s = NormalSampler(mean=0.0, std=1.0, low=0.0, high=3.0)
    x = np.array(_draws(s, seed=7))
    assert x.min() >= 0.0 and x.max() <= 3.0
    assert stats.kstest(x, stats.truncnorm(0.0, 3.0).cdf).pvalue > P_MIN


def test_choice_respects_weights() -> None:
    s = parse_sampler({"type": "choice", "values": ["a", "b", "c"], "weights": [5, 3, 2]})
    x = _draws(s)
    counts = [x.count(v) for v in ["a", "b", "c"]]
    assert sum(counts) == N_DRAWS
    expected = [N_DRAWS * p for p in (0.5, 0.3, 0.2)]
    assert stats.chisquare(counts, expected).pvalue > P_MIN
    # Unweighted: equal shares.
    u = _draws(ChoiceSampler(values=[1, 2, 3, 4]), seed=3)
    assert stats.chisquare([u.count(v) for v in [1, 2, 3, 4]]).pvalue > P_MIN


def test_choice_zero_weight_is_never_drawn() -> None:
    s = ChoiceSampler(values=["never", "x", "also-never", "y", "last-never"], weights=[0, 1, 0, 1, 0])
    assert set(_draws(s, n=2000)) == {"x", "y"}
    assert s.from_unit(0.0) == "x" and s.from_unit(1.0) == "y"
    assert s.from_units([0.0, 0.4999, 0.5, 0.9999, 1.0]) == ["x", "x", "y", "y", "y"]


def test_choice_keeps_the_exact_values_and_types() -> None:
    s = parse_sampler({"type": "choice", "values": [1, 2.5, "push-v3", False]})
    assert [type(v) for v in s.values] == [int, float, str, bool]
    drawn = set(_draws(s, n=400))
    assert drawn == {1, 2.5, "push-v3", False}
    assert {type(v) for v in drawn} == {int, float, str, bool}
    assert s.probabilities == (0.25, 0.25, 0.25, 0.25)


def test_constant_always_returns_its_value_unchanged() -> None:
    for value in (3, 9.81, "push-v3", True):
        s = parse_sampler({"type": "constant", "value": value})
        drawn = _draws(s, n=5)
        assert drawn == [value] * 5 and all(type(v) is type(value) for v in drawn)


def test_draw_consumes_exactly_one_double() -> None:
    for s in (
        UniformSampler(low=0, high=1),
        LogUniformSampler(low=1, high=2),
        NormalSampler(mean=0, std=1),
        ChoiceSampler(values=["a", "b"]),
    ):
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        value = s.draw(a)
        u = b.random()
        assert value == s.from_unit(u)
        assert a.random() == b.random()


# --------------------------------------------------------------------------- inverse CDF

CONTINUOUS = [
    (UniformSampler(low=-1.5, high=4.0), -1.5, 4.0),
    (LogUniformSampler(low=0.1, high=100.0), 0.1, 100.0),
    (NormalSampler(mean=1.0, std=0.3), 1.0 - 1.2, 1.0 + 1.2),
    (NormalSampler(mean=0.0, std=1.0, low=-0.5, high=2.0), -0.5, 2.0),
]


@pytest.mark.parametrize(("sampler", "low", "high"), CONTINUOUS, ids=lambda x: getattr(x, "type", ""))
def test_from_unit_is_monotone_and_hits_the_bounds(sampler: Any, low: float, high: float) -> None:
    assert sampler.from_unit(0.0) == low
    assert sampler.from_unit(1.0) == high
    u = np.linspace(0.0, 1.0, 2001)
    values = np.array(sampler.from_units(u))
    assert np.all(np.diff(values) >= 0.0)
    assert np.all(np.diff(values[1:-1]) > 0.0)  # strictly increasing: no flat spots
    assert values.min() == low and values.max() == high
    assert all(type(v) is float for v in values.tolist())


@pytest.mark.parametrize(("sampler", "low", "high"), CONTINUOUS, ids=lambda x: getattr(x, "type", ""))
def test_from_units_equals_from_unit_elementwise(sampler: Any, low: float, high: float) -> None:
    u = np.random.default_rng(0).random(300)
    assert sampler.from_units(u) == [sampler.from_unit(float(x)) for x in u]


def test_from_unit_values() -> None:
    assert UniformSampler(low=0, high=2).from_unit(0.25) == 0.5
    assert LogUniformSampler(low=1, high=100).from_unit(0.5) == pytest.approx(10.0, rel=1e-12)
    assert NormalSampler(mean=3.0, std=2.0).from_unit(0.5) == pytest.approx(3.0, abs=1e-12)
    n = NormalSampler(mean=0.0, std=1.0, low=-1.0, high=1.0)
    assert n.from_unit(0.2) == pytest.approx(stats.truncnorm(-1, 1).ppf(0.2), rel=1e-12)
    c = ChoiceSampler(values=["a", "b", "c"], weights=[2, 1, 1])
    assert [c.from_unit(u) for u in (0.0, 0.4999, 0.5, 0.7499, 0.75, 0.9999, 1.0)] == list("aabbccc")
    assert ConstantSampler(value="x").from_unit(0.3) == "x"


@pytest.mark.parametrize("u", [-0.1, 1.5, float("nan")])
def test_from_unit_rejects_u_outside_the_unit_interval(u: float) -> None:
    with pytest.raises(ValueError, match=r"from_unit expects u in \[0, 1\], got "):
        UniformSampler(low=0, high=1).from_unit(u)


# --------------------------------------------------------------------------- grid levels


def test_grid_levels_of_uniform_include_both_bounds() -> None:
    assert UniformSampler(low=0, high=1, levels=5).grid_levels(3) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert UniformSampler(low=0, high=1).grid_levels(3) == [0.0, 0.5, 1.0]
    levels = UniformSampler(low=0.02, high=1.0, levels=4).grid_levels(5)
    assert len(levels) == 4 and levels[0] == 0.02 and levels[-1] == 1.0
    assert levels == pytest.approx([0.02, 0.02 + 0.98 / 3, 0.02 + 2 * 0.98 / 3, 1.0], rel=1e-12)


def test_grid_levels_of_loguniform_are_geometric() -> None:
    levels = LogUniformSampler(low=0.1, high=100.0, levels=4).grid_levels(5)
    assert levels[0] == 0.1 and levels[-1] == 100.0
    assert levels == pytest.approx([0.1, 1.0, 10.0, 100.0], rel=1e-12)
    assert len(LogUniformSampler(low=1, high=2).grid_levels(7)) == 7


def test_grid_levels_of_normal_are_central_quantiles() -> None:
    s = NormalSampler(mean=0.0, std=1.0, low=-1.0, high=2.0, levels=4)
    levels = s.grid_levels(5)
    dist = stats.truncnorm(-1.0, 2.0)
    assert dist.cdf(levels) == pytest.approx([0.125, 0.375, 0.625, 0.875], abs=1e-9)
    assert all(-1.0 < v < 2.0 for v in levels)
    assert NormalSampler(mean=5.0, std=1.0).grid_levels(3)[1] == pytest.approx(5.0, abs=1e-12)


def test_grid_levels_of_choice_and_constant() -> None:
    assert ChoiceSampler(values=["a", "b"], weights=[1, 0]).grid_levels(5) == ["a", "b"]
    assert ConstantSampler(value=2.5).grid_levels(5) == [2.5]


@pytest.mark.parametrize("default", [1, 0, -3, 2.5, True])
def test_grid_levels_default_must_be_at_least_two(default: Any) -> None:
    with pytest.raises(ValueError, match="the default number of grid levels must be an integer >= 2"):
        UniformSampler(low=0, high=1).grid_levels(default)


# --------------------------------------------------------------------------- kind, spec, nominal


def test_kind() -> None:
    assert UniformSampler(low=0, high=1).kind == "continuous"
    assert LogUniformSampler(low=1, high=2).kind == "continuous"
    assert NormalSampler(mean=0, std=1).kind == "continuous"
    assert ChoiceSampler(values=[1.0, 2.0]).kind == "categorical"
    assert ConstantSampler(value=3).kind == "continuous"
    assert ConstantSampler(value=3.5).kind == "continuous"
    assert ConstantSampler(value="a").kind == "categorical"
    assert ConstantSampler(value=False).kind == "categorical"


def test_spec_fields() -> None:
    assert UniformSampler(low=0, high=2, levels=3).spec_fields() == {
        "kind": "continuous",
        "low": 0.0,
        "high": 2.0,
        "values": None,
        "scale": "linear",
    }
    assert LogUniformSampler(low=0.1, high=100).spec_fields() == {
        "kind": "continuous",
        "low": 0.1,
        "high": 100.0,
        "values": None,
        "scale": "log",
    }
    assert NormalSampler(mean=1.0, std=0.5, low=0.0).spec_fields() == {
        "kind": "continuous",
        "low": 0.0,
        "high": 3.0,
        "values": None,
        "scale": "linear",
    }
    assert ChoiceSampler(values=["a", "b"], weights=[1, 2]).spec_fields() == {
        "kind": "categorical",
        "low": None,
        "high": None,
        "values": ["a", "b"],
        "scale": "linear",
    }
    assert ConstantSampler(value="a").spec_fields() == {
        "kind": "categorical",
        "low": None,
        "high": None,
        "values": ["a"],
        "scale": "linear",
    }
    assert ConstantSampler(value=2).spec_fields() == {
        "kind": "continuous",
        "low": 2.0,
        "high": 2.0,
        "values": None,
        "scale": "linear",
    }


@pytest.mark.parametrize(
    "sampler",
    [
        UniformSampler(low=0, high=1),
        LogUniformSampler(low=1, high=2),
        NormalSampler(mean=0, std=1),
        ChoiceSampler(values=[2, "a", True]),
        ConstantSampler(value=1.5),
        ConstantSampler(value="x"),
    ],
    ids=lambda s: s.type,
)
def test_spec_fields_make_a_valid_factor_spec(sampler: Any) -> None:
    spec = FactorSpec(name="f", nominal=sampler.nominal_hint(), **sampler.spec_fields())
    assert spec.kind == sampler.kind


def test_nominal_hint() -> None:
    assert UniformSampler(low=1, high=4).nominal_hint() == 2.5
    assert LogUniformSampler(low=1, high=100).nominal_hint() == pytest.approx(10.0, rel=1e-12)
    assert LogUniformSampler(low=0.1, high=1000).nominal_hint() == pytest.approx(10.0, rel=1e-12)
    assert NormalSampler(mean=0.3, std=1).nominal_hint() == 0.3
    # A mean outside its truncation window is clipped: the nominal must be a reachable value.
    assert NormalSampler(mean=0.0, std=1.0, low=0.5, high=2.0).nominal_hint() == 0.5
    assert ChoiceSampler(values=["push", "pick"], weights=[0, 1]).nominal_hint() == "push"
    assert ConstantSampler(value=7).nominal_hint() == 7


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        (
            {"type": "uniform", "low": 5.0, "high": 1.0},
            ("sampler",),
            "low (5.0) must be less than high (1.0)",
        ),
        (
            {"type": "uniform", "low": 1, "high": 1},
            ("sampler",),
            "low (1.0) must be less than high (1.0); use type: constant for a fixed value",
        ),
        (
            {"type": "loguniform", "low": 10, "high": 1},
            ("sampler",),
            "low (10.0) must be less than high (1.0)",
        ),
        (
            {"type": "loguniform", "low": 0, "high": 1},
            ("sampler", "low"),
            "low (0.0) must be greater than 0 for a loguniform sampler",
        ),
        (
            {"type": "loguniform", "low": -1, "high": 1},
            ("sampler", "low"),
            "low (-1.0) must be greater than 0 for a loguniform sampler",
        ),
        (
            {"type": "normal", "mean": 0, "std": 0},
            ("sampler", "std"),
            "std (0.0) must be greater than 0",
        ),
        (
            {"type": "normal", "mean": 0, "std": -1},
            ("sampler", "std"),
            "std (-1.0) must be greater than 0",
        ),
        (
            {"type": "normal", "mean": 0, "std": 1, "low": 2, "high": 1},
            ("sampler",),
            "low (2.0) must be less than high (1.0)",
        ),
        (
            {"type": "normal", "mean": 0, "std": 1, "low": 5},
            ("sampler",),
            "low (5.0) must be less than high (4.0, the default mean + 4 std)",
        ),
        (
            {"type": "normal", "mean": 0, "std": 1, "high": -5},
            ("sampler",),
            "low (-4.0, the default mean - 4 std) must be less than high (-5.0)",
        ),
        (
            {"type": "uniform", "low": 0, "high": 1, "levels": 1},
            ("sampler", "levels"),
            "Input should be greater than or equal to 2",
        ),
        (
            {"type": "choice", "values": []},
            ("sampler", "values"),
            "values must not be empty",
        ),
        (
            {"type": "choice", "values": "abc"},
            ("sampler", "values"),
            "values must be a list of strings, numbers or booleans",
        ),
        (
            {"type": "choice", "values": ["a", "b", "a"]},
            ("sampler", "values"),
            "values must be unique; 'a' appears more than once",
        ),
        (
            {"type": "choice", "values": [1, 1.0]},
            ("sampler", "values"),
            "values must be unique; 1.0 equals 1",
        ),
        (
            {"type": "choice", "values": ["a", {"b": 1}]},
            ("sampler", "values"),
            "values[1] must be a string, number or boolean (got dict {'b': 1})",
        ),
        (
            {"type": "choice", "values": ["a", None]},
            ("sampler", "values"),
            "values[1] must be a string, number or boolean (got NoneType None)",
        ),
        (
            {"type": "choice", "values": [1.0, float("nan")]},
            ("sampler", "values"),
            "values[1] must be finite (got nan)",
        ),
        (
            {"type": "choice", "values": ["a", "b"], "weights": [1]},
            ("sampler",),
            "weights has 1 entry but values has 2 entries; give one weight per value",
        ),
        (
            {"type": "choice", "values": ["a", "b"], "weights": [1, -0.5]},
            ("sampler", "weights"),
            "weights must be non-negative (weights[1] is -0.5)",
        ),
        (
            {"type": "choice", "values": ["a", "b"], "weights": [0, 0]},
            ("sampler", "weights"),
            "weights must not all be zero",
        ),
        (
            {"type": "constant", "value": [1, 2]},
            ("sampler", "value"),
            "value must be a string, number or boolean (got list [1, 2])",
        ),
        (
            {"type": "uniform", "low": 0, "high": 1, "level": 3},
            ("sampler",),
            "unknown key 'level' for a uniform sampler; allowed keys: high, levels, low, type",
        ),
        (
            {"type": "choice", "values": [1], "weight": [1]},
            ("sampler",),
            "unknown key 'weight' for a choice sampler; allowed keys: type, values, weights",
        ),
        (
            {"type": "gaussian", "mean": 0},
            ("sampler",),
            "unknown sampler type 'gaussian'; allowed types: uniform, loguniform, normal, choice, constant",
        ),
        (
            {"low": 0, "high": 1},
            ("sampler",),
            "a sampler needs a 'type': one of uniform, loguniform, normal, choice, constant",
        ),
        (
            0.5,
            ("sampler",),
            "a sampler must be a mapping with a 'type' (one of uniform, loguniform, normal, choice, "
            "constant), for example {type: uniform, low: 0, high: 1}",
        ),
        (
            {"type": "uniform", "low": True, "high": 1},
            ("sampler", "low"),
            "Input should be a valid number",
        ),
        (
            {"type": "uniform", "low": "0", "high": 1},
            ("sampler", "low"),
            "Input should be a valid number",
        ),
        (
            {"type": "uniform", "low": 0, "high": float("inf")},
            ("sampler", "high"),
            "Input should be a finite number",
        ),
        (
            {"type": "uniform", "high": 1},
            ("sampler", "low"),
            "Field required",
        ),
    ],
)
def test_validation_errors_have_exact_messages_at_the_users_path(
    raw: Any, loc: tuple[Any, ...], message: str
) -> None:
    assert _error(raw) == (loc, message)


def test_validation_error_reads_well_through_the_config_formatter() -> None:
    with pytest.raises(ValidationError) as info:
        _Holder(sampler={"type": "uniform", "low": 5, "high": 1})
    err = format_validation_error(info.value, "run.yaml")
    assert str(err) == "run.yaml: field 'sampler': low (5.0) must be less than high (1.0)"
    with pytest.raises(ValidationError) as info:
        _Holder(sampler={"type": "loguniform", "low": 0, "high": 1})
    err = format_validation_error(info.value, None)
    assert err.field == "sampler.low"


def test_models_are_frozen_hashable_and_round_trip() -> None:
    s = parse_sampler({"type": "choice", "values": ["a", 2], "weights": [1, 3]})
    with pytest.raises(ValidationError):
        s.weights = (1.0, 1.0)  # type: ignore[misc]
    assert hash(s) == hash(parse_sampler(s.model_dump(mode="json")))
    for raw in (
        {"type": "uniform", "low": 0, "high": 1, "levels": 4},
        {"type": "loguniform", "low": 0.1, "high": 100},
        {"type": "normal", "mean": 1, "std": 0.1, "high": 1.2},
        {"type": "choice", "values": ["a", True, 3]},
        {"type": "constant", "value": "x"},
    ):
        s = parse_sampler(raw)
        assert parse_sampler(s.model_dump(mode="json")) == s
        assert type(s).__name__.lower().startswith(raw["type"])  # type: ignore[union-attr]


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValidationError, match=r"low \(2\.0\) must be less than high \(1\.0\)"):
        UniformSampler(low=2, high=1)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(samplers_module)
    assert result.attempted > 5 and result.failed == 0
