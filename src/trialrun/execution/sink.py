"""Where a shard's records go: the runner's sink, which takes a block at a time.

The episodes that end in one step (or arrive in one message from a worker)
travel as one block, so the runner writes them with one write and one flush
and reports them after it (docs/architecture.md, "What the loop costs"). Any
plain ``emit(record)`` callable still works: it gets the records one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from trialrun.runfiles.episodes import record_lines
from trialrun.runfiles.schema import EpisodeRecord

Emit = Callable[[EpisodeRecord], None]


class RecordSink(Protocol):
    """An ``emit`` that also takes a block of records at once (the runner's).

    ``lines`` are the records' ``episodes.jsonl`` lines when the caller has
    them already (a worker's block), so they are not serialized twice."""

    def __call__(self, record: EpisodeRecord) -> None: ...

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None: ...


def emit_many(emit: Emit, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
    """Emit a block of records through ``emit``'s ``many`` when it has one
    (a :class:`RecordSink`), else one by one, in order."""
    if not records:
        return
    many: Callable[[Sequence[EpisodeRecord], Sequence[str] | None], None] | None = getattr(emit, "many", None)
    if many is not None:
        many(records, lines)
        return
    for record in records:
        emit(record)


class BlockSender:
    """A worker's sink: each block of records goes to the driver as one
    message, their ``episodes.jsonl`` lines joined (``send(text)``), which
    the driver validates in one call
    (:func:`~trialrun.runfiles.episodes.parse_record_block`)."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send

    def __call__(self, record: EpisodeRecord) -> None:
        self.many([record])

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
        if records:
            self.send("".join(f"{line}\n" for line in (lines or record_lines(records))))
