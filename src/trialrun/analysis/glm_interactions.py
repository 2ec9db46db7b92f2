"""The pairwise interaction screen of :mod:`trialrun.analysis.glm`.

Each pair of the strongest factors gets one extra term (the product of the two
factors' bases) and a test of the additive model against the model with that
term; the family-wise error over all the pairs screened is controlled.
:func:`interaction_surface` draws the top pair's model on a grid for
``interaction.png``.

The test of a pair is computed at the additive fit (no fit per pair):

* binomial outcome: the score (Rao) test, whose ``df`` is the number of the
  pair's columns that add to the additive design (columns aliased with it
  are not counted). A pair of continuous factors adds up to 9 columns, and at
  a few hundred episodes such statistics (score or likelihood ratio) have
  heavier tails than their chi-square reference: Holm over 15 pairs let
  through 10% of null datasets (likelihood ratio) against a nominal 5%. So
  the adjusted p-values come from a parametric bootstrap of the smallest
  p-value over all screened pairs (``BOOTSTRAP_DRAWS`` outcome vectors drawn
  from the additive fit, the additive model refitted to each): single-step
  min-p, which takes the actual tails and the correlation between pairs into
  account (31 of 700 null datasets, 4.4%, ``benchmarks/sensitivity_power.py``);
* Gaussian outcome: the exact F test (the extra sum of squares of the pair),
  Holm-adjusted across the pairs.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats
from scipy.special import expit
from statsmodels.stats.multitest import multipletests

from trialrun.analysis.dataset import Dataset, FactorColumn
from trialrun.analysis.glm_design import Design, Term
from trialrun.analysis.glm_fit import SEPARATION_RIDGE, Fit, fit_glm, link_inverse
from trialrun.analysis.models import Interaction

#: Pairs screened at most: all pairs of the top factors by main-effect strength.
MAX_SCREENED_FACTORS = 8
#: Spline df per continuous side of a pairwise term (a pair costs at most 9 df).
INTERACTION_SPLINE_DF = 3
#: Outcome vectors drawn for the bootstrap of the screen's smallest p-value
#: (binomial outcome): adjusted p-values are multiples of 1/200.
BOOTSTRAP_DRAWS = 199
#: A pair column whose variance left after projecting out the additive design
#: is below this fraction of its own variance is aliased and not counted.
ALIASED = 1e-9


@dataclass
class InteractionFit:
    """A screened pair; ``design`` and ``fit`` (the model with the pair's term)
    are filled for the top pair only, which is the one drawn."""

    interaction: Interaction
    term: Term
    design: Design | None = None
    fit: Fit | None = None


def _information(
    X: np.ndarray, Z: np.ndarray, w: np.ndarray, penalty: np.ndarray, blocks: list[slice]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per block of ``Z``, the information of its columns left after the
    additive design, ``Z_k'WZ_k - Z_k'WX A^-1 X'WZ_k`` with ``A = X'WX + P``,
    and the diagonal of ``Z_k'WZ_k`` (each column's own information)."""
    A = (X * w[:, None]).T @ X + np.diag(penalty)
    Zw = Z * w[:, None]
    B = X.T @ Zw
    try:
        AiB = linalg.cho_solve(linalg.cho_factor(A), B)
    except (linalg.LinAlgError, ValueError):
        AiB = np.linalg.lstsq(A, B, rcond=None)[0]
    V, own = [], []
    for s in blocks:
        C = Zw[:, s].T @ Z[:, s]
        V.append(C - B[:, s].T @ AiB[:, s])
        own.append(np.diag(C).copy())
    return V, own


def _whiten(V: list[np.ndarray], C_diag: list[np.ndarray]) -> list[np.ndarray]:
    """Per block, the ``(df, q)`` matrix that whitens its score (``W_k u_k`` is
    standard normal under the null), keeping only the directions not aliased
    with the additive design: ``df`` counts the columns that add to the model."""
    out = []
    for Vk, dk in zip(V, C_diag, strict=True):
        scale = 1.0 / np.sqrt(np.maximum(dk, 1e-300))
        Vs = (Vk + Vk.T) / 2 * scale[:, None] * scale[None, :]
        ev, vec = np.linalg.eigh(Vs)
        keep = ev > ALIASED
        out.append((vec[:, keep] / np.sqrt(ev[keep])).T * scale[None, :])
    return out


def _penalty(p: int, ridge: float | None) -> np.ndarray:
    """Ridge penalty per coefficient of the additive design (intercept free)."""
    return np.asarray(np.r_[0.0, np.full(p - 1, 0.0 if ridge is None else ridge)])


def _score_tests(
    y: np.ndarray, X: np.ndarray, Z: np.ndarray, beta: np.ndarray, blocks: list[slice], ridge: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score statistic, df and chi-square p-value of each block of ``Z`` added
    to the logistic model ``X`` fitted at ``beta`` (with ``ridge``, the
    penalized score and information, the new columns penalized alike)."""
    mu = expit(X @ beta)
    w = mu * (1 - mu)
    r = 0.0 if ridge is None else ridge
    V, own = _information(X, Z, w, _penalty(X.shape[1], ridge), blocks)
    # the new columns are penalized alike: ridge on their information
    whiten = _whiten([Vk + r * np.eye(Vk.shape[0]) for Vk in V], [d + r for d in own])
    u = Z.T @ (y - mu)
    stat = np.array([float(np.sum((wk @ u[s]) ** 2)) for wk, s in zip(whiten, blocks, strict=True)])
    df = np.array([wk.shape[0] for wk in whiten])
    with np.errstate(invalid="ignore"):
        p = np.where((df > 0) & np.isfinite(stat), stats.chi2.sf(stat, np.maximum(df, 1)), 1.0)
    return stat, df, p


def _f_tests(
    y: np.ndarray, X: np.ndarray, Z: np.ndarray, full: Fit, blocks: list[slice], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact F test of each block of ``Z`` added to the least-squares fit of
    ``X``: the extra sum of squares (the whitened score's squared length)
    over its df, against the residual variance of the model with the block."""
    V, own = _information(X, Z, np.ones(n), np.zeros(X.shape[1]), blocks)
    u = Z.T @ (y - X @ full.params)
    stat, dfs, ps = [], [], []
    for wk, s in zip(_whiten(V, own), blocks, strict=True):
        df = wk.shape[0]
        ess = float(np.sum((wk @ u[s]) ** 2))
        resid_df = max(n - full.rank - df, 1)
        rss = max(full.deviance - ess, 0.0)
        if df == 0:
            f, p = 0.0, 1.0
        elif rss <= 0:
            f, p = float("inf"), 0.0
        else:
            f = ess / df / (rss / resid_df)
            p = float(stats.f.sf(f, df, resid_df))
        stat.append(f)
        dfs.append(df)
        ps.append(p)
    return np.array(stat), np.array(dfs), np.array(ps)


def min_p_adjust(p: np.ndarray, p_boot: np.ndarray) -> np.ndarray:
    """Single-step min-p adjustment: ``p_adjusted[j]`` is the share of the
    bootstrap draws (rows of ``p_boot``, plus the data themselves) whose
    smallest p-value over all pairs is at most ``p[j]``; never below ``p[j]``.

    Example:
        >>> min_p_adjust(np.array([0.001, 0.2]), np.array([[0.5, 0.01], [0.3, 0.0005], [0.9, 0.4]]))
        array([0.5 , 0.75])
    """
    smallest = np.sort(np.min(p_boot, axis=1))
    exceed = np.searchsorted(smallest, p, side="right")
    adjusted = (1.0 + exceed) / (p_boot.shape[0] + 1.0)
    return np.asarray(np.minimum(np.maximum(adjusted, p), 1.0))


def _bootstrap_p(
    X: np.ndarray, Z: np.ndarray, full: Fit, blocks: list[slice], ridge: float | None, seed: int
) -> np.ndarray:
    """Chi-square score p-values of every block on ``BOOTSTRAP_DRAWS`` outcome
    vectors drawn from the additive fit (no interaction): rows are draws,
    columns blocks. The additive model is refitted to each draw (a Newton
    step with the fit's Hessian for all draws at once, then two exact Newton
    steps per draw: the p-values then match a full refit's to about 1e-3,
    relative, at 400 episodes) and the score tests are recomputed at the
    refit, information included: the spread of the estimated information is
    part of what the chi-square tails miss at a few hundred episodes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7]))
    beta = full.params
    mu = expit(X @ beta)
    penalty = _penalty(X.shape[1], ridge)
    A = (X * (mu * (1 - mu))[:, None]).T @ X + np.diag(penalty)
    out = np.ones((BOOTSTRAP_DRAWS, len(blocks)))
    chunk = 50
    for lo in range(0, BOOTSTRAP_DRAWS, chunk):
        hi = min(lo + chunk, BOOTSTRAP_DRAWS)
        Y = (rng.uniform(size=(mu.size, hi - lo)) < mu[:, None]).astype(float)
        # the penalized fit's score X'(y - mu) is P beta, so a draw's is X'(Y - mu) - P beta
        steps = np.linalg.lstsq(A, X.T @ (Y - mu[:, None]) - (penalty * beta)[:, None], rcond=None)[0]
        for j in range(hi - lo):
            yb = Y[:, j]
            if yb.min() == yb.max():
                continue  # a constant outcome: nothing to test
            b = beta + steps[:, j]
            for _ in range(2):
                mb = expit(X @ b)
                H = (X * (mb * (1 - mb))[:, None]).T @ X + np.diag(penalty)
                b = b + np.linalg.lstsq(H, X.T @ (yb - mb) - penalty * b, rcond=None)[0]
            if np.all(np.isfinite(b)):
                out[lo + j] = _score_tests(yb, X, Z, b, blocks, ridge)[2]
    return out


def screen_interactions(
    ds: Dataset,
    terms: list[Term],
    design: Design,
    full: Fit,
    strength: dict[str, float],
    family: str,
    ridge: float | None,
    alpha: float,
    seed: int = 0,
) -> list[InteractionFit]:
    """Test the additive model against additive + one pairwise term, for every
    pair among the ``MAX_SCREENED_FACTORS`` strongest factors (by ``strength``,
    each term's main-effect test statistic), with the family-wise error over
    all those pairs controlled (see the module docstring). Interaction terms
    use at most ``INTERACTION_SPLINE_DF`` spline df per continuous side, so a
    pair costs at most 9 df; a pair whose columns are all aliased with the
    additive design (df 0) is not reported. Sorted by p-value; the first pair's
    model is fitted (``design``, ``fit``) for :func:`interaction_surface`."""
    strongest = sorted(terms, key=lambda t: -strength[t.name])[:MAX_SCREENED_FACTORS]
    strongest = [t for t in terms if t in strongest]  # keep declaration order
    if len(terms) > MAX_SCREENED_FACTORS:
        ds.note(
            f"interaction screen limited to pairs of the {MAX_SCREENED_FACTORS} strongest "
            "factors by main effect",
            level=logging.INFO,
        )
    idf = min(INTERACTION_SPLINE_DF, design.terms[0].df)
    pairs: list[tuple[Term, Term, Term]] = []
    for a, b in itertools.combinations(strongest, 2):
        term = Term(columns=(a.columns[0], b.columns[0]), df=idf).fit_keep()
        if term.keep.any():
            pairs.append((a, b, term))
    if not pairs:
        return []
    parts = [t.basis(t.data_values()) for _, _, t in pairs]
    bounds = np.cumsum([0] + [z.shape[1] for z in parts])
    blocks = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    Z = np.hstack(parts)
    X, y = design.X, ds.y
    if family == "binomial":
        stat, df, p = _score_tests(y, X, Z, full.params, blocks, ridge)
    else:
        stat, df, p = _f_tests(y, X, Z, full, blocks, ds.n)
    tested = [k for k in range(len(pairs)) if df[k] > 0]
    if not tested:
        return []
    if family == "binomial":
        p_boot = _bootstrap_p(X, Z, full, [blocks[k] for k in tested], ridge, seed)
        adjusted = min_p_adjust(p[tested], p_boot)
    else:
        adjusted = multipletests(p[tested], method="holm")[1]
    results = [
        InteractionFit(
            interaction=Interaction(
                factors=(pairs[k][0].name, pairs[k][1].name),
                df=int(df[k]),
                statistic=float(stat[k]),
                p_value=float(p[k]),
                p_adjusted=float(p_adj),
                significant=bool(p_adj < alpha),
            ),
            term=pairs[k][2],
        )
        for k, p_adj in zip(tested, adjusted, strict=True)
    ]
    results.sort(key=lambda r: (r.interaction.p_value, -r.interaction.statistic))
    top = results[0]
    top.design = Design.build([*terms, top.term])
    top.fit = fit_glm(y, top.design.X, family, ridge=ridge)
    if top.fit.separated and ridge is None:
        top.fit = fit_glm(y, top.design.X, family, ridge=SEPARATION_RIDGE)
    return results


def interaction_surface(
    top: InteractionFit, rows: np.ndarray, family: str
) -> tuple[list[object], list[object], np.ndarray]:
    """The interaction model's average prediction on a grid of the pair
    (``model[i, j]`` at second factor ``y[i]`` and first factor ``x[j]``)."""
    inv = link_inverse(family)
    ca, cb = top.term.columns
    design = top.design
    if design is None or top.fit is None:
        raise ValueError("interaction_surface needs the top pair's fitted model")
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
