"""Pydantic models of the analysis: the factors YAML it reads, and (re-exported
from :mod:`trialrun.runfiles.sensitivity`, which owns that file's format) the
``sensitivity.json`` it writes.

Example:
    >>> f = FactorsFile.model_validate(
    ...     {"factors": {"light": {"type": "continuous", "range": [0.0, 2000.0]}}})
    >>> f.to_specs()[0].kind, f.to_specs()[0].high
    ('continuous', 2000.0)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trialrun.binning import level_key
from trialrun.runfiles.schema import FactorSpec, FactorValue
from trialrun.runfiles.sensitivity import (
    ANALYSIS_SCHEMA_VERSION,
    AxisBin,
    Bin,
    FactorResult,
    ImportanceInfo,
    Interaction,
    InteractionView,
    ModelInfo,
    PartialDependence,
    PosteriorMarginal,
    PosteriorResult,
    SensitivityResult,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- factors YAML


class ContinuousFactorDecl(_Strict):
    """``{type: continuous, range: [low, high], scale: linear|log}``."""

    type: Literal["continuous"]
    range: tuple[float, float]
    scale: Literal["linear", "log"] = "linear"
    nominal: float | None = None
    units: str | None = None

    @model_validator(mode="after")
    def _check_range(self) -> ContinuousFactorDecl:
        low, high = self.range
        if not low < high:
            raise ValueError(f"range must be [low, high] with low < high, got [{low}, {high}]")
        if self.scale == "log" and low <= 0:
            raise ValueError(f"scale 'log' needs a range above 0, got [{low}, {high}]")
        return self


class CategoricalFactorDecl(_Strict):
    """``{type: categorical, choices: [a, b, ...]}``."""

    type: Literal["categorical"]
    choices: list[FactorValue] = Field(min_length=1)
    nominal: FactorValue | None = None
    units: str | None = None

    @model_validator(mode="after")
    def _check_choices(self) -> CategoricalFactorDecl:
        keys = [level_key(c) for c in self.choices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"choices must be distinct, got {self.choices}")
        return self


FactorDecl = Annotated[ContinuousFactorDecl | CategoricalFactorDecl, Field(discriminator="type")]


class FactorsFile(_Strict):
    """The factors YAML of ``trialrun analyze --episodes FILE --factors FACTORS.yaml``:
    the declared ranges and levels of the factors of records made elsewhere."""

    factors: dict[str, FactorDecl] = Field(min_length=1)

    def to_specs(self) -> list[FactorSpec]:
        """The declarations as the :class:`FactorSpec` a run's manifest would hold."""
        specs = []
        for name, decl in self.factors.items():
            if isinstance(decl, ContinuousFactorDecl):
                specs.append(
                    FactorSpec(
                        name=name,
                        kind="continuous",
                        low=decl.range[0],
                        high=decl.range[1],
                        scale=decl.scale,
                        nominal=decl.nominal,
                        units=decl.units,
                    )
                )
            else:
                specs.append(
                    FactorSpec(
                        name=name,
                        kind="categorical",
                        values=list(decl.choices),
                        nominal=decl.nominal,
                        units=decl.units,
                    )
                )
        return specs


__all__ = [
    "ANALYSIS_SCHEMA_VERSION",
    "AxisBin",
    "Bin",
    "CategoricalFactorDecl",
    "ContinuousFactorDecl",
    "FactorDecl",
    "FactorResult",
    "FactorsFile",
    "ImportanceInfo",
    "Interaction",
    "InteractionView",
    "ModelInfo",
    "PartialDependence",
    "PosteriorMarginal",
    "PosteriorResult",
    "SensitivityResult",
]
