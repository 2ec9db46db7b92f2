"""Designs: per-slot factor values that are a pure function of (run seed, job, k)."""

from __future__ import annotations

import doctest
import json
import logging
import math
import subprocess
import sys
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
from scipy import stats

import trialrun.variations.designs as designs_module
from trialrun.errors import ConfigError
from trialrun.plan import slot_for, stable_hash_words
from trialrun.variations.designs import DESIGNS, factor_values, grid_size, random_values_for_slot
from trialrun.variations.samplers import (
    ChoiceSampler,
    ConstantSampler,
    LogUniformSampler,
    NormalSampler,
    SamplerModel,
    UniformSampler,
)

LOGGER = "trialrun.variations.designs"


def _samplers() -> dict[str, SamplerModel]:
    return {
        "mass": LogUniformSampler(low=0.1, high=100.0),
        "friction": UniformSampler(low=0.02, high=1.0),
        "noise": NormalSampler(mean=0.0, std=0.1),
        "task": ChoiceSampler(values=["pick-place-v3", "push-v3"], weights=[3, 1]),
        "gravity": ConstantSampler(value=-9.81),
    }


def _in_bounds(rows: list[dict[str, Any]]) -> bool:
    return all(
        0.1 <= r["mass"] <= 100.0
        and 0.02 <= r["friction"] <= 1.0
        and -0.4 <= r["noise"] <= 0.4
        and r["task"] in {"pick-place-v3", "push-v3"}
        and r["gravity"] == -9.81
        for r in rows
    )


# --------------------------------------------------------------------------- common


@pytest.mark.parametrize("design", DESIGNS)
def test_empty_samplers_give_empty_dicts(design: Any) -> None:
    assert factor_values({}, design, 0, "j", 3) == [{}, {}, {}]


@pytest.mark.parametrize("design", ["random", "lhs", "sobol"])
def test_values_lie_in_bounds_and_keep_factor_order(design: Any) -> None:
    rows = factor_values(_samplers(), design, 1, "job", 64)
    assert len(rows) == 64
    assert all(list(r) == ["mass", "friction", "noise", "task", "gravity"] for r in rows)
    assert _in_bounds(rows)
    assert all(type(r["mass"]) is float and type(r["task"]) is str for r in rows)


@pytest.mark.parametrize("design", DESIGNS)
def test_two_calls_give_equal_lists(design: Any) -> None:
    samplers = _samplers() if design != "grid" else {"f": UniformSampler(low=0, high=1)}
    assert factor_values(samplers, design, 3, "job", 20) == factor_values(samplers, design, 3, "job", 20)


@pytest.mark.parametrize("design", ["random", "lhs", "sobol"])
def test_another_job_or_run_seed_gives_other_values(design: Any) -> None:
    base = factor_values(_samplers(), design, 3, "job", 16)
    other_job = factor_values(_samplers(), design, 3, "job-2", 16)
    other_seed = factor_values(_samplers(), design, 4, "job", 16)
    for other in (other_job, other_seed):
        assert all(
            a["mass"] != b["mass"] and a["noise"] != b["noise"] for a, b in zip(base, other, strict=True)
        )


def test_values_do_not_depend_on_the_process() -> None:
    code = (
        "import json\n"
        "from trialrun.variations.designs import factor_values\n"
        "from trialrun.variations.samplers import parse_sampler\n"
        "s = {'m': parse_sampler({'type': 'loguniform', 'low': 0.1, 'high': 100}),\n"
        "     'n': parse_sampler({'type': 'normal', 'mean': 0, 'std': 1}),\n"
        "     't': parse_sampler({'type': 'choice', 'values': ['a', 'b', 'c']})}\n"
        "print(json.dumps({d: factor_values(s, d, 5, 'job', 8) for d in ('random', 'lhs', 'sobol')}))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(h), "PATH": ""},
        ).stdout
        for h in (1, 2)
    }
    assert len(outputs) == 1
    samplers = {
        "m": LogUniformSampler(low=0.1, high=100),
        "n": NormalSampler(mean=0, std=1),
        "t": ChoiceSampler(values=["a", "b", "c"]),
    }
    here = {d: factor_values(samplers, d, 5, "job", 8) for d in ("random", "lhs", "sobol")}
    assert json.loads(outputs.pop()) == here


def test_unknown_design_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        factor_values(_samplers(), "halton", 0, "j", 4)  # type: ignore[arg-type]
    assert info.value.field == "design"
    assert (
        str(info.value)
        == "field 'design': unknown design 'halton'; allowed: random, grid, lhs, sobol, one_at_a_time, combined"
    )


@pytest.mark.parametrize("episodes", [0, -1, 2.0, True])
def test_episodes_must_be_a_positive_integer(episodes: Any) -> None:
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        factor_values(_samplers(), "random", 0, "j", episodes)


def test_levels_outside_a_grid_design_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    samplers = {"f": UniformSampler(low=0, high=1, levels=4), "g": UniformSampler(low=0, high=1)}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        factor_values(samplers, "lhs", 0, "j", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "job 'j': factor(s) 'f' set 'levels', which only the grid and one_at_a_time designs use (design: lhs)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        factor_values(samplers, "grid", 0, "j", 20)
    assert caplog.records == []


def test_docstring_examples_run() -> None:
    result = doctest.testmod(designs_module)
    assert result.attempted > 5 and result.failed == 0


# --------------------------------------------------------------------------- random


def test_random_rows_equal_the_per_slot_function() -> None:
    samplers = _samplers()
    rows = factor_values(samplers, "random", 11, "job", 40)
    assert rows == [random_values_for_slot(samplers, 11, "job", k) for k in range(40)]


def test_random_value_k_does_not_depend_on_the_episode_count() -> None:
    assert factor_values(_samplers(), "random", 2, "j", 50)[:10] == factor_values(
        _samplers(), "random", 2, "j", 10
    )


def test_random_adding_removing_or_reordering_factors_leaves_others_unchanged() -> None:
    full = _samplers()
    base = factor_values(full, "random", 2, "j", 30)
    fewer = {k: v for k, v in full.items() if k not in {"friction", "task"}}
    more = {"light": UniformSampler(low=0, high=1), **full, "damping": NormalSampler(mean=1, std=0.1)}
    reordered = dict(reversed(list(full.items())))
    for variant in (fewer, more, reordered):
        rows = factor_values(variant, "random", 2, "j", 30)
        shared = set(variant) & set(full)
        for a, b in zip(base, rows, strict=True):
            assert {k: a[k] for k in shared} == {k: b[k] for k in shared}


def test_random_factors_with_the_same_sampler_are_independent() -> None:
    s = UniformSampler(low=0, high=1)
    rows = factor_values({"a": s, "b": s}, "random", 0, "j", 2000)
    a, b = np.array([r["a"] for r in rows]), np.array([r["b"] for r in rows])
    assert not np.any(a == b)
    assert abs(stats.pearsonr(a, b).statistic) < 0.06


def test_random_draws_across_slots_follow_the_distribution() -> None:
    rows = factor_values({"m": LogUniformSampler(low=0.1, high=100)}, "random", 0, "j", 3000)
    logs = np.log([r["m"] for r in rows])
    assert stats.kstest(logs, stats.uniform(loc=math.log(0.1), scale=math.log(1000)).cdf).pvalue > 0.01


def test_random_values_are_pinned() -> None:
    # A uniform on [0, 1] returns the generator's double unchanged, so these are
    # exact on every platform. A change here silently breaks replay and paired
    # comparison of every existing run, so it must be deliberate.
    samplers = {"u": UniformSampler(low=0, high=1), "t": ChoiceSampler(values=["a", "b", "c", "d"])}
    rows = factor_values(samplers, "random", 7, "nominal", 3)
    assert rows == [
        {"u": 0.9889843911865462, "t": "a"},
        {"u": 0.9064507865936283, "t": "a"},
        {"u": 0.4780305644398518, "t": "b"},
    ]
    # The documented recipe: a generator per (slot factor_seed, factor name).
    factor_seed = slot_for(7, "nominal", 0).factor_seed
    rng = np.random.default_rng(np.random.SeedSequence(factor_seed, spawn_key=stable_hash_words("u")))
    assert rng.random() == 0.9889843911865462


# --------------------------------------------------------------------------- grid


def test_grid_is_the_exact_cartesian_product_with_equal_counts() -> None:
    samplers = {
        "friction": UniformSampler(low=0.0, high=0.75, levels=4),
        "task": ChoiceSampler(values=["pick", "push", "reach"], weights=[1, 0, 0]),
        "gravity": ConstantSampler(value=-9.81),
    }
    rows = factor_values(samplers, "grid", 0, "j", 36)
    points = [(r["friction"], r["task"], r["gravity"]) for r in rows]
    expected = {(f, t, -9.81) for f in (0.0, 0.25, 0.5, 0.75) for t in ("pick", "push", "reach")}
    assert set(points) == expected
    assert Counter(points) == dict.fromkeys(expected, 3)
    # The first 12 slots cover the grid once, first factor slowest; then it repeats.
    assert points[:12] == [(f, t, -9.81) for f in (0.0, 0.25, 0.5, 0.75) for t in ("pick", "push", "reach")]
    assert points[12:24] == points[:12] and points[24:] == points[:12]


def test_grid_uses_the_default_levels_for_continuous_factors_without_levels() -> None:
    samplers = {"a": UniformSampler(low=0, high=1), "b": LogUniformSampler(low=1, high=100, levels=3)}
    rows = factor_values(samplers, "grid", 0, "j", 6, grid_default_levels=2)
    assert [(r["a"], r["b"]) for r in rows] == [
        (0.0, 1.0),
        (0.0, pytest.approx(10.0)),
        (0.0, 100.0),
        (1.0, 1.0),
        (1.0, pytest.approx(10.0)),
        (1.0, 100.0),
    ]
    assert grid_size(samplers, 2) == 6
    assert grid_size(samplers) == 15
    assert grid_size({}) == 1


def test_grid_does_not_depend_on_seed_or_job() -> None:
    samplers = {"a": NormalSampler(mean=0, std=1, levels=3)}
    assert factor_values(samplers, "grid", 0, "a", 3) == factor_values(samplers, "grid", 9, "b", 3)


@pytest.mark.parametrize(
    ("samplers", "episodes", "message"),
    [
        (
            {"f": UniformSampler(low=0, high=1, levels=4), "t": ChoiceSampler(values=[1, 2, 3])},
            50,
            "grid design has 4 x 3 = 12 points; episodes must be a multiple of 12 (got 50; use 48 or 60)",
        ),
        (
            {"f": UniformSampler(low=0, high=1, levels=4), "t": ChoiceSampler(values=[1, 2, 3])},
            5,
            "grid design has 4 x 3 = 12 points; episodes must be a multiple of 12 (got 5; use 12)",
        ),
        (
            {"f": UniformSampler(low=0, high=1)},
            7,
            "grid design has 5 points; episodes must be a multiple of 5 (got 7; use 5 or 10)",
        ),
        (
            {
                "f": UniformSampler(low=0, high=1, levels=2),
                "c": ConstantSampler(value=1),
                "g": UniformSampler(low=0, high=1, levels=2),
            },
            3,
            "grid design has 2 x 1 x 2 = 4 points; episodes must be a multiple of 4 (got 3; use 4)",
        ),
    ],
)
def test_grid_episodes_must_be_a_multiple_of_its_size(
    samplers: dict[str, SamplerModel], episodes: int, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        factor_values(samplers, "grid", 0, "j", episodes)
    assert info.value.field == "design"
    assert str(info.value) == f"field 'design': {message}"


# --------------------------------------------------------------------------- lhs / sobol


def _strata(rows: list[dict[str, Any]], n: int) -> dict[str, list[int]]:
    """The stratum (of n equally likely ones) of every value, per factor."""
    mass = [int((math.log(r["mass"]) - math.log(0.1)) / math.log(1000) * n) for r in rows]
    friction = [int((r["friction"] - 0.02) / 0.98 * n) for r in rows]
    noise_cdf = stats.truncnorm(-4, 4, loc=0, scale=0.1).cdf([r["noise"] for r in rows])
    noise = [int(p * n) for p in noise_cdf]
    return {"mass": sorted(mass), "friction": sorted(friction), "noise": sorted(noise)}


def test_lhs_puts_exactly_one_point_in_each_of_n_strata_per_factor() -> None:
    for n in (7, 40):
        rows = factor_values(_samplers(), "lhs", 5, "job", n)
        assert _strata(rows, n) == {key: list(range(n)) for key in ("mass", "friction", "noise")}


def test_lhs_gives_a_choice_exactly_its_share() -> None:
    samplers = {
        "task": ChoiceSampler(values=["a", "b", "c"], weights=[2, 1, 1]),
        "x": UniformSampler(low=0, high=1),
    }
    rows = factor_values(samplers, "lhs", 5, "job", 40)
    assert Counter(r["task"] for r in rows) == {"a": 20, "b": 10, "c": 10}


@pytest.mark.parametrize("design", ["lhs", "sobol"])
def test_constants_take_no_dimension_of_the_design(design: Any) -> None:
    varied = {"a": UniformSampler(low=0, high=1), "b": LogUniformSampler(low=1, high=10)}
    pinned = {"a": varied["a"], "c": ConstantSampler(value="x"), "b": varied["b"]}
    rows = factor_values(varied, design, 0, "j", 16)
    with_constant = factor_values(pinned, design, 0, "j", 16)
    assert [{"a": r["a"], "b": r["b"]} for r in with_constant] == rows
    assert all(r["c"] == "x" for r in with_constant)


def test_sobol_with_a_power_of_two_is_balanced_and_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = factor_values(_samplers(), "sobol", 5, "job", 64)
    assert caught == [] and caplog.records == []
    assert _in_bounds(rows)
    # Every one-dimensional projection of 2^m scrambled Sobol' points is stratified.
    assert _strata(rows, 64) == {key: list(range(64)) for key in ("mass", "friction", "noise")}


def test_sobol_with_another_count_logs_one_warning_and_emits_none(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = factor_values(_samplers(), "sobol", 5, "job", 50)
    assert caught == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "job 'job': sobol design with 50 episodes; Sobol' points are evenly balanced only for a "
            "power-of-2 count, so coverage is somewhat uneven (use 32 or 64 episodes for the full benefit)",
        )
    ]
    assert len(rows) == 50 and _in_bounds(rows)
    # The first 50 points are the first 50 of the 64-point design.
    assert rows == factor_values(_samplers(), "sobol", 5, "job", 64)[:50]


def test_lhs_and_sobol_differ() -> None:
    lhs = factor_values(_samplers(), "lhs", 5, "job", 8)
    sobol = factor_values(_samplers(), "sobol", 5, "job", 8)
    assert [r["mass"] for r in lhs] != [r["mass"] for r in sobol]
