from __future__ import annotations

import math

import numpy as np
import pytest

from trialrun.runfiles.schema import EpisodeRecord
from trialrun.stats import (
    bootstrap_mean_interval,
    iqm,
    summarize_job,
    summarize_run,
    wilson_episodes_needed,
    wilson_interval,
)


def _wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(8, 10), (0, 10), (10, 10), (1, 3), (412, 500)])
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    elo, ehi = _wilson_by_hand(k, n)
    assert lo == pytest.approx(max(0.0, elo), abs=1e-12)
    assert hi == pytest.approx(min(1.0, ehi), abs=1e-12)


def test_wilson_known_values() -> None:
    assert tuple(round(x, 4) for x in wilson_interval(8, 10)) == (0.4902, 0.9433)
    assert tuple(round(x, 4) for x in wilson_interval(0, 10)) == (0.0, 0.2775)
    assert tuple(round(x, 4) for x in wilson_interval(24, 24)) == (0.862, 1.0)


def test_wilson_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"successes must be in \[0, 5\]"):
        wilson_interval(6, 5)


def test_episodes_needed_gives_the_smallest_n() -> None:
    n = wilson_episodes_needed(0.8, 0.05)
    lo, hi = wilson_interval(round(0.8 * n), n)
    assert (hi - lo) / 2 <= 0.05
    lo, hi = wilson_interval(round(0.8 * (n - 1)), n - 1)
    assert (hi - lo) / 2 > 0.05
    assert 230 <= n <= 260


def test_iqm() -> None:
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5
    assert iqm([5.0]) == 5.0
    assert iqm([1, 1, 1, 100]) == 1.0
    with pytest.raises(ValueError):
        iqm([])


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.arange(100, dtype=float)
    a = bootstrap_mean_interval(values, seed=3)
    assert a == bootstrap_mean_interval(values, seed=3)
    assert a != bootstrap_mean_interval(values, seed=4)
    assert a[0] < 49.5 < a[1]
    # standard error of the mean is ~2.9, so the 95% interval is ~ +-5.7
    assert 4.5 < (a[1] - a[0]) / 2 < 7.0
    assert bootstrap_mean_interval([2.0, 2.0, 2.0], seed=0) == (2.0, 2.0)


def _rec(job: str, k: int, success: bool, ret: float, length: int) -> EpisodeRecord:
    return EpisodeRecord(
        run="r",
        job=job,
        episode=k,
        seed=k,
        outcome={
            "success": success,
            "return": ret,
            "length": length,
            "terminated": success,
            "truncated": not success,
        },
        started_at="2026-01-01T00:00:00.000Z",
        ended_at="2026-01-01T00:00:01.000Z",
    )


def test_summarize_job_against_hand_computed_values() -> None:
    recs = [_rec("a", k, k % 4 != 0, float(k), 10 + k) for k in range(8)]
    s = summarize_job("a", recs, planned=10, seed=0, status="completed")
    assert (s.planned, s.episodes, s.successes) == (10, 8, 6)
    assert s.success_rate == 0.75
    assert s.success_ci is not None and s.return_ci is not None
    assert (s.success_ci.low, s.success_ci.high) == wilson_interval(6, 8)
    assert s.return_mean == 3.5
    assert s.return_iqm == 3.5
    assert s.return_std == pytest.approx(np.std(np.arange(8), ddof=1))
    assert s.length_mean == 13.5
    assert (s.terminated, s.truncated) == (6, 2)


def test_summarize_empty_job() -> None:
    s = summarize_job("a", [], planned=4, seed=0, status="failed")
    assert (s.episodes, s.success_rate, s.success_ci, s.return_mean) == (0, None, None, None)


def test_summarize_run_overall_and_job_independence() -> None:
    recs = [_rec("a", k, True, 1.0, 5) for k in range(3)] + [_rec("b", k, False, 0.0, 7) for k in range(2)]
    summary = summarize_run("r", recs, {"a": 3, "b": 2}, {"a": "completed", "b": "completed"}, seed=1)
    assert list(summary.jobs) == ["a", "b"]
    assert summary.overall.episodes == 5 and summary.overall.successes == 3
    assert summary.overall.success_rate == 0.6
    alone = summarize_run("r", recs[:3], {"a": 3}, {"a": "completed"}, seed=1)
    assert alone.jobs["a"].return_ci == summary.jobs["a"].return_ci


def test_non_finite_returns_are_left_out_and_counted() -> None:
    recs = [_rec("a", k, True, float(k), 5) for k in range(4)]
    recs[1].outcome["return"] = float("nan")
    recs[2].outcome["return"] = None
    s = summarize_job("a", recs, planned=4, seed=0)
    assert s.invalid_returns == 2
    assert s.return_mean == 1.5  # episodes 0 and 3
    assert s.episodes == 4 and s.success_rate == 1.0
    assert s.return_ci is not None
    assert summarize_job("a", recs[1:3], planned=2, seed=0).return_mean is None


def test_bootstrap_of_repeated_values_matches_the_resampling_distribution() -> None:
    # 3 distinct values in 100 episodes: drawn as multinomial counts. The mean is 7.0 and the
    # bootstrap standard error sqrt(61 / 100) = 0.781, so the interval is ~7 +- 1.53.
    values = np.repeat([0.0, 10.0, 20.0], [50, 30, 20])
    lo, hi = bootstrap_mean_interval(values, seed=11, resamples=20000)
    assert lo == pytest.approx(7.0 - 1.959964 * 0.781, abs=0.12)
    assert hi == pytest.approx(7.0 + 1.959964 * 0.781, abs=0.12)
    assert (lo, hi) == bootstrap_mean_interval(values, seed=11, resamples=20000)
    # The same data with every value distinct (index resampling) gives the same interval.
    jittered = values + np.linspace(0.0, 1e-6, values.size)
    jlo, jhi = bootstrap_mean_interval(jittered, seed=11, resamples=20000)
    assert (jlo, jhi) == pytest.approx((lo, hi), abs=0.12)


# --------------------------------------------------------------------------- success status


def _outcome_records(job: str, successes: list[bool | None]) -> list[EpisodeRecord]:
    return [
        EpisodeRecord(
            job=job,
            episode=k,
            seed=0,
            outcome={"return": -1.0} if s is None else {"success": s, "return": -1.0},
        )
        for k, s in enumerate(successes)
    ]


def test_success_status_says_where_success_came_from(caplog: pytest.LogCaptureFixture) -> None:
    failed = _outcome_records("pendulum", [False, False, False])
    assert summarize_job("j", _outcome_records("j", [True, False]), 2, 0).success_status == "reported"
    assert summarize_job("j", failed, 3, 0, success_seen=True).success_status == "reported"
    assert summarize_job("j", failed, 3, 0, success_rule=True, success_seen=False).success_status == "rule"
    assert summarize_job("j", failed, 3, 0).success_status == "reported"  # unknown: the records cannot tell
    assert summarize_job("j", [], 3, 0).success_status is None
    assert not caplog.records
    with caplog.at_level("WARNING"):
        absent = summarize_job("pendulum", failed, 3, 0, success_seen=False)
    assert absent.success_status == "absent"
    assert absent.success_rate == 0.0  # the number stays; the status says it means nothing
    (warning,) = caplog.records
    assert "job 'pendulum'" in warning.getMessage()
    assert "set success: survived / {min_return: X} / {key: NAME}" in warning.getMessage()


def test_records_without_success_are_absent_and_the_overall_status_is_the_common_one() -> None:
    records = _outcome_records("a", [None, None]) + _outcome_records("b", [None])
    summary = summarize_run("r", records, {"a": 2, "b": 1}, {}, seed=0)
    assert [j.success_status for j in summary.jobs.values()] == ["absent", "absent"]
    assert summary.overall.success_status == "absent"
    mixed = summarize_run(
        "r",
        _outcome_records("a", [False]) + _outcome_records("b", [False]),
        {"a": 1, "b": 1},
        {},
        seed=0,
        success_rules={"a": True},
        success_seen={"b": False},
    )
    assert [j.success_status for j in mixed.jobs.values()] == ["rule", "absent"]
    assert mixed.overall.success_status is None
    single = summarize_run(
        "r", _outcome_records("a", [False]), {"a": 1}, {}, seed=0, success_seen={"a": False}
    )
    assert single.overall.success_status == "absent"
