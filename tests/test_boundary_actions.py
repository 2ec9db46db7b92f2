"""ActionCheck: every batch of actions against the env's action space."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest

from trialrun.boundary.actions import ActionCheck
from trialrun.errors import ActionError

BOX = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_a_valid_box_batch_passes_unchanged() -> None:
    actions = np.array([[0.5], [-1.0], [1.0]], dtype=np.float32)
    assert ActionCheck(BOX, 3)(actions) is actions


def test_extra_rows_are_an_error_naming_both_shapes() -> None:
    with pytest.raises(ActionError) as err:
        ActionCheck(BOX, 4, where="job 'pendulum'")(np.zeros((7, 7), np.float32))
    assert str(err.value) == (
        "job 'pendulum': the policy returned actions of shape (7, 7); the env needs (4, 1): one row per "
        "sub-env, each of shape (1,) for Box(-1.0, 1.0, (1,), float32)"
    )


def test_a_flat_batch_for_a_one_element_box_is_an_error() -> None:
    with pytest.raises(ActionError, match=r"shape \(3,\); the env needs \(3, 1\)"):
        ActionCheck(BOX, 3)(np.zeros(3, np.float32))


def test_strings_and_bools_are_not_box_actions() -> None:
    with pytest.raises(
        ActionError, match=r"dtype <U1; Box.* needs integer or unsigned integer or float values"
    ):
        ActionCheck(BOX, 2)(np.array([["a"], ["b"]]))
    with pytest.raises(ActionError, match="dtype bool"):
        ActionCheck(BOX, 2)(np.array([[True], [False]]))


def test_ragged_lists_are_an_error() -> None:
    with pytest.raises(ActionError, match="numpy cannot read as an array"):
        ActionCheck(gym.spaces.Box(-1, 1, (2,)), 2)([[0.0, 1.0], [0.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_actions_fail_by_default_naming_the_rows(bad: float) -> None:
    actions = np.zeros((4, 1), np.float32)
    actions[2, 0] = bad
    with pytest.raises(ActionError) as err:
        ActionCheck(BOX, 4)(actions)
    assert str(err.value) == (
        "the policy returned non-finite actions (NaN or inf) for sub-env(s) [2] of "
        "Box(-1.0, 1.0, (1,), float32); set on_nonfinite: warn to let them through"
    )


def test_infinite_actions_fail_even_in_an_unbounded_box() -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    check = ActionCheck(space, 2)
    assert check(np.array([[1e300, -1e300], [0.0, 5.0]])).shape == (2, 2)
    with pytest.raises(ActionError, match=r"sub-env\(s\) \[1\]"):
        check(np.array([[0.0, 0.0], [np.inf, 0.0]]))


def test_nonfinite_with_warn_passes_them_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    check = ActionCheck(BOX, 2, on_nonfinite="warn")
    actions = np.array([[np.nan], [0.0]], np.float32)
    with caplog.at_level(logging.WARNING, logger="trialrun.boundary.actions"):
        for _ in range(3):
            assert check(actions) is actions
    assert [r.getMessage() for r in caplog.records] == [
        "the policy returned non-finite actions (NaN or inf) for sub-env(s) [0] of "
        "Box(-1.0, 1.0, (1,), float32) (on_nonfinite: warn; later ones are not reported)"
    ]


def test_out_of_bounds_warns_once_and_passes_them(caplog: pytest.LogCaptureFixture) -> None:
    check = ActionCheck(BOX, 2)
    actions = np.array([[1.5], [-1.0]], np.float32)
    with caplog.at_level(logging.WARNING, logger="trialrun.boundary.actions"):
        assert check(actions) is actions
        check(np.array([[3.0], [0.0]], np.float32))
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(
            "the policy returned actions outside Box(-1.0, 1.0, (1,), float32) (by up to 0.5); "
            "the env gets them as they are (set on_out_of_bounds: clip"
        )
    )


def test_out_of_bounds_clip_clips_per_element_bounds() -> None:
    space = gym.spaces.Box(np.array([-1.0, 0.0]), np.array([1.0, 2.0]), dtype=np.float64)
    clipped = ActionCheck(space, 2, on_out_of_bounds="clip")(np.array([[-3.0, 5.0], [0.5, -1.0]]))
    assert clipped.tolist() == [[-1.0, 2.0], [0.5, 0.0]]
    assert clipped.dtype == np.float64


def test_out_of_bounds_fail() -> None:
    with pytest.raises(ActionError, match=r"outside Box\(-1.0, 1.0, \(1,\), float32\) \(by up to 2\); set"):
        ActionCheck(BOX, 1, on_out_of_bounds="fail")(np.array([[-3.0]], np.float32))


def test_discrete_range_and_dtype() -> None:
    check = ActionCheck(gym.spaces.Discrete(3, start=1), 3)
    assert check(np.array([1, 2, 3])).tolist() == [1, 2, 3]
    assert check([1, 1, 3]).tolist() == [1, 1, 3]  # lists become arrays
    with pytest.raises(ActionError) as err:
        check(np.array([1, 4, 2]))
    assert str(err.value) == "the policy returned action 4 outside Discrete(3, start=1) (allowed: 1..3)"
    with pytest.raises(ActionError, match=r"dtype float64; Discrete.* needs integer or unsigned integer"):
        check(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ActionError, match=r"action -1 outside"):
        check(np.array([-1, 1, 1]))


def test_multidiscrete_and_multibinary() -> None:
    multi = ActionCheck(gym.spaces.MultiDiscrete([2, 5]), 2)
    assert multi(np.array([[1, 4], [0, 0]])).shape == (2, 2)
    with pytest.raises(
        ActionError, match=r"action 2 outside MultiDiscrete\(\[2 5\]\) \(allowed: \[0, 0\] .. \[1, 4\]"
    ):
        multi(np.array([[2, 4], [0, 0]]))
    binary = ActionCheck(gym.spaces.MultiBinary(3), 1)
    assert binary(np.array([[True, False, True]])).tolist() == [[True, False, True]]
    with pytest.raises(ActionError, match="action 2 outside MultiBinary"):
        binary(np.array([[0, 2, 1]]))


def test_dict_and_tuple_spaces_check_each_part() -> None:
    space = gym.spaces.Dict({"arm": BOX, "grip": gym.spaces.Discrete(2)})
    check = ActionCheck(space, 2)
    out = check({"arm": np.zeros((2, 1), np.float32), "grip": np.array([0, 1])})
    assert sorted(out) == ["arm", "grip"]
    with pytest.raises(ActionError, match=r"the policy \(action 'grip'\) returned action 2 outside"):
        check({"arm": np.zeros((2, 1), np.float32), "grip": np.array([0, 2])})
    with pytest.raises(ActionError, match=r"returned keys \['arm'\]; the env needs \['arm', 'grip'\]"):
        check({"arm": np.zeros((2, 1), np.float32)})
    with pytest.raises(ActionError, match="returned ndarray; the env's Dict action space needs a mapping"):
        check(np.zeros((2, 2)))
    pair = ActionCheck(gym.spaces.Tuple((BOX, gym.spaces.Discrete(2))), 1)
    assert len(pair((np.zeros((1, 1), np.float32), np.array([1])))) == 2
    with pytest.raises(ActionError, match="needs a sequence of 2 batches"):
        pair((np.zeros((1, 1), np.float32),))


class _DeviceArray:
    """Stands in for a JAX or torch array: it has a shape and a dtype, and
    reading its values would copy it off the device."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dtype = "float32"

    def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the check must not copy a device array")


def test_device_arrays_get_the_shape_check_only() -> None:
    check = ActionCheck(gym.spaces.Box(-1, 1, (3,)), 8)
    array = _DeviceArray((8, 3))
    assert check(array) is array
    with pytest.raises(ActionError, match=r"shape \(9, 3\); the env needs \(8, 3\)"):
        check(_DeviceArray((9, 3)))
