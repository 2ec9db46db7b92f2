"""Reading a job's episodes for the analysis in bounded memory.

Why: a batched simulator turns a million episodes into an ordinary run, and a
list of a million parsed records takes gigabytes. The analysis does not need
them all: a spline GLM's effects and the binned rates of 100,000 episodes are
already precise to a fraction of a percent. :func:`sample_job_records` reads
``episodes.jsonl`` one record at a time (every line is still checked) and
keeps, per job, at most ``max_rows`` records: all of them when the job has no
more (the analysis is then exactly what it was), else the ``max_rows``
episodes with the smallest seeded hash of their episode index (a bottom-k
sample). The sample is a pure function of ``(seed, job's episode indices)``:
it does not depend on the order the episodes were written in, so a resumed or
re-sharded run samples the same episodes. The caller notes the subsample in
the analysis output, as the gradient-boosted cross-check notes its own.

Example:
    >>> keys = [sample_key(0, k) for k in range(4)]
    >>> len(set(keys)), all(0 <= k < 2**64 for k in keys), sample_key(0, 3) == keys[3]
    (4, True, True)
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Collection
from pathlib import Path

from trialrun.runfiles.episodes import iter_episode_texts
from trialrun.runfiles.readers import check_record_jobs
from trialrun.runfiles.schema import EpisodeRecord

#: Episodes of one job the analysis reads at most (a seeded subsample above it).
MAX_ROWS = 100_000


def sample_key(seed: int, episode: int) -> int:
    """The seeded 64-bit hash that ranks an episode for the subsample."""
    digest = hashlib.blake2b(
        episode.to_bytes(8, "little", signed=True),
        digest_size=8,
        key=seed.to_bytes(8, "little", signed=True),
    ).digest()
    return int.from_bytes(digest, "little")


class BottomK:
    """The at most ``k`` records with the smallest :func:`sample_key` seen so
    far, kept as their JSON lines (a few hundred bytes each; a parsed record
    takes several times that) however many are offered."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seed, self.offered = k, seed, 0
        self._heap: list[tuple[int, int, str]] = []  # (-key, position, line): the largest key on top

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, record: EpisodeRecord, line: str) -> None:
        item = (-sample_key(self.seed, record.episode), self.offered, line)
        self.offered += 1
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[0] > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)

    def records(self) -> list[EpisodeRecord]:
        """The kept records in the order they were offered (parsed again: the
        lines were checked when offered)."""
        kept = sorted(self._heap, key=lambda item: item[1])
        return [EpisodeRecord.model_validate_json(line) for _, _, line in kept]


def sample_job_records(
    path: Path,
    known_jobs: Collection[str] | None = None,
    selected: Collection[str] | None = None,
    seed: int = 0,
    max_rows: int | None = None,
) -> dict[str, BottomK]:
    """Each selected job's sample (at most ``max_rows`` records, see the
    module docstring; ``offered`` is the job's number of episodes), in one
    pass over ``path``. ``selected=None`` samples every job in the file (in the
    order first seen); ``known_jobs=None`` accepts records of any job;
    ``max_rows`` defaults to :data:`MAX_ROWS` (read at call time). A job's
    records are parsed when asked for (:meth:`BottomK.records`), so a caller
    holds one job's parsed records at a time.

    Raises:
        RunFileError: a bad line, or a record of a job not in ``known_jobs``
            (as :func:`trialrun.runfiles.readers.read_run_episodes`).
    """
    k = MAX_ROWS if max_rows is None else max_rows
    samples = {name: BottomK(k, seed) for name in selected or ()}
    for record, line in iter_episode_texts(path):
        if known_jobs is not None and record.job not in known_jobs:
            check_record_jobs([record], known_jobs, path)
        sample = samples.get(record.job)
        if sample is None and selected is None:
            sample = samples[record.job] = BottomK(k, seed)
        if sample is not None:
            sample.offer(record, line)
    return samples


def subsample_note(job: str | None, kept: int, total: int) -> str | None:
    """The note an analysis of a subsample carries (None when it read every episode)."""
    if kept >= total:
        return None
    who = f"job '{job}' has" if job else "the file has"
    return (
        f"{who} {total} episodes: the analysis used a seeded random {kept} of them "
        f"(at most {MAX_ROWS} per job are read, to keep memory bounded)"
    )
