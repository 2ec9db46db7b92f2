"""Samplers: how the values of one factor are drawn.

A factor is a variation plus a sampler. The sampler is configured in the job::

    sampler: {type: loguniform, low: 0.1, high: 100}
    sampler: {type: uniform, low: 0.02, high: 1.0, levels: 4}      # levels: grid design only
    sampler: {type: normal, mean: 1.0, std: 0.1}                   # truncated to mean ± 4 std
    sampler: {type: choice, values: [pick-place-v3, push-v3], weights: [3, 1]}
    sampler: {type: constant, value: 9.81}

Every sampler is defined by its inverse CDF, :meth:`~Sampler.from_unit`, which
maps ``u`` in ``[0, 1]`` to a value. :meth:`~Sampler.draw` is
``from_unit(rng.random())``, so one episode's value of one factor depends on a
single uniform number from a seeded generator. That is why the designs in
:mod:`trialrun.variations.designs` (random, Latin hypercube, Sobol) can all
share one mapping, and why values do not move when numpy changes how it draws
from a particular distribution (``Generator.random`` is the most stable stream
numpy has).

The models reject unknown keys and inconsistent bounds with one clear message.
:data:`SamplerConfig` is the field type to use in a config model; validation
errors are reported at the sampler's own path (``...sampler.low``), without the
``type`` tag pydantic would otherwise insert.

Example:
    >>> import numpy as np
    >>> s = parse_sampler({"type": "loguniform", "low": 0.1, "high": 1000})
    >>> s.kind, s.from_unit(0.0), round(s.from_unit(0.5), 9), s.from_unit(1.0)
    ('continuous', 0.1, 10.0, 1000.0)
    >>> s.grid_levels(5)
    [0.1, 1.0, 10.0, 100.0, 1000.0]
    >>> s.spec_fields()
    {'kind': 'continuous', 'low': 0.1, 'high': 1000.0, 'values': None, 'scale': 'log'}
    >>> c = parse_sampler({"type": "choice", "values": ["a", "b"], "weights": [3, 1]})
    >>> c.from_unit(0.7), c.from_unit(0.8), c.draw(np.random.default_rng(0)) in {"a", "b"}
    ('a', 'b', True)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "SAMPLER_TYPES",
    "ChoiceSampler",
    "ConstantSampler",
    "FactorKind",
    "LogUniformSampler",
    "NormalSampler",
    "Sampler",
    "SamplerConfig",
    "SamplerModel",
    "ScalarValue",
    "UniformSampler",
    "parse_sampler",
]

FactorKind = Literal["continuous", "categorical"]
ScalarValue = Union[str, bool, int, float]  # noqa: UP007 (a runtime alias, also for Python 3.10 users)

# Strict: ``low: true`` or ``low: "5"`` is a mistake, not a number; ints are accepted.
_Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Levels = Annotated[int, Field(strict=True, ge=2)]

# How many standard deviations a normal sampler reaches on each side when a bound is omitted.
NORMAL_DEFAULT_HALF_WIDTH = 4.0


def _fmt(value: float) -> str:
    """A float as written in messages: ``5`` -> ``5.0``, ``0.1`` -> ``0.1``."""
    return repr(float(value))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _check_units(u: np.ndarray) -> np.ndarray:
    if u.size and not (np.all(u >= 0.0) and np.all(u <= 1.0)):
        bad = u[~((u >= 0.0) & (u <= 1.0))][0]
        raise ValueError(f"from_unit expects u in [0, 1], got {float(bad)!r}")
    return u


def _as_units(u: Sequence[float] | np.ndarray) -> np.ndarray:
    return _check_units(np.asarray(u, dtype=np.float64).reshape(-1))


def _check_scalar(value: Any, where: str) -> ScalarValue:
    """``value`` if it is a factor value that JSON and the analysis can hold."""
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite (got {value!r})")
        return value
    raise ValueError(f"{where} must be a string, number or boolean (got {type(value).__name__} {value!r})")


class Sampler(BaseModel, ABC):
    """Base of every sampler: a frozen pydantic model with an inverse CDF.

    Subclasses define ``type`` (the tag in the config) and :meth:`_from_units`;
    the rest follows from them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type_name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own message ("Extra inputs are not permitted") does not say
        # what *is* allowed; this one does.
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                allowed = ", ".join(sorted(cls.model_fields))
                raise ValueError(
                    f"unknown key '{unknown[0]}' for a {cls.type_name} sampler; allowed keys: {allowed}"
                )
        return data

    @property
    @abstractmethod
    def kind(self) -> FactorKind:
        """``"continuous"`` (analysed as a number) or ``"categorical"`` (as labels)."""

    @abstractmethod
    def _from_units(self, u: np.ndarray) -> list[ScalarValue]:
        """The inverse CDF applied to an array of already-checked ``u`` in [0, 1]."""

    def from_unit(self, u: float) -> ScalarValue:
        """The value at quantile ``u`` (the inverse CDF), for ``u`` in [0, 1].

        ``from_unit(0)`` is the lowest value and ``from_unit(1)`` the highest;
        the map is non-decreasing. Designs (LHS, Sobol) produce the ``u``.
        """
        return self._from_units(_as_units([u]))[0]

    def from_units(self, u: Sequence[float] | np.ndarray) -> list[ScalarValue]:
        """:meth:`from_unit` over many ``u`` at once (one scipy call instead of
        one per value); element ``i`` equals ``from_unit(u[i])`` exactly."""
        return self._from_units(_as_units(u))

    def draw(self, rng: np.random.Generator) -> ScalarValue:
        """One value: ``from_unit(rng.random())`` (consumes exactly one double)."""
        return self.from_unit(float(rng.random()))

    @abstractmethod
    def grid_levels(self, default: int) -> list[ScalarValue]:
        """The points this factor contributes to a grid design."""

    @abstractmethod
    def spec_fields(self) -> dict[str, Any]:
        """The :class:`~trialrun.runfiles.schema.FactorSpec` fields the sampler
        determines: ``kind``, ``low``, ``high``, ``values``, ``scale``."""

    @abstractmethod
    def nominal_hint(self) -> ScalarValue:
        """The value a nominal evaluation uses when the variation has no nominal of its own."""


def _check_default_levels(default: int) -> int:
    if isinstance(default, bool) or not isinstance(default, (int, np.integer)) or default < 2:
        raise ValueError(f"the default number of grid levels must be an integer >= 2 (got {default!r})")
    return int(default)


def _check_low_high(low: float, high: float, *, high_note: str = "", low_note: str = "") -> None:
    if not low < high:
        hint = "; use type: constant for a fixed value" if low == high else ""
        raise ValueError(
            f"low ({_fmt(low)}{low_note}) must be less than high ({_fmt(high)}{high_note}){hint}"
        )


class _Bounded(Sampler):
    """A continuous sampler on a closed interval ``[lower, upper]``."""

    @property
    def kind(self) -> FactorKind:
        return "continuous"

    @property
    @abstractmethod
    def bounds(self) -> tuple[float, float]:
        """The closed interval the values lie in."""

    @abstractmethod
    def _ppf(self, u: np.ndarray) -> np.ndarray:
        """The raw inverse CDF (before clipping and pinning the ends)."""

    def _from_units(self, u: np.ndarray) -> list[ScalarValue]:
        lower, upper = self.bounds
        with np.errstate(all="ignore"):
            x = np.clip(self._ppf(u), lower, upper)
        # Pin the ends exactly: exp(log(low)) need not be low to the last bit.
        x = np.where(u <= 0.0, lower, np.where(u >= 1.0, upper, x))
        return [float(v) for v in x]

    def _scale(self) -> Literal["linear", "log"]:
        return "linear"

    def spec_fields(self) -> dict[str, Any]:
        lower, upper = self.bounds
        return {"kind": "continuous", "low": lower, "high": upper, "values": None, "scale": self._scale()}


class UniformSampler(_Bounded):
    """Uniform on ``[low, high]``.

    ``levels`` is the number of grid points (``low`` and ``high`` included),
    used only by the grid design.

    Example:
        >>> s = UniformSampler(low=0, high=2, levels=3)
        >>> s.from_unit(0.25), s.grid_levels(5), s.nominal_hint()
        (0.5, [0.0, 1.0, 2.0], 1.0)
    """

    type_name: ClassVar[str] = "uniform"
    type: Literal["uniform"] = "uniform"
    low: _Real
    high: _Real
    levels: _Levels | None = None

    @model_validator(mode="after")
    def _ordered(self) -> UniformSampler:
        _check_low_high(self.low, self.high)
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.low), float(self.high))

    def _ppf(self, u: np.ndarray) -> np.ndarray:
        return self.low + u * (self.high - self.low)

    def grid_levels(self, default: int) -> list[ScalarValue]:
        n = self.levels or _check_default_levels(default)
        points = np.linspace(self.low, self.high, n)
        points[0], points[-1] = self.low, self.high
        return [float(v) for v in points]

    def nominal_hint(self) -> ScalarValue:
        return float((self.low + self.high) / 2)


class LogUniformSampler(_Bounded):
    """Log-uniform on ``[low, high]`` (``0 < low < high``): ``log(value)`` is
    uniform, so each decade gets the same share of episodes. Grid levels are
    geometric and the nominal hint is the geometric mean.

    Example:
        >>> s = LogUniformSampler(low=1, high=100)
        >>> s.grid_levels(3), s.nominal_hint(), s.spec_fields()["scale"]
        ([1.0, 10.0, 100.0], 10.0, 'log')
    """

    type_name: ClassVar[str] = "loguniform"
    type: Literal["loguniform"] = "loguniform"
    low: _Real
    high: _Real
    levels: _Levels | None = None

    @field_validator("low")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"low ({_fmt(value)}) must be greater than 0 for a loguniform sampler")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LogUniformSampler:
        _check_low_high(self.low, self.high)
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.low), float(self.high))

    def _ppf(self, u: np.ndarray) -> np.ndarray:
        log_low, log_high = math.log(self.low), math.log(self.high)
        return np.exp(log_low + u * (log_high - log_low))

    def _scale(self) -> Literal["linear", "log"]:
        return "log"

    def grid_levels(self, default: int) -> list[ScalarValue]:
        n = self.levels or _check_default_levels(default)
        points = np.geomspace(self.low, self.high, n)
        points[0], points[-1] = self.low, self.high
        return [float(v) for v in points]

    def nominal_hint(self) -> ScalarValue:
        return float(math.sqrt(self.low) * math.sqrt(self.high))


class NormalSampler(_Bounded):
    """Normal with ``mean`` and ``std``, truncated to ``[low, high]``.

    An omitted bound defaults to ``mean - 4 std`` (``low``) or ``mean + 4 std``
    (``high``): a physical parameter drawn from an untruncated normal can come
    out negative or absurd once in a long sweep, and a factor needs finite
    bounds for its spec anyway. Truncating at 4 std removes about 6e-5 of the
    mass. Grid levels are quantiles at the probabilities ``(i + 0.5) / n``
    (the centres of ``n`` equally likely strata), so they never sit on the
    bounds; the nominal hint is ``mean`` (clipped to the bounds).

    Example:
        >>> s = NormalSampler(mean=1.0, std=0.1)
        >>> s.bounds, s.from_unit(0.5), s.grid_levels(3)[1]
        ((0.6, 1.4), 1.0, 1.0)
    """

    type_name: ClassVar[str] = "normal"
    type: Literal["normal"] = "normal"
    mean: _Real
    std: _Real
    low: _Real | None = None
    high: _Real | None = None
    levels: _Levels | None = None

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"std ({_fmt(value)}) must be greater than 0")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> NormalSampler:
        lower, upper = self.bounds
        _check_low_high(
            lower,
            upper,
            low_note=", the default mean - 4 std" if self.low is None else "",
            high_note=", the default mean + 4 std" if self.high is None else "",
        )
        # A window far out in a tail (e.g. 40 std away) has no usable mass.
        probe = self._ppf(np.array([0.5]))
        if not np.all(np.isfinite(probe)):
            raise ValueError(
                f"[{_fmt(lower)}, {_fmt(upper)}] is too far in the tail of normal(mean={_fmt(self.mean)}, "
                f"std={_fmt(self.std)}) to sample; move the bounds or the mean"
            )
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        half = NORMAL_DEFAULT_HALF_WIDTH * self.std
        lower = self.mean - half if self.low is None else self.low
        upper = self.mean + half if self.high is None else self.high
        return (float(lower), float(upper))

    def _ppf(self, u: np.ndarray) -> np.ndarray:
        from scipy.stats import truncnorm  # scipy.stats is slow to import; only normal needs it

        lower, upper = self.bounds
        a, b = (lower - self.mean) / self.std, (upper - self.mean) / self.std
        return np.asarray(truncnorm.ppf(u, a, b, loc=self.mean, scale=self.std), dtype=np.float64)

    def grid_levels(self, default: int) -> list[ScalarValue]:
        n = self.levels or _check_default_levels(default)
        return self._from_units((np.arange(n) + 0.5) / n)

    def nominal_hint(self) -> ScalarValue:
        lower, upper = self.bounds
        return float(min(max(self.mean, lower), upper))


class ChoiceSampler(Sampler):
    """One of ``values`` (strings, numbers or booleans), with optional relative
    ``weights`` (normalised to sum 1; a zero weight keeps a value in the spec
    and the grid but never draws it at random). The values are categorical.

    Values must be unique under ``==``: ``1`` and ``1.0`` (and ``1`` and
    ``true``) would be one category to any dict, set or table downstream.

    Example:
        >>> s = ChoiceSampler(values=["a", "b", "c"], weights=[2, 1, 1])
        >>> s.probabilities, [s.from_unit(u) for u in (0.0, 0.49, 0.5, 0.8)]
        ((0.5, 0.25, 0.25), ['a', 'a', 'b', 'c'])
    """

    type_name: ClassVar[str] = "choice"
    type: Literal["choice"] = "choice"
    values: tuple[ScalarValue, ...]
    weights: tuple[_Real, ...] | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _scalar_values(cls, value: Any) -> Any:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
            raise ValueError("values must be a list of strings, numbers or booleans")
        if len(value) == 0:
            raise ValueError("values must not be empty")
        for index, item in enumerate(value):
            _check_scalar(item, f"values[{index}]")
            for earlier in value[:index]:
                if earlier == item:
                    if type(earlier) is type(item):
                        raise ValueError(f"values must be unique; {item!r} appears more than once")
                    raise ValueError(f"values must be unique; {item!r} equals {earlier!r}")
        return tuple(value)

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return value
        for index, weight in enumerate(value):
            if weight < 0:
                raise ValueError(f"weights must be non-negative (weights[{index}] is {_fmt(weight)})")
        if sum(value) <= 0:
            raise ValueError("weights must not all be zero")
        return value

    @model_validator(mode="after")
    def _one_weight_per_value(self) -> ChoiceSampler:
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(
                f"weights has {_count(len(self.weights), 'entry', 'entries')} but values has "
                f"{_count(len(self.values), 'entry', 'entries')}; give one weight per value"
            )
        return self

    @property
    def kind(self) -> FactorKind:
        return "categorical"

    @property
    def probabilities(self) -> tuple[float, ...]:
        """The normalised weights (equal when ``weights`` is omitted)."""
        if self.weights is None:
            return tuple(1.0 / len(self.values) for _ in self.values)
        total = math.fsum(self.weights)
        return tuple(float(w) / total for w in self.weights)

    def _cumulative(self) -> np.ndarray:
        cumulative = np.cumsum(self.probabilities)
        cumulative[-1] = 1.0  # no rounding gap at the top
        return cumulative

    def _from_units(self, u: np.ndarray) -> list[ScalarValue]:
        cumulative = self._cumulative()
        # side="right": a zero-weight value (an empty step) is never selected.
        index = np.searchsorted(cumulative, u, side="right")
        # u == 1 lands past the end: take the last value with a positive weight.
        last = int(np.flatnonzero(np.asarray(self.probabilities) > 0)[-1])
        index = np.minimum(index, last)
        return [self.values[int(i)] for i in index]

    def grid_levels(self, default: int) -> list[ScalarValue]:
        return list(self.values)

    def spec_fields(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "low": None,
            "high": None,
            "values": list(self.values),
            "scale": "linear",
        }

    def nominal_hint(self) -> ScalarValue:
        return self.values[0]


class ConstantSampler(Sampler):
    """Always ``value``: pins a factor (for example in a template's nominal
    suite) while keeping it in the spec. Categorical if the value is a string
    or boolean, else continuous; the value is returned exactly as given
    (``3`` stays an int).

    Example:
        >>> ConstantSampler(value=9.81).kind, ConstantSampler(value="push-v3").grid_levels(5)
        ('continuous', ['push-v3'])
    """

    type_name: ClassVar[str] = "constant"
    type: Literal["constant"] = "constant"
    value: ScalarValue

    @field_validator("value", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        return _check_scalar(value, "value")

    @property
    def kind(self) -> FactorKind:
        return "categorical" if isinstance(self.value, (str, bool)) else "continuous"

    def _from_units(self, u: np.ndarray) -> list[ScalarValue]:
        return [self.value] * int(u.size)

    def grid_levels(self, default: int) -> list[ScalarValue]:
        return [self.value]

    def spec_fields(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {
                "kind": "categorical",
                "low": None,
                "high": None,
                "values": [self.value],
                "scale": "linear",
            }
        number = float(self.value)
        return {"kind": "continuous", "low": number, "high": number, "values": None, "scale": "linear"}

    def nominal_hint(self) -> ScalarValue:
        return self.value


SamplerModel = Union[UniformSampler, LogUniformSampler, NormalSampler, ChoiceSampler, ConstantSampler]  # noqa: UP007
"""Any concrete sampler (the validated form of :data:`SamplerConfig`)."""

SAMPLER_TYPES: tuple[str, ...] = ("uniform", "loguniform", "normal", "choice", "constant")


def _plain_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate the tagged union, reporting errors at the sampler's own path.

    pydantic puts the tag into the error location (``sampler.uniform.low``);
    users wrote ``sampler.low``. Unknown or missing tags get a message that
    lists the sampler types.
    """
    try:
        return handler(value)
    except ValidationError as exc:
        allowed = ", ".join(SAMPLER_TYPES)
        details: list[InitErrorDetails] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc and loc[0] in SAMPLER_TYPES:
                loc = loc[1:]
            if err["type"] == "union_tag_invalid":
                tag = value.get("type") if isinstance(value, dict) else None
                error: Any = PydanticCustomError(
                    "sampler_type",
                    "unknown sampler type {tag}; allowed types: {allowed}",
                    {"tag": repr(tag), "allowed": allowed},
                )
                details.append(InitErrorDetails(type=error, loc=loc, input=err["input"]))
            elif err["type"] == "union_tag_not_found":
                error = PydanticCustomError(
                    "sampler_type", "a sampler needs a 'type': one of {allowed}", {"allowed": allowed}
                )
                details.append(InitErrorDetails(type=error, loc=loc, input=err["input"]))
            elif not loc and err["type"] in {"model_attributes_type", "dict_type", "model_type"}:
                error = PydanticCustomError(
                    "sampler_type",
                    "a sampler must be a mapping with a 'type' (one of {allowed}), for example {example}",
                    {"allowed": allowed, "example": "{type: uniform, low: 0, high: 1}"},
                )
                details.append(InitErrorDetails(type=error, loc=loc, input=err["input"]))
            else:
                detail = InitErrorDetails(type=err["type"], loc=loc, input=err["input"])
                if "ctx" in err:
                    detail["ctx"] = err["ctx"]
                details.append(detail)
        raise ValidationError.from_exception_data(exc.title, details) from None


SamplerConfig = Annotated[
    Annotated[SamplerModel, Field(discriminator="type")],
    WrapValidator(_plain_errors),
]
"""The field type for a sampler in a config model (a union tagged by ``type``)."""

_ADAPTER: TypeAdapter[SamplerModel] = TypeAdapter(SamplerConfig)


def parse_sampler(raw: Any) -> SamplerModel:
    """Validate one sampler config (a mapping with ``type``); raises pydantic's
    ``ValidationError`` like any config model (config.py turns it into a
    ``ConfigError`` with the field path)."""
    return _ADAPTER.validate_python(raw)
