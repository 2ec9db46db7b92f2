"""A job's running aggregates: what ``summary.json`` needs, in bounded memory.

Why: a batched simulator turns a million episodes into an ordinary run, and the
runner used to keep every finished episode's outcome until the summary (a few
hundred bytes each). A summary needs far less: counts and flags, the sum of the
lengths, and the returns themselves (the mean's rounding depends on their
order, the IQM and the bootstrap interval on all of them). A tally keeps the
counts as integers and the returns in one float64 array indexed by episode
(8 bytes an episode, preallocated to the planned count), plus one byte an
episode saying which episodes have finished (the runner's duplicate check).
:func:`trialrun.stats.summary.summarize_tallies` computes from it exactly the
numbers :func:`~trialrun.stats.summary.summarize_run` computes from the
records, because both feed the same columns, in episode order, to the same
code. The one exception: the policy and env seconds are summed in arrival
order, not episode order (wall times, rounded to milliseconds).

Example:
    >>> tally = OutcomeTally(planned=3)
    >>> tally.add(2, {"success": True, "return": 5.0, "length": 9, "terminated": True})
    >>> tally.add(0, {"success": False, "return": 1.0, "length": 4, "truncated": True})
    >>> 2 in tally, 1 in tally, len(tally)
    (True, False, 2)
    >>> tally.returns().tolist(), tally.length_total, tally.successes
    ([1.0, 5.0], 13, 1)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trialrun.runfiles.schema import Outcome


class OutcomeTally:
    """The running aggregates of one job's episodes (see the module docstring).

    ``planned`` preallocates the arrays; an episode at or beyond it grows them
    (doubling), so a tally takes any episode index >= 0.
    """

    def __init__(self, planned: int = 0) -> None:
        size = max(int(planned), 0)
        self._done = np.zeros(size, dtype=bool)
        self._returns = np.full(size, np.nan)
        self.episodes = 0
        self.successes = 0
        self.any_success_value = False
        """Whether some episode had a ``success`` value (not null)."""
        self.length_total = 0
        self.terminated = 0
        self.truncated = 0
        self.timed = 0
        self.policy_seconds = 0.0
        self.env_seconds = 0.0

    def __contains__(self, episode: object) -> bool:
        return isinstance(episode, int) and 0 <= episode < self._done.size and bool(self._done[episode])

    def __len__(self) -> int:
        return self.episodes

    def _grow(self, episode: int) -> None:
        size = max(episode + 1, 2 * self._done.size, 16)
        done = np.zeros(size, dtype=bool)
        done[: self._done.size] = self._done
        returns = np.full(size, np.nan)
        returns[: self._returns.size] = self._returns
        self._done, self._returns = done, returns

    def add(
        self,
        episode: int,
        outcome: Outcome | Mapping[str, object],
        seconds: tuple[float, float] | None = None,
    ) -> None:
        """Count one finished episode (the caller skips an episode already in the tally)."""
        if episode < 0:
            raise ValueError(f"episode index must be >= 0, got {episode}")
        if episode >= self._done.size:
            self._grow(episode)
        self._done[episode] = True
        value = outcome.get("return")
        self._returns[episode] = np.nan if value is None else float(value)  # type: ignore[arg-type]
        self.count(outcome, seconds)

    def count(
        self, outcome: Outcome | Mapping[str, object], seconds: tuple[float, float] | None = None
    ) -> None:
        """Count an episode's outcome without storing its return (see :meth:`add`)."""
        self.episodes += 1
        success = outcome.get("success")
        if success is not None:
            self.any_success_value = True
            if success:
                self.successes += 1
        self.length_total += int(outcome.get("length") or 0)  # type: ignore[call-overload]
        if outcome.get("terminated"):
            self.terminated += 1
        if outcome.get("truncated"):
            self.truncated += 1
        if seconds is not None:
            self.timed += 1
            self.policy_seconds += seconds[0]
            self.env_seconds += seconds[1]

    def finished(self) -> set[int]:
        """The indices of the finished episodes."""
        return set(np.flatnonzero(self._done).tolist())

    def finished_mask(self) -> np.ndarray:
        """Whether each episode index is finished (a read-only view; indices
        past its end are not): what resume leaves out, at a byte per episode."""
        view: np.ndarray = self._done.view()
        view.flags.writeable = False
        return view

    def returns(self) -> np.ndarray:
        """The finished episodes' returns in episode order (NaN for a missing one)."""
        return self._returns[self._done]

    def absorb(self, other: OutcomeTally) -> None:
        """Add ``other``'s counts and sums to this tally's (not its returns:
        the overall summary concatenates the jobs' returns itself)."""
        self.episodes += other.episodes
        self.successes += other.successes
        self.any_success_value |= other.any_success_value
        self.length_total += other.length_total
        self.terminated += other.terminated
        self.truncated += other.truncated
        self.timed += other.timed
        self.policy_seconds += other.policy_seconds
        self.env_seconds += other.env_seconds
