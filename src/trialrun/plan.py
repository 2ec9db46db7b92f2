"""The plan: every job becomes ``episodes`` slots with known seeds.

Slot ``k`` of job ``j`` gets its seeds from ``numpy.random.SeedSequence`` with
the run seed as entropy and ``(sha256(job name), k)`` as spawn key. That is a
pure function of ``(run seed, job name, k)``: no built-in ``hash()`` (salted
per process), no counter shared between slots. So any slot can be replayed
alone, run on any worker in any order, resumed after a crash, and two policies
evaluated with one config see identical episodes.

Example:
    >>> a = slot_for(7, "nominal", 3)
    >>> b = slot_for(7, "nominal", 3)
    >>> a == b, a.seed == slot_for(7, "nominal", 4).seed
    (True, False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


def plan_job(run_seed: int, job: str, episodes: int) -> list[Slot]:
    """All slots of a job, in episode order."""
    words = slot_seed_words(run_seed, stable_hash_words(job), np.arange(episodes)).tolist()
    return [_slot(job, k, words[k]) for k in range(episodes)]


def missing_slots(slots: Sequence[Slot], done: set[int]) -> list[Slot]:
    """The slots whose episode index is not in ``done`` (for resume)."""
    return [s for s in slots if s.episode not in done]
