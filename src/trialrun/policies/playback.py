"""Recorded action streams: kept while episodes run, played back to re-simulate one.

An episode is a pure function of its slot (seed, factors) and the actions the
env received, so keeping the actions is enough to run it again exactly, later,
with a camera attached (re-rendering a ``select: failures`` video) or with a
step recorder. Actions are small next to observations or frames: a
Meta-World episode of 500 steps is 500 rows of 4 floats.

- :class:`ActionLog` keeps, for each sub-env of a vector, the rows of the
  episode it is running (the rollout adds each step's batch).
- :class:`ActionPlayback` is a policy that ignores its observations and plays
  one recorded stream back; asked for more actions than were recorded (the
  replayed env did not end where the recorded one did) it raises
  :class:`PlaybackExhausted`.

Actions may be arrays (``Box``, ``Discrete``, ``MultiDiscrete``,
``MultiBinary``) or dicts and tuples of them; a row is the sub-env's slice of
each array.

Example:
    >>> import numpy as np
    >>> log = ActionLog(num_envs=2)
    >>> log.begin(0); log.begin(1)
    >>> log.add(np.array([[0.5], [1.0]]), np.array([True, True]))
    >>> log.add(np.array([[0.25], [2.0]]), np.array([True, False]))
    >>> stream = log.take(0)
    >>> playback = ActionPlayback(stream)
    >>> playback.act(None).tolist(), playback.act(None).tolist()
    ([[0.5]], [[0.25]])
    >>> len(log.take(1))
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ActionRow = Any
"""One sub-env's action: an array, or a dict/tuple of arrays."""


class PlaybackExhausted(RuntimeError):
    """The played-back env asked for an action past the end of the recording."""


def action_row(actions: Any, index: int) -> ActionRow:
    """Sub-env ``index``'s action in a batch (a copy: the batch may be reused)."""
    if isinstance(actions, dict):
        return {key: action_row(value, index) for key, value in actions.items()}
    if isinstance(actions, tuple):
        return tuple(action_row(value, index) for value in actions)
    return np.array(np.asarray(actions)[index], copy=True)


def batch_of_one(row: ActionRow) -> Any:
    """``row`` as a batch for a vector of one sub-env."""
    if isinstance(row, dict):
        return {key: batch_of_one(value) for key, value in row.items()}
    if isinstance(row, tuple):
        return tuple(batch_of_one(value) for value in row)
    return np.asarray(row)[None]


class ActionLog:
    """The actions of the episode each sub-env is running.

    ``begin(i)`` starts a fresh stream for sub-env ``i``; a sub-env without
    one (never begun, or taken) keeps nothing, so the rollout pays only for
    the episodes that may be re-simulated.
    """

    def __init__(self, num_envs: int) -> None:
        self._streams: list[list[ActionRow] | None] = [None] * num_envs

    def begin(self, index: int) -> None:
        self._streams[index] = []

    def add(self, actions: Any, active: np.ndarray) -> None:
        """Append this step's action of every active sub-env that keeps a stream."""
        for index, stream in enumerate(self._streams):
            if stream is not None and active[index]:
                stream.append(action_row(actions, index))

    def take(self, index: int) -> list[ActionRow] | None:
        """Sub-env ``index``'s stream (None when it kept none); it keeps no more."""
        stream, self._streams[index] = self._streams[index], None
        return stream


class ActionPlayback:
    """A policy for one sub-env that returns a recorded stream, step by step.

    Its observations are ignored: the env, reset with the recorded slot's seed
    and factors, reproduces them when it is deterministic, and the caller
    compares the replayed outcome with the recorded one to know.
    """

    def __init__(self, stream: Sequence[ActionRow]) -> None:
        self._stream = stream
        self._step = 0

    @property
    def steps(self) -> int:
        """The number of actions played back so far."""
        return self._step

    def act(self, obs: Any) -> Any:
        if self._step >= len(self._stream):
            raise PlaybackExhausted(f"the episode ran past its {len(self._stream)} recorded actions")
        row = self._stream[self._step]
        self._step += 1
        return batch_of_one(row)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Playback starts at the first action and plays one episode; nothing to clear."""
