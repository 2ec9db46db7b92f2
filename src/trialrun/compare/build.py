"""Building the :class:`~trialrun.runfiles.comparison.Comparison` of two runs.

Per job, on the episodes both runs completed: success B - A with Newcombe's
paired interval and McNemar's test, the mean paired difference of returns
with a paired bootstrap interval, and the same success difference per bin of
each factor (bins from :mod:`trialrun.binning`, the rule the report and the
analysis use).

Example:
    >>> from trialrun.runfiles.schema import FactorSpec
    >>> spec = FactorSpec(name="m", kind="continuous", low=0.0, high=3.0)
    >>> [(label, idx) for label, idx, _ in factor_bins(spec, [0.5, 2.5, 1.2])]
    [('[0, 1)', [0]), ('[1, 2)', [2]), ('[2, 3]', [1])]
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trialrun.binning import assign_bins
from trialrun.compare.metric import choose_metric, compare_metric, metric_values
from trialrun.compare.page import render_compare_html
from trialrun.compare.pairing import LoadedRun, load_run, pair_episodes, shared_jobs
from trialrun.errors import InputError
from trialrun.runfiles import COMPARE_HTML, COMPARISON_FILE, RunLayout, write_json_atomic, write_text_atomic
from trialrun.runfiles.comparison import (
    BinComparison,
    Comparison,
    FactorComparison,
    JobComparison,
    OverallVerdict,
    ReturnComparison,
    RunRef,
    SequentialComparison,
    SuccessComparison,
    Verdict,
)
from trialrun.runfiles.outputs import writing_output
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec, FactorValue, Interval, StoppedEarly
from trialrun.sequential import DEFAULT_CONCENTRATION, sequential_test
from trialrun.stats import (
    EXACT_MCNEMAR_BELOW,
    holm_adjust,
    mcnemar_test,
    newcombe_paired_interval,
    paired_mean_difference,
)

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

METHODS = {
    "success_ci": "Newcombe (1998) paired score interval, method 10 (Wilson intervals + pair correlation)",
    "mcnemar": f"McNemar's test; exact binomial when discordant pairs < {EXACT_MCNEMAR_BELOW}, "
    "else chi-square with continuity correction (statsmodels)",
    "return_ci": "paired percentile bootstrap of the mean difference (2000 resamples, seeded); "
    "pairs without a finite return in either run are left out",
    "factor_bins": "the report's and the analysis' bins: equal width over the declared range "
    "(log-spaced for log-scale factors), about 25 pairs per bin, 3 to 10 bins; one bin per level",
    "metric": "success when the job reports success (a success rule in its config, or an episode that "
    "succeeded in either run), else return; or --metric",
    "continuous_test": "paired t-test on the differences (scipy); interval: paired percentile bootstrap",
    "holm": "p-values Holm-adjusted across the compared jobs (statsmodels multipletests, method='holm')",
    "gate": "a job fails when B is worse than A by more than the margin (metric units) with 95% confidence: "
    "the one-sided p-value of 'B - A < -margin' (inverted Newcombe interval for success, paired t-test "
    "for a continuous metric), Holm-adjusted across jobs, is below 0.025; for one job on success this is "
    "'the upper bound of the 95% interval is below -margin'",
    "overall_verdict": "B worse / better when some job differs with Holm-adjusted p < 0.05 (mixed when "
    "both directions occur)",
}

SEQUENTIAL_METHOD = (
    "anytime-valid sequential test over the pairs in planned episode order, looked at every batch: "
    f"binary metrics: Beta({DEFAULT_CONCENTRATION:g},{DEFAULT_CONCENTRATION:g}) mixture likelihood ratio "
    "over the discordant pairs (Robbins' method of mixtures, mSPRT of Johari et al. 2017); "
    "continuous metrics: "
    "hedged betting e-process on the paired differences clipped to the observed range (Waudby-Smith & "
    "Ramdas 2023); stops when the e-value reaches 1/alpha (Ville's inequality); the binary test is "
    "truncated at the compared pairs: its final look spends, exactly, the error its boundary left unspent; "
    "'equivalent' within the margin when both one-sided betting tests of |B - A| >= margin reach 1/alpha "
    "(a TOST of confidence sequences; Schuirmann 1987, Waudby-Smith & Ramdas 2023)"
)


def _success_comparison(a: BoolArray, b: BoolArray) -> SuccessComparison:
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
        mcnemar_method=method,
    )


def _stable_seed(seed: int, job: str) -> int:
    digest = hashlib.sha256(f"{seed}:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _return_comparison(a: FloatArray, b: FloatArray, seed: int) -> ReturnComparison | None:
    """The paired return difference over the pairs with a finite return on
    both sides (None when there is no such pair); the rest are counted."""
    valid = np.isfinite(a) & np.isfinite(b)
    left_out = int((~valid).sum())
    if not valid.any():
        return None
    difference, (low, high) = paired_mean_difference(a[valid], b[valid], seed=seed)
    return ReturnComparison(
        a_mean=float(a[valid].mean()),
        b_mean=float(b[valid].mean()),
        difference=difference,
        ci=Interval(low=low, high=high, method="paired-percentile-bootstrap"),
        pairs=int(valid.sum()),
        left_out=left_out,
    )


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def factor_bins(
    spec: FactorSpec, values: Sequence[FactorValue | None], bins: int | None = None
) -> list[tuple[str, list[int], dict[str, Any]]]:
    """``(label, indices of values in the bin, bin fields)`` per bin of ``spec``.

    The bins are :func:`trialrun.binning.assign_bins`'s: ``bins`` equal bins
    over the spec's bounds (log-spaced for log-scale factors; by default the
    shared rule on the number of values), one bin per level for categorical
    factors. Values outside the declared range are in no bin.
    """
    assigned = assign_bins(spec, values, bins)
    result: list[tuple[str, list[int], dict[str, Any]]] = []
    if assigned.kind == "categorical":
        for k, level in enumerate(assigned.levels):
            result.append((str(level), assigned.members(k).tolist(), {"value": level}))
        return result
    if assigned.outside:
        logger.warning(
            "factor '%s': %d pair(s) outside the declared range are in no bin", spec.name, assigned.outside
        )
    edges = assigned.edges if assigned.edges is not None else np.zeros(0)
    last = len(edges) - 2
    for k in range(len(edges) - 1):
        low, high = float(edges[k]), float(edges[k + 1])
        label = f"[{_fmt(low)}, {_fmt(high)}{']' if k == last else ')'}"
        result.append((label, assigned.members(k).tolist(), {"low": low, "high": high}))
    return result


def _factor_comparisons(
    specs: list[FactorSpec],
    pairs: list[tuple[EpisodeRecord, EpisodeRecord]],
    a_succ: BoolArray,
    b_succ: BoolArray,
    ret_diff: FloatArray,
    bins: int | None,
) -> list[FactorComparison]:
    out = []
    for spec in specs:
        values = [rec_a.factors.get(spec.name) for rec_a, _ in pairs]
        if any(v is None for v in values):
            logger.warning("factor '%s' is missing from some records; skipped", spec.name)
            continue
        rows = []
        for label, idx, fields in factor_bins(spec, values, bins):
            ids = np.asarray(idx, dtype=int)
            if not len(ids):
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
                continue
            sc = _success_comparison(a_succ[ids], b_succ[ids])
            diffs = ret_diff[ids][np.isfinite(ret_diff[ids])]
            rows.append(
                BinComparison(
                    label=label,
                    pairs=len(ids),
                    a_rate=sc.a_rate,
                    b_rate=sc.b_rate,
                    difference=sc.difference,
                    ci=sc.ci,
                    return_difference=float(diffs.mean()) if diffs.size else None,
                    **fields,
                )
            )
        out.append(FactorComparison(factor=spec.name, kind=spec.kind, scale=spec.scale, bins=rows))
    return out


def _return(rec: EpisodeRecord) -> float:
    """The record's return, NaN when it has none (never 0)."""
    value = rec.outcome.get("return")
    return float("nan") if value is None else float(value)


def _stopped_early(run: LoadedRun, name: str) -> StoppedEarly | None:
    """Why a run's job has fewer episodes than planned, when ``run --stop-when`` stopped it."""
    job = run.manifest.jobs.get(name)
    return job.stopped_early if job is not None else None


def _planned(run: LoadedRun, name: str) -> int:
    """The episodes a run's job planned (0 when its manifest does not say)."""
    job = run.manifest.jobs.get(name)
    return job.planned if job is not None else 0


def _compare_job(
    name: str,
    run_a: LoadedRun,
    run_b: LoadedRun,
    *,
    margin: float,
    bins: int | None,
    seed: int,
    target_half_width: float | None,
    metric: str | None = None,
    sequential: int | None = None,
    alpha: float = 0.05,
) -> JobComparison:
    recs_a, recs_b = run_a.records.get(name, {}), run_b.records.get(name, {})
    pairs = pair_episodes(name, recs_a, recs_b)
    chosen, reason = choose_metric(metric, run_a, run_b, name)
    fields: dict[str, Any] = {
        "job": name,
        "policy_a": run_a.job_config(name).get("policy", {}),
        "policy_b": run_b.job_config(name).get("policy", {}),
        "pairs": len(pairs),
        "only_in_a": len(set(recs_a) - set(recs_b)),
        "only_in_b": len(set(recs_b) - set(recs_a)),
        "target_half_width": target_half_width,
        "metric": chosen,
        "metric_reason": reason,
        "stopped_early_a": _stopped_early(run_a, name),
        "stopped_early_b": _stopped_early(run_b, name),
    }
    if not pairs:
        return JobComparison(**fields, success=None, verdict="no shared episodes")
    a_succ = np.array([bool(a.outcome.get("success")) for a, _ in pairs], dtype=bool)
    b_succ = np.array([bool(b.outcome.get("success")) for _, b in pairs], dtype=bool)
    a_ret = np.array([_return(a) for a, _ in pairs], dtype=float)
    b_ret = np.array([_return(b) for _, b in pairs], dtype=float)
    success = _success_comparison(a_succ, b_succ)
    returns = _return_comparison(a_ret, b_ret, seed)
    if returns is not None and returns.left_out:
        logger.warning(
            "job '%s': %d pair(s) lacking a finite return in A or B are left out of the return comparison",
            name,
            returns.left_out,
        )
    values_a, values_b, kind = metric_values(pairs, chosen, name)
    if kind == "binary" and not 0 <= margin < 1:
        raise InputError(f"--margin must be in [0, 1) for the binary metric '{chosen}', got {margin}")
    mc = compare_metric(chosen, kind, values_a, values_b, margin=margin, seed=seed)
    ci = mc.ci if mc is not None else success.ci
    half_width = (ci.high - ci.low) / 2
    verdict: Verdict = "no clear difference"
    if mc is None:
        logger.warning("job '%s': no pair has a finite '%s' in both runs", name, chosen)
    elif ci.low > 0:
        verdict = "B better"
    elif ci.high < 0:
        verdict = "B worse"
    if sequential is not None and mc is not None:
        valid = np.isfinite(values_a) & np.isfinite(values_b)
        planned = max(_planned(run_a, name), _planned(run_b, name), len(pairs))
        result = sequential_test(
            values_a[valid],
            values_b[valid],
            kind=kind,
            alpha=alpha,
            batch=sequential,
            margin=margin if margin > 0 else None,
            planned=planned,
            # The truncated test's final look is the plan's end: not the end of a stopped or partial run.
            final=len(pairs) >= planned,
        )
        fields["sequential"] = SequentialComparison(
            metric=chosen,
            kind=kind,
            decision=result.decision,
            stopped_at=result.stopped_at,
            planned=result.planned,
            saved=result.saved,
            batch=sequential,
            alpha=alpha,
            e_value=result.e_value,
            max_e_value=result.max_e_value,
            p_value=result.p_value,
            method=result.method,
            discordant=result.discordant,
            bound=result.bound,
            clipped=result.clipped,
            checks=result.checks,
            e_path=result.e_path,
            margin=result.margin,
            equivalence_e_value=result.equivalence_e_value,
            final_critical=result.final_critical,
            at_final_look=result.at_final_look,
        )
    spec_list = run_a.manifest.jobs[name].factors if name in run_a.manifest.jobs else []
    fields.update(
        success=success,
        return_=returns,
        factors=_factor_comparisons(spec_list, pairs, a_succ, b_succ, b_ret - a_ret, bins),
        verdict=verdict,
        half_width=half_width,
        meets_target=None if target_half_width is None else bool(half_width <= target_half_width),
        worse_beyond_margin=False,  # decided across jobs (Holm) in compare_runs
        metric_comparison=mc,
    )
    return JobComparison(**fields)


def _adjust_across_jobs(jobs: dict[str, JobComparison], level: float) -> OverallVerdict:
    """Holm-adjust the jobs' p-values (in place), decide each job's gate, and
    return the overall verdict."""
    compared = [jc for jc in jobs.values() if jc.metric_comparison is not None]
    if not compared:
        return "no shared episodes"
    mcs = [jc.metric_comparison for jc in compared if jc.metric_comparison is not None]
    adjusted = holm_adjust([mc.p_value for mc in mcs])
    worse_adjusted = holm_adjust([1.0 if mc.p_worse is None else mc.p_worse for mc in mcs])
    alpha = 1 - level
    better = worse = False
    for jc, mc, p, pw in zip(compared, mcs, adjusted, worse_adjusted, strict=True):
        mc.p_adjusted, mc.p_worse_adjusted = p, pw
        jc.worse_beyond_margin = bool(pw < alpha / 2)
        if p < alpha:
            better |= mc.difference > 0
            worse |= mc.difference < 0
    if better and worse:
        return "mixed"
    return "B better" if better else ("B worse" if worse else "no clear difference")


def compare_runs(
    run_a: Path,
    run_b: Path,
    *,
    job: str | None = None,
    margin: float = 0.02,
    bins: int | None = None,
    seed: int = 0,
    target_half_width: float | None = None,
    metric: str | None = None,
    sequential: bool = False,
    batch: int = 10,
) -> Comparison:
    """Compare run B against run A on their shared, completed episodes.

    ``bins`` is the number of bins per continuous factor; by default the
    shared rule (:func:`trialrun.binning.n_bins_for`) on the number of pairs.
    ``metric`` is ``success``, ``return`` or an outcome term; by default
    success when the job reports success, else return (see
    :mod:`trialrun.compare.metric`). ``margin`` is in the metric's units.
    ``sequential`` adds, per job, where an anytime-valid sequential test
    looking every ``batch`` pairs would have stopped.

    Raises:
        ComparisonRefused: the runs' configs (or recorded seeds/factors) differ
            in what defines the episodes, or they share no job.
        InputError: a run directory is missing or unreadable.
    """
    if not margin >= 0 or not math.isfinite(margin):
        raise InputError(f"--margin must be a finite number >= 0, got {margin}")
    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    if bins is not None and bins < 1:
        raise InputError(f"--bins must be at least 1, got {bins}")
    loaded_a, loaded_b = load_run(run_a), load_run(run_b)
    shared = shared_jobs(loaded_a, loaded_b, job)
    jobs = {
        name: _compare_job(
            name,
            loaded_a,
            loaded_b,
            margin=margin,
            bins=bins,
            seed=_stable_seed(seed, name),
            target_half_width=target_half_width,
            metric=metric,
            sequential=batch if sequential else None,
        )
        for name in shared
    }
    overall = _adjust_across_jobs(jobs, 0.95)
    chosen = {jc.metric for jc in jobs.values()}
    reasons = {jc.metric_reason for jc in jobs.values()}
    if len(chosen) == 1 and len(reasons) == 1:
        top_metric, top_reason = next(iter(chosen)), next(iter(reasons))
    else:
        top_metric = "per job"
        top_reason = "; ".join(f"{n}: {jc.metric} ({jc.metric_reason})" for n, jc in jobs.items())
    methods = dict(METHODS)
    if sequential:
        methods["sequential"] = SEQUENTIAL_METHOD
    failing = [name for name, jc in jobs.items() if jc.worse_beyond_margin]
    names_a, names_b = loaded_a.job_names, loaded_b.job_names
    ma, mb = loaded_a.manifest, loaded_b.manifest
    return Comparison(
        run_a=RunRef(name=ma.run, dir=str(Path(run_a).resolve()), seed=ma.seed),
        run_b=RunRef(name=mb.run, dir=str(Path(run_b).resolve()), seed=mb.seed),
        margin=margin,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        jobs=jobs,
        jobs_only_in_a=[] if job else [n for n in names_a if n not in names_b],
        jobs_only_in_b=[] if job else [n for n in names_b if n not in names_a],
        gate_failed=bool(failing),
        failing_jobs=failing,
        methods=methods,
        metric=top_metric,
        metric_reason=top_reason,
        overall_verdict=overall,
    )


def default_out_dir(run_a: Path, run_b: Path) -> Path:
    """``<RUN_B>/compare/vs-<RUN_A folder name>``: the comparison lives with the newer run."""
    return RunLayout(run_b).comparison_dir(run_a)


def write_comparison(comparison: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``compare.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    json_path = out_dir / COMPARISON_FILE
    html_path = out_dir / COMPARE_HTML
    with writing_output(out_dir):  # a read-only or missing place: one line naming it, exit 2
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(json_path, comparison.model_dump(mode="json", by_alias=True))
        write_text_atomic(html_path, render_compare_html(comparison))
    return json_path, html_path
