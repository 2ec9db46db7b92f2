"""Error control, power and savings of the sequential paired test (``trialrun.sequential``).

Per scenario, 500 simulated pairs of policies. Each episode has a shared
latent difficulty (as with shared seeds): ``z ~ N(0, 1)``, and a policy with
success rate ``p`` succeeds when ``sqrt(rho) z + sqrt(1 - rho) e < Phi^-1(p)``
(its own noise ``e``; ``rho = 0.5``), so the pairs are correlated and the
marginal rates are exact. Base rate 0.7 for A; B is equal, or 5 / 15 points
lower.

The sequential test (discordant-pair Beta mixture, alpha = 0.05, looking
after every pair, and every 10 pairs) runs up to a planned maximum of
``N`` pairs. It is compared with McNemar's test at the same alpha on a fixed
number of pairs: the fixed n whose power (simulated, 2000 policy pairs) first
reaches the sequential test's power (capped at 0.99, so a sequential power
of 1.000 is compared with a fixed n of power 0.99, which favours the fixed
test). ``used/fixed`` is the mean number of pairs the sequential test read
divided by that fixed n (target <= 0.6 when a difference exists);
``used/N`` is against the planned maximum.

Run: ``python benchmarks/sequential.py`` (about 10 s on one core).
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri
from scipy.stats import binom, chi2

from trialrun.sequential import DEFAULT_CONCENTRATION, discordant_log_evalues, sequential_test

ALPHA = 0.05
BASE = 0.7
RHO = 0.5
REPS = 500
FIXED_REPS = 2000
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


def mcnemar_power(a: BoolArray, b: BoolArray, ns: npt.NDArray[np.int_]) -> npt.NDArray[np.float64]:
    """Power of McNemar's test (exact below 25 discordant pairs, else chi-square
    with continuity correction, as ``trialrun.stats.mcnemar_test``) on the first n pairs."""
    a_only = np.cumsum(a & ~b, axis=1)
    b_only = np.cumsum(~a & b, axis=1)
    power = np.empty(len(ns))
    for j, n in enumerate(ns):
        x, y = a_only[:, n - 1], b_only[:, n - 1]
        d = x + y
        exact = np.minimum(1.0, 2 * binom.cdf(np.minimum(x, y), d, 0.5))
        chi = chi2.sf(np.clip(np.abs(x - y) - 1, 0, None) ** 2 / np.maximum(d, 1), 1)
        p = np.where(d == 0, 1.0, np.where(d < 25, exact, chi))
        power[j] = float(np.mean(p < ALPHA))
    return power


def sequential_runs(
    a: BoolArray, b: BoolArray, batch: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int_]]:
    """Per simulated pair of policies: rejected (either direction) and pairs read."""
    log_e = discordant_log_evalues(np.cumsum(a & ~b, axis=1), np.cumsum(~a & b, axis=1))
    n = a.shape[1]
    looks = np.arange(batch, n + 1, batch) - 1
    hit = log_e[:, looks] >= np.log(1 / ALPHA) - 1e-12
    rejected = hit.any(axis=1)
    used = np.where(rejected, looks[hit.argmax(axis=1)] + 1, n)
    return rejected, used


def main() -> None:
    start = time.perf_counter()
    print(
        f"sequential paired test: discordant-pair Beta({DEFAULT_CONCENTRATION:g},{DEFAULT_CONCENTRATION:g}) "
        f"mixture, alpha={ALPHA}; base success {BASE}, shared-latent correlation rho={RHO}; "
        f"{REPS} simulated policy pairs per scenario; fixed-n McNemar power from {FIXED_REPS}"
    )
    header = (
        f"{'scenario':<15}{'N':>6}{'batch':>6}{'rejects':>9}{'wrong dir':>10}{'mean used':>10}"
        f"{'used/N':>8}{'McNemar@N':>10}{'fixed n':>9}{'used/fixed':>11}"
    )
    print(header)
    print("-" * len(header))
    grid = np.arange(10, 8001, 10)
    for s, (name, drop) in enumerate(SCENARIOS):
        fixed_a, fixed_b = simulate(np.random.default_rng([2026, s, 1]), FIXED_REPS, int(grid[-1]), drop)
        curve = mcnemar_power(fixed_a, fixed_b, grid)
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
                    idx = int(np.searchsorted(curve, target))
                    fixed = int(grid[min(idx, len(grid) - 1)])
                    ratio = f"{used.mean() / fixed:>11.2f}"
                    fixed_s = f"{fixed:>9d}"
                else:
                    ratio, fixed_s = f"{'-':>11}", f"{'-':>9}"
                wrong_s = f"{wrong:>10.3f}" if drop > 0 else f"{'-':>10}"
                print(
                    f"{name:<15}{planned:>6d}{batch:>6d}{power:>9.3f}{wrong_s}{used.mean():>10.0f}"
                    f"{used.mean() / planned:>8.2f}{at_n:>10.3f}{fixed_s}{ratio}"
                )
    print(
        "rejects: false-alarm rate (no difference; target <= 0.05) or power; wrong dir: rejected with "
        "'B better'; McNemar@N: power of the fixed test on all N pairs"
    )
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
