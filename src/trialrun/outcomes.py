"""Per-episode outcomes computed online from the step stream.

No trajectory is stored: each term keeps a few numbers per sub-env and updates
them at every step. The built-in terms are vectorized over sub-envs (one numpy
operation per step, not one Python call per env), so they cost little next to
the simulator.

A custom term is a small reducer object (see :class:`OutcomeTerm`) registered
in the job config as ``outcomes: [{type: "my.module:MyTerm", kwargs: {...}}]``.

Example:
    >>> import numpy as np
    >>> tracker = OutcomeTracker(num_envs=2, success=SuccessRule(key=None))
    >>> tracker.start(np.array([True, True]))
    >>> tracker.step(np.array([True, True]), np.array([1.0, 2.0]),
    ...              np.array([False, True]), np.array([False, False]), {"success": np.array([0.0, 1.0]),
    ...              "_success": np.array([True, True])})
    >>> tracker.result(1)["success"], tracker.result(1)["return"], tracker.result(1)["time_to_success"]
    (True, 2.0, 1)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

STANDARD_OUTCOMES = (
    "success",
    "success_at_end",
    "return",
    "length",
    "terminated",
    "truncated",
    "time_to_success",
)
DEFAULT_SUCCESS_KEYS = ("success", "is_success")


@runtime_checkable
class OutcomeTerm(Protocol):
    """A custom per-episode outcome, updated at every step of every sub-env.

    ``name`` becomes the key under the record's ``outcome``. All methods take
    arrays over sub-envs; ``active`` marks the sub-envs that really stepped.
    """

    name: str

    def allocate(self, num_envs: int) -> None:
        """Called once before the first episode."""

    def start(self, env_mask: np.ndarray) -> None:
        """Episodes start in the sub-envs where ``env_mask`` is true."""

    def step(
        self,
        active: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> None:
        """One step of the active sub-envs."""

    def value(self, env_index: int) -> float | int | bool | None:
        """The outcome of the episode that just ended in ``env_index``."""


@dataclass(frozen=True)
class SuccessRule:
    """How success is read: an info key (``None`` = try ``success`` then
    ``is_success``), ``survived`` (time limit reached without termination) or
    ``min_return``."""

    key: str | None = None
    survived: bool = False
    min_return: float | None = None


def info_flag(infos: dict[str, Any], key: str, num_envs: int) -> np.ndarray | None:
    """``infos[key]`` of a vector env as a bool array (False where absent), or
    ``None`` when no sub-env reported the key this step."""
    values = infos.get(key)
    if values is None:
        return None
    present = infos.get("_" + key)
    flags = np.zeros(num_envs, dtype=bool)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([bool(v) if v is not None else False for v in arr], dtype=bool)
    flags[:] = arr.astype(bool)
    if present is not None:
        flags &= np.asarray(present, dtype=bool)
    return flags


_COLUMNS_FROM = 16
"""From this many episodes ending together, :meth:`OutcomeTracker.results`
reads the outcome fields as columns."""


class OutcomeTracker:
    """Accumulates the standard outcomes (and custom terms) for every sub-env."""

    def __init__(
        self,
        num_envs: int,
        success: SuccessRule,
        terms: list[OutcomeTerm] | None = None,
    ) -> None:
        self.num_envs = num_envs
        self.rule = success
        self.terms = list(terms or [])
        self._keys = (success.key,) if success.key else DEFAULT_SUCCESS_KEYS
        self.success_key_seen = False
        self.nonfinite_episodes = 0
        """Episodes whose return was NaN or inf (a NaN or inf reward on the way)."""
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.ever_success = np.zeros(num_envs, dtype=bool)
        self.last_success = np.zeros(num_envs, dtype=bool)
        self.time_to_success = np.full(num_envs, -1, dtype=np.int64)
        self.terminated = np.zeros(num_envs, dtype=bool)
        self.truncated = np.zeros(num_envs, dtype=bool)
        for term in self.terms:
            term.allocate(num_envs)

    def start(self, env_mask: np.ndarray) -> None:
        """Clear the accumulators of the sub-envs starting a new episode."""
        starting = np.asarray(env_mask).nonzero()[0]
        if len(starting) >= _COLUMNS_FROM:  # a batched simulator's round of resets
            self.returns[starting] = 0.0
            self.lengths[starting] = 0
            self.ever_success[starting] = self.last_success[starting] = False
            self.time_to_success[starting] = -1
        else:  # usually one or two sub-envs start at a time: element writes beat masked ones
            for i in starting.tolist():
                self.returns[i] = 0.0
                self.lengths[i] = 0
                self.ever_success[i] = self.last_success[i] = False
                self.time_to_success[i] = -1
        for term in self.terms:
            term.start(env_mask)

    def step(
        self,
        active: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> None:
        """Fold one vector step into the accumulators of the active sub-envs."""
        # Idle sub-envs report reward 0 and are cleared by start(): no masking needed.
        self.returns += rewards
        self.lengths += active
        # result() is asked only about episodes that ended at this step, so the
        # step's own flags are the ones it needs (no per-env copy kept).
        self.terminated = np.asarray(terminated, dtype=bool)
        self.truncated = np.asarray(truncated, dtype=bool)
        if not self.rule.survived and self.rule.min_return is None:
            flags = None
            for key in self._keys:
                if key in infos:
                    flags = info_flag(infos, key, self.num_envs)
                    break
            if flags is not None:
                self.success_key_seen = True
                flags &= active
                newly = flags & ~self.ever_success
                self.time_to_success[newly] = self.lengths[newly]
                self.ever_success |= flags
                self.last_success[active] = flags[active]
        for term in self.terms:
            term.step(active, rewards, terminated, truncated, infos)

    def results(self, env_indices: Sequence[int]) -> list[dict[str, Any]]:
        """:meth:`result` of several sub-envs, the same dicts, read column by
        column: a natively batched simulator ends a thousand episodes in one
        step, and reading each outcome field per world costs ~4 us an episode
        (one or two worlds are faster read one by one)."""
        if len(env_indices) < _COLUMNS_FROM or self.terms:
            return [self.result(i) for i in env_indices]
        idx = np.asarray(env_indices, dtype=np.intp)
        outcome = self._outcome
        return [
            outcome(*row)
            for row in zip(
                self.lengths[idx].tolist(),
                self.returns[idx].tolist(),
                self.terminated[idx].tolist(),
                self.truncated[idx].tolist(),
                self.ever_success[idx].tolist(),
                self.last_success[idx].tolist(),
                self.time_to_success[idx].tolist(),
                strict=True,
            )
        ]

    def result(self, env_index: int) -> dict[str, Any]:
        """The outcome dict of the episode that ended in ``env_index`` at the
        last :meth:`step`."""
        i = env_index
        outcome = self._outcome(
            int(self.lengths[i]),
            float(self.returns[i]),
            bool(self.terminated[i]),
            bool(self.truncated[i]),
            bool(self.ever_success[i]),
            bool(self.last_success[i]),
            int(self.time_to_success[i]),
        )
        for term in self.terms:
            value = term.value(i)
            if isinstance(value, np.generic):
                value = value.item()
            outcome[term.name] = value
        return outcome

    def _outcome(
        self,
        length: int,
        ret: float,
        terminated: bool,
        truncated: bool,
        ever_success: bool,
        last_success: bool,
        time_to_success: int,
    ) -> dict[str, Any]:
        """One episode's outcome dict from its tallies as Python values
        (``time_to_success`` -1: never), by the job's success rule: the one
        place that rule is written, for :meth:`result` and :meth:`results`."""
        min_return = self.rule.min_return
        if self.rule.survived:
            success = truncated and not terminated
        elif min_return is not None:
            success = ret >= min_return
        else:  # the env's success flag: ever during the episode, and at its end
            success = ever_success
        if self.rule.survived or min_return is not None:  # a rule on the whole episode
            at_end, tts = success, (length if success else None)
        else:
            at_end, tts = last_success, (time_to_success if time_to_success >= 0 else None)
        outcome: dict[str, Any] = {
            "success": success,
            "success_at_end": at_end,
            "return": ret,
            "length": length,
            "terminated": terminated,
            "truncated": truncated,
            "time_to_success": tts,
        }
        if not math.isfinite(ret):
            # Checked once per episode, not per step: a sum is non-finite iff a term was.
            outcome["nonfinite_reward"] = True
            self.nonfinite_episodes += 1
        return outcome


REPLAY_REL_TOL = 1e-9
REPLAY_ABS_TOL = 1e-12


class _Missing:
    """A value one side of a comparison lacks."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()


def values_match(a: Any, b: Any) -> bool:
    """Equal, or both floats within a relative 1e-9 (bools are not numbers here).

    A faithful re-simulation of an episode (``trialrun replay``, a re-rendered
    video) reproduces its outcome bit for bit, and JSON round-trips floats
    exactly, so the tolerance only absorbs formatting, never a different episode.
    """
    if a is MISSING or b is MISSING:
        return False
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REPLAY_REL_TOL, abs_tol=REPLAY_ABS_TOL)
    return bool(a == b)


def differing_keys(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """The keys of two outcomes whose values do not match (see :func:`values_match`)."""
    keys = [*recorded, *(k for k in replayed if k not in recorded)]
    return [k for k in keys if not values_match(recorded.get(k, MISSING), replayed.get(k, MISSING))]
