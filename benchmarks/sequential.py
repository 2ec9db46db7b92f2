"""Error control, power and savings of the sequential paired test (``trialrun.sequential``).

Per scenario, 500 simulated pairs of policies. Each episode has a shared
latent difficulty (as with shared seeds): ``z ~ N(0, 1)``, and a policy with
success rate ``p`` succeeds when ``sqrt(rho) z + sqrt(1 - rho) e < Phi^-1(p)``
(its own noise ``e``; ``rho = 0.5``), so the pairs are correlated and the
marginal rates are exact. Base rate 0.7 for A; B is equal, or 5 / 15 points
lower.

The sequential test (discordant-pair Beta mixture, truncated at the planned
``N`` pairs with an exact final look, alpha = 0.05, looking after every pair,
and every 10 pairs) is compared with McNemar's test at the same alpha on a
fixed number of pairs: the fixed n whose power first reaches the sequential
test's power (capped at 0.99, so a sequential power of 1.000 is compared with
a fixed n of power 0.99, which favours the fixed test). The fixed test's power
is computed exactly from the scenario's cell probabilities (the discordant
count is binomial, and given it the count favouring B is binomial), with the
test of ``trialrun.stats.mcnemar_test`` (exact below 25 discordant pairs, else
chi-square with continuity correction), so it has no simulation noise and
rises with n. ``used/fixed`` is the mean number of pairs the sequential test
read divided by that fixed n (target <= 0.6 when a difference exists);
``used/N`` is against the planned maximum.

``bound`` is Wald's lower bound (Wald 1945; the Wald-Wolfowitz optimality of
the SPRT) on the expected pairs of *any* sequential test that rejects the
null in the drop's direction with the same power and error ``alpha/2`` (each
direction's share of a two-sided test that treats the directions alike, as
McNemar's does), even one that knows the true effect and may stop for
futility: ``((1-b) log((1-b)/a) + b log(b/(1-a))) / KL`` with ``a = alpha/2``,
``b = 1 - power`` and ``KL`` the Kullback-Leibler divergence per pair from the
scenario to the nearest "no difference" distribution, divided by the same
fixed n. When it exceeds 0.6 no test can meet the target at that power (up
to the simulation noise of the power). The lines after the table run that
oracle SPRT (Wald's, knowing the true effect, with a futility boundary) on the
5-point, 1000-pair case: the best a sequential test could do there.

Run: ``python benchmarks/sequential.py`` (about 30 s on one core).
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri
from scipy.stats import binom, chi2, multivariate_normal

from trialrun.sequential import (
    DEFAULT_CONCENTRATION,
    discordant_log_evalues,
    final_critical_value,
    sequential_test,
)

ALPHA = 0.05
BASE = 0.7
RHO = 0.5
REPS = 500
EXACT_BELOW = 25  # trialrun.stats.mcnemar_test: exact binomial below this many discordant pairs
SCENARIOS = [("no difference", 0.0), ("5-point drop", 0.05), ("15-point drop", 0.15)]
PLANNED = (1000, 3000)
BATCHES = (1, 10)
BoolArray = npt.NDArray[np.bool_]


def simulate(rng: np.random.Generator, reps: int, n: int, drop: float) -> tuple[BoolArray, BoolArray]:
    """Paired successes (reps x n) of A (rate BASE) and B (rate BASE - drop)."""
    z = rng.standard_normal((reps, n))
    shared, own = np.sqrt(RHO), np.sqrt(1 - RHO)
    a = shared * z + own * rng.standard_normal((reps, n)) < ndtri(BASE)
    b = shared * z + own * rng.standard_normal((reps, n)) < ndtri(BASE - drop)
    return a, b


def cells(drop: float) -> tuple[float, float]:
    """P(discordant pair) and P(it favours A) of the scenario, exactly."""
    qa, qb = ndtri(BASE), ndtri(BASE - drop)
    both = float(multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, RHO], [RHO, 1.0]]).cdf([qa, qb]))
    a_only, b_only = BASE - both, BASE - drop - both
    return a_only + b_only, a_only / (a_only + b_only)


def mcnemar_power(drop: float, ns: npt.NDArray[np.int_]) -> npt.NDArray[np.float64]:
    """Exact power of McNemar's test (as ``trialrun.stats.mcnemar_test``) on n pairs."""
    p_disc, theta = cells(drop)
    d = np.arange(int(ns.max()) + 1)
    given_d = np.zeros(d.size)  # P(reject | d discordant pairs)
    for k in d[1:]:
        x = np.arange(k + 1)  # pairs favouring A
        pmf = binom.pmf(x, k, theta)
        if k < EXACT_BELOW:
            p = np.minimum(1.0, 2 * binom.cdf(np.minimum(x, k - x), k, 0.5))
        else:
            p = chi2.sf(np.clip(np.abs(2 * x - k) - 1, 0, None) ** 2 / k, 1)
        given_d[k] = float(pmf[p < ALPHA].sum())
    return np.array([float(binom.pmf(d[: n + 1], n, p_disc) @ given_d[: n + 1]) for n in ns])


def wald_bound(drop: float, power: float) -> float:
    """Wald's lower bound on the expected pairs of a test with this power and error alpha/2."""
    p_disc, theta = cells(drop)
    kl = p_disc * (theta * np.log(2 * theta) + (1 - theta) * np.log(2 * (1 - theta)))
    a, b = ALPHA / 2, 1 - power
    if power <= a:
        return 0.0
    value = power * np.log(power / a) + (b * np.log(b / (1 - a)) if b > 0 else 0.0)
    return float(value / kl)


def sequential_runs(
    a: BoolArray, b: BoolArray, batch: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int_]]:
    """Per simulated pair of policies: rejected (either direction) and pairs read."""
    a_only, b_only = np.cumsum(a & ~b, axis=1), np.cumsum(~a & b, axis=1)
    log_e = discordant_log_evalues(a_only, b_only)
    n = a.shape[1]
    looks = np.arange(batch, n + 1, batch) - 1
    hit = log_e[:, looks] >= np.log(1 / ALPHA) - 1e-12
    rejected = hit.any(axis=1)
    used = np.where(rejected, looks[hit.argmax(axis=1)] + 1, n)
    # The final look at N: the truncated test's exact critical value.
    critical = np.array([final_critical_value(int(d), ALPHA) for d in a_only[:, -1] + b_only[:, -1]])
    rejected |= np.abs(b_only[:, -1] - a_only[:, -1]) >= critical
    return rejected, used


def oracle_sprt(a: BoolArray, b: BoolArray, drop: float, beta: float) -> tuple[float, float]:
    """Power and mean pairs of Wald's two-sided SPRT that knows the true discordant split
    (error alpha/2 per direction, type II ``beta``, stopping for futility too), cut at N."""
    _, theta = cells(drop)
    a_only, b_only = np.cumsum(a & ~b, axis=1), np.cumsum(~a & b, axis=1)
    worse = a_only * np.log(2 * theta) + b_only * np.log(2 * (1 - theta))
    better = b_only * np.log(2 * theta) + a_only * np.log(2 * (1 - theta))
    up, low = np.log((1 - beta) / (ALPHA / 2)), np.log(beta / (1 - ALPHA / 2))
    reject = (worse >= up) | (better >= up)
    stop = reject | ((worse <= low) & (better <= low))
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), a.shape[1] - 1)
    rejected = reject[np.arange(len(first)), first]
    return float(rejected.mean()), float((first + 1).mean())


def main() -> None:
    start = time.perf_counter()
    print(
        f"sequential paired test: discordant-pair Beta({DEFAULT_CONCENTRATION:g},{DEFAULT_CONCENTRATION:g}) "
        f"mixture truncated at N, alpha={ALPHA}; base success {BASE}, shared-latent correlation rho={RHO}; "
        f"{REPS} simulated policy pairs per scenario; fixed-n McNemar power exact"
    )
    header = (
        f"{'scenario':<15}{'N':>6}{'batch':>6}{'rejects':>9}{'wrong dir':>10}{'mean used':>10}"
        f"{'used/N':>8}{'McNemar@N':>10}{'fixed n':>9}{'used/fixed':>11}{'bound':>7}"
    )
    print(header)
    print("-" * len(header))
    grid = np.arange(10, 8001, 10)
    for s, (name, drop) in enumerate(SCENARIOS):
        curve = mcnemar_power(drop, grid)
        for planned in PLANNED:
            a, b = simulate(np.random.default_rng([2026, s, planned]), REPS, planned, drop)
            for batch in BATCHES:
                rejected, used = sequential_runs(a, b, batch)
                # Spot check: the vectorised path agrees with the public API.
                for r in range(3):
                    res = sequential_test(a[r].astype(float), b[r].astype(float), batch=batch)
                    assert (res.decision != "undecided") == bool(rejected[r]) and res.stopped_at == used[r]
                power = float(rejected.mean())
                a_only = np.cumsum(a & ~b, axis=1)[np.arange(REPS), used - 1]
                b_only = np.cumsum(~a & b, axis=1)[np.arange(REPS), used - 1]
                wrong = float(np.mean(rejected & (b_only > a_only))) if drop > 0 else float("nan")
                at_n = float(curve[grid == planned][0])
                if drop > 0:
                    target = min(power, 0.99)
                    idx = int(np.argmax(curve >= target)) if (curve >= target).any() else len(grid) - 1
                    fixed = int(grid[idx])
                    ratio = f"{used.mean() / fixed:>11.2f}"
                    fixed_s = f"{fixed:>9d}"
                    bound_s = f"{wald_bound(drop, target) / fixed:>7.2f}"
                else:
                    ratio, fixed_s, bound_s = f"{'-':>11}", f"{'-':>9}", f"{'-':>7}"
                wrong_s = f"{wrong:>10.3f}" if drop > 0 else f"{'-':>10}"
                print(
                    f"{name:<15}{planned:>6d}{batch:>6d}{power:>9.3f}{wrong_s}{used.mean():>10.0f}"
                    f"{used.mean() / planned:>8.2f}{at_n:>10.3f}{fixed_s}{ratio}{bound_s}"
                )
    name, drop, planned = "5-point drop", 0.05, 1000
    curve = mcnemar_power(drop, grid)
    a, b = simulate(np.random.default_rng([2026, 1, planned]), REPS, planned, drop)
    for beta in (0.5, 0.3, 0.2):
        power, used_mean = oracle_sprt(a, b, drop, beta)
        fixed = int(grid[int(np.argmax(curve >= min(power, 0.99)))])
        print(
            f"oracle SPRT (knows the effect, stops for futility; beta={beta}), {name}, N={planned}: "
            f"power {power:.3f}, mean used {used_mean:.0f}, fixed n {fixed}, "
            f"used/fixed {used_mean / fixed:.2f}"
        )
    print(
        "rejects: false-alarm rate (no difference; target <= 0.05, exactly at most 0.05 by construction; "
        f"simulation standard error {np.sqrt(ALPHA * (1 - ALPHA) / REPS):.3f}) or power; wrong dir: "
        "rejected with 'B better'; McNemar@N: power of the fixed test on all N pairs; bound: the least "
        "used/fixed any test with this power can reach"
    )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
