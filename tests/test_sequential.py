from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln

from trialrun.sequential import (
    DEFAULT_CONCENTRATION,
    discordant_log_evalues,
    equivalence_log_evalues,
    final_critical_value,
    sequential_test,
)


def test_hand_computed_stop_for_all_b_discordant_pairs() -> None:
    # Beta(1,1) mixture: after d discordant pairs all favouring B, E = 2**d * B(1+d, 1)/B(1, 1) = 2**d / (d+1).
    # d=7: 128/8 = 16 < 20; d=8: 256/9 = 28.4 >= 20 -> stops at the 8th discordant pair.
    a = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # pairs 0 and 2 are concordant (both succeed)
    b = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    result = sequential_test(a, b, kind="binary", concentration=1.0)
    assert result.decision == "B better"
    assert result.stopped_at == 10  # 8 discordant pairs are reached at the 10th pair
    assert result.e_value == pytest.approx(256 / 9) and result.discordant == 8
    assert result.e_path[:-1] == [pytest.approx(v) for v in result.e_path[:-1]]
    assert all(e < 20 for e in result.e_path[:-1])  # the first crossing, not a later one
    assert result.saved == 2 and result.p_value == pytest.approx(9 / 256)
    assert math.exp(float(discordant_log_evalues(0, 7, 1.0))) == pytest.approx(16)
    # the opposite direction
    worse = sequential_test(b, a, kind="binary", concentration=1.0)
    assert worse.decision == "B worse" and worse.stopped_at == 10


def test_batches_stop_at_the_first_look_past_the_crossing() -> None:
    a, b = [0] * 30, [1] * 30
    one = sequential_test(a, b, concentration=1.0)
    assert one.stopped_at == 8
    batched = sequential_test(a, b, concentration=1.0, batch=5)
    assert batched.stopped_at == 10 and batched.checks == [5, 10]
    assert batched.e_path[0] == pytest.approx(2**5 / 6)


def test_default_mixture_formula() -> None:
    c = 5.0  # DEFAULT_CONCENTRATION
    expected = 12 * math.log(2) + betaln(c + 10, c + 2) - betaln(c, c)
    assert float(discordant_log_evalues(2, 10)) == pytest.approx(expected)


def test_identical_outcomes_never_reject() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(5000) < 0.7).astype(float)
    r = sequential_test(a, a.copy())
    assert r.decision == "undecided" and r.e_value == 1.0 and r.stopped_at == 5000 and r.saved == 0
    x = rng.normal(size=500)
    c = sequential_test(x, x.copy(), kind="continuous")
    assert c.decision == "undecided" and c.max_e_value == 1.0


def test_deterministic() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=300)
    b = a + rng.normal(-0.4, 1, size=300)
    r1 = sequential_test(a, b, kind="continuous", batch=10)
    r2 = sequential_test(a, b, kind="continuous", batch=10)
    assert r1 == r2 and r1.decision == "B worse" and r1.stopped_at < 300
    sa = (rng.random(400) < 0.7).astype(float)
    sb = (rng.random(400) < 0.4).astype(float)
    assert sequential_test(sa, sb) == sequential_test(sa, sb)


def test_continuous_clipping_to_a_declared_bound() -> None:
    a = np.zeros(50)
    b = np.full(50, 5.0)
    b[0] = 100.0
    r = sequential_test(a, b, kind="continuous", bound=5.0)
    assert r.clipped == 1 and r.bound == 5.0 and r.decision == "B better"


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        sequential_test([1, 0], [1])
    with pytest.raises(ValueError, match="alpha"):
        sequential_test([1], [1], alpha=1.5)


def test_default_concentration() -> None:
    assert DEFAULT_CONCENTRATION == 5.0


@pytest.mark.parametrize("d", [12, 16])
def test_the_final_look_keeps_the_exact_error_at_most_alpha(d: int) -> None:
    # Every sign sequence of d discordant pairs (each has probability 2**-d under H0),
    # looked at after every pair, with the final critical value at the d-th.
    k = final_critical_value(d)
    rejected = 0
    signs = ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(float)  # 1: favours B
    for row in signs:
        a, b = 1 - row, row
        r = sequential_test(a, b)
        rejected += r.decision != "undecided"
        crossed = bool(np.any(discordant_log_evalues(np.cumsum(a), np.cumsum(b)) >= math.log(20) - 1e-12))
        assert r.at_final_look == (not crossed and abs(row.sum() * 2 - d) >= k)
    error = rejected / 2**d
    assert error <= 0.05
    # the next smaller critical value would exceed alpha: the remaining error is spent
    loose = sum(
        1
        for row in signs
        if abs(row.sum() * 2 - d) >= k - 2
        or np.any(discordant_log_evalues(np.cumsum(1 - row), np.cumsum(row)) >= math.log(20) - 1e-12)
    )
    assert loose / 2**d > 0.05


def test_final_critical_values() -> None:
    assert [final_critical_value(d) for d in (0, 1, 5, 12, 16, 100, 1000)] == [1, 2, 6, 8, 10, 22, 74]
    with pytest.raises(ValueError, match="discordant"):
        final_critical_value(-1)


def test_the_final_look_applies_only_at_the_plan_end() -> None:
    # 16 discordant pairs, 13 favour A: |b - a| = 10 = k(16); the boundary is never crossed.
    favours_b = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    a = np.array([1 - s for s in favours_b] + [1] * 4, dtype=float)
    b = np.array(favours_b + [1] * 4, dtype=float)
    assert sequential_test(a, b).max_e_value == pytest.approx(4.7717, abs=1e-4)  # < 20
    full = sequential_test(a, b)
    assert full.decision == "B worse" and full.at_final_look and full.final_critical == 10
    assert full.stopped_at == 20 and full.saved == 0
    assert sequential_test(a, b, planned=40).decision == "undecided"  # more pairs are planned
    assert sequential_test(a, b, final=False).decision == "undecided"
    assert sequential_test(a, b, truncated=False).decision == "undecided"


def test_equivalence_of_identical_policies_within_a_margin() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(2000) < 0.7).astype(float)
    r = sequential_test(a, a.copy(), margin=0.05)
    # x = 0 every pair: each one-sided wealth bets on +0.05; the first bet is 0 (the prior's
    # mean), the second 0.025 / (0.12625 + 0.025**2), then the bets grow to the 1/2 cap.
    up, down = equivalence_log_evalues(np.zeros(124), 0.05)
    assert list(up) == list(down)
    assert up[0] == 0.0 and up[1] == pytest.approx(math.log1p(0.05 * 0.025 / 0.12625))
    assert up[-1] - up[-2] == pytest.approx(math.log(1.025))  # capped
    assert up[-2] < math.log(20) <= up[-1]
    assert r.decision == "equivalent" and r.stopped_at == 124 and r.saved == 2000 - 124
    assert r.equivalence_e_value == pytest.approx(math.exp(up[-1]))
    assert r.e_value == 1.0  # no discordant pair: the difference test never moves
    assert sequential_test(a, a.copy(), margin=0.05, batch=10).stopped_at == 130


def test_no_equivalence_when_the_difference_is_the_margin() -> None:
    # Under |difference| = margin the equivalence decision is an error: it must stay rare (<= alpha).
    rng = np.random.default_rng(4)
    wrong = 0
    for _ in range(200):
        a = (rng.random(600) < 0.7).astype(float)
        b = a.copy()
        b[a == 1] = np.where(rng.random(int(a.sum())) < 0.1, 0.0, 1.0)  # B - A = -0.07 in expectation
        r = sequential_test(a, b, margin=0.07, truncated=False)
        wrong += r.decision == "equivalent"
    assert wrong <= 10


def test_continuous_equivalence_in_the_metric_units() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(100, 10, size=800)
    b = a + rng.uniform(-1, 1, size=800)
    r = sequential_test(a, b, kind="continuous", bound=2.0, margin=0.5)
    assert r.decision == "equivalent" and r.stopped_at < 800 and r.margin == 0.5
    assert sequential_test(a, b, kind="continuous", bound=2.0, margin=0.05).decision == "undecided"
    with pytest.raises(ValueError, match="margin"):
        sequential_test(a, b, kind="continuous", margin=0.0)
