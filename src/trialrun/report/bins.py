"""Success rate against one factor, in the bins of :mod:`trialrun.binning` (the
same bins as the analysis and ``compare``), each with a Wilson 95% interval.

Example:
    >>> from trialrun.runfiles.schema import FactorSpec
    >>> spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=2.0)
    >>> fb = bin_factor(spec, [0.1, 0.4, 1.5, 1.9], [True, True, False, False], bins=2)
    >>> [(b.low, b.high, b.n, b.successes) for b in fb.bins]
    [(0.0, 1.0, 2, 2), (1.0, 2.0, 2, 0)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trialrun.binning import NO_UNITS as NO_UNITS  # re-exported
from trialrun.binning import assign_bins, is_number, level_key, shown_units
from trialrun.runfiles.names import ANALYSIS_DIR as ANALYSIS_DIR  # re-exported for the builder
from trialrun.runfiles.schema import FactorSpec, FactorValue
from trialrun.stats import wilson_interval

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- units


#: Unit strings that mean "dimensionless": a friction coefficient's "1" (the SI
#: way of writing a pure number) reads as a stray digit on the page ("0.02 – 1 1").
def display_spec(spec: FactorSpec) -> FactorSpec:
    """``spec`` with its unit as the report shows it (:func:`shown_units`)."""
    units = shown_units(spec.units)
    return spec if units == spec.units else spec.model_copy(update={"units": units})


# --------------------------------------------------------------------------- factor bins


@dataclass
class BinStat:
    """One bin of a continuous factor (``low``..``high``) or one categorical level."""

    n: int
    successes: int
    low: float | None = None
    high: float | None = None
    level: FactorValue | None = None

    @property
    def rate(self) -> float | None:
        """The success rate in the bin (None when the bin is empty)."""
        return self.successes / self.n if self.n else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """Wilson 95% interval of the rate (None when the bin is empty)."""
        return wilson_interval(self.successes, self.n) if self.n else None


@dataclass
class FactorBins:
    """Success rate against one factor: the spec, the bins and what was left out."""

    spec: FactorSpec
    bins: list[BinStat]
    edges: list[float] | None = None
    excluded: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Episodes counted in the bins."""
        return sum(b.n for b in self.bins)


def bin_factor(
    spec: FactorSpec,
    values: Sequence[Any],
    successes: Sequence[bool | None],
    bins: int | None = None,
) -> FactorBins:
    """Success rate against one factor, in the bins of :func:`trialrun.binning.assign_bins`.

    Continuous factors are cut into ``bins`` equal bins (default: the shared
    rule, :func:`trialrun.binning.n_bins_for`) over the spec's declared
    ``[low, high]`` (equal in log space for ``scale: log``), never over the
    data's min/max, so a corner the sampler rarely reached shows up as a thin
    bin with a wide interval instead of vanishing. Episodes whose value is
    missing, outside the declared range, or whose success is unknown are left
    out and counted in ``excluded`` (with a note). Categorical factors get one
    bin per declared level, in declared order, then any level seen in the data
    but not declared.

    Example:
        >>> spec = FactorSpec(name="obj", kind="categorical", values=["cube", "can"])
        >>> fb = bin_factor(spec, ["can", "cube", "can"], [True, False, False])
        >>> [(b.level, b.n, b.successes) for b in fb.bins]
        [('cube', 1, 0), ('can', 2, 1)]
    """
    if len(values) != len(successes):
        raise ValueError("values and successes must have the same length")
    if bins is not None and bins < 1:
        raise ValueError("bins must be >= 1")
    known = [i for i, ok in enumerate(successes) if ok is not None]
    assigned = assign_bins(spec, [values[i] for i in known], bins)
    ok = np.array([bool(successes[i]) for i in known], dtype=bool)
    binned = assigned.index >= 0
    counts = np.bincount(assigned.index[binned], minlength=assigned.n_bins)
    wins = np.bincount(assigned.index[binned], weights=ok[binned].astype(float), minlength=assigned.n_bins)
    missing = len(values) - len(known) + assigned.missing
    notes: list[str] = []
    if assigned.kind == "categorical":
        stats = [
            BinStat(n=int(counts[k]), successes=round(float(wins[k])), level=level)
            for k, level in enumerate(assigned.levels)
        ]
        if assigned.undeclared:
            notes.append(f"{assigned.undeclared} level(s) seen in the episodes but not declared")
        if missing:
            notes.append(f"{missing} episode(s) without a value or an outcome left out")
        return FactorBins(spec=spec, bins=stats, excluded=missing, notes=notes)
    if assigned.edges is None:
        return FactorBins(spec=spec, bins=[], excluded=missing, notes=["no episodes with a value"])
    edges = [float(e) for e in assigned.edges]
    low, high = edges[0], edges[-1]
    if assigned.observed_range:
        notes.append("no declared bounds: bins span the observed values")
    if spec.scale == "log" and low <= 0:
        notes.append("scale is log but the range touches 0: linear bins")
    stats = [
        BinStat(n=int(counts[k]), successes=round(float(wins[k])), low=edges[k], high=edges[k + 1])
        for k in range(len(edges) - 1)
    ]
    if assigned.outside:
        notes.append(
            f"{assigned.outside} episode(s) outside the declared range [{_g(low)}, {_g(high)}] left out"
        )
    if missing:
        notes.append(f"{missing} episode(s) without a value or an outcome left out")
    return FactorBins(spec=spec, bins=stats, edges=edges, excluded=missing + assigned.outside, notes=notes)


def _g(value: float) -> str:
    return f"{value:.4g}"


def infer_spec(name: str, values: Sequence[Any]) -> FactorSpec:
    """A factor spec for a factor the manifest does not describe (its env could
    not be built at preflight): numeric values make a continuous factor whose
    bounds are left open (bins then span the observed values)."""
    present = [v for v in values if v is not None]
    if present and all(is_number(v) for v in present):
        return FactorSpec(name=name, kind="continuous")
    levels: dict[str, FactorValue] = {}
    for v in present:
        levels.setdefault(level_key(v), v)
    return FactorSpec(name=name, kind="categorical", values=list(levels.values()))
