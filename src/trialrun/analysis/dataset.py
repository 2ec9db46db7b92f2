"""Turning episode records plus factor specs into arrays the methods can use.

All the checks on user data live here, so that every method downstream can
assume clean input: factors that the spec and the records disagree on,
non-numeric or out-of-range values, unknown levels, NaN, missing outcomes,
an unknown outcome name. Problems the user must fix raise :class:`InputError`
naming the file, the field and what is allowed; problems the analysis can work
around (a few NaN rows, an undeclared extra factor, a constant factor) are
logged as warnings and recorded in ``notes`` so they end up in the JSON.

Example:
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> sweep = make_sweep(n=50, seed=0)
    >>> ds = prepare_dataset(sweep.records, sweep.specs, "success")
    >>> ds.kind, ds.n
    ('binary', 50)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from trialrun.binning import RANGE_TOLERANCE, level_key
from trialrun.errors import InputError
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, FactorValue

logger = logging.getLogger(__name__)

OutcomeKind = Literal["binary", "continuous"]


@dataclass
class FactorColumn:
    """One factor's values over the usable episodes.

    ``u`` places a continuous value in ``[0, 1]`` across the *declared* range
    (in log space for log-scale factors); splines, bins and grids are all built
    on ``u`` so that they follow the spec, not the sample's min and max.
    """

    spec: FactorSpec
    values: np.ndarray
    u: np.ndarray | None = None
    codes: np.ndarray | None = None
    levels: list[FactorValue] = field(default_factory=list)
    constant: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> Literal["continuous", "categorical"]:
        return self.spec.kind

    @property
    def is_log(self) -> bool:
        return self.spec.scale == "log"

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Factor units -> position in ``[0, 1]`` of the declared range."""
        low, high = float(self.spec.low), float(self.spec.high)  # type: ignore[arg-type]
        x = np.asarray(x, dtype=float)
        if self.is_log:
            return np.asarray((np.log(x) - math.log(low)) / (math.log(high) - math.log(low)))
        return np.asarray((x - low) / (high - low))

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Position in ``[0, 1]`` of the declared range -> factor units."""
        low, high = float(self.spec.low), float(self.spec.high)  # type: ignore[arg-type]
        u = np.asarray(u, dtype=float)
        if self.is_log:
            return np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return low + u * (high - low)


@dataclass
class Dataset:
    """The usable episodes of one analysis, as arrays."""

    source: str
    outcome: str
    kind: OutcomeKind
    y: np.ndarray
    columns: list[FactorColumn]
    job: str | None = None
    notes: list[str] = field(default_factory=list)
    n_excluded: int = 0

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def active(self) -> list[FactorColumn]:
        """Factors that vary in the data (the only ones a model can test)."""
        return [c for c in self.columns if not c.constant]

    @property
    def outcome_varies(self) -> bool:
        return bool(self.y.size) and bool(np.ptp(self.y) > 0)

    def note(self, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` (a warning by default) and keep it for the JSON's ``notes``."""
        logger.log(level, "%s", message)
        self.notes.append(message)


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _is_bad_number(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def available_outcomes(records: Sequence[EpisodeRecord]) -> list[str]:
    """Outcome names present in at least one record, sorted."""
    return sorted({key for r in records for key in r.outcome})


def prepare_dataset(
    records: Sequence[EpisodeRecord],
    specs: Sequence[FactorSpec],
    outcome: str,
    *,
    episodes_source: str = "episodes",
    spec_source: str = "factor spec",
    job: str | None = None,
) -> Dataset:
    """Validate ``records`` against ``specs`` and build the arrays for ``outcome``.

    Raises:
        InputError: no episodes, an unknown outcome, no factors, a declared
            factor absent from every record, a value of the wrong type, out of
            its declared range or not among the declared levels.
    """
    notes: list[str] = []

    def note(message: str) -> None:
        logger.warning("%s", message)
        notes.append(message)

    where = f" of job '{job}'" if job else ""
    if not records:
        raise InputError(f"{episodes_source}: no episodes{where} to analyse")
    if not specs:
        raise InputError(
            f"{spec_source}: no factors declared{where}; the analysis needs at least one "
            "factor (continuous with a range, or categorical with choices)"
        )

    # Duplicate identities are not possible in a finished run; keep the first.
    seen: set[tuple[str, int]] = set()
    unique: list[EpisodeRecord] = []
    for rec in records:
        key = (rec.job, rec.episode)
        if key in seen:
            continue
        seen.add(key)
        unique.append(rec)
    if len(unique) < len(records):
        note(
            f"{episodes_source}: {len(records) - len(unique)} duplicate (job, episode) "
            "records ignored (the first of each was kept)"
        )
    records = unique

    outcomes = available_outcomes(records)
    # Records made elsewhere may not say whether an episode succeeded.
    hint = "; success was never reported, try --outcome return" if outcome == "success" else ""
    if outcome not in outcomes:
        raise InputError(
            f"{episodes_source}: outcome '{outcome}' is not in the records{where}; "
            f"available outcomes: {', '.join(outcomes) or '(none)'}{hint}"
        )

    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{spec_source}: factor(s) {', '.join(dupes)} declared more than once")
    in_records = sorted({k for r in records for k in r.factors})
    missing = [n for n in names if n not in in_records]
    if missing:
        raise InputError(
            f"{spec_source}: factor(s) {', '.join(repr(m) for m in missing)} declared but absent "
            f"from every record in {episodes_source}; the records have factors: "
            f"{', '.join(in_records) or '(none)'}"
        )
    extra = [k for k in in_records if k not in names]
    if extra:
        note(
            f"factor(s) {', '.join(repr(e) for e in extra)} are in the records but not declared "
            f"in {spec_source}; they are ignored"
        )

    keep = np.ones(len(records), dtype=bool)

    # ---- outcome values
    raw_y = [r.outcome.get(outcome) for r in records]
    present = [v for v in raw_y if v is not None and not _is_bad_number(v)]
    if not present:
        raise InputError(
            f"{episodes_source}: outcome '{outcome}' has no value (all null or NaN) in any "
            f"record{where}; available outcomes: {', '.join(outcomes)}{hint}"
        )
    n_bool = sum(isinstance(v, bool) for v in present)
    if 0 < n_bool < len(present):
        raise InputError(
            f"{episodes_source}: field 'outcome.{outcome}' mixes booleans and numbers; an "
            "outcome must be all booleans (binary) or all numbers (continuous)"
        )
    kind: OutcomeKind = "binary" if n_bool else "continuous"
    n_none = sum(v is None for v in raw_y)
    n_nan = sum(_is_bad_number(v) for v in raw_y)
    for i, v in enumerate(raw_y):
        if v is None or _is_bad_number(v):
            keep[i] = False
    if n_none:
        note(
            f"{n_none} episode(s) have no value (null) for outcome '{outcome}' and are left out"
            + (" (it is only defined for successful episodes)" if outcome == "time_to_success" else "")
        )
    if n_nan:
        note(f"{n_nan} episode(s) have a NaN or infinite '{outcome}' and are left out")

    if outcome == "length":
        if "success" in outcomes:
            failed = np.array([not r.outcome.get("success") for r in records])
            n_failed = int((failed & keep).sum())
            keep &= ~failed
            note(
                "outcome 'length' is capped at the time limit for failures, so it is analysed "
                f"among successful episodes only ({n_failed} failed episode(s) left out)"
            )
        else:
            note(
                "outcome 'length' is capped at the time limit for failures, but the records have "
                "no 'success' outcome to exclude them; read length effects with care"
            )

    # ---- factor values
    resolved: list[FactorSpec] = []
    for spec in specs:
        vals = [r.factors.get(spec.name) for r in records]
        n_absent = sum(v is None for v in vals)
        if n_absent:
            note(f"{n_absent} episode(s) have no value for factor '{spec.name}' and are left out")
            keep &= np.array([v is not None for v in vals])
        if spec.kind == "continuous":
            resolved.append(_check_continuous(spec, vals, keep, episodes_source, spec_source, note, records))
        else:
            resolved.append(_check_categorical(spec, vals, keep, episodes_source, spec_source, note))

    n_excluded = int((~keep).sum())
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        raise InputError(
            f"{episodes_source}: no usable episodes{where} for outcome '{outcome}' "
            f"after leaving out {n_excluded} with missing or NaN values"
        )
    y = np.array([float(raw_y[i]) for i in idx])  # type: ignore[arg-type]

    columns: list[FactorColumn] = []
    for spec in resolved:
        used: list[FactorValue] = [records[i].factors[spec.name] for i in idx]
        if spec.kind == "continuous":
            col = FactorColumn(spec=spec, values=np.array(used, dtype=float))
            col.constant = bool(np.ptp(col.values) == 0) or spec.low == spec.high
            if spec.low == spec.high:
                col.u = np.zeros_like(col.values)
            else:
                col.u = np.clip(col.to_unit(col.values), 0.0, 1.0)
        else:
            declared = list(spec.values or [])
            keys = [level_key(v) for v in declared]
            present_keys = {level_key(v) for v in used}
            levels = [lv for lv, k in zip(declared, keys, strict=True) if k in present_keys]
            index = {level_key(lv): j for j, lv in enumerate(levels)}
            codes = np.array([index[level_key(v)] for v in used], dtype=np.int64)
            col = FactorColumn(
                spec=spec,
                values=np.array(used, dtype=object),
                codes=codes,
                levels=levels,
                constant=len(levels) < 2,
            )
            absent = [lv for lv, k in zip(declared, keys, strict=True) if k not in present_keys]
            if absent and not col.constant:
                note(
                    f"factor '{spec.name}': declared level(s) {', '.join(_fmt(a) for a in absent)} "
                    "never occur in the records and are not analysed"
                )
        if col.constant:
            value = col.values[0]
            note(
                f"factor '{spec.name}' is constant in the records (always {_fmt(value)}); "
                "it cannot be analysed and is left out of the model"
            )
        columns.append(col)

    return Dataset(
        source=episodes_source,
        outcome=outcome,
        kind=kind,
        y=y,
        columns=columns,
        job=job,
        notes=notes,
        n_excluded=n_excluded,
    )


def _check_continuous(
    spec: FactorSpec,
    vals: list[FactorValue | None],
    keep: np.ndarray,
    episodes_source: str,
    spec_source: str,
    note: Callable[[str], None],
    records: Sequence[EpisodeRecord],
) -> FactorSpec:
    """Type, NaN and range checks of one continuous factor; returns the spec with
    its range filled in (from the data, with a note) when the spec had none."""
    for i, v in enumerate(vals):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(
                f"{episodes_source}: field 'factors.{spec.name}' of episode "
                f"{records[i].episode} is {_fmt(v)}, but {spec_source} declares "
                f"'{spec.name}' continuous (numbers only); declare it categorical instead"
            )
    bad = np.array([v is not None and _is_bad_number(v) for v in vals])
    if bad.any():
        note(f"{int(bad.sum())} episode(s) have a NaN or infinite '{spec.name}' and are left out")
        keep &= ~bad
    finite = np.array([float(v) for v, k in zip(vals, keep, strict=True) if k and v is not None], dtype=float)
    low, high = spec.low, spec.high
    if low is None or high is None:
        if finite.size == 0:
            raise InputError(
                f"{spec_source}: field 'factors.{spec.name}': no range declared and no usable "
                "values to infer one from; declare range: [low, high]"
            )
        low = float(finite.min()) if low is None else low
        high = float(finite.max()) if high is None else high
        note(
            f"factor '{spec.name}' has no declared range in {spec_source}; using the observed "
            f"[{low:g}, {high:g}], so effects near unsampled bounds cannot be seen"
        )
    if not low < high:
        if low == high:
            return spec.model_copy(update={"low": low, "high": high})
        raise InputError(
            f"{spec_source}: field 'factors.{spec.name}': range must be [low, high] with "
            f"low < high, got [{low}, {high}]"
        )
    if spec.scale == "log" and low <= 0:
        raise InputError(
            f"{spec_source}: field 'factors.{spec.name}': scale 'log' needs a range above 0, "
            f"got [{low}, {high}]"
        )
    tol = RANGE_TOLERANCE * max(abs(low), abs(high), 1.0)
    outside = finite[(finite < low - tol) | (finite > high + tol)]
    if outside.size:
        raise InputError(
            f"{episodes_source}: {outside.size} value(s) of factor '{spec.name}' lie outside "
            f"the range [{low:g}, {high:g}] declared in {spec_source} (observed "
            f"{finite.min():g} to {finite.max():g}); widen field 'factors.{spec.name}' range"
        )
    return spec.model_copy(update={"low": float(low), "high": float(high)})


def _check_categorical(
    spec: FactorSpec,
    vals: list[FactorValue | None],
    keep: np.ndarray,
    episodes_source: str,
    spec_source: str,
    note: Callable[[str], None],
) -> FactorSpec:
    """Level checks of one categorical factor; returns the spec with its levels
    filled in (from the data, with a note) when the spec had none."""
    bad = np.array([v is not None and _is_bad_number(v) for v in vals])
    if bad.any():
        note(f"{int(bad.sum())} episode(s) have a NaN '{spec.name}' and are left out")
        keep &= ~bad
    observed: dict[str, FactorValue] = {}
    for v, k in zip(vals, keep, strict=True):
        if k and v is not None:
            observed.setdefault(level_key(v), v)
    if not spec.values:
        levels = sorted(observed.values(), key=lambda v: (str(type(v)), str(v)))
        note(
            f"factor '{spec.name}' has no declared levels in {spec_source}; using the observed "
            f"{', '.join(_fmt(v) for v in levels)}"
        )
        return spec.model_copy(update={"values": levels})
    allowed = {level_key(v) for v in spec.values}
    unknown = [v for k, v in observed.items() if k not in allowed]
    if unknown:
        raise InputError(
            f"{episodes_source}: factor '{spec.name}' has value(s) "
            f"{', '.join(_fmt(u) for u in unknown[:5])} that {spec_source} does not declare; "
            f"allowed (field 'factors.{spec.name}' choices): "
            f"{', '.join(_fmt(v) for v in spec.values)}"
        )
    return spec
