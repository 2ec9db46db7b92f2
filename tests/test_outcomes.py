from __future__ import annotations

import json

import numpy as np

from helpers import MaxRewardTerm
from trialrun.outcomes import OutcomeTracker, SuccessRule, info_flag

T, F = True, False


def _step(tracker: OutcomeTracker, active, rewards, term, trunc, infos=None) -> None:  # type: ignore[no-untyped-def]
    tracker.step(
        np.array(active), np.array(rewards, dtype=float), np.array(term), np.array(trunc), infos or {}
    )


def test_success_is_ever_and_success_at_end_is_last() -> None:
    tracker = OutcomeTracker(2, SuccessRule())
    tracker.start(np.array([T, T]))
    flags = lambda a, b: {"success": np.array([a, b]), "_success": np.array([T, T])}  # noqa: E731
    _step(tracker, [T, T], [1, 1], [F, F], [F, F], flags(0.0, 1.0))
    _step(tracker, [T, T], [1, 1], [F, F], [F, F], flags(1.0, 0.0))
    _step(tracker, [T, T], [1, 1], [F, F], [T, T], flags(1.0, 0.0))
    a, b = tracker.result(0), tracker.result(1)
    assert (a["success"], a["success_at_end"], a["time_to_success"]) == (True, True, 2)
    assert (b["success"], b["success_at_end"], b["time_to_success"]) == (True, False, 1)
    assert (a["length"], a["return"], a["truncated"], a["terminated"]) == (3, 3.0, True, False)


def test_is_success_is_the_fallback_key_and_missing_means_failure() -> None:
    tracker = OutcomeTracker(1, SuccessRule())
    tracker.start(np.array([T]))
    _step(tracker, [T], [0], [T], [F], {"is_success": np.array([True]), "_is_success": np.array([True])})
    assert tracker.result(0)["success"] is True
    tracker2 = OutcomeTracker(1, SuccessRule())
    tracker2.start(np.array([T]))
    _step(tracker2, [T], [0], [T], [F], {})
    assert tracker2.result(0)["success"] is False and tracker2.result(0)["time_to_success"] is None
    assert tracker2.success_key_seen is False


def test_custom_key_and_inactive_envs_are_ignored() -> None:
    tracker = OutcomeTracker(2, SuccessRule(key="goal"))
    tracker.start(np.array([T, T]))
    infos = {
        "goal": np.array([True, True]),
        "_goal": np.array([True, True]),
        "success": np.array([False, False]),
    }
    _step(tracker, [T, F], [2, 0], [T, F], [F, F], infos)  # idle sub-envs report reward 0
    assert tracker.result(0)["success"] is True
    assert tracker.result(1)["success"] is False
    assert tracker.result(1)["length"] == 0 and tracker.result(1)["return"] == 0.0


def test_survived_and_min_return_rules() -> None:
    survived = OutcomeTracker(2, SuccessRule(survived=True))
    survived.start(np.array([T, T]))
    _step(survived, [T, T], [1, 1], [F, T], [T, F])
    assert [survived.result(i)["success"] for i in (0, 1)] == [True, False]
    min_return = OutcomeTracker(2, SuccessRule(min_return=1.5))
    min_return.start(np.array([T, T]))
    _step(min_return, [T, T], [1, 2], [F, F], [F, F])
    _step(min_return, [T, T], [1, 2], [T, T], [F, F])
    assert [min_return.result(i)["success"] for i in (0, 1)] == [True, True]
    assert min_return.result(0)["return"] == 2.0


def test_start_clears_only_masked_envs() -> None:
    tracker = OutcomeTracker(2, SuccessRule())
    tracker.start(np.array([T, T]))
    _step(tracker, [T, T], [3, 4], [F, F], [F, F])
    tracker.start(np.array([F, T]))
    assert tracker.result(0)["return"] == 3.0 and tracker.result(1)["return"] == 0.0


def test_custom_term_is_reported_under_its_name() -> None:
    term = MaxRewardTerm()
    tracker = OutcomeTracker(2, SuccessRule(), [term])
    tracker.start(np.array([T, T]))
    _step(tracker, [T, T], [1, 7], [F, F], [F, F])
    _step(tracker, [T, T], [4, 2], [T, T], [F, F])
    assert tracker.result(0)["max_reward"] == 4.0
    assert tracker.result(1)["max_reward"] == 7.0


def test_info_flag_handles_masks_and_objects() -> None:
    assert info_flag({}, "success", 2) is None
    flags = info_flag({"s": np.array([1.0, 1.0]), "_s": np.array([True, False])}, "s", 2)
    assert flags is not None and flags.tolist() == [True, False]
    flags = info_flag({"s": np.array([None, True], dtype=object)}, "s", 2)
    assert flags is not None and flags.tolist() == [False, True]


def _busy_tracker(rule: SuccessRule, n: int = 40) -> OutcomeTracker:
    """``n`` sub-envs after 12 steps of varied rewards, success flags and ends
    (one NaN reward), every one of them ending at the last step."""
    rng = np.random.default_rng(4)
    tracker = OutcomeTracker(n, rule)
    tracker.start(np.ones(n, dtype=bool))
    active = np.ones(n, dtype=bool)
    for t in range(12):
        rewards = rng.normal(size=n)
        if t == 3:
            rewards[7] = np.nan
        last = t == 11
        terminated = rng.random(n) < 0.5 if last else np.zeros(n, dtype=bool)
        infos = {"success": rng.random(n) < 0.2, "_success": np.ones(n, dtype=bool)}
        tracker.step(active, rewards, terminated, np.full(n, last) & ~terminated, infos)
    return tracker


def test_results_read_as_columns_equal_the_per_world_results() -> None:
    for rule in (SuccessRule(), SuccessRule(survived=True), SuccessRule(min_return=0.5)):
        worlds = [*range(0, 40, 2), 39, 7]  # 22 ended sub-envs (7 had a NaN reward): columns
        columns, single = _busy_tracker(rule), _busy_tracker(rule)
        got = columns.results(worlds)
        want = [single.result(i) for i in worlds]
        assert json.dumps(got) == json.dumps(want), rule  # as text: NaN equals NaN
        # Same types too (a record's JSON must not depend on the path): bool, float, int, None.
        assert [[type(v) for v in o.values()] for o in got] == [[type(v) for v in o.values()] for o in want]
        assert columns.nonfinite_episodes == single.nonfinite_episodes == 1
    nan_world = _busy_tracker(SuccessRule()).results(list(range(20)))[7]
    assert nan_world["nonfinite_reward"] is True and np.isnan(nan_world["return"])


def test_a_round_of_resets_clears_the_tallies_of_the_starting_sub_envs_only() -> None:
    tracker = _busy_tracker(SuccessRule())
    before = tracker.returns.copy()
    starting = np.zeros(40, dtype=bool)
    starting[::2] = True  # 20 sub-envs: one masked write per column
    tracker.start(starting)
    assert (tracker.returns[starting] == 0).all() and (tracker.lengths[starting] == 0).all()
    assert not tracker.ever_success[starting].any() and (tracker.time_to_success[starting] == -1).all()
    np.testing.assert_array_equal(tracker.returns[~starting], before[~starting])
    assert (tracker.lengths[~starting] == 12).all()
