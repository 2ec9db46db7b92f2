"""trialrun.execution.sink: blocks of records between a shard and the runner."""

from __future__ import annotations

from collections.abc import Sequence

from trialrun.execution.sink import BlockSender, emit_many
from trialrun.runfiles.episodes import parse_record_block
from trialrun.runfiles.schema import EpisodeRecord


def _record(episode: int) -> EpisodeRecord:
    return EpisodeRecord(
        run="r",
        job="j",
        episode=episode,
        seed=10 + episode,
        env_index=episode % 3,
        factors={"mass": 0.5 * episode, "task": "push"},
        outcome={"success": episode % 2 == 0, "return": 1.5, "length": 4, "custom": None},
        extra={"wave": {"seed": 3, "world": episode}},
    )


class _BlockSink:
    def __init__(self) -> None:
        self.blocks: list[tuple[list[int], list[str] | None]] = []

    def __call__(self, record: EpisodeRecord) -> None:
        raise AssertionError("a block sink gets blocks")

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
        self.blocks.append(([r.episode for r in records], None if lines is None else list(lines)))


def test_emit_many_gives_a_block_sink_the_whole_block_and_a_plain_callable_each_record_in_order() -> None:
    records = [_record(k) for k in (4, 1, 7)]
    sink = _BlockSink()
    emit_many(sink, records, ["a", "b", "c"])
    emit_many(sink, [])
    assert sink.blocks == [([4, 1, 7], ["a", "b", "c"])]
    seen: list[int] = []
    emit_many(lambda record: seen.append(record.episode), records)
    assert seen == [4, 1, 7]


def test_a_worker_block_is_one_message_that_the_driver_reads_back_identical() -> None:
    sent: list[str] = []
    sender = BlockSender(sent.append)
    records = [_record(k) for k in range(5)]
    sender.many(records)
    sender(_record(9))  # one record: a block of one
    sender.many([])  # nothing: no message
    assert len(sent) == 2
    parsed, lines = parse_record_block(sent[0])
    assert parsed == records
    assert lines == [r.to_json_line() for r in records]
    assert sent[1] == _record(9).to_json_line() + "\n"
    sender.many(records[:2], ["x", "y"])  # lines given: sent as they are
    assert sent[2] == "x\ny\n"
