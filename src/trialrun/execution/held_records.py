"""Episode records held until the trajectory writer process has written their files.

An episode's record names its trajectory (``trajectories/<job>/ep<k>.h5``);
when the file is written by the writer process
(:mod:`~trialrun.recording.trajectory_writer`), the record must not reach the
episode log before the file is complete under that name: a run killed in
between would keep a record naming a file that is not there, and resume,
which re-runs only the episodes without a record, would never write it.

:class:`HeldRecords` sits between a shard and its ``emit``: a record whose
file the writer has not acknowledged yet is held; every record emitted
afterwards first collects the acknowledgements that have arrived (without
waiting) and releases the held records they complete, in order; the end of
the shard waits for the rest. A file the writer could not write fails with
the writer's reason, and its record is not emitted (resume re-runs that
episode): a file-system error (disk full) or the writer's death stops the run
with :class:`~trialrun.errors.RunWriteError`, as any run file that cannot be
written does; a value h5py cannot store fails the job (``ValueError``), as it
did when the file was written in the rollout's process.

Example:
    >>> from trialrun.config import parse_run_config
    >>> job = {"name": "j", "env": "CartPole-v1", "policy": "random", "episodes": 1}
    >>> job = parse_run_config({"name": "r", "jobs": [job]}).jobs[0]
    >>> with held_records(job, print) as emit:
    ...     emit is print   # without trajectories, records are written at once
    True
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from trialrun.config import JobConfig
from trialrun.errors import RunWriteError
from trialrun.execution.sink import Emit, emit_many
from trialrun.recording.trajectory_writer import TrajectoryWriter, writing_in_background
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)


class HeldRecords:
    """Emits records, holding those whose trajectory is still being written (see the module docstring)."""

    def __init__(self, emit: Emit, writer: TrajectoryWriter) -> None:
        self.emit = emit
        self.writer = writer
        self._held: list[EpisodeRecord] = []

    def __call__(self, record: EpisodeRecord) -> None:
        if record.trajectory is not None and self.writer.waiting(record.trajectory):
            self._held.append(record)
        else:
            self.emit(record)
        if self._held:
            self._release()

    def many(self, records: Sequence[EpisodeRecord], lines: Sequence[str] | None = None) -> None:
        """A block of records: passed on as one block when none waits for its
        file (nor is any held before it), else one by one."""
        if not self._held and not any(
            r.trajectory is not None and self.writer.waiting(r.trajectory) for r in records
        ):
            emit_many(self.emit, records, lines)
            return
        for record in records:
            self(record)

    def _release(self) -> None:
        """Emit the held records whose files are written, in order; raise for one that failed."""
        waiting: list[EpisodeRecord] = []
        failed: tuple[EpisodeRecord, str, bool] | None = None
        for record in self._held:
            assert record.trajectory is not None
            answer = self.writer.take(record.trajectory) if not waiting else None
            if answer is None:
                waiting.append(record)
            elif answer[0]:
                failed = failed or (record, *answer)
            else:
                self.emit(record)
        self._held = waiting
        if failed is not None:
            record, reason, disk = failed
            message = (
                f"job '{record.job}': cannot write the trajectory of episode {record.episode} "
                f"({record.trajectory}): {reason}"
            )
            raise RunWriteError(message) if disk else ValueError(message)

    def finish(self) -> None:
        """Wait for the writer and emit every held record whose file is written
        (those it answered before it died, too)."""
        if not self._held:
            return
        try:
            self.writer.sync()
        finally:
            self._release()


@contextlib.contextmanager
def held_records(job: JobConfig, emit: Emit) -> Iterator[Emit]:
    """What a shard of ``job`` emits its records through.

    For ``select: first | all`` trajectories: while the block runs, recorders
    in this thread hand their files to the writer process and records go
    through a :class:`HeldRecords`; at its end the held records are emitted
    (after an error too, for the files that were written; that error is the
    one raised). Otherwise ``emit`` itself: ``failures | successes`` files
    are deleted, or written by re-simulating the episode, right after it
    ends, so they are written in this process.
    """
    settings = job.trajectories
    if settings is None or settings.select not in ("first", "all"):
        yield emit
        return
    with writing_in_background() as writer:
        held = HeldRecords(emit, writer)
        try:
            yield held
        except BaseException:
            try:
                held.finish()
            except (RunWriteError, ValueError) as exc:
                logger.warning("%s", exc)
            writer.forget()
            raise
        try:
            held.finish()
        finally:
            writer.forget()
