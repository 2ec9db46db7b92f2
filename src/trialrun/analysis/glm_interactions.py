"""The pairwise interaction screen of :mod:`trialrun.analysis.glm`.

Each pair of the strongest factors gets one extra term (the product of the two
factors' bases) and a test of the additive model against the model with that
term, Holm-adjusted across the pairs screened. :func:`interaction_surface`
draws the top pair's model on a grid for ``interaction.png``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

from trialrun.analysis.dataset import Dataset, FactorColumn
from trialrun.analysis.glm_design import Design, Term
from trialrun.analysis.glm_fit import SEPARATION_RIDGE, Fit, compare_fits, fit_glm, link_inverse
from trialrun.analysis.models import Interaction

#: Pairs screened at most: all pairs of the top factors by main-effect strength.
MAX_SCREENED_FACTORS = 8


@dataclass
class InteractionFit:
    """A screened pair and the fit that includes its pairwise term."""

    interaction: Interaction
    term: Term
    design: Design
    fit: Fit


def screen_interactions(
    ds: Dataset,
    terms: list[Term],
    design: Design,
    full: Fit,
    strength: dict[str, float],
    family: str,
    ridge: float | None,
    alpha: float,
) -> list[InteractionFit]:
    """LRT of the additive model against additive + one pairwise term, for every
    pair among the ``MAX_SCREENED_FACTORS`` strongest factors (by ``strength``,
    each term's main-effect test statistic). Interaction terms
    use at most 3 spline df per continuous side, so a pair costs at most 9 df."""
    strongest = sorted(terms, key=lambda t: -strength[t.name])[:MAX_SCREENED_FACTORS]
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
    inv = link_inverse(family)
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
