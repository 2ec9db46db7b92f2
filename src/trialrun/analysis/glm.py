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

Example:
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> from trialrun.analysis.dataset import prepare_dataset
    >>> sweep = make_sweep(n=600, seed=1)
    >>> res = analyze_glm(prepare_dataset(sweep.records, sweep.specs, "success"), seed=0)
    >>> res.factors["mass"].significant
    True
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import linalg, stats
from scipy.interpolate import BSpline
from scipy.special import expit
from statsmodels.stats.multitest import multipletests
from threadpoolctl import threadpool_limits

from trialrun.analysis.dataset import Dataset, FactorColumn
from trialrun.analysis.models import (
    Interaction,
    ModelInfo,
    PartialDependence,
)

logger = logging.getLogger(__name__)

#: Fewer usable episodes than this and no model is fitted (binned view only).
MIN_EPISODES_MODEL = 30
#: Spline degrees of freedom per continuous factor when the data allow it.
DEFAULT_SPLINE_DF = 4
#: Fewest spline degrees of freedom used when events are scarce (2 still bends).
MIN_SPLINE_DF = 2
#: Events (minority-class count) per model parameter below which df is reduced.
EVENTS_PER_PARAMETER = 5.0
#: Ridge penalty on all non-intercept coefficients when separation is detected.
SEPARATION_RIDGE = 1.0
#: Logit coefficients beyond this (in units of a [0, 1] basis) mean separation.
SEPARATION_COEF = 15.0
#: Newton steps at most per fit.
MAX_NEWTON_STEPS = 60
#: Grid points of a continuous partial-dependence curve.
PD_GRID = 41
#: Coefficient draws for the partial-dependence bands and the effect interval.
PD_DRAWS = 200
#: Episodes over which partial dependence is averaged (a seeded subsample).
PD_ROWS = 300
#: Pairs screened at most: all pairs of the top factors by main-effect strength.
MAX_SCREENED_FACTORS = 8


# --------------------------------------------------------------------------- bases


def spline_basis(u: np.ndarray, df: int) -> np.ndarray:
    """B-spline basis on ``[0, 1]`` with ``df`` columns (the first of the
    ``df + 1`` functions is dropped: the intercept stands for it).

    Degree ``min(3, df)`` with ``df - degree`` evenly spaced interior knots, so
    ``df=1`` is linear, ``df=2`` quadratic, ``df=3`` cubic and ``df=4`` a cubic
    spline with one knot in the middle of the declared range.

    Example:
        >>> spline_basis(np.array([0.0, 0.5, 1.0]), 4).shape
        (3, 4)
    """
    degree = min(3, df)
    interior = np.linspace(0.0, 1.0, df - degree + 2)[1:-1]
    knots = np.r_[np.zeros(degree + 1), interior, np.ones(degree + 1)]
    x = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    basis = BSpline.design_matrix(x, knots, degree).toarray()
    return np.asarray(basis[:, 1:])


def _dummies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    out = np.zeros((codes.size, max(n_levels - 1, 0)))
    for j in range(1, n_levels):
        out[:, j - 1] = codes == j
    return out


@dataclass
class Term:
    """One additive term (a factor) or a pairwise interaction of two factors.

    ``keep`` masks out basis columns that are zero on every episode (a spline
    piece with no data under it, an empty level combination), which would
    otherwise make the design singular.
    """

    columns: tuple[FactorColumn, ...]
    df: int
    keep: np.ndarray = field(default_factory=lambda: np.ones(0, dtype=bool))

    @property
    def name(self) -> str:
        return ":".join(c.name for c in self.columns)

    def raw(self, values: Sequence[np.ndarray]) -> np.ndarray:
        parts = []
        for col, v in zip(self.columns, values, strict=True):
            if col.kind == "continuous":
                parts.append(spline_basis(v, self.df))
            else:
                parts.append(_dummies(np.asarray(v, dtype=int), len(col.levels)))
        out = parts[0]
        for p in parts[1:]:
            out = (out[:, :, None] * p[:, None, :]).reshape(out.shape[0], -1)
        return out

    def data_values(self) -> list[np.ndarray]:
        return [c.u if c.kind == "continuous" else c.codes for c in self.columns]  # type: ignore[misc]

    def fit_keep(self) -> Term:
        raw = self.raw(self.data_values())
        self.keep = np.abs(raw).sum(axis=0) > 1e-9
        return self

    def basis(self, values: Sequence[np.ndarray]) -> np.ndarray:
        return self.raw(values)[:, self.keep]


@dataclass
class Design:
    """Design matrix with column slices per term; column 0 is the intercept."""

    X: np.ndarray
    terms: list[Term]
    slices: dict[str, slice]

    @classmethod
    def build(cls, terms: list[Term]) -> Design:
        n = terms[0].columns[0].values.size if terms else 0
        blocks = [np.ones((n, 1))]
        slices: dict[str, slice] = {}
        start = 1
        for t in terms:
            b = t.basis(t.data_values())
            blocks.append(b)
            slices[t.name] = slice(start, start + b.shape[1])
            start += b.shape[1]
        return cls(X=np.hstack(blocks), terms=terms, slices=slices)

    def without(self, name: str) -> np.ndarray:
        s = self.slices[name]
        return np.delete(self.X, np.arange(s.start, s.stop), axis=1)


# --------------------------------------------------------------------------- fitting


@dataclass
class Fit:
    """A fitted GLM: coefficients, their covariance, and the (penalized)
    log-likelihood that the tests compare."""

    params: np.ndarray
    cov: np.ndarray
    llf: float
    deviance: float
    rank: int
    converged: bool
    separated: bool = False


def _rank(X: np.ndarray) -> int:
    """Numerical rank of ``X`` from the eigenvalues of the small ``X'X``."""
    if X.shape[1] == 0:
        return 0
    scale = np.sqrt(np.maximum(np.einsum("ij,ij->j", X, X), 1e-300))
    ev = np.linalg.eigvalsh((X / scale).T @ (X / scale))
    return int(np.sum(ev > ev.max() * 1e-10))


def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(linalg.solve(H, g, assume_a="pos"))
    except (linalg.LinAlgError, ValueError):
        return np.asarray(np.linalg.lstsq(H, g, rcond=None)[0])


def _logit_loglik(y: np.ndarray, eta: np.ndarray) -> float:
    # log(1 + e^eta) computed stably
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def fit_glm(y: np.ndarray, X: np.ndarray, family: str, ridge: float | None = None) -> Fit:
    """Fit a binomial (logit) or Gaussian GLM, optionally ridge-penalized.

    Newton-Raphson on the normal equations (``X'WX``, a ``p x p`` system), with
    step halving. It gives the same estimates as statsmodels' ``GLM`` (a test
    checks this) at a fraction of the cost: statsmodels' IRLS factorizes the
    tall ``n x p`` design (QR/SVD) at every iteration, about 0.1-0.5 s per fit
    at 10,000 episodes on 2 cores, and the tests here need dozens of fits.

    Without ``ridge``, ``separated`` flags separation (no convergence or
    coefficients beyond ``SEPARATION_COEF`` on the ``[0, 1]`` bases). With
    ``ridge`` the penalty ``ridge/2 * |beta|^2`` (intercept free) keeps every
    coefficient finite; ``llf`` is then the penalized log-likelihood and ``cov``
    the inverse penalized information.

    Example:
        >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 0.0, 1.0]])
        >>> fit = fit_glm(np.array([1.0, 2.0, 1.2, 2.2]), X, "gaussian")
        >>> [round(float(b), 3) for b in fit.params]
        [1.1, 1.0]
    """
    n, p = X.shape
    penalty = np.zeros(p) if ridge is None else np.r_[0.0, np.full(p - 1, ridge)]
    rank = _rank(X)
    if family == "gaussian":
        H = X.T @ X + np.diag(penalty)
        beta = _solve(H, X.T @ y)
        rss = float(np.sum((y - X @ beta) ** 2))
        sigma2 = rss / max(n - rank, 1)
        llf = -0.5 * n * (np.log(2 * np.pi * max(rss / n, 1e-300)) + 1)
        return Fit(
            params=beta,
            cov=sigma2 * np.linalg.pinv(H),
            llf=float(llf),
            deviance=rss,
            rank=rank,
            converged=True,
        )

    beta = np.zeros(p)
    ybar = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    beta[0] = np.log(ybar / (1 - ybar))

    def objective(b: np.ndarray) -> float:
        return _logit_loglik(y, X @ b) - 0.5 * float(np.sum(penalty * b**2))

    current = objective(beta)
    converged = False
    for _ in range(MAX_NEWTON_STEPS):
        mu = expit(X @ beta)
        w = mu * (1 - mu)
        grad = X.T @ (y - mu) - penalty * beta
        H = (X * w[:, None]).T @ X + np.diag(penalty)
        step = _solve(H, grad)
        t = 1.0
        for _ in range(30):
            trial = objective(beta + t * step)
            if trial >= current - 1e-12 * (1 + abs(current)):
                break
            t /= 2
        beta = beta + t * step
        change = trial - current
        current = trial
        if np.max(np.abs(t * step)) < 1e-8 or abs(change) < 1e-10 * (1 + abs(current)):
            converged = bool(np.max(np.abs(t * step)) < 1e-3)
            break
    mu = expit(X @ beta)
    w = mu * (1 - mu)
    H = (X * w[:, None]).T @ X + np.diag(penalty)
    loglik = _logit_loglik(y, X @ beta)
    separated = ridge is None and (
        not converged
        or not np.all(np.isfinite(beta))
        or bool(np.max(np.abs(beta[1:]), initial=0.0) > SEPARATION_COEF)
    )
    return Fit(
        params=beta,
        cov=np.linalg.pinv(H),
        llf=current,
        deviance=-2.0 * loglik,
        rank=rank,
        converged=converged,
        separated=separated,
    )


def compare_fits(full: Fit, reduced: Fit, n: int, family: str) -> tuple[float, int, float]:
    """``(statistic, df, p)`` of nested models: likelihood-ratio chi-square for
    the binomial family, the exact F test (the LRT's finite-sample form) for
    the Gaussian one."""
    df = max(full.rank - reduced.rank, 0)
    if df == 0:
        return 0.0, 0, 1.0
    if family == "binomial":
        stat = max(2.0 * (full.llf - reduced.llf), 0.0)
        return stat, df, float(stats.chi2.sf(stat, df))
    resid_df = max(n - full.rank, 1)
    if full.deviance <= 0:
        return float("inf"), df, 0.0
    stat = max((reduced.deviance - full.deviance) / df / (full.deviance / resid_df), 0.0)
    return stat, df, float(stats.f.sf(stat, df, resid_df))


# --------------------------------------------------------------------------- analysis


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
class InteractionFit:
    """A screened pair and the fit that includes its pairwise term."""

    interaction: Interaction
    term: Term
    design: Design
    fit: Fit


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
        screened = _screen_interactions(ds, terms, design, full, tests, family, ridge, alpha)

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


def _linkinv(family: str) -> np.ufunc:
    return expit if family == "binomial" else np.positive


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
    inv = _linkinv(family)
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


# --------------------------------------------------------------------------- interactions


def _screen_interactions(
    ds: Dataset,
    terms: list[Term],
    design: Design,
    full: Fit,
    tests: dict[str, FactorGlm],
    family: str,
    ridge: float | None,
    alpha: float,
) -> list[InteractionFit]:
    """LRT of the additive model against additive + one pairwise term, for every
    pair among the ``MAX_SCREENED_FACTORS`` strongest factors. Interaction terms
    use at most 3 spline df per continuous side, so a pair costs at most 9 df."""
    strongest = sorted(terms, key=lambda t: -tests[t.name].statistic)[:MAX_SCREENED_FACTORS]
    strongest = [t for t in terms if t in strongest]  # keep declaration order
    if len(terms) > MAX_SCREENED_FACTORS:
        ds.note(
            f"interaction screen limited to pairs of the {MAX_SCREENED_FACTORS} strongest "
            "factors by main effect",
            level=logging.INFO,
        )
    results: list[InteractionFit] = []
    idf = min(3, design.terms[0].df)
    for a, b in itertools.combinations(strongest, 2):
        term = Term(columns=(a.columns[0], b.columns[0]), df=idf).fit_keep()
        if not term.keep.any():
            continue
        aug = Design.build([*terms, term])
        fit = fit_glm(ds.y, aug.X, family, ridge=ridge)
        if fit.separated and ridge is None:
            fit = fit_glm(ds.y, aug.X, family, ridge=SEPARATION_RIDGE)
            base = fit_glm(ds.y, design.X, family, ridge=SEPARATION_RIDGE)
        else:
            base = full
        stat, df, p = compare_fits(fit, base, ds.n, family)
        if df == 0:
            continue
        inter = Interaction(
            factors=(a.name, b.name),
            df=df,
            statistic=stat,
            p_value=p,
            p_adjusted=1.0,
            significant=False,
        )
        results.append(InteractionFit(interaction=inter, term=term, design=aug, fit=fit))
    if results:
        adjusted = multipletests([r.interaction.p_value for r in results], method="holm")[1]
        for r, p_adj in zip(results, adjusted, strict=True):
            r.interaction.p_adjusted = float(p_adj)
            r.interaction.significant = bool(p_adj < alpha)
    results.sort(key=lambda r: (r.interaction.p_value, -r.interaction.statistic))
    return results


def interaction_surface(
    top: InteractionFit, rows: np.ndarray, family: str
) -> tuple[list[object], list[object], np.ndarray]:
    """The interaction model's average prediction on a grid of the pair
    (``model[i, j]`` at second factor ``y[i]`` and first factor ``x[j]``)."""
    inv = _linkinv(family)
    ca, cb = top.term.columns
    design = top.design
    names = [ca.name, cb.name, top.term.name]
    terms = {t.name: t for t in design.terms}
    Xr = design.X[rows]
    beta = top.fit.params
    eta = Xr @ beta
    for nm in names:
        s = design.slices[nm]
        eta = eta - Xr[:, s] @ beta[s]

    def axis(col: FactorColumn) -> tuple[list[object], np.ndarray]:
        if col.kind == "continuous":
            u = np.linspace(0.0, 1.0, 25)
            return [float(v) for v in col.from_unit(u)], u
        return list(col.levels), np.arange(len(col.levels))

    xa, va = axis(ca)
    xb, vb = axis(cb)
    gb, ga = np.meshgrid(vb, va, indexing="ij")  # (Gb, Ga)
    fa, fb = ga.ravel(), gb.ravel()
    contrib = (
        terms[ca.name].basis([fa]) @ beta[design.slices[ca.name]]
        + terms[cb.name].basis([fb]) @ beta[design.slices[cb.name]]
        + top.term.basis([fa, fb]) @ beta[design.slices[top.term.name]]
    )
    surface = inv(eta[:, None] + contrib[None, :]).mean(axis=0).reshape(len(xb), len(xa))
    return xa, xb, surface
