"""Paired comparison of two runs of one config (typically two checkpoints).

Two runs made from the same config see identical episodes: slot ``k`` of a job
has the same seed and factor values whatever policy runs it. So episodes are
paired by ``(job, episode)`` and compared pair by pair, which removes the
episode-to-episode variation that an unpaired comparison would have to
average out (far fewer episodes are needed to see a difference).

Per job, on the episodes both runs completed:

- success: B - A with **Newcombe's paired score interval** (Newcombe 1998,
  method 10: Wilson intervals of both rates, combined with the estimated
  correlation of the pairs) and **McNemar's test** (exact binomial test of the
  discordant pairs when there are fewer than 25 of them, else the chi-square
  test with continuity correction; statsmodels).
- return: mean of ``return_B - return_A`` with a **paired percentile
  bootstrap** interval (pairs are resampled, 2000 resamples, seeded).
- per factor bin (bins from the manifests' factor specs: equal-width, or
  log-spaced for log-scale factors, over the spec's bounds; one bin per
  categorical value): the same success difference and interval.

The gate (``--fail-if-worse``): a job fails when the upper bound of its 95%
interval of B - A success is below ``-margin``, i.e. B is worse than A by
more than the margin with 95% confidence. There is no multiplicity correction
across jobs: gate on the job that matters (``--job``) when there are many.

Runs whose configs differ in what defines the episodes (run seed, or a job's
env, episodes, max_steps, success rule, factors or design) are refused
(:class:`ComparisonRefused`, naming the first difference); the policy, the
instruction, ``num_envs`` and videos may differ. Pairs whose recorded seed or
factors differ are refused too.

This module reads run files only; it never imports the rollout side.

Example:
    >>> lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    >>> round(lo, 4), round(hi, 4)
    (-0.1186, -0.0046)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trialrun.errors import ComparisonRefused, InputError
from trialrun.runfiles import (
    EPISODES_FILE,
    RunFileError,
    read_episodes,
    read_manifest,
    write_json_atomic,
)
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, FactorValue, Interval, Manifest
from trialrun.stats import bootstrap_mean_interval, wilson_interval

logger = logging.getLogger(__name__)

COMPARISON_FILE = "comparison.json"
COMPARE_HTML = "compare.html"
COMPARISON_SCHEMA = 1

# Job keys that define which episodes run: they must match for pairs to be pairs.
IDENTITY_KEYS = ("env", "episodes", "max_steps", "success", "factors", "design")
EXACT_MCNEMAR_BELOW = 25


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuccessComparison(_Strict):
    """Success of the paired episodes: rates, B - A and its interval, McNemar's test."""

    a_rate: float
    b_rate: float
    difference: float
    ci: Interval
    both: int
    only_a: int
    only_b: int
    neither: int
    mcnemar_p: float
    mcnemar_method: Literal["exact-binomial", "chi2-continuity-corrected"]


class ReturnComparison(_Strict):
    """Mean return of the paired episodes and the mean of the paired differences."""

    a_mean: float
    b_mean: float
    difference: float
    ci: Interval


class BinComparison(_Strict):
    """B - A within one bin of one factor."""

    label: str
    low: float | None = None
    high: float | None = None
    value: FactorValue | None = None
    pairs: int
    a_rate: float | None
    b_rate: float | None
    difference: float | None
    ci: Interval | None
    return_difference: float | None


class FactorComparison(_Strict):
    """The per-bin differences of one factor."""

    factor: str
    kind: Literal["continuous", "categorical"]
    scale: Literal["linear", "log"] = "linear"
    bins: list[BinComparison]


class JobComparison(_Strict):
    """Everything compared for one job."""

    job: str
    policy_a: dict[str, Any]
    policy_b: dict[str, Any]
    pairs: int
    only_in_a: int
    only_in_b: int
    success: SuccessComparison | None
    return_: ReturnComparison | None = Field(default=None, alias="return")
    factors: list[FactorComparison] = Field(default_factory=list)
    verdict: Literal["B better", "B worse", "no clear difference", "no shared episodes"]
    half_width: float | None = None
    target_half_width: float | None = None
    meets_target: bool | None = None
    worse_beyond_margin: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RunRef(_Strict):
    """Which run a side of the comparison is."""

    name: str
    dir: str
    seed: int


class Comparison(_Strict):
    """``comparison.json``: the paired comparison of run B against run A."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=COMPARISON_SCHEMA, alias="schema")
    run_a: RunRef
    run_b: RunRef
    level: float = 0.95
    margin: float
    created_at: str
    jobs: dict[str, JobComparison]
    jobs_only_in_a: list[str] = Field(default_factory=list)
    jobs_only_in_b: list[str] = Field(default_factory=list)
    gate_failed: bool
    failing_jobs: list[str] = Field(default_factory=list)
    methods: dict[str, str] = Field(default_factory=dict)


METHODS = {
    "success_ci": "Newcombe (1998) paired score interval, method 10 (Wilson intervals + pair correlation)",
    "mcnemar": f"McNemar's test; exact binomial when discordant pairs < {EXACT_MCNEMAR_BELOW}, "
    "else chi-square with continuity correction (statsmodels)",
    "return_ci": "paired percentile bootstrap of the mean difference (2000 resamples, seeded)",
    "gate": "fails when the upper bound of the 95% interval of B - A success is below -margin",
}


# --------------------------------------------------------------------------- statistics


def newcombe_paired_interval(
    both: int, only_b: int, only_a: int, neither: int, level: float = 0.95
) -> tuple[float, float]:
    """Newcombe's paired score interval (method 10) for ``rate_B - rate_A``.

    Arguments are the counts of the paired 2x2 table: both succeeded, only B,
    only A, neither. Chosen over the Wald interval because it stays in [-1, 1]
    and keeps near-nominal coverage at rates near 0 or 1 and at small n.
    """
    n = both + only_b + only_a + neither
    if n <= 0:
        raise ValueError("no pairs")
    b_succ, a_succ = both + only_b, both + only_a
    p1, p2 = b_succ / n, a_succ / n
    l1, u1 = wilson_interval(b_succ, n, level)
    l2, u2 = wilson_interval(a_succ, n, level)
    margins = [b_succ, n - b_succ, a_succ, n - a_succ]
    psi = 0.0
    if all(margins):
        cross = both * neither - only_b * only_a
        if cross > n / 2:
            psi = (cross - n / 2) / math.sqrt(math.prod(margins))
        elif cross < 0:
            psi = cross / math.sqrt(math.prod(margins))
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)))
    high = d + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


def mcnemar_test(only_a: int, only_b: int) -> tuple[float, str]:
    """McNemar's p-value for the discordant counts and the method used."""
    from statsmodels.stats.contingency_tables import mcnemar

    discordant = only_a + only_b
    if discordant == 0:
        return 1.0, "exact-binomial"
    exact = discordant < EXACT_MCNEMAR_BELOW
    result = mcnemar([[0, only_a], [only_b, 0]], exact=exact, correction=True)
    return float(min(1.0, result.pvalue)), "exact-binomial" if exact else "chi2-continuity-corrected"


def _success_comparison(a: np.ndarray, b: np.ndarray) -> SuccessComparison:
    both = int(np.sum(a & b))
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    neither = int(np.sum(~a & ~b))
    low, high = newcombe_paired_interval(both, only_b, only_a, neither)
    p, method = mcnemar_test(only_a, only_b)
    n = len(a)
    return SuccessComparison(
        a_rate=float(a.mean()),
        b_rate=float(b.mean()),
        difference=(only_b - only_a) / n,
        ci=Interval(low=low, high=high, method="newcombe-paired-score"),
        both=both,
        only_a=only_a,
        only_b=only_b,
        neither=neither,
        mcnemar_p=p,
        mcnemar_method=method,  # type: ignore[arg-type]
    )


def _stable_seed(seed: int, job: str) -> int:
    digest = hashlib.sha256(f"{seed}:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _return_comparison(a: np.ndarray, b: np.ndarray, seed: int) -> ReturnComparison:
    diffs = b - a
    low, high = bootstrap_mean_interval(diffs, seed=seed)
    return ReturnComparison(
        a_mean=float(a.mean()),
        b_mean=float(b.mean()),
        difference=float(diffs.mean()),
        ci=Interval(low=low, high=high, method="paired-percentile-bootstrap"),
    )


# --------------------------------------------------------------------------- factor bins


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def factor_bins(
    spec: FactorSpec, values: Sequence[FactorValue], bins: int
) -> list[tuple[str, list[int], dict[str, Any]]]:
    """``(label, indices of values in the bin, bin fields)`` per bin of ``spec``.

    Continuous factors get ``bins`` equal-width bins over the spec's bounds
    (log-spaced for log-scale factors); categorical ones one bin per value.
    """
    if spec.kind == "categorical":
        levels: list[FactorValue] = list(spec.values or [])
        for v in values:
            if v not in levels:
                levels.append(v)
        return [
            (str(level), [i for i, v in enumerate(values) if v == level], {"value": level})
            for level in levels
        ]
    low = spec.low if spec.low is not None else min(float(v) for v in values)
    high = spec.high if spec.high is not None else max(float(v) for v in values)
    if spec.scale == "log" and low > 0 and high > 0:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high, bins + 1)
    arr = np.asarray([float(v) for v in values], dtype=float)
    which = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, bins - 1)
    result = []
    for k in range(bins):
        label = f"[{_fmt(edges[k])}, {_fmt(edges[k + 1])}{']' if k == bins - 1 else ')'}"
        result.append(
            (
                label,
                [int(i) for i in np.flatnonzero(which == k)],
                {"low": float(edges[k]), "high": float(edges[k + 1])},
            )
        )
    return result


def _factor_comparisons(
    specs: list[FactorSpec],
    pairs: list[tuple[EpisodeRecord, EpisodeRecord]],
    a_succ: np.ndarray,
    b_succ: np.ndarray,
    a_ret: np.ndarray,
    b_ret: np.ndarray,
    bins: int,
) -> list[FactorComparison]:
    out = []
    for spec in specs:
        values = [rec_a.factors.get(spec.name) for rec_a, _ in pairs]
        if any(v is None for v in values):
            logger.warning("factor '%s' is missing from some records; skipped", spec.name)
            continue
        rows = []
        for label, idx, fields in factor_bins(spec, values, bins):  # type: ignore[arg-type]
            ids = np.asarray(idx, dtype=int)
            if len(ids):
                sc = _success_comparison(a_succ[ids], b_succ[ids])
                rows.append(
                    BinComparison(
                        label=label,
                        pairs=len(ids),
                        a_rate=sc.a_rate,
                        b_rate=sc.b_rate,
                        difference=sc.difference,
                        ci=sc.ci,
                        return_difference=float((b_ret[ids] - a_ret[ids]).mean()),
                        **fields,
                    )
                )
            else:
                rows.append(
                    BinComparison(
                        label=label,
                        pairs=0,
                        a_rate=None,
                        b_rate=None,
                        difference=None,
                        ci=None,
                        return_difference=None,
                        **fields,
                    )
                )
        out.append(FactorComparison(factor=spec.name, kind=spec.kind, scale=spec.scale, bins=rows))
    return out


# --------------------------------------------------------------------------- loading and checks


def _load_run(run_dir: Path) -> tuple[Manifest, dict[str, dict[int, EpisodeRecord]]]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    try:
        manifest = read_manifest(run_dir)
        records = read_episodes(run_dir / EPISODES_FILE)
    except RunFileError as exc:
        raise InputError(f"{run_dir} is not a readable run: {exc}") from None
    by_job: dict[str, dict[int, EpisodeRecord]] = {}
    for rec in records:
        by_job.setdefault(rec.job, {}).setdefault(rec.episode, rec)
    return manifest, by_job


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                where = f"{path}.{key}"
                return f"{where} is set only in run {'A' if key in a else 'B'}"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}.{i}")
            if found:
                return found
        return None
    if a != b:
        return f"{path} differs: {json.dumps(a, default=str)} (A) vs {json.dumps(b, default=str)} (B)"
    return None


def config_difference(config_a: dict[str, Any], config_b: dict[str, Any], jobs: Sequence[str]) -> str | None:
    """The first difference that makes the runs' episodes differ, or None.

    Compared: the run seed, and for each of ``jobs`` the keys in
    :data:`IDENTITY_KEYS`. Policies (and other keys) may differ.
    """
    if config_a.get("seed") != config_b.get("seed"):
        return f"the run seed differs: {config_a.get('seed')} (A) vs {config_b.get('seed')} (B)"
    jobs_a = {j["name"]: j for j in config_a.get("jobs", [])}
    jobs_b = {j["name"]: j for j in config_b.get("jobs", [])}
    for name in jobs:
        for key in IDENTITY_KEYS:
            found = _first_difference(jobs_a[name].get(key), jobs_b[name].get(key), f"jobs[{name}].{key}")
            if found:
                return found
    return None


# --------------------------------------------------------------------------- comparison


def compare_runs(
    run_a: Path,
    run_b: Path,
    *,
    job: str | None = None,
    margin: float = 0.02,
    bins: int = 4,
    seed: int = 0,
    target_half_width: float | None = None,
) -> Comparison:
    """Compare run B against run A on their shared, completed episodes.

    Raises:
        ComparisonRefused: the runs' configs (or recorded seeds/factors) differ
            in what defines the episodes, or they share no job.
        InputError: a run directory is missing or unreadable.
    """
    if not 0 <= margin < 1:
        raise InputError(f"--margin must be in [0, 1), got {margin}")
    if bins < 1:
        raise InputError(f"--bins must be at least 1, got {bins}")
    manifest_a, records_a = _load_run(run_a)
    manifest_b, records_b = _load_run(run_b)
    names_a = [j["name"] for j in manifest_a.config.get("jobs", [])]
    names_b = [j["name"] for j in manifest_b.config.get("jobs", [])]
    if job is not None:
        for side, names in (("A", names_a), ("B", names_b)):
            if job not in names:
                raise InputError(f"run {side} has no job '{job}'; its jobs: {', '.join(names)}")
        shared = [job]
    else:
        shared = [n for n in names_a if n in names_b]
        if not shared:
            raise ComparisonRefused(
                f"the runs share no job (A: {', '.join(names_a)}; B: {', '.join(names_b)})"
            )
    difference = config_difference(manifest_a.config, manifest_b.config, shared)
    if difference:
        raise ComparisonRefused(
            f"the runs' configs differ, so their episodes are not paired: {difference}. Compare runs made "
            "from the same run file (only the policy may differ)"
        )
    configs_a = {j["name"]: j for j in manifest_a.config["jobs"]}
    configs_b = {j["name"]: j for j in manifest_b.config["jobs"]}
    jobs: dict[str, JobComparison] = {}
    for name in shared:
        jobs[name] = _compare_job(
            name,
            records_a.get(name, {}),
            records_b.get(name, {}),
            manifest_a.jobs[name].factors if name in manifest_a.jobs else [],
            configs_a[name].get("policy", {}),
            configs_b[name].get("policy", {}),
            margin=margin,
            bins=bins,
            seed=_stable_seed(seed, name),
            target_half_width=target_half_width,
        )
    failing = [name for name, jc in jobs.items() if jc.worse_beyond_margin]
    return Comparison(
        run_a=RunRef(name=manifest_a.run, dir=str(Path(run_a).resolve()), seed=manifest_a.seed),
        run_b=RunRef(name=manifest_b.run, dir=str(Path(run_b).resolve()), seed=manifest_b.seed),
        margin=margin,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        jobs=jobs,
        jobs_only_in_a=[] if job else [n for n in names_a if n not in names_b],
        jobs_only_in_b=[] if job else [n for n in names_b if n not in names_a],
        gate_failed=bool(failing),
        failing_jobs=failing,
        methods=METHODS,
    )


def _compare_job(
    name: str,
    recs_a: dict[int, EpisodeRecord],
    recs_b: dict[int, EpisodeRecord],
    specs: list[FactorSpec],
    policy_a: dict[str, Any],
    policy_b: dict[str, Any],
    *,
    margin: float,
    bins: int,
    seed: int,
    target_half_width: float | None,
) -> JobComparison:
    episodes = sorted(set(recs_a) & set(recs_b))
    pairs = [(recs_a[k], recs_b[k]) for k in episodes]
    for rec_a, rec_b in pairs:
        if rec_a.seed != rec_b.seed or rec_a.factors != rec_b.factors:
            what = "seed" if rec_a.seed != rec_b.seed else "factors"
            raise ComparisonRefused(
                f"job '{name}' episode {rec_a.episode} has a different {what} in the two runs "
                f"({getattr(rec_a, what)} vs {getattr(rec_b, what)}): the runs were not made from the "
                "same plan"
            )
    common: dict[str, Any] = {
        "job": name,
        "policy_a": policy_a,
        "policy_b": policy_b,
        "pairs": len(pairs),
        "only_in_a": len(set(recs_a) - set(recs_b)),
        "only_in_b": len(set(recs_b) - set(recs_a)),
        "target_half_width": target_half_width,
    }
    if not pairs:
        return JobComparison(**common, success=None, verdict="no shared episodes")
    a_succ = np.array([bool(a.outcome.get("success")) for a, _ in pairs])
    b_succ = np.array([bool(b.outcome.get("success")) for _, b in pairs])
    a_ret = np.array([float(a.outcome.get("return") or 0.0) for a, _ in pairs])
    b_ret = np.array([float(b.outcome.get("return") or 0.0) for _, b in pairs])
    success = _success_comparison(a_succ, b_succ)
    half_width = (success.ci.high - success.ci.low) / 2
    if success.ci.low > 0:
        verdict = "B better"
    elif success.ci.high < 0:
        verdict = "B worse"
    else:
        verdict = "no clear difference"
    return JobComparison(
        **common,
        success=success,
        return_=_return_comparison(a_ret, b_ret, seed),  # type: ignore[call-arg]
        factors=_factor_comparisons(specs, pairs, a_succ, b_succ, a_ret, b_ret, bins),
        verdict=verdict,  # type: ignore[arg-type]
        half_width=half_width,
        meets_target=None if target_half_width is None else bool(half_width <= target_half_width),
        worse_beyond_margin=bool(success.ci.high < -margin),
    )


# --------------------------------------------------------------------------- output


def default_out_dir(run_a: Path, run_b: Path) -> Path:
    """``<RUN_B>/compare/vs-<RUN_A folder name>``: the comparison lives with the newer run."""
    return Path(run_b) / "compare" / f"vs-{Path(run_a).resolve().name}"


def write_comparison(comparison: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``compare.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out_dir}: {exc}") from None
    json_path = out_dir / COMPARISON_FILE
    html_path = out_dir / COMPARE_HTML
    write_json_atomic(json_path, comparison.model_dump(mode="json", by_alias=True))
    html_path.write_text(render_compare_html(comparison), encoding="utf-8")
    return json_path, html_path


def read_comparison(out_dir: Path) -> Comparison:
    """A ``comparison.json`` written by :func:`write_comparison`."""
    path = Path(out_dir) / COMPARISON_FILE
    try:
        return Comparison.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable comparison ({exc})") from None


# --------------------------------------------------------------------------- HTML page


def _scale(values: Sequence[float], extra: Sequence[float] = ()) -> tuple[float, float]:
    """A readable x/y range for differences: covers the values, 0 and ``extra``."""
    pts = [v for v in [*values, *extra, 0.0] if v is not None and math.isfinite(v)]
    lo, hi = min(pts), max(pts)
    span = max(hi - lo, 0.1)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    return max(-1.0, lo), min(1.0, hi)


def _forest(comparison: Comparison) -> dict[str, Any]:
    """Geometry of the per-job forest plot (B - A success with its interval)."""
    rows = [jc for jc in comparison.jobs.values() if jc.success is not None]
    width, left, right, top, row_h = 720, 170, 30, 28, 30
    lows = [jc.success.ci.low for jc in rows if jc.success]
    highs = [jc.success.ci.high for jc in rows if jc.success]
    lo, hi = _scale(lows + highs, [-comparison.margin])

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    height = top + row_h * max(len(rows), 1) + 30
    items = []
    for i, jc in enumerate(rows):
        assert jc.success is not None
        y = top + row_h * i + row_h / 2
        items.append(
            {
                "job": jc.job,
                "y": y,
                "x": x(jc.success.difference),
                "x1": x(jc.success.ci.low),
                "x2": x(jc.success.ci.high),
                "colour": "#b3261e"
                if jc.worse_beyond_margin
                else ("#1b6e3c" if jc.verdict == "B better" else "#333"),
                "title": f"{jc.job}: B - A = {jc.success.difference:+.3f} "
                f"[{jc.success.ci.low:+.3f}, {jc.success.ci.high:+.3f}]",
            }
        )
    ticks = [{"x": x(t), "label": f"{t:+.2f}"} for t in np.linspace(lo, hi, 5)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "zero": x(0.0),
        "margin_x": x(-comparison.margin) if comparison.margin > 0 else None,
        "bottom": height - 24,
        "top": top - 8,
        "items": items,
        "ticks": ticks,
    }


def _bin_chart(fc: FactorComparison) -> dict[str, Any]:
    """Geometry of one factor's chart: B - A success per bin with intervals."""
    width, height, left, right, top, bottom = 720, 230, 60, 20, 16, 56
    vals = [b.ci.low for b in fc.bins if b.ci] + [b.ci.high for b in fc.bins if b.ci]
    lo, hi = _scale(vals)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    step = (width - left - right) / max(len(fc.bins), 1)
    items = []
    for i, b in enumerate(fc.bins):
        cx = left + step * (i + 0.5)
        item: dict[str, Any] = {"x": cx, "label": b.label, "pairs": b.pairs, "has": b.ci is not None}
        if b.ci is not None and b.difference is not None:
            item.update(
                {
                    "y": y(b.difference),
                    "y1": y(b.ci.high),
                    "y2": y(b.ci.low),
                    "title": f"{fc.factor} {b.label}: B - A = {b.difference:+.3f} "
                    f"[{b.ci.low:+.3f}, {b.ci.high:+.3f}], {b.pairs} pairs",
                    "colour": "#b3261e" if b.ci.high < 0 else ("#1b6e3c" if b.ci.low > 0 else "#333"),
                }
            )
        items.append(item)
    ticks = [{"y": y(t), "label": f"{t:+.2f}"} for t in np.linspace(lo, hi, 5)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "zero": y(0.0),
        "axis": height - bottom,
        "items": items,
        "ticks": ticks,
    }


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Compare {{ c.run_b.name }} vs {{ c.run_a.name }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px} h3{font-size:15px;margin:18px 0 4px}
table{border-collapse:collapse;margin:8px 0;width:100%} th,td{border-bottom:1px solid #ddd;padding:5px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f5f5f7}
.gate{padding:10px 14px;border-radius:6px;margin:14px 0;font-weight:600}
.fail{background:#fde7e5;color:#8c1d18} .pass{background:#e3f4ea;color:#17522e}
.muted{color:#666} code{background:#f5f5f7;padding:1px 4px;border-radius:3px}
svg text{font:12px system-ui,sans-serif} .worse{color:#b3261e;font-weight:600} .better{color:#1b6e3c;font-weight:600}
</style></head><body>
<h1>Paired comparison: B = <code>{{ c.run_b.name }}</code> vs A = <code>{{ c.run_a.name }}</code></h1>
<p class="muted">A: {{ c.run_a.dir }}<br>B: {{ c.run_b.dir }}<br>run seed {{ c.run_a.seed }}; written {{ c.created_at }}</p>
<div class="gate {{ 'fail' if c.gate_failed else 'pass' }}" id="gate">
{% if c.gate_failed %}Gate FAILED: B is worse than A by more than {{ '%.3f'|format(c.margin) }} (95% confidence) in
{{ c.failing_jobs|join(', ') }}.{% else %}Gate passed: no job where B is worse than A by more than
{{ '%.3f'|format(c.margin) }} with 95% confidence.{% endif %}</div>
{% if c.jobs_only_in_a or c.jobs_only_in_b %}<p class="muted">Not compared (in one run only):
{% if c.jobs_only_in_a %}A: {{ c.jobs_only_in_a|join(', ') }}. {% endif %}
{% if c.jobs_only_in_b %}B: {{ c.jobs_only_in_b|join(', ') }}.{% endif %}</p>{% endif %}

<h2>Success, B - A</h2>
<svg width="{{ f.width }}" height="{{ f.height }}" viewBox="0 0 {{ f.width }} {{ f.height }}" role="img" aria-label="B minus A success per job">
{% for t in f.ticks %}<line x1="{{ '%.1f'|format(t.x) }}" x2="{{ '%.1f'|format(t.x) }}" y1="{{ f.top }}" y2="{{ f.bottom }}" stroke="#eee"/>
<text x="{{ '%.1f'|format(t.x) }}" y="{{ f.bottom + 16 }}" text-anchor="middle" fill="#666">{{ t.label }}</text>{% endfor %}
<line x1="{{ '%.1f'|format(f.zero) }}" x2="{{ '%.1f'|format(f.zero) }}" y1="{{ f.top }}" y2="{{ f.bottom }}" stroke="#888"/>
{% if f.margin_x is not none %}<line x1="{{ '%.1f'|format(f.margin_x) }}" x2="{{ '%.1f'|format(f.margin_x) }}" y1="{{ f.top }}" y2="{{ f.bottom }}" stroke="#b3261e" stroke-dasharray="4 3"/>
<text x="{{ '%.1f'|format(f.margin_x) }}" y="{{ f.top - 2 }}" text-anchor="middle" fill="#b3261e">-margin</text>{% endif %}
{% for it in f['items'] %}<g><title>{{ it.title }}</title>
<text x="{{ f.left - 10 }}" y="{{ it.y + 4 }}" text-anchor="end">{{ it.job }}</text>
<line x1="{{ '%.1f'|format(it.x1) }}" x2="{{ '%.1f'|format(it.x2) }}" y1="{{ it.y }}" y2="{{ it.y }}" stroke="{{ it.colour }}" stroke-width="2"/>
<circle cx="{{ '%.1f'|format(it.x) }}" cy="{{ it.y }}" r="4.5" fill="{{ it.colour }}"/></g>{% endfor %}
</svg>

<table id="jobs"><thead><tr><th>job</th><th>pairs</th><th>A success</th><th>B success</th><th>B - A [95% CI]</th>
<th>only A / only B</th><th>McNemar p</th><th>return B - A [95% CI]</th><th>verdict</th></tr></thead><tbody>
{% for jc in c.jobs.values() %}<tr><td>{{ jc.job }}</td><td>{{ jc.pairs }}</td>
{% if jc.success %}<td>{{ '%.1f%%'|format(100 * jc.success.a_rate) }}</td><td>{{ '%.1f%%'|format(100 * jc.success.b_rate) }}</td>
<td>{{ '%+.3f'|format(jc.success.difference) }} [{{ '%+.3f'|format(jc.success.ci.low) }}, {{ '%+.3f'|format(jc.success.ci.high) }}]</td>
<td>{{ jc.success.only_a }} / {{ jc.success.only_b }}</td><td>{{ '%.3g'|format(jc.success.mcnemar_p) }}</td>
<td>{{ '%+.2f'|format(jc.return_.difference) }} [{{ '%+.2f'|format(jc.return_.ci.low) }}, {{ '%+.2f'|format(jc.return_.ci.high) }}]</td>
{% else %}<td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td>{% endif %}
<td class="{{ 'worse' if jc.verdict == 'B worse' else ('better' if jc.verdict == 'B better' else '') }}">{{ jc.verdict }}{% if jc.worse_beyond_margin %} (beyond margin){% endif %}</td></tr>
{% endfor %}</tbody></table>
<p class="muted">Only episodes completed in both runs are paired.
{% for jc in c.jobs.values() %}{{ jc.job }}: {{ jc.pairs }} pairs{% if jc.only_in_a or jc.only_in_b %} ({{ jc.only_in_a }} only in A, {{ jc.only_in_b }} only in B){% endif %}{% if jc.meets_target is sameas false %}; interval half-width {{ '%.3f'|format(jc.half_width) }} is wider than the target {{ '%.3f'|format(jc.target_half_width) }}{% endif %}{{ '; ' if not loop.last else '.' }}{% endfor %}</p>

{% for jc in c.jobs.values() %}{% if jc.factors %}<h2>{{ jc.job }}: B - A success per factor bin</h2>
<p class="muted">A policy: <code>{{ jc.policy_a | tojson }}</code><br>B policy: <code>{{ jc.policy_b | tojson }}</code></p>
{% for fc in jc.factors %}{% set g = charts[jc.job][loop.index0] %}<h3>{{ fc.factor }} <span class="muted">({{ fc.kind }}{% if fc.scale == 'log' %}, log scale{% endif %})</span></h3>
<svg width="{{ g.width }}" height="{{ g.height }}" viewBox="0 0 {{ g.width }} {{ g.height }}" role="img" aria-label="B minus A success per bin of {{ fc.factor }}">
{% for t in g.ticks %}<line x1="{{ g.left }}" x2="{{ g.right }}" y1="{{ '%.1f'|format(t.y) }}" y2="{{ '%.1f'|format(t.y) }}" stroke="#eee"/>
<text x="{{ g.left - 6 }}" y="{{ '%.1f'|format(t.y + 4) }}" text-anchor="end" fill="#666">{{ t.label }}</text>{% endfor %}
<line x1="{{ g.left }}" x2="{{ g.right }}" y1="{{ '%.1f'|format(g.zero) }}" y2="{{ '%.1f'|format(g.zero) }}" stroke="#888"/>
{% for it in g['items'] %}<g>{% if it.has %}<title>{{ it.title }}</title>
<line x1="{{ '%.1f'|format(it.x) }}" x2="{{ '%.1f'|format(it.x) }}" y1="{{ '%.1f'|format(it.y1) }}" y2="{{ '%.1f'|format(it.y2) }}" stroke="{{ it.colour }}" stroke-width="2"/>
<circle cx="{{ '%.1f'|format(it.x) }}" cy="{{ '%.1f'|format(it.y) }}" r="4.5" fill="{{ it.colour }}"/>{% endif %}
<text x="{{ '%.1f'|format(it.x) }}" y="{{ g.axis + 16 }}" text-anchor="middle">{{ it.label }}</text>
<text x="{{ '%.1f'|format(it.x) }}" y="{{ g.axis + 32 }}" text-anchor="middle" fill="#666">n={{ it.pairs }}</text></g>{% endfor %}
</svg>
<table class="bins"><thead><tr><th>{{ fc.factor }}</th><th>pairs</th><th>A success</th><th>B success</th><th>B - A [95% CI]</th><th>return B - A</th></tr></thead><tbody>
{% for b in fc.bins %}<tr><td>{{ b.label }}</td><td>{{ b.pairs }}</td>{% if b.ci %}<td>{{ '%.1f%%'|format(100 * b.a_rate) }}</td><td>{{ '%.1f%%'|format(100 * b.b_rate) }}</td>
<td>{{ '%+.3f'|format(b.difference) }} [{{ '%+.3f'|format(b.ci.low) }}, {{ '%+.3f'|format(b.ci.high) }}]</td><td>{{ '%+.2f'|format(b.return_difference) }}</td>
{% else %}<td>-</td><td>-</td><td>-</td><td>-</td>{% endif %}</tr>{% endfor %}
</tbody></table>{% endfor %}{% endif %}{% endfor %}

<h2>Methods</h2><ul>{% for k, v in c.methods.items() %}<li><b>{{ k }}</b>: {{ v }}</li>{% endfor %}</ul>
</body></html>
"""  # noqa: E501


def render_compare_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page (inline SVG, no
    scripts, no network; every user-provided text is escaped)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    charts = {name: [_bin_chart(fc) for fc in jc.factors] for name, jc in comparison.jobs.items()}
    return env.from_string(_TEMPLATE).render(c=comparison, f=_forest(comparison), charts=charts)


__all__ = [
    "COMPARE_HTML",
    "COMPARISON_FILE",
    "Comparison",
    "ComparisonRefused",
    "JobComparison",
    "compare_runs",
    "config_difference",
    "default_out_dir",
    "factor_bins",
    "mcnemar_test",
    "newcombe_paired_interval",
    "read_comparison",
    "render_compare_html",
    "write_comparison",
]
