from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln

from trialrun.sequential import discordant_log_evalues, sequential_test


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
    c = 10.0
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
