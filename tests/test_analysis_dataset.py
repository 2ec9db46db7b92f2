"""Checks on user data: every bad or thin input gives a clear InputError naming
the file and field, or a logged warning kept in the notes."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest

from trialrun.analysis.dataset import available_outcomes, prepare_dataset
from trialrun.analysis.synthetic import make_sweep
from trialrun.errors import InputError
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec

SRC = "runs/x/episodes.jsonl"
SPEC = "factors.yaml"


def _records(n: int = 60, seed: int = 0) -> list[EpisodeRecord]:
    return make_sweep(n=n, seed=seed).records


def _specs() -> list[FactorSpec]:
    return make_sweep(n=1).specs


def _edit(records: list[EpisodeRecord], k: int, **changes: object) -> list[EpisodeRecord]:
    out = list(records)
    r = out[k]
    factors = dict(r.factors)
    outcome = dict(r.outcome)
    for key, value in changes.items():
        if key.startswith("o_"):
            outcome[key[2:]] = value  # type: ignore[assignment]
        elif value is ...:
            factors.pop(key)
        else:
            factors[key] = value  # type: ignore[assignment]
    out[k] = r.model_copy(update={"factors": factors, "outcome": outcome})
    return out


def prep(records, specs=None, outcome="success"):  # type: ignore[no-untyped-def]
    return prepare_dataset(records, specs or _specs(), outcome, episodes_source=SRC, spec_source=SPEC)


def test_clean_data() -> None:
    ds = prep(_records())
    assert (ds.kind, ds.n, ds.n_excluded, ds.notes) == ("binary", 60, 0, [])
    assert [c.name for c in ds.active] == [s.name for s in _specs()]
    mass = ds.columns[0]
    assert mass.u is not None and mass.u.min() >= 0 and mass.u.max() <= 1
    assert mass.to_unit(np.array([0.5, 2.0])).tolist() == [0.0, 1.0]
    friction = ds.columns[1]
    assert friction.to_unit(np.array([0.1])) == pytest.approx([0.5])
    assert friction.from_unit(np.array([0.5])) == pytest.approx([0.1])
    assert ds.columns[2].levels == ["cube", "can", "mug"]


def test_unknown_outcome_lists_available_ones() -> None:
    with pytest.raises(InputError) as exc:
        prep(_records(), outcome="sucess")
    assert str(exc.value) == (
        f"{SRC}: outcome 'sucess' is not in the records; available outcomes: length, return, "
        "success, success_at_end, terminated, time_to_success, truncated"
    )
    assert available_outcomes(_records(3))[0] == "length"


def test_no_episodes_and_no_factors() -> None:
    with pytest.raises(InputError, match=f"^{SRC}: no episodes to analyse$"):
        prep([])
    with pytest.raises(InputError, match=f"^{SPEC}: no factors declared; the analysis needs"):
        prepare_dataset(_records(), [], "success", episodes_source=SRC, spec_source=SPEC)


def test_declared_factor_missing_from_records() -> None:
    specs = [*_specs(), FactorSpec(name="gravity", kind="continuous", low=1, high=20)]
    with pytest.raises(InputError) as exc:
        prep(_records(), specs)
    assert str(exc.value) == (
        f"{SPEC}: factor(s) 'gravity' declared but absent from every record in {SRC}; the "
        "records have factors: background, camera_height, friction, light, mass, object"
    )


def test_factor_in_records_but_not_declared_is_ignored_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        ds = prep(_records(), _specs()[:2])
    msg = (
        "factor(s) 'background', 'camera_height', 'light', 'object' are in the records but not "
        f"declared in {SPEC}; they are ignored"
    )
    assert ds.notes == [msg]
    assert msg in caplog.text
    assert [c.name for c in ds.columns] == ["mass", "friction"]


def test_factor_missing_from_some_records_drops_them() -> None:
    ds = prep(_edit(_records(), 3, mass=...))
    assert ds.n == 59 and ds.n_excluded == 1
    assert ds.notes == ["1 episode(s) have no value for factor 'mass' and are left out"]


def test_nan_factor_and_outcome_values_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    recs = _edit(_records(), 0, mass=math.nan)
    recs = _edit(recs, 1, o_return=math.inf)
    with caplog.at_level(logging.WARNING):
        ds = prep(recs, outcome="return")
    assert ds.n == 58 and ds.n_excluded == 2
    assert ds.notes == [
        "1 episode(s) have a NaN or infinite 'return' and are left out",
        "1 episode(s) have a NaN or infinite 'mass' and are left out",
    ]
    assert "NaN or infinite 'mass'" in caplog.text


def test_null_outcome_values_are_left_out_with_reason() -> None:
    ds = prep(_records(), outcome="time_to_success")
    failures = sum(not r.outcome["success"] for r in _records())
    assert ds.kind == "continuous" and ds.n == 60 - failures
    assert ds.notes == [
        f"{failures} episode(s) have no value (null) for outcome 'time_to_success' and are left "
        "out (it is only defined for successful episodes)"
    ]


def test_length_is_analysed_among_successes_only() -> None:
    recs = _records()
    ds = prep(recs, outcome="length")
    successes = sum(bool(r.outcome["success"]) for r in recs)
    assert ds.n == successes
    assert ds.notes == [
        "outcome 'length' is capped at the time limit for failures, so it is analysed among "
        f"successful episodes only ({60 - successes} failed episode(s) left out)"
    ]


def test_all_null_outcome() -> None:
    recs = [r.model_copy(update={"outcome": {**r.outcome, "q": None}}) for r in _records(5)]
    with pytest.raises(InputError, match=r"outcome 'q' has no value .* in any record"):
        prep(recs, outcome="q")


def test_mixed_outcome_types() -> None:
    recs = _edit(_records(), 0, o_success=3.0)
    with pytest.raises(InputError) as exc:
        prep(recs)
    assert str(exc.value) == (
        f"{SRC}: field 'outcome.success' mixes booleans and numbers; an outcome must be all "
        "booleans (binary) or all numbers (continuous)"
    )


def test_string_in_continuous_factor() -> None:
    with pytest.raises(InputError) as exc:
        prep(_edit(_records(), 4, mass="heavy"))
    assert str(exc.value) == (
        f"{SRC}: field 'factors.mass' of episode 4 is 'heavy', but {SPEC} declares 'mass' "
        "continuous (numbers only); declare it categorical instead"
    )


def test_value_outside_declared_range() -> None:
    with pytest.raises(InputError) as exc:
        prep(_edit(_records(), 4, mass=3.5))
    assert str(exc.value).startswith(
        f"{SRC}: 1 value(s) of factor 'mass' lie outside the range [0.5, 2] declared in {SPEC} (observed 0.5"
    )
    assert str(exc.value).endswith("to 3.5); widen field 'factors.mass' range")


def test_rounding_at_the_bound_is_tolerated() -> None:
    ds = prep(_edit(_records(), 4, mass=2.0 * (1 + 1e-12)))
    assert ds.n == 60


def test_unknown_level() -> None:
    with pytest.raises(InputError) as exc:
        prep(_edit(_records(), 2, object="bottle"))
    assert str(exc.value) == (
        f"{SRC}: factor 'object' has value(s) 'bottle' that {SPEC} does not declare; allowed "
        "(field 'factors.object' choices): 'cube', 'can', 'mug'"
    )


def test_constant_factor_is_kept_but_inactive(caplog: pytest.LogCaptureFixture) -> None:
    recs = [r.model_copy(update={"factors": {**r.factors, "light": 100.0}}) for r in _records()]
    with caplog.at_level(logging.WARNING):
        ds = prep(recs)
    light = next(c for c in ds.columns if c.name == "light")
    assert light.constant and light not in ds.active
    msg = (
        "factor 'light' is constant in the records (always 100.0); it cannot be analysed and is "
        "left out of the model"
    )
    assert msg in ds.notes and msg in caplog.text


def test_absent_declared_level_is_noted() -> None:
    recs = [r for r in _records(100) if r.factors["object"] != "mug"]
    ds = prep(recs)
    assert ds.columns[2].levels == ["cube", "can"]
    assert ds.notes == [
        "factor 'object': declared level(s) 'mug' never occur in the records and are not analysed"
    ]


def test_spec_without_range_or_levels_uses_data_with_note() -> None:
    specs = [
        FactorSpec(name="mass", kind="continuous"),
        FactorSpec(name="object", kind="categorical"),
    ]
    ds = prep(_records(), specs)
    assert ds.columns[0].spec.low == min(r.factors["mass"] for r in _records())
    assert ds.columns[1].levels == ["can", "cube", "mug"]
    assert ds.notes[1].startswith("factor 'mass' has no declared range in factors.yaml; using")
    assert (
        ds.notes[2]
        == "factor 'object' has no declared levels in factors.yaml; using the observed 'can', 'cube', 'mug'"
    )


def test_duplicate_episodes_keep_first() -> None:
    recs = _records(10)
    ds = prep([*recs, recs[0]])
    assert ds.n == 10
    assert ds.notes == [f"{SRC}: 1 duplicate (job, episode) records ignored (the first of each was kept)"]


def test_log_scale_with_nonpositive_range() -> None:
    specs = [FactorSpec(name="light", kind="continuous", low=0, high=2000, scale="log")]
    with pytest.raises(
        InputError, match=re.escape("field 'factors.light': scale 'log' needs a range above 0")
    ):
        prep(_records(), specs)
