"""The gradient-boosted cross-check and its shuffled-label noise floor."""

from __future__ import annotations

import pytest

from trialrun.analysis.dataset import prepare_dataset
from trialrun.analysis.importance import permutation_importance_check
from trialrun.analysis.synthetic import make_sweep


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    ds = prepare_dataset(*make_sweep(n=1000, seed=0).as_inputs(), "success")
    return ds, *permutation_importance_check(ds, seed=0)


def test_planted_factors_beat_every_shuffle_and_irrelevant_ones_do_not(result) -> None:  # type: ignore[no-untyped-def]
    _, scores, _ = result
    assert {name: s.null_p for name, s in scores.items() if s.null_p == 0.05} == {
        "mass": 0.05,
        "friction": 0.05,
        "object": 0.05,
    }
    for name in ("light", "camera_height", "background"):
        assert scores[name].null_p > 0.1
        assert scores[name].importance < min(scores[p].importance for p in ("mass", "friction"))


def test_info(result) -> None:  # type: ignore[no-untyped-def]
    _, _, info = result
    assert info.model == "HistGradientBoostingClassifier"
    assert (info.scoring, info.n_train, info.n_test, info.n_null, info.n_repeats) == (
        "neg_log_loss",
        700,
        300,
        19,
        3,
    )
    assert info.holdout_score > 0.6  # accuracy above the 0.55 base rate


def test_seeded_and_reproducible() -> None:
    ds = prepare_dataset(*make_sweep(n=200, seed=1).as_inputs(), "success")
    a, _ = permutation_importance_check(ds, seed=3, n_null=2)
    b, _ = permutation_importance_check(ds, seed=3, n_null=2)
    assert a == b
    assert {s.null_p for s in a.values()} <= {1 / 3, 2 / 3, 1.0}


def test_continuous_outcome_and_subsampling() -> None:
    ds = prepare_dataset(*make_sweep(n=500, seed=2).as_inputs(), "return")
    scores, info = permutation_importance_check(ds, seed=0, n_null=2, max_rows=300)
    assert info is not None and info.model == "HistGradientBoostingRegressor"
    assert info.scoring == "neg_mean_squared_error" and info.n_train + info.n_test == 300
    assert ds.notes == [
        "gradient-boosted cross-check used a random 300 of the 500 episodes (to bound its time; "
        "the GLM and the bins use all of them)"
    ]
    assert scores["mass"].importance > scores["light"].importance


def test_thin_data_is_skipped_with_a_note() -> None:
    ds = prepare_dataset(*make_sweep(n=50, seed=0).as_inputs(), "success")
    assert permutation_importance_check(ds) == ({}, None)
    assert ds.notes == [
        "gradient-boosted cross-check skipped: it needs at least 60 episodes and 10 of the rarer outcome"
    ]
