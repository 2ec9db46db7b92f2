"""False-positive rate, power and speed of the sensitivity analysis.

Runs the analysis on seeded synthetic sweeps (``trialrun.analysis.synthetic``):

* null datasets (no factor has any effect): the per-factor rate of "significant"
  (Holm-adjusted LRT p < alpha) must stay at or below 6%, and the raw
  (unadjusted) LRT rate near alpha shows the test itself is calibrated; the
  family-wise rate of "any interaction significant" (the pair screen, 15
  pairs of 6 factors, bootstrap min-p adjusted) must stay at or below alpha,
  printed with its Wilson 95% interval, next to the raw score-test rate of
  the pairs (mean and the highest pair);
* planted datasets (full-strength effects at 600 episodes, half-strength at
  400): the rate at which each planted factor is found (power) and irrelevant
  factors are flagged;
* planted interaction (a pure ``wind`` x ``tilt`` saddle, half strength, at
  800 episodes with 8 factors): the rate at which the screen finds that pair,
  and flags another one;
* time of a full analysis (GLM, bins, interaction screen, gradient-boosted
  cross-check with its shuffled-label null, JSON and PNGs) of 10,000 episodes
  with 6 factors, read from disk.

Usage: ``python benchmarks/sensitivity_power.py [--null-datasets 200] ...``;
``--only null`` (or ``power``, ``interaction``, ``timing``; repeatable) runs
only those parts, ``--importance-datasets 0`` leaves out the slow
gradient-boosted check.

Measured (issue 16, 200 null datasets of 400 episodes): the interaction
screen let through 13/200 = 6.5% [Wilson 95%: 3.8%, 10.8%] with Holm over
likelihood-ratio tests (whose tails at 9 df are too light at this size: 10% with
no ridge fallback); with the bootstrap min-p adjustment 8/200 = 4.0% [2.0%, 7.7%]
(31/700 = 4.4% [3.1%, 6.2%] over the first 700 null seeds).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from trialrun.analysis import analyze, analyze_records, make_sweep
from trialrun.stats import wilson_interval

PARTS = ("null", "power", "interaction", "timing")


def _rate(hits: int, total: int) -> str:
    return f"{hits / total:6.1%} ({hits}/{total})" if total else "     -"


def _rate_ci(hits: int, total: int) -> str:
    lo, hi = wilson_interval(hits, total)
    return f"{_rate(hits, total)}, Wilson 95% [{lo:.1%}, {hi:.1%}]"


def null_rates(datasets: int, n: int, alpha: float, importance_datasets: int) -> None:
    sig: dict[str, int] = defaultdict(int)
    raw: dict[str, int] = defaultdict(int)
    chi: dict[str, int] = defaultdict(int)
    imp: dict[str, int] = defaultdict(int)
    inter_raw: dict[tuple[str, str], int] = defaultdict(int)
    any_sig = inter_any = 0
    started = time.perf_counter()
    for i in range(datasets):
        sweep = make_sweep(n=n, seed=10_000 + i, effect=0.0)
        res = analyze(*sweep.as_inputs(), alpha=alpha, seed=i, importance=i < importance_datasets)
        for f in res.factors:
            sig[f.name] += f.significant
            raw[f.name] += f.p_value is not None and f.p_value < alpha
            chi[f.name] += f.chi2_p is not None and f.chi2_p < alpha
            if i < importance_datasets:
                imp[f.name] += f.importance_null_p is not None and f.importance_null_p <= alpha
        any_sig += any(f.significant for f in res.factors)
        inter_any += any(x.significant for x in res.interactions)
        for x in res.interactions:
            inter_raw[(x.factors[0], x.factors[1])] += x.p_value < alpha
    took = time.perf_counter() - started
    print(f"\n== False positives: {datasets} null datasets of {n} episodes, 6 factors, alpha={alpha}")
    print(f"   ({took:.1f} s; gradient-boosted check on the first {importance_datasets})")
    print(
        f"   {'factor':14s} {'significant (Holm)':>20s} {'raw LRT p<alpha':>20s} "
        f"{'chi2 p<alpha':>20s} {'GBT null p<=alpha':>20s}"
    )
    for name in sig:
        print(
            f"   {name:14s} {_rate(sig[name], datasets):>20s} {_rate(raw[name], datasets):>20s} "
            f"{_rate(chi[name], datasets):>20s} {_rate(imp[name], importance_datasets):>20s}"
        )
    worst = max(sig.values()) / datasets
    print(
        f"   max per-factor false-positive rate: {worst:.1%} (target <= 6%)"
        f"  -> {'OK' if worst <= 0.06 else 'ABOVE TARGET'}"
    )
    print(f"   any factor significant (family-wise): {_rate_ci(any_sig, datasets)}")
    print(
        f"   any interaction significant (family-wise): {_rate_ci(inter_any, datasets)}"
        f"  -> {'OK' if inter_any / datasets <= alpha else 'ABOVE ALPHA'}"
    )
    if inter_raw:
        worst_pair, worst_hits = max(inter_raw.items(), key=lambda kv: kv[1])
        mean_raw = sum(inter_raw.values()) / (len(inter_raw) * datasets)
        print(
            f"   raw interaction test p<alpha: mean over {len(inter_raw)} pairs {mean_raw:.1%}, "
            f"highest {' x '.join(worst_pair)} {_rate(worst_hits, datasets)}"
        )


def power(datasets: int, n: int, alpha: float, effect: float) -> None:
    found: dict[str, int] = defaultdict(int)
    started = time.perf_counter()
    sweep = make_sweep(n=n, seed=0, effect=effect)
    for i in range(datasets):
        sweep = make_sweep(n=n, seed=20_000 + i, effect=effect)
        res = analyze(*sweep.as_inputs(), alpha=alpha, seed=i, importance=False)
        for f in res.factors:
            found[f.name] += f.significant
    took = time.perf_counter() - started
    print(
        f"\n== Power: {datasets} planted datasets of {n} episodes, effect x{effect}, "
        f"alpha={alpha} ({took:.1f} s)"
    )
    for name, hits in found.items():
        role = sweep.planted.get(name, "irrelevant")
        print(f"   {name:14s} {_rate(hits, datasets):>16s}   {role}")


def interaction_power(datasets: int, n: int, alpha: float, strength: float) -> None:
    """Planted pure ``wind`` x ``tilt`` interaction (8 factors, 28 pairs)."""
    found = other = 0
    started = time.perf_counter()
    for i in range(datasets):
        sweep = make_sweep(n=n, seed=30_000 + i, effect=1.0, interaction=strength)
        res = analyze(*sweep.as_inputs(), alpha=alpha, seed=i, importance=False)
        sig = [tuple(x.factors) for x in res.interactions if x.significant]
        found += ("wind", "tilt") in sig
        other += any(pair != ("wind", "tilt") for pair in sig)
    took = time.perf_counter() - started
    print(
        f"\n== Interaction power: {datasets} datasets of {n} episodes with a planted wind x tilt "
        f"saddle x{strength} (8 factors, 28 pairs), alpha={alpha} ({took:.1f} s)"
    )
    print(f"   wind x tilt significant: {_rate_ci(found, datasets)}")
    print(f"   another pair significant: {_rate_ci(other, datasets)}")


def timing(n: int) -> None:
    sweep = make_sweep(n=n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        episodes, factors = sweep.write(Path(tmp))
        started = time.perf_counter()
        res = analyze_records(episodes, factors, out_dir=Path(tmp) / "analysis")
        took = time.perf_counter() - started
    print(f"\n== Time: {n} episodes, {len(sweep.specs)} factors, full analysis from disk")
    print(f"   {took:.2f} s (target < 15 s on 2 cores); significant: {res.significant_factors()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-datasets", type=int, default=200)
    parser.add_argument("--null-n", type=int, default=400)
    parser.add_argument("--importance-datasets", type=int, default=50)
    parser.add_argument("--power-datasets", type=int, default=100)
    parser.add_argument("--power-n", type=int, default=600)
    parser.add_argument("--weak-power-n", type=int, default=400)
    parser.add_argument("--timing-n", type=int, default=10_000)
    parser.add_argument("--interaction-datasets", type=int, default=100)
    parser.add_argument("--interaction-n", type=int, default=800)
    parser.add_argument("--interaction-strength", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only this part (repeatable; default: all parts)",
    )
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    logging.basicConfig(level=logging.ERROR)
    if "null" in parts and args.null_datasets > 0:
        null_rates(args.null_datasets, args.null_n, args.alpha, args.importance_datasets)
    if "power" in parts and args.power_datasets > 0:
        power(args.power_datasets, args.power_n, args.alpha, effect=1.0)
        power(args.power_datasets, args.weak_power_n, args.alpha, effect=0.5)
    if "interaction" in parts and args.interaction_datasets > 0:
        interaction_power(
            args.interaction_datasets, args.interaction_n, args.alpha, args.interaction_strength
        )
    if "timing" in parts:
        timing(args.timing_n)


if __name__ == "__main__":
    main()
