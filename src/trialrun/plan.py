"""The plan: every job becomes ``episodes`` slots with known seeds.

Slot ``k`` of job ``j`` gets its seeds from ``numpy.random.SeedSequence`` with
the run seed as entropy and ``(sha256(job name), k)`` as spawn key. That is a
pure function of ``(run seed, job name, k)``: no built-in ``hash()`` (salted
per process), no counter shared between slots. So any slot can be replayed
alone, run on any worker in any order, resumed after a crash, and two policies
evaluated with one config see identical episodes.

The plan of a job is lazy (:class:`PlannedSlots`): it holds the episode
indices and computes slots when read, a block at a time, so a job of a
million episodes (an ordinary run on a batched simulator) does not hold a
million :class:`Slot` objects; see docs/architecture.md, "Memory at a million
episodes".

Example:
    >>> a = slot_for(7, "nominal", 3)
    >>> b = slot_for(7, "nominal", 3)
    >>> a == b, a.seed == slot_for(7, "nominal", 4).seed
    (True, False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

# Seeds handed to envs are 32-bit: numpy's legacy RandomState (used by
# Meta-World and others) rejects larger ones.
_SEED_WORDS = 4


def stable_hash_words(text: str) -> tuple[int, int]:
    """Two 32-bit words of SHA-256 of ``text``: stable across processes,
    platforms and Python versions."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[0:4], "little"), int.from_bytes(digest[4:8], "little")


def slot_seed_sequence(
    run_seed: int, job: str, episode: int, job_words: tuple[int, int] | None = None
) -> np.random.SeedSequence:
    """The root SeedSequence of one slot; every random draw of the slot derives from it.

    ``job_words`` (``stable_hash_words(job)``) may be passed to skip re-hashing.
    """
    if episode < 0:
        raise ValueError("episode index must be >= 0")
    words = job_words or stable_hash_words(job)
    return np.random.SeedSequence(entropy=run_seed, spawn_key=(*words, episode))


@dataclass(frozen=True)
class Slot:
    """One planned episode: its identity, its seeds and its factor values.

    ``seed`` resets the env; ``policy_seed`` seeds stochastic policies for this
    episode; ``factor_seed`` drives the factor draws. ``factors`` holds the
    values to apply (the record holds the values read back after applying).
    """

    job: str
    episode: int
    seed: int
    policy_seed: int
    factor_seed: int
    factors: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)


def _slot(job: str, episode: int, words: Sequence[int]) -> Slot:
    return Slot(
        job=job,
        episode=episode,
        seed=int(words[0]),
        policy_seed=int(words[1]),
        factor_seed=int(words[2]) | (int(words[3]) << 32),
    )


def slot_for(run_seed: int, job: str, episode: int, job_words: tuple[int, int] | None = None) -> Slot:
    """The slot ``episode`` of ``job`` (without factors)."""
    words = slot_seed_sequence(run_seed, job, episode, job_words).generate_state(_SEED_WORDS, np.uint32)
    return _slot(job, episode, words.tolist())


# numpy's SeedSequence constants (bit_generator.pyx; O'Neill's seed_seq alternative).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_MASK32 = 0xFFFFFFFF
_POOL_SIZE = 4


def _uint32_words(value: int) -> list[int]:
    """``value`` as little-endian 32-bit words, as SeedSequence splits an int."""
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def slot_seed_words(run_seed: int, job_words: tuple[int, int], episodes: np.ndarray) -> np.ndarray:
    """``SeedSequence(run_seed, spawn_key=(*job_words, k)).generate_state(4, uint32)``
    for every ``k`` in ``episodes`` at once, shape ``(len(episodes), 4)``.

    Why: one SeedSequence costs ~5 us, which for a job of short episodes
    (random CartPole: ~130 us each) is a visible share of the run. Every
    entropy word before ``k`` is the same for all slots of a job, so only the
    last mixing round depends on ``k`` and it vectorizes. The result equals
    numpy's SeedSequence bit for bit (tests compare them over many seeds);
    SeedSequence's output is part of numpy's stability guarantee.

    Example:
        >>> words = slot_seed_words(7, stable_hash_words("nominal"), np.arange(3))
        >>> words[2].tolist() == slot_seed_sequence(7, "nominal", 2).generate_state(4, np.uint32).tolist()
        True
    """
    if run_seed < 0:
        raise ValueError("run seed must be >= 0")
    ks = np.asarray(episodes, dtype=np.int64)
    if ks.size and (ks.min() < 0 or ks.max() > _MASK32):
        raise ValueError("episode indices must be in [0, 2**32)")
    run_words = _uint32_words(run_seed)
    run_words += [0] * (_POOL_SIZE - len(run_words))  # padded when a spawn key follows
    constant = [*run_words, *job_words]

    hash_const = _INIT_A

    def hashmix(value: int) -> int:
        nonlocal hash_const
        value = (value ^ hash_const) & _MASK32
        hash_const = (hash_const * _MULT_A) & _MASK32
        value = (value * hash_const) & _MASK32
        return value ^ (value >> 16)

    def mix(x: int, y: int) -> int:
        result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _MASK32
        return result ^ (result >> 16)

    pool = [hashmix(constant[i]) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for word in constant[_POOL_SIZE:]:
        for dst in range(_POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(word))
    # The last entropy word is k: the same hash constants, applied to every k.
    k = ks.astype(np.uint32)
    u32 = np.uint32
    rows = []
    for dst in range(_POOL_SIZE):
        hashed = (k ^ u32(hash_const)) * u32((hash_const * _MULT_A) & _MASK32)
        hash_const = (hash_const * _MULT_A) & _MASK32
        hashed ^= hashed >> u32(16)
        mixed = u32((_MIX_MULT_L * pool[dst]) & _MASK32) - u32(_MIX_MULT_R) * hashed
        rows.append(mixed ^ (mixed >> u32(16)))
    out = np.empty((ks.size, _SEED_WORDS), dtype=np.uint32)
    state_const = _INIT_B
    for i in range(_SEED_WORDS):
        value = rows[i % _POOL_SIZE] ^ u32(state_const)
        state_const = (state_const * _MULT_B) & _MASK32
        value = value * u32(state_const)
        out[:, i] = value ^ (value >> u32(16))
    return out


#: Slots computed at a time when a plan is read in order (a rollout's queue).
#: Big enough that the vectorized seed words cost ~1 us a slot, small enough
#: that a block of Slot objects is a few MB at most.
PLAN_BLOCK = 4096


_EMPTY = np.zeros(0, dtype=np.int64)

#: Computes the factor values of the slots of the given episode indices (a
#: design whose slot ``k`` values depend on ``k`` alone): what a plan holds
#: instead of a dict per episode. Must pickle (a plan is sent to workers).
FactorSource = Callable[[np.ndarray], list[dict[str, Any]]]
Factors = Sequence[dict[str, Any]] | FactorSource | None


def _runs_of(episodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strictly ascending indices as runs of consecutive ones: (starts, lengths)."""
    if episodes.size == 0:
        return _EMPTY, _EMPTY
    first = np.concatenate(([0], np.flatnonzero(np.diff(episodes) != 1) + 1))
    return episodes[first], np.diff(np.concatenate((first, [episodes.size])))


def _episodes_of_runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices that runs stand for (the inverse of :func:`_runs_of`)."""
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if lengths.size else _EMPTY
    episodes: np.ndarray = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
    return episodes


def _as_runs(episodes: range | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A plan's episode indices as runs, checked: strictly ascending, in ``[0, 2**32)``."""
    if isinstance(episodes, range) and episodes.step == 1:
        if not len(episodes):
            return _EMPTY, _EMPTY
        if episodes.start < 0 or episodes.stop - 1 > _MASK32:
            raise ValueError("a plan's episode indices must be strictly ascending, in [0, 2**32)")
        return np.array([episodes.start], dtype=np.int64), np.array([len(episodes)], dtype=np.int64)
    array = np.asarray(episodes, dtype=np.int64).reshape(-1)
    if array.size and (
        array[0] < 0 or array[-1] > _MASK32 or (array.size > 1 and not bool(np.all(array[1:] > array[:-1])))
    ):
        raise ValueError("a plan's episode indices must be strictly ascending, in [0, 2**32)")
    return _runs_of(array)


def _planned(
    run_seed: int, job: str, starts: np.ndarray, lengths: np.ndarray, factors: Factors
) -> PlannedSlots:
    """A plan from its runs (what a plan pickles as)."""
    plan = PlannedSlots(run_seed, job, range(0))
    plan._set_runs(starts, lengths, factors)
    return plan


class PlannedSlots(Sequence[Slot]):
    """A job's slots (all of them, or a subset in episode order: the missing
    ones on resume, a shard, a build-time group), computed when read.

    Why: a batched simulator makes a million-episode job an ordinary run, and
    a list of a million :class:`Slot` objects costs ~450 MB before the first
    step. A slot's seeds are a pure function of ``(run seed, job, k)``, so the
    plan holds only its episode indices, as runs of consecutive ones (a whole
    job is one run; a resumed one a few), and the factor values; iterating it
    computes the seeds a block of :data:`PLAN_BLOCK` slots at a time
    (:func:`slot_seed_words`). Slicing, :meth:`take` and :meth:`without` give
    sub-plans without computing any slot; a plan pickles as its runs, so a
    shard sent to a worker is small.

    ``factors[i]`` are the values of the ``i``-th slot of the plan, or a
    :data:`FactorSource` computes them a block at a time (None: no factors,
    every slot gets an empty dict).

    Example:
        >>> plan = PlannedSlots(7, "nominal", range(1_000_000))
        >>> len(plan), plan[3] == slot_for(7, "nominal", 3)
        (1000000, True)
        >>> [s.episode for s in plan.without(np.array([True, False, True]))[:3]]
        [1, 3, 4]
    """

    __slots__ = (
        "_block",
        "_factors",
        "_lengths",
        "_offsets",
        "_size",
        "_starts",
        "_words",
        "job",
        "run_seed",
    )

    def __init__(
        self,
        run_seed: int,
        job: str,
        episodes: range | np.ndarray,
        factors: Factors = None,
    ) -> None:
        if run_seed < 0:
            raise ValueError("run seed must be >= 0")
        self.run_seed = run_seed
        self.job = job
        self._words = stable_hash_words(job)
        self._set_runs(*_as_runs(episodes), factors)

    def _set_runs(self, starts: np.ndarray, lengths: np.ndarray, factors: Factors) -> None:
        self._starts, self._lengths = starts, lengths
        self._offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if lengths.size else _EMPTY
        self._size = int(lengths.sum())
        if isinstance(factors, Sequence) and len(factors) != self._size:
            raise ValueError(f"{len(factors)} factor value sets for {self._size} slots")
        self._factors = factors
        self._block: tuple[int, list[Slot]] = (-1, [])

    def __reduce__(self) -> tuple[Any, ...]:
        # The runs and values only: no cached block crosses a process boundary.
        return (_planned, (self.run_seed, self.job, self._starts, self._lengths, self._factors))

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"PlannedSlots(job={self.job!r}, {len(self)} slots)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # a sequence compared by value

    @property
    def episodes(self) -> range | np.ndarray:
        """The episode indices of the slots, ascending: a ``range`` when they
        are consecutive, else an array (8 bytes a slot)."""
        if self._starts.size == 0:
            return range(0)
        if self._starts.size == 1:
            return range(int(self._starts[0]), int(self._starts[0] + self._lengths[0]))
        return _episodes_of_runs(self._starts, self._lengths)

    def _episodes_at(self, positions: np.ndarray) -> np.ndarray:
        if self._starts.size == 1:
            shifted: np.ndarray = positions + self._starts[0]
            return shifted
        run = np.searchsorted(self._offsets, positions, side="right") - 1
        episodes: np.ndarray = self._starts[run] + (positions - self._offsets[run])
        return episodes

    def factor_values(self, position: int) -> dict[str, Any]:
        """The factor values of the slot at ``position`` (without computing its seeds)."""
        if self._factors is None:
            return {}
        if isinstance(self._factors, Sequence):
            return self._factors[position]
        return self._factors(self._episodes_at(np.array([position])))[0]

    def iter_factor_values(self) -> Iterator[dict[str, Any]]:
        """Every slot's factor values in order, computed a block at a time."""
        for start in range(0, self._size, PLAN_BLOCK):
            yield from self._values(start, min(start + PLAN_BLOCK, self._size))

    def _values(self, start: int, stop: int, ks: np.ndarray | None = None) -> Sequence[dict[str, Any]]:
        factors = self._factors
        if factors is None:
            return [{} for _ in range(stop - start)]
        if isinstance(factors, Sequence):
            return factors[start:stop]
        return factors(self._episodes_at(np.arange(start, stop)) if ks is None else ks)

    def _compute(self, start: int, stop: int) -> list[Slot]:
        stop = min(stop, self._size)
        ks = self._episodes_at(np.arange(start, stop))
        words = slot_seed_words(self.run_seed, self._words, ks).tolist()
        values = self._values(start, stop, ks)
        return [
            Slot(self.job, k, w[0], w[1], w[2] | (w[3] << 32), v)
            for k, w, v in zip(ks.tolist(), words, values, strict=True)
        ]

    def __iter__(self) -> Iterator[Slot]:
        for start in range(0, len(self), PLAN_BLOCK):
            yield from self._compute(start, start + PLAN_BLOCK)

    @overload
    def __getitem__(self, index: int) -> Slot: ...

    @overload
    def __getitem__(self, index: slice) -> PlannedSlots: ...

    def __getitem__(self, index: int | slice) -> Slot | PlannedSlots:
        if isinstance(index, slice):
            return self._slice(index)
        size = len(self)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(f"slot {index} of a plan of {size}")
        start = position - position % PLAN_BLOCK
        if self._block[0] != start:  # indexing in order reuses the block
            self._block = (start, self._compute(start, start + PLAN_BLOCK))
        return self._block[1][position - start]

    def _slice(self, index: slice) -> PlannedSlots:
        first, stop, step = index.indices(self._size)
        if step != 1:
            return self.take(np.arange(first, stop, step))
        factors = self._factors[first:stop] if isinstance(self._factors, Sequence) else self._factors
        if stop <= first:
            return _planned(self.run_seed, self.job, _EMPTY, _EMPTY, factors)
        ends = np.searchsorted(self._offsets, [first, stop - 1], side="right") - 1
        starts = self._starts[ends[0] : ends[1] + 1].copy()
        stops = starts + self._lengths[ends[0] : ends[1] + 1]
        first_episode, last_episode = self._episodes_at(np.array([first, stop - 1])).tolist()
        starts[0], stops[-1] = first_episode, last_episode + 1
        return _planned(self.run_seed, self.job, starts, stops - starts, factors)

    def take(self, positions: np.ndarray) -> PlannedSlots:
        """The sub-plan of the slots at ``positions`` (ascending)."""
        positions = np.asarray(positions, dtype=np.int64)
        starts, lengths = _runs_of(self._episodes_at(positions))
        factors = self._factors
        if isinstance(factors, Sequence):
            factors = [factors[p] for p in positions.tolist()]
        return _planned(self.run_seed, self.job, starts, lengths, factors)

    def without(self, done: np.ndarray | EpisodeSet) -> PlannedSlots:
        """The slots whose episode is not ``done``: a bool mask indexed by
        episode (shorter than the plan when later episodes are not done), or
        an :class:`EpisodeSet`. Memory: a few bytes per episode of the done
        region at most, never per planned episode."""
        mask, offset = (done.mask, done.offset) if isinstance(done, EpisodeSet) else (done, 0)
        if not mask.any():
            return self
        lo, hi = offset + int(np.argmax(mask)), offset + mask.size - int(np.argmax(mask[::-1]))
        starts: list[int] = []
        lengths: list[int] = []
        for start, count in zip(self._starts.tolist(), self._lengths.tolist(), strict=True):
            a, b = max(start, lo), min(start + count, hi)  # the part where some may be done
            if a >= b:
                starts.append(start)
                lengths.append(count)
                continue
            free = np.concatenate(([False], ~mask[a - offset : b - offset], [False])).view(np.int8)
            edges = np.diff(free)
            begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            pieces = [(start, a - start), *zip((begins + a).tolist(), (ends - begins).tolist(), strict=True)]
            pieces.append((b, start + count - b))
            for piece_start, piece_count in pieces:
                if piece_count > 0:
                    starts.append(piece_start)
                    lengths.append(piece_count)
        kept_starts, kept_lengths = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
        factors = self._factors
        if isinstance(factors, Sequence):
            kept = self.positions(_episodes_of_runs(kept_starts, kept_lengths)).tolist()
            factors = [factors[p] for p in kept]
        return _planned(self.run_seed, self.job, kept_starts, kept_lengths, factors)

    def positions(self, episodes: range | np.ndarray) -> np.ndarray:
        """The position in this plan of each of ``episodes`` (-1 where absent)."""
        if isinstance(episodes, range):
            ks = np.arange(episodes.start, episodes.stop, episodes.step)
        else:
            ks = np.asarray(episodes, dtype=np.int64)
        if self._starts.size == 0:
            return np.full(ks.size, -1, dtype=np.int64)
        run = np.maximum(np.searchsorted(self._starts, ks, side="right") - 1, 0)
        inside = (ks >= self._starts[run]) & (ks < self._starts[run] + self._lengths[run])
        found: np.ndarray = np.where(inside, self._offsets[run] + ks - self._starts[run], -1)
        return found


class EpisodeSet:
    """A set of episode indices held as a bool per index between the lowest
    and the highest added (a set of a million Python ints costs ~60 MB, this
    1 MB), for what an executor has received of a shard.

    Example:
        >>> got = EpisodeSet([5, 3])
        >>> got.add(9); 9 in got, 4 in got, len(got), sorted(got)
        (True, False, 3, [3, 5, 9])
    """

    __slots__ = ("_count", "_mask", "_offset")

    def __init__(self, episodes: Iterable[int] = ()) -> None:
        self._offset = 0
        self._mask = np.zeros(0, dtype=bool)
        self._count = 0
        for episode in episodes:
            self.add(episode)

    def add(self, episode: int) -> None:
        """Add ``episode`` (>= 0); adding one twice counts it once."""
        if episode < 0:
            raise ValueError(f"episode index must be >= 0, got {episode}")
        if not self._mask.size:
            self._offset, self._mask = episode, np.zeros(16, dtype=bool)
        elif episode < self._offset:  # grow to the left, at least doubling
            offset = max(0, min(episode, self._offset - self._mask.size))
            grown = np.zeros(self._offset - offset + self._mask.size, dtype=bool)
            grown[self._offset - offset :] = self._mask
            self._offset, self._mask = offset, grown
        elif episode - self._offset >= self._mask.size:
            grown = np.zeros(max(episode - self._offset + 1, 2 * self._mask.size), dtype=bool)
            grown[: self._mask.size] = self._mask
            self._mask = grown
        index = episode - self._offset
        if not self._mask[index]:
            self._mask[index] = True
            self._count += 1

    def __contains__(self, episode: object) -> bool:
        if not isinstance(episode, int | np.integer):
            return False
        index = int(episode) - self._offset
        return 0 <= index < self._mask.size and bool(self._mask[index])

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return iter((np.flatnonzero(self._mask) + self._offset).tolist())

    @property
    def mask(self) -> np.ndarray:
        """A bool per index from :attr:`offset` on (True: in the set)."""
        return self._mask

    @property
    def offset(self) -> int:
        """The index of :attr:`mask`'s first element."""
        return self._offset

    def contains(self, episodes: range | np.ndarray) -> np.ndarray:
        """For each of ``episodes``, whether it is in the set (vectorized ``in``)."""
        if isinstance(episodes, range):
            ks = np.arange(episodes.start, episodes.stop, episodes.step)
        else:
            ks = np.asarray(episodes, dtype=np.int64)
        index = ks - self._offset
        inside = (index >= 0) & (index < self._mask.size)
        found = np.zeros(ks.size, dtype=bool)
        found[inside] = self._mask[index[inside]]
        return found


def plan_job(run_seed: int, job: str, episodes: int) -> PlannedSlots:
    """All slots of a job, in episode order, computed when read (:class:`PlannedSlots`)."""
    return PlannedSlots(run_seed, job, range(episodes))


def missing_slots(slots: Sequence[Slot], done: Container[int] | np.ndarray | EpisodeSet) -> Sequence[Slot]:
    """The slots whose episode index is not in ``done`` (for resume), in order:
    a plan's are a sub-plan (``done`` may then be a bool mask by episode)."""
    if isinstance(slots, PlannedSlots) and isinstance(done, np.ndarray | EpisodeSet):
        return slots.without(done)
    if isinstance(done, np.ndarray):
        mask = done
        return [s for s in slots if not (s.episode < mask.size and mask[s.episode])]
    return [s for s in slots if s.episode not in done]


class SlotQueue:
    """The slots a rollout has still to start, in order, read a block at a
    time from a plan: a ``deque`` of them would hold every slot of the job.

    Example:
        >>> queue = SlotQueue(plan_job(0, "j", 3))
        >>> queue.popleft().episode, len(queue)
        (0, 2)
    """

    __slots__ = ("_left", "_slots")

    def __init__(self, slots: Sequence[Slot]) -> None:
        self._slots = iter(slots)
        self._left = len(slots)

    def popleft(self) -> Slot:
        """The next slot; IndexError when none is left (as ``deque.popleft``)."""
        if not self._left:
            raise IndexError("pop from an empty slot queue")
        self._left -= 1
        return next(self._slots)

    def __len__(self) -> int:
        return self._left

    def __bool__(self) -> bool:
        return self._left > 0


def episode_indices(slots: Sequence[Slot]) -> range | np.ndarray:
    """The episode indices of ``slots`` in order, without computing a plan's slots."""
    if isinstance(slots, PlannedSlots):
        return slots.episodes
    return np.fromiter((s.episode for s in slots), dtype=np.int64, count=len(slots))
