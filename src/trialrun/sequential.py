"""Anytime-valid sequential tests for paired outcomes in planned order.

Two runs of one config see the same episodes in the same planned order
(episode index order), so their outcomes form a sequence of pairs. The tests
here read that sequence pair by pair (or batch by batch) and may stop as soon
as the evidence is strong enough, with the type-I error controlled at
``alpha`` *whenever* they stop: the e-value is a nonnegative martingale under
the null, so by Ville's inequality ``P(sup_n E_n >= 1/alpha) <= alpha``
(optional stopping and peeking at every batch are allowed).

Binary outcomes (success): the **discordant pairs**. Only pairs where exactly
one policy succeeded carry information about the difference; under
H0 "no difference" (``P(B only) = P(A only)``) each discordant pair favours B
with probability 1/2, whatever the concordant pairs do. The e-value is the
mixture likelihood ratio of the discordant sequence against the fair coin, with
a symmetric ``Beta(c, c)`` mixing distribution over ``theta = P(B favoured)``
(Robbins 1970's method of mixtures; the mixture SPRT of Johari, Pekelis &
Walsh 2017, "Always valid inference", here with a conjugate Beta mixture)::

    E_n = 2**d * B(c + b, c + a) / B(c, c)

with ``d = a + b`` discordant pairs so far, ``b`` favouring B, ``a``
favouring A. It is two-sided; the direction of a rejection is the sign of
``b - a``. The concentration ``c`` tunes where the power is: larger values
put the mixing mass near 1/2 (small differences); ``c = 10`` was chosen with
``benchmarks/sequential.py`` (differences of 5 to 15 rate points at a 0.7
base rate, with correlated pairs).

Continuous outcomes (return, custom terms): a **betting** test of "the mean
paired difference is 0" (Waudby-Smith & Ramdas 2023, "Estimating means of
bounded random variables by betting", JRSS-B; the hedged capital process).
Differences are divided by a bound ``R`` and clipped to ``[-1, 1]``; the
wealth of two gamblers, one betting on a positive mean and one on a negative
mean, each with a predictable bet from the aGRAPA rule (bet size from the past
mean and variance, at most 1/2), is averaged::

    E_n = (prod(1 + l+_i x_i) + prod(1 - l-_i x_i)) / 2

Each product is a test martingale under H0 (``E[x_i] = 0`` given the past)
as long as the clipped values have mean 0, so the bound must be declared, or
it is taken from the observed range (that peeks at the data; it is an
approximation, and clipping a symmetric null keeps its mean at 0).

A sequential test here decides "B better", "B worse", or "undecided" (when
the planned pairs are used up without the e-value reaching ``1/alpha``). It
makes no equivalence/futility decision: a valid one needs a test of
``|difference| <= margin``, which the discordant-pair mixture does not give
(the margin is in rate points, the discordant pairs only see the sign).

The module is pure: numpy and scipy, no randomness, no I/O. See also the STEP
procedure (arXiv 2503.10966) for sequential paired evaluation of robot
policies, which these tests resemble in spirit (anytime-valid, paired,
planned order).

Example:
    >>> r = sequential_test([0] * 10, [1] * 10, kind="binary", concentration=1.0)
    >>> r.decision, r.stopped_at, round(r.e_value, 2)
    ('B better', 8, 28.44)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import betaln

#: The default concentration of the Beta mixture (see the module docstring).
DEFAULT_CONCENTRATION = 10.0
#: Bets of the continuous test never exceed this fraction of the wealth.
MAX_BET = 0.5

Decision = Literal["B better", "B worse", "undecided"]
Kind = Literal["binary", "continuous"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SequentialResult:
    """What a sequential test decided and where.

    ``stopped_at`` is the number of pairs read when it stopped (the planned
    number available when it never rejected); ``checks`` are the pair counts at which
    the test looked (every ``batch`` pairs, and the last pair), and
    ``e_path`` the e-value at each check, up to the stop. ``p_value`` is the
    anytime-valid p-value at the stop, ``min(1, 1 / max e-value so far)``.
    """

    decision: Decision
    stopped_at: int
    planned: int
    e_value: float
    max_e_value: float
    p_value: float
    alpha: float
    kind: Kind
    method: str
    discordant: int | None = None
    bound: float | None = None
    clipped: int = 0
    checks: list[int] = field(default_factory=list)
    e_path: list[float] = field(default_factory=list)

    @property
    def saved(self) -> int:
        """Pairs the planned run would have used beyond the stop (0 when undecided)."""
        return self.planned - self.stopped_at if self.decision != "undecided" else 0


def discordant_log_evalues(
    a_only: npt.ArrayLike, b_only: npt.ArrayLike, concentration: float = DEFAULT_CONCENTRATION
) -> FloatArray:
    """log E of the Beta(c, c) mixture over the discordant pairs, elementwise
    on cumulative counts (``a_only``: pairs favouring A so far, ``b_only``:
    favouring B). Vectorised so simulations can use it on whole matrices.

    Example:
        >>> round(float(np.exp(discordant_log_evalues(0, 8, concentration=1.0))), 6)  # 2**8 / 9
        28.444444
    """
    if concentration <= 0:
        raise ValueError("the concentration must be positive")
    a = np.asarray(a_only, dtype=float)
    b = np.asarray(b_only, dtype=float)
    c = float(concentration)
    return np.asarray((a + b) * math.log(2.0) + betaln(c + b, c + a) - betaln(c, c), dtype=float)


def _binary_path(a: FloatArray, b: FloatArray, concentration: float) -> tuple[FloatArray, FloatArray]:
    """log E after each pair and the running count of B-only minus A-only pairs."""
    a_only = np.cumsum((a > 0.5) & (b < 0.5))
    b_only = np.cumsum((b > 0.5) & (a < 0.5))
    return discordant_log_evalues(a_only, b_only, concentration), (b_only - a_only).astype(float)


def _continuous_path(d: FloatArray, bound: float) -> tuple[FloatArray, FloatArray]:
    """log E after each pair of the hedged betting process, and the running mean direction."""
    x = np.clip(d / bound, -1.0, 1.0)
    log_up = log_down = 0.0
    # aGRAPA with a prior of one pseudo-observation at mean 0, variance 1/4.
    total, total_sq, count = 0.0, 0.25, 1.0
    out = np.empty(x.size)
    for i, xi in enumerate(x):
        mean = total / count
        var = max(total_sq / count - mean**2, 1e-6)
        up = min(MAX_BET, max(0.0, mean / (var + mean**2)))
        down = min(MAX_BET, max(0.0, -mean / (var + mean**2)))
        log_up += math.log1p(up * xi)
        log_down += math.log1p(-down * xi)
        hi = max(log_up, log_down)
        out[i] = hi + math.log((math.exp(log_up - hi) + math.exp(log_down - hi)) / 2)
        total += xi
        total_sq += xi * xi
        count += 1
    return out, np.cumsum(x)


def sequential_test(
    a: Sequence[float] | npt.ArrayLike,
    b: Sequence[float] | npt.ArrayLike,
    *,
    kind: Kind = "binary",
    alpha: float = 0.05,
    batch: int = 1,
    planned: int | None = None,
    concentration: float = DEFAULT_CONCENTRATION,
    bound: float | None = None,
) -> SequentialResult:
    """Run the anytime-valid test over the paired outcomes ``a[i], b[i]`` in
    the given (planned) order, looking every ``batch`` pairs, and stop at the
    first look where the e-value reaches ``1/alpha``.

    ``kind="binary"``: outcomes are 0/1 (success); the discordant-pair Beta
    mixture. ``kind="continuous"``: the betting test on ``b - a``, divided by
    ``bound`` and clipped to [-1, 1] (default: the largest observed
    ``|b - a|``; ``clipped`` counts the clipped differences). ``planned`` is
    the number of pairs the full run has (default ``len(a)``).

    Example:
        >>> sequential_test([1, 0, 1], [1, 0, 1]).decision  # identical outcomes never reject
        'undecided'
    """
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError("a and b must be 1-D sequences of the same length")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    n = xa.size
    planned = n if planned is None else max(planned, n)
    clipped = 0
    discordant: int | None = None
    if kind == "binary":
        log_e, direction = _binary_path(xa, xb, concentration)
        method = f"discordant-pair Beta({concentration:g},{concentration:g}) mixture SPRT"
        used_bound = None
    else:
        d = xb - xa
        finite = np.isfinite(d)
        if not finite.all():
            raise ValueError("continuous outcomes must be finite")
        used_bound = float(bound) if bound is not None else float(np.max(np.abs(d), initial=0.0))
        if used_bound <= 0:
            log_e, direction = np.zeros(n), np.zeros(n)
            used_bound = 0.0
        else:
            clipped = int(np.sum(np.abs(d) > used_bound))
            log_e, direction = _continuous_path(d, used_bound)
        method = "hedged betting e-process (aGRAPA bets) on the clipped paired differences"
    checks = sorted({*range(batch, n + 1, batch), n} - {0})
    threshold = math.log(1 / alpha)
    path: list[float] = []
    looked: list[int] = []
    stop = None
    for k in checks:
        looked.append(k)
        path.append(float(math.exp(min(log_e[k - 1], 700.0))))
        if log_e[k - 1] >= threshold - 1e-12:
            stop = k
            break
    decision: Decision = "undecided"
    if stop is not None:
        decision = "B better" if direction[stop - 1] > 0 else "B worse"
        stopped_at = stop
    else:
        stopped_at = n
    last = looked[-1] if looked else 0
    if kind == "binary" and last:
        discordant = int(np.sum((xa[:last] > 0.5) != (xb[:last] > 0.5)))
    e_value = path[-1] if path else 1.0
    max_e = max(path, default=1.0)
    return SequentialResult(
        decision=decision,
        stopped_at=stopped_at,
        planned=planned,
        e_value=e_value,
        max_e_value=max_e,
        p_value=min(1.0, 1.0 / max_e) if max_e > 0 else 1.0,
        alpha=alpha,
        kind=kind,
        method=method,
        discordant=discordant,
        bound=used_bound,
        clipped=clipped,
        checks=looked,
        e_path=path,
    )


__all__ = [
    "DEFAULT_CONCENTRATION",
    "Decision",
    "Kind",
    "SequentialResult",
    "discordant_log_evalues",
    "sequential_test",
]
