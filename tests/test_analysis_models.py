"""Pydantic models: the factors YAML schema and the sensitivity.json schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trialrun.analysis.models import (
    Bin,
    FactorResult,
    FactorsFile,
    PartialDependence,
    SensitivityResult,
    level_key,
)


def test_factors_file_to_specs() -> None:
    f = FactorsFile.model_validate(
        {
            "factors": {
                "light_intensity": {"type": "continuous", "range": [0.0, 2000.0]},
                "friction": {"type": "continuous", "range": [0.01, 1], "scale": "log"},
                "pick_up_object": {"type": "categorical", "choices": ["cube", "can"]},
            }
        }
    )
    specs = f.to_specs()
    assert [(s.name, s.kind, s.low, s.high, s.scale, s.values) for s in specs] == [
        ("light_intensity", "continuous", 0.0, 2000.0, "linear", None),
        ("friction", "continuous", 0.01, 1.0, "log", None),
        ("pick_up_object", "categorical", None, None, "linear", ["cube", "can"]),
    ]


@pytest.mark.parametrize(
    ("decl", "fragment"),
    [
        ({"type": "continuous", "range": [0, 1], "colour": 1}, "Extra inputs are not permitted"),
        ({"type": "continuous", "range": [1, 0]}, "low < high"),
        ({"type": "continuous", "range": [0, 1], "scale": "log"}, "range above 0"),
        ({"type": "continuous", "range": [0, 1], "scale": "sqrt"}, "'linear' or 'log'"),
        ({"type": "categorical", "choices": []}, "at least 1 item"),
        ({"type": "categorical", "choices": ["a", "a"]}, "distinct"),
        ({"type": "ordinal"}, "does not match any of the expected tags"),
    ],
)
def test_factors_file_rejects(decl: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        FactorsFile.model_validate({"factors": {"x": decl}})


def test_level_key_matches_numbers_but_not_across_types() -> None:
    assert level_key(1) == level_key(1.0)
    assert level_key(True) != level_key(1)
    assert level_key("1") != level_key(1)
    assert level_key(0.5) == level_key(0.5)


def _result() -> SensitivityResult:
    return SensitivityResult(
        source="episodes.jsonl",
        outcome="success",
        outcome_kind="binary",
        n=10,
        base_rate=0.5,
        alpha=0.05,
        seed=0,
        factors=[
            FactorResult(
                name="m",
                kind="continuous",
                low=0.0,
                high=1.0,
                rank=2,
                p_value=0.5,
                p_adjusted=0.9,
                bins=[Bin(low=0.0, high=1.0, n=10, successes=5, rate=0.5, ci_low=0.2, ci_high=0.8)],
                partial_dependence=PartialDependence(
                    x=[0.0, 1.0], y=[0.5, 0.5], low=[0.4, 0.4], high=[0.6, 0.6]
                ),
                effect=0.0,
                effect_ci=(0.0, 0.1),
            ),
            FactorResult(name="c", kind="categorical", rank=1, significant=True),
        ],
    )


def test_sensitivity_result_round_trip_and_helpers() -> None:
    res = _result()
    data = res.model_dump(mode="json", by_alias=True)
    assert data["schema"] == 1
    assert data["factors"][0]["effect_ci"] == [0.0, 0.1]
    back = SensitivityResult.model_validate(data)
    assert back == res
    assert res.factor("m").p_value == 0.5
    assert res.significant_factors() == ["c"]
    with pytest.raises(KeyError):
        res.factor("zzz")


def test_sensitivity_result_rejects_unknown_fields() -> None:
    data = _result().model_dump(mode="json", by_alias=True)
    data["factors"][0]["colour"] = "red"
    with pytest.raises(ValidationError, match="colour"):
        SensitivityResult.model_validate(data)
