"""The additive GLM: which factors matter, by how much, and how.

A logistic (binary outcome) or Gaussian (continuous outcome) GLM with one
additive term per factor: a B-spline for a continuous factor, level dummies for
a categorical one. Why this model:

* Splines catch non-monotone effects (a policy that fails at both low and
  high friction) that a linear term would call "no effect".
* The spline's knots and boundary come from the *declared* range (in log space
  for log-scale factors), not from the sample, so the model is the same
  whatever values a seed happened to draw, and the curve covers the range the
  user asked about.
* A drop-one likelihood-ratio test per factor, Holm-adjusted across factors,
  gives a p-value per factor whose false-positive rate is controlled
  (``benchmarks/sensitivity_power.py`` measures it).

Perfect or quasi-complete separation (a region where the policy always fails)
would send logistic coefficients to infinity; it is detected and every model
is then refitted with a small ridge penalty, and the JSON says so.

The pieces: :mod:`~trialrun.analysis.glm_design` (spline bases, terms, design
matrices), :mod:`~trialrun.analysis.glm_fit` (fitting, nested-model tests) and
:mod:`~trialrun.analysis.glm_interactions` (the pairwise screen); this module
chooses the model, tests each factor and draws its partial dependence.

Example:
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> from trialrun.analysis.dataset import prepare_dataset
    >>> sweep = make_sweep(n=600, seed=1)
    >>> res = analyze_glm(prepare_dataset(sweep.records, sweep.specs, "success"), seed=0)
    >>> res.factors["mass"].significant
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from statsmodels.stats.multitest import multipletests
from threadpoolctl import threadpool_limits

from trialrun.analysis.dataset import Dataset
from trialrun.analysis.glm_design import Design, Term
from trialrun.analysis.glm_design import spline_basis as spline_basis
from trialrun.analysis.glm_fit import SEPARATION_RIDGE, Fit, compare_fits, fit_glm, link_inverse
from trialrun.analysis.glm_interactions import InteractionFit, screen_interactions
from trialrun.analysis.models import ModelInfo, PartialDependence

logger = logging.getLogger(__name__)

#: Fewer usable episodes than this and no model is fitted (binned view only).
MIN_EPISODES_MODEL = 30
#: Spline degrees of freedom per continuous factor when the data allow it.
DEFAULT_SPLINE_DF = 4
#: Fewest spline degrees of freedom used when events are scarce (2 still bends).
MIN_SPLINE_DF = 2
#: Events (minority-class count) per model parameter below which df is reduced.
EVENTS_PER_PARAMETER = 5.0
#: Grid points of a continuous partial-dependence curve.
PD_GRID = 41
#: Coefficient draws for the partial-dependence bands and the effect interval.
PD_DRAWS = 200
#: Episodes over which partial dependence is averaged (a seeded subsample).
PD_ROWS = 300


@dataclass
class FactorGlm:
    """The GLM's verdict on one factor."""

    df: int
    statistic: float
    p_value: float
    p_adjusted: float = 1.0
    significant: bool = False
    effect: float = 0.0
    effect_ci: tuple[float, float] = (0.0, 0.0)
    partial_dependence: PartialDependence | None = None


@dataclass
class GlmAnalysis:
    """Everything :func:`analyze_glm` found."""

    info: ModelInfo
    factors: dict[str, FactorGlm]
    interactions: list[InteractionFit]
    design: Design
    fit: Fit
    ridge: float | None
    rows: np.ndarray
    notes: list[str] = field(default_factory=list)


def _n_params(ds: Dataset, df: int) -> int:
    return sum(df if c.kind == "continuous" else len(c.levels) - 1 for c in ds.active)


def choose_spline_df(ds: Dataset, requested: int | None = None) -> tuple[int, str | None]:
    """Spline df: ``requested`` if given, else the largest of 4, 3, 2 that
    leaves at least ``EVENTS_PER_PARAMETER`` events (the rarer outcome class;
    all episodes for a continuous outcome) per parameter."""
    if requested is not None:
        return requested, None
    events = ds.n
    if ds.kind == "binary":
        s = int(ds.y.sum())
        events = min(s, ds.n - s)
    for df in range(DEFAULT_SPLINE_DF, MIN_SPLINE_DF - 1, -1):
        if events >= EVENTS_PER_PARAMETER * max(_n_params(ds, df), 1):
            break
    note = None
    if df < DEFAULT_SPLINE_DF:
        note = (
            f"only {events} events for {_n_params(ds, DEFAULT_SPLINE_DF)} spline parameters: "
            f"splines reduced to {df} degrees of freedom per continuous factor"
        )
        if events < EVENTS_PER_PARAMETER * max(_n_params(ds, df), 1):
            note += "; still few events per parameter, so p-values are approximate"
    return df, note


def analyze_glm(
    ds: Dataset,
    alpha: float = 0.05,
    seed: int = 0,
    spline_df: int | None = None,
    interactions: bool = True,
) -> GlmAnalysis | None:
    """Fit the additive GLM, test each factor, draw partial dependence and screen
    pairwise interactions. Returns ``None`` (with the reason in ``ds.notes``) when
    no model can be fitted: too few episodes, a constant outcome or no factor
    that varies.

    Runs with one BLAS thread: the systems are small, and on a busy 2-core
    machine extra threads only contend (several times slower)."""
    with threadpool_limits(limits=1):
        return _analyze_glm(ds, alpha, seed, spline_df, interactions)


def _analyze_glm(
    ds: Dataset, alpha: float, seed: int, spline_df: int | None, interactions: bool
) -> GlmAnalysis | None:
    if ds.n < MIN_EPISODES_MODEL:
        ds.note(
            f"only {ds.n} usable episodes (fewer than {MIN_EPISODES_MODEL}): no model is "
            "fitted; only the binned rates are shown"
        )
        return None
    if not ds.outcome_varies:
        what = (
            ("every episode succeeded" if ds.y[0] == 1 else "every episode failed")
            if ds.kind == "binary"
            else f"'{ds.outcome}' is the same in every episode"
        )
        ds.note(f"{what}: nothing to explain, so no model is fitted; only binned rates are shown")
        return None
    if not ds.active:
        ds.note("no factor varies in the records: no model is fitted")
        return None

    family: Literal["binomial", "gaussian"] = "binomial" if ds.kind == "binary" else "gaussian"
    df, df_note = choose_spline_df(ds, spline_df)
    notes: list[str] = []
    if df_note:
        ds.note(df_note)
        notes.append(df_note)
    terms = [Term(columns=(c,), df=df).fit_keep() for c in ds.active]
    design = Design.build(terms)
    y = ds.y

    ridge: float | None = None
    full = fit_glm(y, design.X, family)
    if full.separated:
        ridge = SEPARATION_RIDGE
        msg = (
            "the logistic model separates the data (some factor region always succeeds or "
            f"always fails): all models were refitted with a ridge penalty ({ridge:g}) on the "
            "coefficients, so p-values and bands are approximate"
        )
        ds.note(msg)
        full = fit_glm(y, design.X, family, ridge=ridge)

    tests: dict[str, FactorGlm] = {}
    for t in terms:
        reduced = fit_glm(y, design.without(t.name), family, ridge=ridge)
        stat, tdf, p = compare_fits(full, reduced, ds.n, family)
        tests[t.name] = FactorGlm(df=tdf, statistic=stat, p_value=p)
    pvals = np.array([tests[t.name].p_value for t in terms])
    adjusted = multipletests(pvals, method="holm")[1]
    for t, p_adj in zip(terms, adjusted, strict=True):
        tests[t.name].p_adjusted = float(p_adj)
        tests[t.name].significant = bool(p_adj < alpha)

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x61]))
    rows = np.sort(rng.choice(ds.n, size=min(ds.n, PD_ROWS), replace=False))
    draws = _draw_params(full, rng)
    for t in terms:
        pd_, effect, effect_ci = _partial_dependence(t, design, full, draws, rows, family)
        tests[t.name].partial_dependence = pd_
        tests[t.name].effect = effect
        tests[t.name].effect_ci = effect_ci

    screened: list[InteractionFit] = []
    if interactions and len(terms) >= 2:
        strength = {name: test.statistic for name, test in tests.items()}
        screened = screen_interactions(ds, terms, design, full, strength, family, ridge, alpha, seed=seed)

    info = ModelInfo(
        family=family,
        test="likelihood-ratio" if family == "binomial" else "F",
        spline_df=df,
        n_params=design.X.shape[1],
        penalized=ridge is not None,
        ridge=ridge,
        converged=full.converged,
        deviance=float(full.deviance),
        null_deviance=_null_deviance(y, family),
    )
    return GlmAnalysis(
        info=info,
        factors=tests,
        interactions=screened,
        design=design,
        fit=full,
        ridge=ridge,
        rows=rows,
        notes=notes,
    )


def _null_deviance(y: np.ndarray, family: str) -> float:
    if family == "gaussian":
        return float(np.sum((y - y.mean()) ** 2))
    p = float(np.clip(y.mean(), 1e-15, 1 - 1e-15))
    return float(-2.0 * np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _draw_params(fit: Fit, rng: np.random.Generator) -> np.ndarray:
    """Coefficient draws from the fit's normal approximation (rows = draws)."""
    cov = (fit.cov + fit.cov.T) / 2
    try:
        return rng.multivariate_normal(fit.params, cov, size=PD_DRAWS, method="eigh")
    except (np.linalg.LinAlgError, ValueError):
        logger.debug("covariance not usable for draws; bands collapse to the estimate")
        return np.tile(fit.params, (PD_DRAWS, 1))


def term_grid(term: Term) -> tuple[list[object], np.ndarray]:
    """Grid of a one-factor term: ``(x in factor units, values for the basis)``."""
    col = term.columns[0]
    if col.kind == "continuous":
        u = np.linspace(0.0, 1.0, PD_GRID)
        return [float(v) for v in col.from_unit(u)], u
    return list(col.levels), np.arange(len(col.levels))


def _partial_dependence(
    term: Term,
    design: Design,
    fit: Fit,
    draws: np.ndarray,
    rows: np.ndarray,
    family: str,
) -> tuple[PartialDependence, float, tuple[float, float]]:
    """Average prediction over ``rows`` with ``term``'s factor set to each grid
    value, at the estimate and at each coefficient draw. The effect is the range
    of the estimated curve; its interval is the 2.5-97.5% range of the drawn
    curves' ranges."""
    inv = link_inverse(family)
    s = design.slices[term.name]
    Xr = design.X[rows]
    x, grid_values = term_grid(term)
    G = term.basis([grid_values])
    betas = np.vstack([fit.params, draws])  # (S+1, p)
    eta = Xr @ betas.T  # (R, S+1)
    base = eta - Xr[:, s] @ betas[:, s].T  # (R, S+1)
    contrib = G @ betas[:, s].T  # (G, S+1)
    curves = inv(base[:, None, :] + contrib[None, :, :]).mean(axis=0)  # (G, S+1)
    est = curves[:, 0]
    drawn = curves[:, 1:]
    low, high = np.percentile(drawn, [2.5, 97.5], axis=1)
    ranges = drawn.max(axis=0) - drawn.min(axis=0)
    eff_lo, eff_hi = np.percentile(ranges, [2.5, 97.5])
    pd_ = PartialDependence(
        x=x,  # type: ignore[arg-type]
        y=[float(v) for v in est],
        low=[float(v) for v in low],
        high=[float(v) for v in high],
    )
    return pd_, float(est.max() - est.min()), (float(eff_lo), float(eff_hi))
