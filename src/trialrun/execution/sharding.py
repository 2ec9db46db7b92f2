"""Shards: contiguous ranges of one job's slots, the unit of work of an executor.

A worker builds the env and the policy once per shard and streams one record
per finished episode back to the driver. When a worker dies, the part of its
shard whose records did not arrive is run again elsewhere: the records that
did arrive are kept, so nothing is duplicated and nothing is missing.

Example:
    >>> from trialrun.plan import plan_job
    >>> [len(s.slots) for s in make_shards(plan_job(0, "j", 10), shard_size=4)]
    [4, 4, 2]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from typing_extensions import Self

from trialrun.errors import WorkersExhausted
from trialrun.plan import EpisodeSet, Slot, missing_slots


@dataclass
class Shard:
    """A contiguous range of one job's (missing) slots: a sub-plan, computed
    where it runs. ``received`` is a bitmap, not a set of ints: the shards of
    a million-episode job would otherwise hold a million ints in the driver."""

    shard_id: int
    slots: Sequence[Slot]
    attempts: int = 0
    received: EpisodeSet = field(default_factory=EpisodeSet)
    success_seen: bool = False
    """Whether the env reported the success key while running this shard."""

    @property
    def remaining(self) -> Sequence[Slot]:
        """Slots whose records have not arrived yet (a sub-plan of a plan's shard)."""
        return missing_slots(self.slots, self.received) if len(self.received) else self.slots

    def describe(self) -> str:
        first, last = self.slots[0].episode, self.slots[-1].episode
        return f"shard {self.shard_id} (episodes {first}..{last}, {len(self.slots)} slots)"


class ShardingExecutor:
    """What the process and Ray executors share: a context manager whose exit
    calls ``close()`` (stop the workers, or the Ray it started)."""

    def close(self) -> None:
        """Release the executor's workers."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_shard_size(num_slots: int, workers: int, num_envs: int) -> int:
    """About three shards per worker: enough that a slow shard does not leave
    the others idle at the end, few enough that building the env and policy
    (once per shard; ~0.5 s for Meta-World) stays small next to the episodes.
    Never fewer slots than the job's sub-envs."""
    if num_slots <= 0:
        return 1
    return max(num_envs, math.ceil(num_slots / (3 * max(1, workers))), 1)


def job_shards(
    slots: Sequence[Slot], workers: int, num_envs: int, shard_size: int | None, *, native: bool = False
) -> list[Shard]:
    """A job's slots as shards of ``shard_size`` (or the default size).

    A native job's default shards hold whole multiples of ``num_envs`` slots,
    so a wave (``num_envs`` consecutive slots) is not run by two shards.

    Example:
        >>> from trialrun.plan import plan_job
        >>> [len(s.slots) for s in job_shards(plan_job(0, "j", 100), 2, 8, None, native=True)]
        [24, 24, 24, 24, 4]
    """
    size = shard_size or default_shard_size(len(slots), workers, num_envs)
    if native and shard_size is None:
        size = math.ceil(size / num_envs) * num_envs
    return make_shards(slots, size)


def make_shards(slots: Sequence[Slot], shard_size: int, first_id: int = 0) -> list[Shard]:
    """Split ``slots`` (in order) into shards of at most ``shard_size`` (a
    plan's shards are sub-plans: nothing is computed here)."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    return [
        Shard(shard_id=first_id + i, slots=slots[start : start + shard_size])
        for i, start in enumerate(range(0, len(slots), shard_size))
    ]


def requeue_after_worker_death(
    shard: Shard, pending: deque[Shard], max_retries: int, what_died: str
) -> WorkersExhausted | None:
    """Put the part of ``shard`` whose records did not arrive back at the front
    of ``pending`` after its worker died, or give up once the shard's workers
    died more than ``max_retries`` times.

    Both executors (process pool, Ray) call this, so a shard is retried the
    same way whichever ran it: the records that did arrive are kept (nothing
    duplicated), the rest runs again (nothing missing). ``what_died`` ends the
    message (``"worker 123 (exit code -9)"``, ``"a Ray worker: ..."``).

    Example:
        >>> from trialrun.plan import plan_job
        >>> from trialrun.plan import EpisodeSet
        >>> shard, pending = Shard(0, plan_job(0, "j", 3), attempts=1, received=EpisodeSet({0})), deque()
        >>> requeue_after_worker_death(shard, pending, 2, "worker 1") is None, len(pending[0].remaining)
        (True, 2)
        >>> shard.attempts = 3
        >>> print(requeue_after_worker_death(shard, deque(), 2, "worker 1"))  # doctest: +ELLIPSIS
        workers died 3 times running shard 0 (...); giving up after --max-retries 2 (last: worker 1)
    """
    if not shard.remaining:
        return None
    if shard.attempts > max_retries:
        return WorkersExhausted(
            f"workers died {shard.attempts} times running {shard.describe()}; "
            f"giving up after --max-retries {max_retries} (last: {what_died})"
        )
    pending.appendleft(shard)
    return None
