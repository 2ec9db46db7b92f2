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


def slot_for(run_seed: int, job: str, episode: int, job_words: tuple[int, int] | None = None) -> Slot:
    """The slot ``episode`` of ``job`` (without factors)."""
    words = slot_seed_sequence(run_seed, job, episode, job_words).generate_state(_SEED_WORDS, np.uint32)
    return Slot(
        job=job,
        episode=episode,
        seed=int(words[0]),
        policy_seed=int(words[1]),
        factor_seed=int(words[2]) | (int(words[3]) << 32),
    )


def plan_job(run_seed: int, job: str, episodes: int) -> list[Slot]:
    """All slots of a job, in episode order."""
    job_words = stable_hash_words(job)
    return [slot_for(run_seed, job, k, job_words) for k in range(episodes)]


def missing_slots(slots: Sequence[Slot], done: set[int]) -> list[Slot]:
    """The slots whose episode index is not in ``done`` (for resume)."""
    return [s for s in slots if s.episode not in done]
