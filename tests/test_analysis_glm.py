"""The additive spline GLM: bases, fits (checked against statsmodels), tests
that find planted effects and only those, separation, interactions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import statsmodels.api as sm

from trialrun.analysis.dataset import Dataset, prepare_dataset
from trialrun.analysis.glm import (
    DEFAULT_SPLINE_DF,
    Design,
    Term,
    analyze_glm,
    choose_spline_df,
    fit_glm,
    spline_basis,
)
from trialrun.analysis.glm_fit import compare_fits
from trialrun.analysis.glm_interactions import (
    BOOTSTRAP_DRAWS,
    _bootstrap_p,
    _f_tests,
    _score_tests,
    min_p_adjust,
)
from trialrun.analysis.synthetic import make_sweep
from trialrun.runfiles.schema import EpisodeRecord

PLANTED = {"mass", "friction", "object"}


def _ds(n: int, seed: int, outcome: str = "success", **kw: float):  # type: ignore[no-untyped-def]
    return prepare_dataset(*make_sweep(n=n, seed=seed, **kw).as_inputs(), outcome)


def test_spline_basis_shapes_and_partition_of_unity() -> None:
    u = np.linspace(0, 1, 11)
    for df in (1, 2, 3, 4, 6):
        b = spline_basis(u, df)
        assert b.shape == (11, df)
        assert np.all(b >= -1e-12) and np.all(b.sum(axis=1) <= 1 + 1e-12)
    assert spline_basis(u, 1)[:, 0] == pytest.approx(u)  # df=1 is linear
    # values outside [0, 1] are clamped to the boundary, not extrapolated
    assert spline_basis(np.array([-0.5, 1.5]), 4) == pytest.approx(spline_basis(np.array([0.0, 1.0]), 4))


@pytest.mark.parametrize(("outcome", "family"), [("success", "binomial"), ("return", "gaussian")])
def test_fit_matches_statsmodels(outcome: str, family: str) -> None:
    ds = _ds(500, 3, outcome)
    X = Design.build([Term(columns=(c,), df=4).fit_keep() for c in ds.active]).X
    ours = fit_glm(ds.y, X, family)
    fam = sm.families.Binomial() if family == "binomial" else sm.families.Gaussian()
    ref = sm.GLM(ds.y, X, family=fam).fit()
    assert ours.params == pytest.approx(np.asarray(ref.params), abs=1e-7)
    assert np.sqrt(np.diag(ours.cov)) == pytest.approx(np.asarray(ref.bse), rel=1e-6)
    assert ours.deviance == pytest.approx(ref.deviance, rel=1e-9)
    assert ours.rank == X.shape[1] and ours.converged and not ours.separated
    if family == "binomial":
        assert ours.llf == pytest.approx(ref.llf, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_factors_found_and_irrelevant_ones_not(seed: int) -> None:
    res = analyze_glm(_ds(800, seed), seed=seed, interactions=False)
    assert res is not None
    significant = {name for name, f in res.factors.items() if f.significant}
    assert significant == PLANTED
    assert res.info.spline_df == DEFAULT_SPLINE_DF and not res.info.penalized
    # the non-monotone factor's curve peaks inside the range, not at an end
    pd_ = res.factors["friction"].partial_dependence
    assert pd_ is not None
    peak = int(np.argmax(pd_.y))
    assert 0 < peak < len(pd_.y) - 1
    # the monotone one decreases end to end
    mass = res.factors["mass"].partial_dependence
    assert mass is not None and mass.y[0] - mass.y[-1] > 0.25


@pytest.mark.parametrize("seed", [101, 102])
def test_null_dataset_has_no_significant_factor(seed: int) -> None:
    res = analyze_glm(_ds(600, seed, effect=0.0), seed=0)
    assert res is not None
    assert [n for n, f in res.factors.items() if f.significant] == []
    assert not any(i.interaction.significant for i in res.interactions)


def test_holm_adjustment_and_effect_bands() -> None:
    res = analyze_glm(_ds(600, 4), seed=0, interactions=False)
    assert res is not None
    ps = sorted((f.p_value, f.p_adjusted) for f in res.factors.values())
    k = len(ps)
    assert ps[0][1] == pytest.approx(min(1.0, k * ps[0][0]))
    assert all(adj >= p for p, adj in ps)
    for f in res.factors.values():
        pd_ = f.partial_dependence
        assert pd_ is not None
        assert np.all(np.array(pd_.low) <= np.array(pd_.y) + 1e-12)
        assert np.all(np.array(pd_.y) <= np.array(pd_.high) + 1e-12)
        assert f.effect_ci[0] <= f.effect_ci[1]
    obj = res.factors["object"].partial_dependence
    assert obj is not None and obj.x == ["cube", "can", "mug"]
    assert obj.y[1] < obj.y[0] and obj.y[1] < obj.y[2]
    assert len(res.factors["mass"].partial_dependence.x) == 41  # type: ignore[union-attr]


def test_gaussian_outcome_uses_f_test() -> None:
    res = analyze_glm(_ds(400, 5, "return"), seed=0, interactions=False)
    assert res is not None
    assert (res.info.family, res.info.test) == ("gaussian", "F")
    assert res.factors["mass"].significant and not res.factors["background"].significant


def _separated(records: list[EpisodeRecord], rule) -> list[EpisodeRecord]:  # type: ignore[no-untyped-def]
    return [r.model_copy(update={"outcome": {**r.outcome, "success": bool(rule(r))}}) for r in records]


def test_complete_separation_falls_back_to_ridge() -> None:
    sweep = make_sweep(n=300, seed=6)
    recs = _separated(sweep.records, lambda r: r.factors["mass"] < 1.2)
    ds = prepare_dataset(recs, sweep.specs, "success")
    res = analyze_glm(ds, seed=0)
    assert res is not None and res.info.penalized and res.info.ridge == 1.0
    assert res.factors["mass"].significant
    assert {n for n, f in res.factors.items() if f.significant} == {"mass"}
    assert ds.notes[-1].startswith("the logistic model separates the data")
    assert all(np.isfinite(res.fit.params))


def test_quasi_separation_by_one_level_falls_back_to_ridge() -> None:
    sweep = make_sweep(n=400, seed=7)
    recs = _separated(sweep.records, lambda r: r.outcome["success"] and r.factors["object"] != "can")
    ds = prepare_dataset(recs, sweep.specs, "success")
    res = analyze_glm(ds, seed=0)
    assert res is not None and res.info.penalized
    obj = res.factors["object"]
    assert obj.significant and obj.partial_dependence is not None
    assert obj.partial_dependence.high[1] < 0.15  # 'can' never succeeds: a tight band near 0


def test_interaction_screen_finds_the_planted_pair() -> None:
    ds = _ds(1500, 8, effect=0.0, interaction=1.0)
    res = analyze_glm(ds, seed=0)
    assert res is not None
    top = res.interactions[0].interaction
    assert top.factors == ("wind", "tilt") and top.significant and top.df == 9
    assert [i.interaction.factors for i in res.interactions if i.interaction.significant] == [
        ("wind", "tilt")
    ]
    assert len(res.interactions) == 28  # all pairs of 8 factors
    # a pure interaction has no main effect: neither factor alone is significant
    assert not res.factors["wind"].significant and not res.factors["tilt"].significant
    # only the top pair's model is fitted (it is the one drawn)
    assert res.interactions[0].fit is not None and res.interactions[0].design is not None
    assert all(i.fit is None for i in res.interactions[1:])


def _pair_blocks(ds: Dataset, pairs: list[tuple[str, str]]) -> tuple[Design, np.ndarray, list[slice]]:
    terms = [Term(columns=(c,), df=4).fit_keep() for c in ds.active]
    by = {t.name: t for t in terms}
    pair_terms = [Term(columns=(by[a].columns[0], by[b].columns[0]), df=3).fit_keep() for a, b in pairs]
    parts = [t.basis(t.data_values()) for t in pair_terms]
    bounds = np.cumsum([0] + [z.shape[1] for z in parts])
    blocks = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    return Design.build(terms), np.hstack(parts), blocks


def test_interaction_score_test_df_and_statistic() -> None:
    """A pair's df is the number of its columns that add to the additive
    design (aliased ones are not counted), and its statistic is the score
    test's (statsmodels' ``score_test`` to 1e-6)."""
    ds = _ds(500, 3)
    pairs = [("mass", "friction"), ("mass", "object"), ("object", "background")]
    design, Z, blocks = _pair_blocks(ds, pairs)
    full = fit_glm(ds.y, design.X, "binomial")
    stat, df, p = _score_tests(ds.y, design.X, Z, full.params, blocks, None)
    # 3 x 3 spline columns, 3 x (3-1) spline x level, (3-1) x (2-1) level x level
    assert [Z[:, s].shape[1] for s in blocks] == list(df) == [9, 6, 2]
    ref = sm.GLM(ds.y, design.X, family=sm.families.Binomial()).fit()
    for k, s in enumerate(blocks):
        st = ref.score_test(exog_extra=Z[:, s])
        assert stat[k] == pytest.approx(float(st[0][0]), rel=1e-6)
        assert p[k] == pytest.approx(float(st[1][0]), rel=1e-6)
    # a copy of a main-effect column and a sum of two pair columns add nothing:
    # the block's df stays 9, not 11, and its statistic is unchanged
    extra = np.column_stack([Z[:, blocks[0]], design.X[:, 1], Z[:, 0] + Z[:, 1]])
    a_stat, a_df, _ = _score_tests(ds.y, design.X, extra, full.params, [slice(0, 11)], None)
    assert list(a_df) == [9]
    assert a_stat[0] == pytest.approx(stat[0], rel=1e-6)


def test_interaction_f_test_matches_refit() -> None:
    """Gaussian outcome: the pair's F test (from the additive fit alone) is
    the exact F test of the refitted model with the pair's term."""
    ds = _ds(400, 5, "return")
    pairs = [("mass", "friction"), ("light", "object")]
    design, Z, blocks = _pair_blocks(ds, pairs)
    full = fit_glm(ds.y, design.X, "gaussian")
    stat, df, p = _f_tests(ds.y, design.X, Z, full, blocks, ds.n)
    for k, s in enumerate(blocks):
        aug = fit_glm(ds.y, np.hstack([design.X, Z[:, s]]), "gaussian")
        ref_stat, ref_df, ref_p = compare_fits(aug, full, ds.n, "gaussian")
        assert (df[k], stat[k], p[k]) == (
            ref_df,
            pytest.approx(ref_stat, rel=1e-8),
            pytest.approx(ref_p, rel=1e-6),
        )


def test_min_p_adjust_is_the_share_of_draws_with_a_smaller_minimum() -> None:
    p_boot = np.array([[0.5, 0.01], [0.3, 0.0005], [0.9, 0.4], [0.02, 0.7]])  # minima .01 .0005 .4 .02
    adjusted = min_p_adjust(np.array([0.001, 0.015, 0.3, 0.0001]), p_boot)
    assert adjusted == pytest.approx([2 / 5, 3 / 5, 4 / 5, 1 / 5])
    assert min_p_adjust(np.array([0.5]), np.array([[0.9], [0.8]])) == pytest.approx([0.5])  # never below p


def test_interaction_screen_adjusts_over_all_pairs_by_bootstrap() -> None:
    """Binomial outcome: the adjusted p-values of the screen are the min-p
    bootstrap (seeded) over ALL screened pairs (15 for 6 factors), multiples
    of 1/200, never below the raw p-values and ordered like them."""
    ds = _ds(400, 10_000, effect=0.0)  # the benchmark's first null dataset
    res = analyze_glm(ds, seed=0)
    assert res is not None
    inter = {i.interaction.factors: i.interaction for i in res.interactions}
    assert len(inter) == 15
    pairs = list(itertools.combinations([c.name for c in ds.active], 2))
    design, Z, blocks = _pair_blocks(ds, pairs)
    _, df, p = _score_tests(ds.y, design.X, Z, res.fit.params, blocks, None)
    expected = min_p_adjust(p, _bootstrap_p(design.X, Z, res.fit, blocks, None, seed=0))
    for k, pair in enumerate(pairs):
        assert (inter[pair].df, inter[pair].p_value) == (df[k], pytest.approx(p[k], rel=1e-9))
        assert inter[pair].p_adjusted == pytest.approx(expected[k], rel=1e-12)
    adj = np.array([i.interaction.p_adjusted for i in res.interactions])
    assert np.allclose(adj * (BOOTSTRAP_DRAWS + 1), np.round(adj * (BOOTSTRAP_DRAWS + 1)))
    assert all(i.p_adjusted >= i.p_value for i in inter.values())
    assert list(adj) == sorted(adj)  # sorted by raw p: the min-p adjustment is monotone
    # the top pair's raw p (0.0034) is about what Holm over 15 pairs lets
    # through (0.05 / 15); its bootstrap-adjusted p is not
    top = res.interactions[0].interaction
    assert top.p_value < 0.05 / 15 * 1.05 and not top.significant


def test_choose_spline_df_reduces_with_few_events() -> None:
    ds = _ds(800, 0)
    assert choose_spline_df(ds) == (4, None)
    assert choose_spline_df(ds, requested=2) == (2, None)
    thin = _ds(80, 0)
    df, note = choose_spline_df(thin)
    assert df == 2
    assert note is not None and note.startswith("only ")
    assert "splines reduced to 2 degrees of freedom" in note


def test_no_model_for_thin_or_constant_data() -> None:
    ds = _ds(20, 0)
    assert analyze_glm(ds) is None
    assert ds.notes[-1] == (
        "only 20 usable episodes (fewer than 30): no model is fitted; only the binned rates are shown"
    )
    sweep = make_sweep(n=100, seed=0)
    recs = _separated(sweep.records, lambda r: True)
    ds = prepare_dataset(recs, sweep.specs, "success")
    assert analyze_glm(ds) is None
    assert ds.notes[-1] == (
        "every episode succeeded: nothing to explain, so no model is fitted; only binned rates are shown"
    )
