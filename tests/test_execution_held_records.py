"""trialrun.execution.held_records: a block of records through HeldRecords
(the records held for their trajectory files are tested in
test_recording_trajectory_writer.py)."""

from __future__ import annotations

from collections.abc import Sequence

from trialrun.execution.held_records import HeldRecords
from trialrun.runfiles.schema import EpisodeRecord


class _Pending:
    """A trajectory writer that has written nothing of ``pending`` until ``sync``."""

    def __init__(self, pending: set[str]) -> None:
        self.pending = pending
        self.done: set[str] = set()

    def waiting(self, name: str) -> bool:
        return name in self.pending or name in self.done

    def take(self, name: str) -> tuple[str, bool] | None:
        if name in self.done:
            self.done.discard(name)
            return "", False
        return None

    def sync(self) -> None:
        self.done |= self.pending
        self.pending = set()


class _Sink:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, record: EpisodeRecord) -> None:
        self.calls.append([record.episode])

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
        self.calls.append([r.episode for r in records])


def _record(episode: int, trajectory: str | None = None) -> EpisodeRecord:
    return EpisodeRecord(job="j", episode=episode, seed=1, outcome={"length": 1}, trajectory=trajectory)


def test_a_block_with_no_file_to_wait_for_passes_as_one_block_otherwise_record_by_record() -> None:
    sink = _Sink()
    held = HeldRecords(sink, _Pending({"b.h5"}))  # type: ignore[arg-type]
    held.many([_record(0), _record(1, "elsewhere.h5")])
    assert sink.calls == [[0, 1]]
    held.many([_record(2), _record(3, "b.h5"), _record(4)])  # 3 waits for its file
    assert sink.calls == [[0, 1], [2], [4]]
    held.many([_record(5), _record(6)])  # 3 is still held: one by one, after it
    assert sink.calls == [[0, 1], [2], [4], [5], [6]]
    held.finish()
    assert sink.calls == [[0, 1], [2], [4], [5], [6], [3]]
    held.many([_record(7), _record(8)])  # nothing held any more: one block again
    assert sink.calls[-1] == [7, 8]
