"""``sensitivity.json``: the pydantic models of the sensitivity analysis' output.

They are the contract between ``trialrun analyze`` (which writes the file) and
the HTML report (which reads it and never re-fits anything), so every number a
plot shows is in here: binned rates with their counts and intervals,
partial-dependence curves with their bands, the interaction view and the
posterior marginals. :func:`read_sensitivity` is the typed reader.

Example:
    >>> Bin(n=3, successes=2, rate=2 / 3).model_dump(exclude_none=True)
    {'n': 3, 'successes': 2, 'rate': 0.6666666666666666}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trialrun.runfiles.names import SENSITIVITY_FILE
from trialrun.runfiles.readers import read_model
from trialrun.runfiles.schema import FactorValue

ANALYSIS_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bin(_Strict):
    """One bin (continuous factor) or level (categorical factor) of the model-free view.

    For a binary outcome ``rate`` is the success rate and ``ci_low``/``ci_high``
    its Wilson 95% interval; for a continuous outcome ``successes`` is ``None``,
    ``rate`` is the mean and the interval a t-interval of the mean.
    """

    low: float | None = None
    high: float | None = None
    level: FactorValue | None = None
    n: int
    successes: int | None = None
    rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


class PartialDependence(_Strict):
    """The model's average prediction as one factor moves over its declared range
    (or levels), with a pointwise 95% band from the coefficients' sampling
    distribution. ``x`` is in the factor's own units."""

    x: list[FactorValue]
    y: list[float]
    low: list[float]
    high: list[float]


class FactorResult(_Strict):
    """Everything the analysis says about one factor."""

    name: str
    kind: Literal["continuous", "categorical"]
    scale: Literal["linear", "log"] = "linear"
    low: float | None = None
    high: float | None = None
    levels: list[FactorValue] | None = None
    units: str | None = None
    status: Literal["analysed", "constant", "not_modelled"] = "analysed"
    df: int | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    significant: bool = False
    effect: float | None = None
    effect_ci: tuple[float, float] | None = None
    rank: int
    bins: list[Bin] = Field(default_factory=list)
    partial_dependence: PartialDependence | None = None
    chi2_p: float | None = None
    importance: float | None = None
    importance_null_p: float | None = None
    note: str | None = None


class Interaction(_Strict):
    """A screened pair: does a pairwise term for ``factors`` add to the additive
    model? A score (Rao) test for a binary outcome, an F test for a continuous
    one; ``p_adjusted`` is family-wise across all screened pairs (a seeded
    parametric-bootstrap min-p for a binary outcome, Holm for a continuous one;
    docs/analysis.md)."""

    factors: tuple[str, str]
    df: int
    statistic: float
    p_value: float
    p_adjusted: float
    significant: bool


class AxisBin(_Strict):
    """One cell edge of the 2-D view: a bin of a continuous factor or a level."""

    low: float | None = None
    high: float | None = None
    level: FactorValue | None = None


class InteractionView(_Strict):
    """The 2-D view of the top pair: the model surface on a grid and the observed
    rate (or mean) with counts in coarse cells. ``model[i][j]`` is at ``y[i]``,
    ``x[j]``; ``rate[i][j]`` is in cell ``y_bins[i]`` x ``x_bins[j]``."""

    factors: tuple[str, str]
    p_value: float | None = None
    p_adjusted: float | None = None
    x: list[FactorValue]
    y: list[FactorValue]
    model: list[list[float]]
    x_bins: list[AxisBin]
    y_bins: list[AxisBin]
    n: list[list[int]]
    successes: list[list[int]] | None = None
    rate: list[list[float | None]]


class ModelInfo(_Strict):
    """How the additive GLM was fitted."""

    family: Literal["binomial", "gaussian"]
    test: Literal["likelihood-ratio", "F"]
    spline_df: int
    n_params: int
    penalized: bool = False
    ridge: float | None = None
    converged: bool = True
    deviance: float | None = None
    null_deviance: float | None = None


class ImportanceInfo(_Strict):
    """How the gradient-boosted cross-check was run."""

    model: str
    scoring: str
    n_train: int
    n_test: int
    n_null: int
    n_repeats: int
    holdout_score: float | None = None


class PosteriorMarginal(_Strict):
    """One factor's posterior marginal given the conditioning outcome, against the
    sampling design (what the marginal would be with no effect) and the range of
    marginals obtained from shuffled labels (the noise floor)."""

    name: str
    kind: Literal["continuous", "categorical"]
    x: list[FactorValue]
    design: list[float]
    posterior: list[float]
    null_low: list[float]
    null_high: list[float]
    shift: float
    null_shifts: list[float]
    null_p: float


class PosteriorResult(_Strict):
    """``method="posterior"``: neural posterior estimation with sbi."""

    method: Literal["NPE", "MNPE"]
    condition: float
    n_null: int
    marginals: list[PosteriorMarginal]


class SensitivityResult(_Strict):
    """``sensitivity.json``: the numbers behind ``sensitivity.png``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=ANALYSIS_SCHEMA_VERSION, alias="schema")
    job: str | None = None
    source: str
    outcome: str
    outcome_kind: Literal["binary", "continuous"]
    method: Literal["glm", "posterior"] = "glm"
    n: int
    n_excluded: int = 0
    base_rate: float | None
    alpha: float
    seed: int
    notes: list[str] = Field(default_factory=list)
    model: ModelInfo | None = None
    factors: list[FactorResult]
    interactions: list[Interaction] = Field(default_factory=list)
    interaction_view: InteractionView | None = None
    importance_info: ImportanceInfo | None = None
    posterior: PosteriorResult | None = None

    def factor(self, name: str) -> FactorResult:
        """The result of the factor called ``name`` (KeyError if there is none)."""
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(name)

    def significant_factors(self) -> list[str]:
        """Names of the significant factors, strongest first."""
        return [f.name for f in sorted(self.factors, key=lambda f: f.rank) if f.significant]


def read_sensitivity(path: Path | str) -> SensitivityResult:
    """A ``sensitivity.json`` (the file, or a folder holding one), validated.

    Raises:
        RunFileError: missing, unreadable or not an analysis file (names the field).
    """
    path = Path(path)
    if path.is_dir():
        path = path / SENSITIVITY_FILE
    return read_model(path, SensitivityResult)
