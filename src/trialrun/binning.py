"""Factor binning, shared by the report, the analysis and ``compare``.

One rule decides how a factor's episodes are grouped wherever trialrun shows
a rate against a factor, so the same factor shows the same bins in the
report, in ``trialrun analyze`` and in ``trialrun compare``:

* :func:`n_bins_for` — how many bins for ``n`` episodes;
* :func:`bin_edges` — the edges of a continuous factor, from its *declared*
  bounds (equal in log space for ``scale: log``);
* :func:`assign_bins` — the bin of every value (``-1`` when left out) and the
  axis: the edges, or the categorical levels;
* :func:`level_key` — when two categorical values are the same level.

Example:
    >>> from trialrun.runfiles.schema import FactorSpec
    >>> spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=3.0)
    >>> bins = assign_bins(spec, [0.5, 1.5, 2.9, 3.0, 4.0, None], n_bins=3)
    >>> bins.edges.tolist(), bins.index.tolist(), bins.counts().tolist()
    ([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 2, -1, -1], [1, 1, 2])
    >>> level_key(1) == level_key(1.0), level_key(True) == level_key(1)
    (True, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from trialrun.runfiles.schema import FactorSpec, FactorValue

#: The bin-count rule: about this many episodes per bin ...
EPISODES_PER_BIN = 25
#: ... but never fewer bins than this ...
MIN_BINS = 3
#: ... nor more than this.
MAX_BINS = 10
#: What :func:`assign_bins` takes: any values (a float array is binned without a Python loop).
Values = Sequence[Any] | npt.NDArray[Any]
#: Relative tolerance of the declared range: a log-uniform draw that rounds to
#: ``high + 1 ulp`` is inside (in the last bin), not left out.
RANGE_TOLERANCE = 1e-9


def level_key(value: Any) -> str:
    """A key under which ``1``, ``1.0`` and the spec's ``1`` are one level while
    ``True`` and ``1`` (or ``"1"`` and ``1``) stay distinct."""
    if isinstance(value, bool):
        return f"b:{value}"
    if isinstance(value, int | float):
        f = float(value)
        return f"n:{int(f)}" if f.is_integer() else f"n:{f!r}"
    return f"s:{value}"


def n_bins_for(n: int) -> int:
    """Number of bins of a continuous factor for ``n`` episodes: about 25
    episodes per bin, between 3 and 10 bins.

    Why these numbers: 3 bins is the fewest that can show a non-monotone
    effect (a sweet spot in the middle of a range). About 25 episodes per bin
    keeps the worst-case (rate 0.5) Wilson 95% half-width of a bin near
    ±0.19, so a bin says something on its own, and keeps the expected counts
    of the bins x {success, failure} chi-square test usable (at least 5 per
    cell for rates between 0.2 and 0.8). More than 10 bins only thins them.

    Example:
        >>> [n_bins_for(n) for n in (0, 10, 75, 100, 249, 250, 10_000)]
        [3, 3, 3, 4, 9, 10, 10]
    """
    return max(MIN_BINS, min(MAX_BINS, n // EPISODES_PER_BIN))


def is_number(value: Any) -> bool:
    """A finite int or float (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(bound: float | None) -> float | None:
    return bound if bound is not None and math.isfinite(bound) else None


def factor_range(spec: FactorSpec, observed: Sequence[float] = ()) -> tuple[float, float] | None:
    """The ``[low, high]`` a continuous factor is binned over: the declared
    bounds; a missing (or non-finite) bound is taken from the observed values.
    None when a bound is missing and nothing was observed.

    Example:
        >>> factor_range(FactorSpec(name="x", kind="continuous", high=4.0), [1.0, 2.0])
        (1.0, 4.0)
    """
    low, high = _finite(spec.low), _finite(spec.high)
    finite = [float(v) for v in observed if math.isfinite(v)]
    if low is None:
        if not finite:
            return None
        low = min(finite)
    if high is None:
        if not finite:
            return None
        high = max(finite)
    return float(low), float(high)


def uses_log_bins(spec: FactorSpec, low: float) -> bool:
    """True when the bins are equal in log space: ``scale: log`` and ``low > 0``
    (a log-scale range that touches 0 gets linear bins)."""
    return spec.scale == "log" and low > 0


def bin_edges(spec: FactorSpec, n_bins: int, observed: Sequence[float] = ()) -> npt.NDArray[np.float64]:
    """The ``n_bins + 1`` edges of a continuous factor.

    Equal width over the declared ``[low, high]`` (equal in log space for
    ``scale: log`` with ``low > 0``), never over the data's min and max, so a
    corner the sampler rarely reached shows as a thin bin instead of vanishing.
    A degenerate range (``low == high``) is one bin. A missing bound is taken
    from ``observed`` (see :func:`factor_range`).

    Raises:
        ValueError: ``n_bins < 1``, ``low > high``, or a bound is missing and
            nothing was observed.

    Example:
        >>> spec = FactorSpec(name="f", kind="continuous", low=0.01, high=100.0, scale="log")
        >>> [float(f"{e:.3g}") for e in bin_edges(spec, 4)]
        [0.01, 0.1, 1.0, 10.0, 100.0]
        >>> bin_edges(FactorSpec(name="g", kind="continuous", low=2.0, high=2.0), 5).tolist()
        [2.0, 2.0]
    """
    if n_bins < 1:
        raise ValueError(f"bins must be >= 1, got {n_bins}")
    bounds = factor_range(spec, observed)
    if bounds is None:
        raise ValueError(f"factor '{spec.name}' has no declared range and no observed values")
    low, high = bounds
    if low > high:
        raise ValueError(f"factor '{spec.name}': range [{low}, {high}] has low > high")
    if low == high:
        return np.array([low, high], dtype=float)
    if uses_log_bins(spec, low):
        edges = np.geomspace(low, high, n_bins + 1)
    else:
        edges = np.linspace(low, high, n_bins + 1)
    edges[0], edges[-1] = low, high
    return np.asarray(edges, dtype=float)


@dataclass(frozen=True)
class BinAssignment:
    """The bins of one factor over a list of values.

    ``index[i]`` is the bin of value ``i``, or ``-1`` when it is left out
    (missing, non-numeric for a continuous factor, or outside the declared
    range). The axis is ``edges`` (``n_bins + 1`` of them) for a continuous
    factor, ``levels`` for a categorical one.
    """

    kind: Literal["continuous", "categorical"]
    index: npt.NDArray[np.int64]
    edges: npt.NDArray[np.float64] | None = None
    levels: list[FactorValue] = field(default_factory=list)
    #: Continuous: the bins are equal in log space.
    log: bool = False
    #: Continuous: a bound was not declared, so the range spans observed values.
    observed_range: bool = False
    #: Values left out because they are missing (or not numbers, or NaN).
    missing: int = 0
    #: Values left out because they lie outside the declared range.
    outside: int = 0
    #: Categorical: levels seen in the values but not declared (they follow the declared ones).
    undeclared: int = 0

    @property
    def n_bins(self) -> int:
        """Number of bins (0 when a continuous factor had no range to bin)."""
        if self.kind == "categorical":
            return len(self.levels)
        return 0 if self.edges is None else len(self.edges) - 1

    @property
    def excluded(self) -> int:
        """Values in no bin."""
        return self.missing + self.outside

    def counts(self) -> npt.NDArray[np.int64]:
        """Values per bin."""
        return np.bincount(self.index[self.index >= 0], minlength=self.n_bins).astype(np.int64)

    def members(self, k: int) -> npt.NDArray[np.int64]:
        """Positions of the values in bin ``k``."""
        return np.flatnonzero(self.index == k).astype(np.int64)


def assign_bins(spec: FactorSpec, values: Values, n_bins: int | None = None) -> BinAssignment:
    """The bin of each value of ``spec`` and the bins' axis.

    Continuous factors: the edges of :func:`bin_edges`, with ``n_bins`` bins
    (default :func:`n_bins_for` of the number of values inside the range); a
    bin is ``[low, high)``, the last one ``[low, high]``. Values that are
    missing, not numbers, NaN, or outside the range (beyond a relative
    tolerance of 1e-9) get ``-1``. Categorical factors: one bin per declared
    level in declared order, then one per level seen but not declared
    (levels compared with :func:`level_key`); missing values get ``-1``.

    Example:
        >>> spec = FactorSpec(name="obj", kind="categorical", values=["cube", "can"])
        >>> cat = assign_bins(spec, ["can", "mug", None, "can"])
        >>> cat.levels, cat.index.tolist(), cat.undeclared, cat.missing
        (['cube', 'can', 'mug'], [1, 2, -1, 1], 1, 1)
        >>> log = FactorSpec(name="f", kind="continuous", low=1.0, high=100.0, scale="log")
        >>> b = assign_bins(log, [1.0, 5.0, 10.0, 100.0 + 1e-12, 150.0, "x"], n_bins=2)
        >>> b.edges.tolist(), b.index.tolist(), b.outside, b.missing
        ([1.0, 10.0, 100.0], [0, 0, 1, 1, -1, -1], 1, 1)
    """
    if spec.kind == "categorical":
        return _assign_categorical(spec, values)
    return _assign_continuous(spec, values, n_bins)


def _assign_categorical(spec: FactorSpec, values: Values) -> BinAssignment:
    position: dict[str, int] = {}
    levels: list[FactorValue] = []
    for level in spec.values or []:
        if level_key(level) not in position:
            position[level_key(level)] = len(levels)
            levels.append(level)
    declared = len(levels)
    index = np.full(len(values), -1, dtype=np.int64)
    missing = 0
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            missing += 1
            continue
        key = level_key(value)
        if key not in position:
            position[key] = len(levels)
            levels.append(value)
        index[i] = position[key]
    return BinAssignment(
        kind="categorical",
        index=index,
        levels=levels,
        missing=missing,
        undeclared=len(levels) - declared if spec.values else 0,
    )


def _as_floats(values: Values) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The values as floats (NaN where not a number) and where they are numbers."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        x = values.astype(float)
        return x, np.isfinite(x)
    numeric = np.array([is_number(v) for v in values], dtype=bool)
    x = np.array([float(v) if ok else np.nan for v, ok in zip(values, numeric, strict=True)], dtype=float)
    return x, numeric


def _assign_continuous(spec: FactorSpec, values: Values, n_bins: int | None) -> BinAssignment:
    x, numeric = _as_floats(values)
    missing = int((~numeric).sum())
    observed_range = _finite(spec.low) is None or _finite(spec.high) is None
    bounds = factor_range(spec, x[numeric].tolist())
    if bounds is None:
        return BinAssignment(
            kind="continuous",
            index=np.full(len(values), -1, dtype=np.int64),
            missing=missing,
            observed_range=observed_range,
        )
    low, high = bounds
    tol = RANGE_TOLERANCE * max(abs(low), abs(high), 1.0)
    inside = numeric & (x >= low - tol) & (x <= high + tol)
    if n_bins is None:
        n_bins = n_bins_for(int(inside.sum()))
    edges = bin_edges(spec, n_bins, x[numeric].tolist())
    k = len(edges) - 1
    index = np.full(len(values), -1, dtype=np.int64)
    index[inside] = np.clip(np.searchsorted(edges, x[inside], side="right") - 1, 0, k - 1)
    return BinAssignment(
        kind="continuous",
        index=index,
        edges=edges,
        log=uses_log_bins(spec, low) and low < high,
        observed_range=observed_range,
        missing=missing,
        outside=int((numeric & ~inside).sum()),
    )


__all__ = [
    "EPISODES_PER_BIN",
    "MAX_BINS",
    "MIN_BINS",
    "RANGE_TOLERANCE",
    "BinAssignment",
    "Values",
    "assign_bins",
    "bin_edges",
    "factor_range",
    "is_number",
    "level_key",
    "n_bins_for",
    "shown_units",
    "uses_log_bins",
]


#: Unit strings that mean "dimensionless": a friction coefficient's "1" (the SI
#: way of writing a pure number) reads as a stray digit on the page ("0.02 – 1 1").
NO_UNITS = frozenset({"", "1", "-"})


def shown_units(units: str | None) -> str | None:
    """The unit to print next to a factor, or None for a dimensionless one.

    The report and the analysis decide this themselves (instead of trusting the
    manifest), so runs whose variations wrote ``"1"`` for a ratio render right.

    Example:
        >>> [shown_units(u) for u in (None, "", " 1 ", "kg", "x")]
        [None, None, None, 'kg', 'x']
    """
    if units is None:
        return None
    text = units.strip()
    return None if text in NO_UNITS else text
