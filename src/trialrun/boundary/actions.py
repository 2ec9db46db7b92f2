"""Checking a policy's actions against the env's action space, once per step.

A policy that returns the wrong shape does not always crash the env: a
vector env iterates over the first axis, so ``(n + 3, 7)`` actions for ``n``
sub-envs of a ``(1,)`` Box were silently cut to ``n`` rows and the job
"completed" on garbage. NaN actions are as quiet: MuJoCo integrates them into
NaN states and the episode ends with a NaN return. So every batch is checked
before it reaches the env: shape and dtype (always an error), non-finite
values (``on_nonfinite``: ``fail``, the default, or ``warn``) and values
outside a Box's bounds (``on_out_of_bounds``: ``warn``, the default, ``clip``
like Stable-Baselines3's ``predict``, or ``fail``). Discrete, MultiDiscrete
and MultiBinary values outside their range are always an error: there is no
nearest valid action to clip to that means the same thing.

The check is a handful of numpy reductions per step (a Box with one lower and
one upper bound costs two: the batch's minimum and maximum also reveal NaN and
inf), so it stays within the rollout's noise (``benchmarks/boundary.py``).

Example:
    >>> import numpy as np, gymnasium as gym
    >>> check = ActionCheck(gym.spaces.Box(-1, 1, (2,)), num_envs=3)
    >>> check(np.zeros((3, 2), np.float32)).shape
    (3, 2)
    >>> check(np.zeros((4, 2), np.float32))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trialrun.errors.ActionError: the policy returned actions of shape (4, 2); the env needs (3, 2): ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from trialrun.errors import ActionError

logger = logging.getLogger(__name__)

OnNonfinite = Literal["fail", "warn"]
OnOutOfBounds = Literal["warn", "clip", "fail"]

_Checker = Callable[[Any], Any]


class ActionCheck:
    """Validates (and, with ``on_out_of_bounds="clip"``, clips) each batch of
    actions for ``num_envs`` sub-envs of ``space``; returns the batch to step.

    Arrays that are not numpy arrays (JAX or torch arrays a batched simulator
    takes as they are) get the shape check only: looking at their values would
    copy them off the device every step.
    """

    def __init__(
        self,
        space: gym.Space[Any],
        num_envs: int,
        *,
        on_nonfinite: OnNonfinite = "fail",
        on_out_of_bounds: OnOutOfBounds = "warn",
        where: str = "",
    ) -> None:
        self.space = space
        self.num_envs = num_envs
        self.on_nonfinite = on_nonfinite
        self.on_out_of_bounds = on_out_of_bounds
        self.where = where
        self.warned: set[str] = set()
        self._check = self._checker(space, "")

    def __call__(self, actions: Any) -> Any:
        return self._check(actions)

    # ------------------------------------------------------------------ builders

    def _checker(self, space: gym.Space[Any], path: str) -> _Checker:
        if isinstance(space, gym.spaces.Box):
            return self._box(space, path)
        if isinstance(space, gym.spaces.Discrete):
            return self._integers(space, path, np.int64(space.start), np.int64(space.start + space.n))
        if isinstance(space, gym.spaces.MultiDiscrete):
            return self._integers(space, path, space.start, space.start + space.nvec)
        if isinstance(space, gym.spaces.MultiBinary):
            return self._integers(space, path, np.int64(0), np.int64(2), kinds="iub")
        if isinstance(space, gym.spaces.Dict):
            return self._dict(space, path)
        if isinstance(space, gym.spaces.Tuple):
            return self._tuple(space, path)
        logger.debug("actions of %s are not checked (no array form)", type(space).__name__)
        return _unchecked

    def _box(self, space: gym.spaces.Box, path: str) -> _Checker:
        shape = (self.num_envs, *space.shape)
        low, high = space.low, space.high
        # One bound for every element (the usual case) lets min() and max() do the whole check.
        uniform = low.size > 0 and bool((low == low.flat[0]).all() and (high == high.flat[0]).all())
        # Infinite bounds are tested as the largest float, so inf actions still fail the fast test.
        biggest = float(np.finfo(np.float64).max)
        lo = max(float(low.flat[0]), -biggest) if uniform else 0.0
        hi = min(float(high.flat[0]), biggest) if uniform else 0.0

        def check(actions: Any) -> Any:
            array = self._array(actions, shape, space, path, "iuf")
            if type(array) is not np.ndarray or array.size == 0:
                return array
            if uniform:
                smallest, largest = _extremes(array)
                if lo <= smallest and largest <= hi:
                    return array  # also proves every value finite: NaN fails both tests
                finite = bool(np.isfinite(array).all())
                inside = finite and lo <= smallest and largest <= hi
            else:
                finite = bool(np.isfinite(array).all())
                inside = finite and bool(((array >= low) & (array <= high)).all())
            if not finite:
                array = self._nonfinite(array, path, space)
            if not inside:
                array = self._outside(array, space, path)
            return array

        return check

    def _integers(
        self, space: gym.Space[Any], path: str, start: Any, stop: Any, kinds: str = "iu"
    ) -> _Checker:
        shape = (self.num_envs, *(space.shape or ()))
        scalar = np.ndim(start) == 0 and np.ndim(stop) == 0
        first, last = (int(start), int(stop) - 1) if scalar else (0, 0)

        def check(actions: Any) -> Any:
            array = self._array(actions, shape, space, path, kinds)
            if type(array) is not np.ndarray or array.size == 0:
                return array
            if scalar:
                smallest, largest = _extremes(array)
                ok = first <= smallest and largest <= last
            else:
                ok = bool(((array >= start) & (array < stop)).all())
            if not ok:
                bad = array[~((array >= start) & (array < stop))]
                raise ActionError(
                    f"{self._who(path)}returned action {bad.flat[0].item()!r} outside {space} "
                    f"(allowed: {_integer_range(start, stop)})"
                )
            return array

        return check

    def _dict(self, space: gym.spaces.Dict, path: str) -> _Checker:
        checkers = {key: self._checker(sub, f"{path}{key}.") for key, sub in space.spaces.items()}

        def check(actions: Any) -> Any:
            if not isinstance(actions, Mapping):
                raise ActionError(
                    f"{self._who(path)}returned {type(actions).__name__}; the env's Dict action space "
                    f"needs a mapping with keys {sorted(checkers)}"
                )
            if set(actions) != set(checkers):
                raise ActionError(
                    f"{self._who(path)}returned keys {sorted(map(str, actions))}; "
                    f"the env needs {sorted(checkers)}"
                )
            return {key: checker(actions[key]) for key, checker in checkers.items()}

        return check

    def _tuple(self, space: gym.spaces.Tuple, path: str) -> _Checker:  # type: ignore[type-arg]
        checkers = [self._checker(sub, f"{path}{i}.") for i, sub in enumerate(space.spaces)]

        def check(actions: Any) -> Any:
            if not isinstance(actions, Sequence) or len(actions) != len(checkers):
                raise ActionError(
                    f"{self._who(path)}returned {type(actions).__name__}; the env's Tuple action space "
                    f"needs a sequence of {len(checkers)} batches"
                )
            return tuple(checker(part) for checker, part in zip(checkers, actions, strict=True))

        return check

    # ------------------------------------------------------------------ pieces

    def _array(
        self, actions: Any, shape: tuple[int, ...], space: gym.Space[Any], path: str, kinds: str
    ) -> Any:
        if type(actions) is np.ndarray:
            array = actions
        elif hasattr(actions, "shape") and hasattr(actions, "dtype"):
            if tuple(actions.shape) != shape:
                raise self._shape_error(tuple(actions.shape), shape, space, path)
            return actions  # a device array: shape only
        else:
            try:
                array = np.asarray(actions)
            except (TypeError, ValueError) as exc:  # ragged lists
                raise ActionError(
                    f"{self._who(path)}returned actions numpy cannot read as an array: {exc}"
                ) from None
        if array.shape != shape:
            raise self._shape_error(array.shape, shape, space, path)
        if array.dtype.kind not in kinds:
            raise ActionError(
                f"{self._who(path)}returned actions of dtype {array.dtype}; {space} needs "
                f"{_kind_names(kinds)} values"
            )
        return array

    def _shape_error(
        self, got: tuple[int, ...], shape: tuple[int, ...], space: gym.Space[Any], path: str
    ) -> ActionError:
        return ActionError(
            f"{self._who(path)}returned actions of shape {got}; the env needs {shape}: one row per sub-env, "
            f"each of shape {shape[1:]} for {space}"
        )

    def _nonfinite(self, array: np.ndarray, path: str, space: gym.Space[Any]) -> np.ndarray:
        rows = sorted({int(r) for r in np.argwhere(~np.isfinite(array))[:, 0]})
        message = (
            f"{self._who(path)}returned non-finite actions (NaN or inf) for sub-env(s) {rows[:8]} of {space}"
        )
        if self.on_nonfinite == "fail":
            raise ActionError(f"{message}; set on_nonfinite: warn to let them through")
        self._warn_once("nonfinite", "%s (on_nonfinite: warn; later ones are not reported)", message)
        return array

    def _outside(self, array: np.ndarray, space: gym.spaces.Box, path: str) -> np.ndarray:
        finite = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        excess = float(np.max(np.maximum(space.low - finite, finite - space.high)))
        if excess <= 0:
            return array  # only non-finite values were out of line, reported above
        message = f"{self._who(path)}returned actions outside {space} (by up to {excess:.4g})"
        if self.on_out_of_bounds == "fail":
            raise ActionError(f"{message}; set on_out_of_bounds: clip to clip them, or warn to pass them on")
        if self.on_out_of_bounds == "clip":
            clipped: np.ndarray = np.clip(array, space.low, space.high).astype(array.dtype, copy=False)
            return clipped
        self._warn_once(
            "bounds",
            "%s; the env gets them as they are (set on_out_of_bounds: clip to clip them as "
            "Stable-Baselines3's predict does, or fail to stop the job; later ones are not reported)",
            message,
        )
        return array

    def _warn_once(self, kind: str, template: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            logger.warning(template, message)

    def _who(self, path: str) -> str:
        where = f"{self.where}: " if self.where else ""
        part = f" (action '{path[:-1]}')" if path else ""
        return f"{where}the policy{part} "


_SMALL = 64
"""Up to this many values, Python's min/max over a list beat two numpy
reductions (~0.5 us against ~2.5 us for a batch of 16 on this project's CI
machine): the check runs every step, so it must cost next to nothing."""


def _extremes(array: np.ndarray) -> tuple[Any, Any]:
    """``(min, max)`` of ``array``; NaN anywhere makes both NaN (so every
    bounds test fails and the caller looks closer)."""
    if array.size <= _SMALL:
        values = array.ravel().tolist()
        smallest, largest = min(values), max(values)
        if array.dtype.kind == "f":
            total = sum(values)
            if total != total:  # NaN anywhere (Python's min/max may skip it, sum never does)
                return float("nan"), float("nan")
        return smallest, largest
    return array.min().item(), array.max().item()


def _unchecked(actions: Any) -> Any:
    return actions


def _kind_names(kinds: str) -> str:
    names = {"i": "integer", "u": "unsigned integer", "f": "float", "b": "bool"}
    return " or ".join(names[k] for k in kinds)


def _integer_range(start: Any, stop: Any) -> str:
    if np.ndim(start) == 0 and np.ndim(stop) == 0:
        return f"{int(start)}..{int(stop) - 1}"
    return f"{np.asarray(start).tolist()} .. {(np.asarray(stop) - 1).tolist()} per element"
