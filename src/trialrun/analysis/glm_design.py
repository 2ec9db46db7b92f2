"""Design matrices of the additive GLM (:mod:`trialrun.analysis.glm`).

A continuous factor enters as a B-spline on ``[0, 1]``: its values are mapped
there from the *declared* range (in log space for log-scale factors), so the
knots and boundary do not depend on the values a seed happened to draw. A
categorical factor enters as level dummies (the first level is the
reference). A :class:`Term` is one factor or a pairwise product of two;
:class:`Design` stacks an intercept and the terms' bases and remembers which
columns belong to which term, so a term can be dropped for its test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import BSpline

from trialrun.analysis.dataset import FactorColumn


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
