"""The ``process`` executor: a pool of worker processes on this machine.

Why not ``multiprocessing.Pool`` or one shared ``Queue``: a worker that is
killed (``kill -9``, the OOM killer) while writing to a shared queue can leave
its lock held and hang every other worker. Each worker here has its own pipe
to the driver; a dead worker can only break its own pipe, which the driver
notices and recovers from by running the rest of that worker's shard again
on a fresh worker (up to ``max_retries`` times per shard).

Workers are started with the ``spawn`` method (safe with MuJoCo's EGL contexts
and threads), inherit the environment (``MUJOCO_GL``, ``PYTHONPATH``) and
``sys.path``, build the env and the policy from the job's spec once per
shard, exit when the driver dies (even when hung in a policy call), and are
recycled after ``max_shards_per_worker`` shards so a simulator
that leaks memory cannot take the run down. The driver stays the only writer
of the run files.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.config import parse_run_config
    >>> from trialrun.execution.runner import run_evaluation
    >>> cfg = parse_run_config({"name": "demo", "jobs": [{"name": "probe",
    ...     "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 8}]})
    >>> with ProcessExecutor(workers=2) as executor:
    ...     result = run_evaluation(cfg, pathlib.Path(tempfile.mkdtemp()) / "r", executor=executor)
    >>> result.exit_code
    0
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from trialrun.boundary import as_job_failure, die_with_parent
from trialrun.config import JobConfig
from trialrun.errors import ShardFailed, WorkersExhausted
from trialrun.execution.shard import RunContext, run_shard
from trialrun.execution.sharding import Shard, ShardingExecutor, job_shards, requeue_after_worker_death
from trialrun.execution.sink import BlockSender, emit_many
from trialrun.plan import Slot
from trialrun.runfiles.episodes import parse_record_block
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)

_POLL_S = 0.5


def _worker_main(conn: Connection, max_shards: int, driver_pid: int) -> None:
    """A worker: run shards sent by the driver, stream records back."""
    # A worker hung in a policy call must not outlive a driver killed with kill -9.
    die_with_parent(driver_pid)
    # Ctrl+C reaches the whole process group: the driver decides (it stops the
    # workers), so a KeyboardInterrupt seen here was raised by a policy or env.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("MUJOCO_GL", "egl")
    import trialrun.envs  # noqa: F401  (registers bundled env ids)

    finished = 0
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        shard_id, job_json, context, slots = task
        finished += 1
        # A worker that will retire says so with its last result, so the driver
        # never hands it another shard.
        retire = bool(max_shards) and finished >= max_shards
        try:
            job = JobConfig.model_validate_json(job_json)

            def send(text: str, _id: int = shard_id) -> None:
                conn.send(("records", _id, text))

            # One message per block of records (one step's), validated by the driver in one call.
            seen = run_shard(job, context, slots, BlockSender(send))
            conn.send(("done", shard_id, retire, seen))
        except BaseException as exc:  # a sys.exit() in a policy fails its shard, not the worker
            failure = as_job_failure(exc)
            message = f"{type(failure).__name__}: {failure}"
            try:
                conn.send(("error", shard_id, retire, message, traceback.format_exc()))
            except OSError:  # the driver closed our pipe (it stopped, or it is gone): nothing to report to
                return
        if retire:
            return


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start children with Ctrl+C ignored from their first instruction: a
    terminal's Ctrl+C reaches the whole process group, and a worker still
    importing its modules would die of it with a traceback. The driver handles
    it and stops the workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    shard: Shard | None = None
    retiring: bool = False
    shards_done: int = 0
    pid: int = 0


@dataclass
class ProcessExecutor(ShardingExecutor):
    """Runs shards on ``workers`` processes; use as a context manager (or call
    :meth:`close`) so the workers are stopped at the end."""

    workers: int = 2
    max_retries: int = 2
    max_shards_per_worker: int = 0
    shard_size: int | None = None
    _pool: list[_Worker] = field(default_factory=list, init=False, repr=False)
    _ctx: Any = field(default=None, init=False, repr=False)
    started_workers: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._ctx = mp.get_context("spawn")

    # ------------------------------------------------------------------ pool

    def _start_worker(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child, self.max_shards_per_worker, os.getpid()), daemon=True
        )
        with _sigint_ignored():
            process.start()
        child.close()
        self.started_workers += 1
        worker = _Worker(process=process, conn=parent, pid=process.pid or 0)
        self._pool.append(worker)
        return worker

    def worker_pids(self) -> list[int]:
        """PIDs of the live workers (for monitoring, and for tests that kill one)."""
        return [w.pid for w in self._pool if w.process.is_alive()]

    def _discard(self, worker: _Worker) -> None:
        if worker in self._pool:
            self._pool.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)

    def close(self) -> None:
        """Stop every worker (idle ones exit; busy ones are killed)."""
        for worker in list(self._pool):
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in list(self._pool):
            self._discard(worker)

    # ------------------------------------------------------------------ jobs

    def run_job(
        self,
        job: JobConfig,
        context: RunContext,
        slots: Sequence[Slot],
        emit: Callable[[EpisodeRecord], None],
    ) -> bool:
        """Run ``slots`` of ``job`` on the pool; ``emit`` each record as it
        arrives; return whether the env reported the success key."""
        shards = job_shards(
            slots, self.workers, job.num_envs, self.shard_size, native=job.vectorization == "native"
        )
        pending: deque[Shard] = deque(shards)
        job_json = job.model_dump_json()
        context = RunContext(context.run_name, context.run_seed, Path(context.run_dir))
        failure: ShardFailed | WorkersExhausted | None = None

        while True:
            if failure is not None:
                pending.clear()
            self._assign(pending, job_json, context)
            busy = [w for w in self._pool if w.shard is not None]
            if not busy and not pending:
                break
            ready = wait([w.conn for w in self._pool], timeout=_POLL_S)
            for worker in list(self._pool):
                if worker.conn in ready:
                    failure = self._drain(worker, emit, pending) or failure
            for worker in list(self._pool):
                if not worker.process.is_alive() and worker.conn not in ready:
                    failure = self._drain(worker, emit, pending) or failure
        if failure is not None:
            raise failure
        return any(shard.success_seen for shard in shards)

    def _assign(self, pending: deque[Shard], job_json: str, context: RunContext) -> None:
        while pending:
            idle = [w for w in self._pool if w.shard is None and not w.retiring and w.process.is_alive()]
            if not idle:
                if len([w for w in self._pool if not w.retiring]) >= self.workers:
                    return
                idle = [self._start_worker()]
            worker, shard = idle[0], pending.popleft()
            shard.attempts += 1
            worker.shard = shard
            try:
                worker.conn.send((shard.shard_id, job_json, context, shard.remaining))
            except OSError:
                # It died between our checks; the next drain re-queues the shard.
                logger.warning("worker %d died before receiving %s", worker.pid, shard.describe())

    def _drain(
        self, worker: _Worker, emit: Callable[[EpisodeRecord], None], pending: deque[Shard]
    ) -> ShardFailed | WorkersExhausted | None:
        """Read every message a worker has sent; handle its death or retirement."""
        failure: ShardFailed | WorkersExhausted | None = None
        while True:
            try:
                if not worker.conn.poll():
                    if worker.process.is_alive():
                        return failure
                    raise EOFError
                message = worker.conn.recv()
            except Exception:  # EOF, a broken pipe, or a message torn by the kill
                return self._worker_died(worker, pending) or failure
            kind, shard_id = message[0], message[1]
            shard = worker.shard
            if kind == "records":
                records, lines = parse_record_block(message[2])
                if shard is not None and shard.shard_id == shard_id:
                    for record in records:
                        shard.received.add(record.episode)
                emit_many(emit, records, lines)
            elif kind in ("done", "error"):
                worker.shard = None
                worker.shards_done += 1
                worker.retiring = bool(message[2])
                if kind == "error":
                    failure = ShardFailed(message[3], message[4])
                elif shard is not None:
                    shard.success_seen |= bool(message[3])
                if worker.retiring:
                    self._discard(worker)
                    return failure

    def _worker_died(self, worker: _Worker, pending: deque[Shard]) -> WorkersExhausted | None:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        shard = worker.shard
        self._discard(worker)
        if worker.retiring or shard is None:
            return None
        logger.warning(
            "worker %d died (exit code %s) running %s; %d of its episodes arrived",
            worker.pid,
            code,
            shard.describe(),
            len(shard.received),
        )
        return requeue_after_worker_death(
            shard, pending, self.max_retries, f"worker {worker.pid}, exit code {code}"
        )
