"""The ``ray`` executor: shards as Ray generator tasks on an existing or local cluster.

Each shard is one Ray task that streams its records back as it finishes
episodes (a Ray generator), so the driver writes them as they come and stays
the only writer of the run files. Ray's own task retries are off: when a
worker dies, the driver knows which episodes of the shard arrived and
resubmits only the rest (up to ``max_retries`` times). ``max_shards_per_worker``
maps to Ray's ``max_calls``, which restarts a worker process after that many
shards.

Workers get ``MUJOCO_GL``, ``PYTHONPATH`` (including this process's
``sys.path``, so user modules named as ``module:callable`` import) through the
job's ``runtime_env``. Video files are written by the workers into the run
directory, which must therefore be on a filesystem every node sees (see
``docs/scaling.md``).

Example (Ray starts on the first job, not here):
    >>> executor = RayExecutor(workers=2, max_shards_per_worker=10)
    >>> executor.workers, executor.address is None
    (2, True)
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trialrun.boundary import as_job_failure
from trialrun.config import JobConfig
from trialrun.errors import InputError, ShardFailed, WorkersExhausted
from trialrun.execution.shard import RunContext, run_shard
from trialrun.execution.sharding import Shard, ShardingExecutor, job_shards, requeue_after_worker_death
from trialrun.execution.sink import BlockSender, emit_many
from trialrun.plan import Slot
from trialrun.runfiles.episodes import parse_record_block
from trialrun.runfiles.schema import EpisodeRecord

logger = logging.getLogger(__name__)

_END = object()


def import_ray() -> Any:
    """Import ray or explain how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("the ray executor needs Ray; install it with: pip install 'trialrun[ray]'") from None
    return ray


def shard_stream(job_json: str, context: RunContext, slots: Sequence[Slot]) -> Iterator[tuple[str, ...]]:
    """Run a shard in a thread and yield ``("records", lines)`` as episodes end
    (a block of JSON lines: the records of one step),
    then ``("done", "1"|"0")`` (whether the env reported the success key) or
    ``("error", message, traceback)``."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import trialrun.envs  # noqa: F401  (registers bundled env ids)

    items: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            job = JobConfig.model_validate_json(job_json)
            seen = run_shard(job, context, slots, BlockSender(lambda text: items.put(("records", text))))
            items.put(("done", "1" if seen else "0"))
        except BaseException as exc:  # a sys.exit() in a policy fails its shard, not the Ray worker
            failure = as_job_failure(exc)
            items.put(("error", f"{type(failure).__name__}: {failure}", traceback.format_exc()))
        items.put(_END)

    thread = threading.Thread(target=work, name="trialrun-shard", daemon=True)
    thread.start()
    while (item := items.get()) is not _END:
        yield item
    thread.join()


def _runtime_env() -> dict[str, Any]:
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    existing = os.environ.get("PYTHONPATH", "")
    env_vars = {
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "PYTHONPATH": os.pathsep.join([*paths, *([existing] if existing else [])]),
    }
    return {"env_vars": env_vars}


@dataclass
class _Running:
    shard: Shard
    generator: Any


@dataclass
class RayExecutor(ShardingExecutor):
    """Runs shards as Ray tasks. ``address``: ``auto``, ``ray://host:port`` or
    None to start a local Ray with ``workers`` CPUs."""

    address: str | None = None
    workers: int = 2
    max_retries: int = 2
    max_shards_per_worker: int = 0
    shard_size: int | None = None
    _ray: Any = field(default=None, init=False, repr=False)
    _remote: Any = field(default=None, init=False, repr=False)
    _started_ray: bool = field(default=False, init=False)

    def _ensure_ray(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "runtime_env": _runtime_env(),
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "log_to_driver": True,
            }
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
            self._started_ray = True
        # Ray's own retries are off: the driver reruns only the missing episodes.
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if self.max_shards_per_worker:
            options["max_calls"] = self.max_shards_per_worker  # only settable in ray.remote()
        self._remote = ray.remote(**options)(shard_stream)
        self._ray = ray
        return ray

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._ray is not None and self._started_ray:
            self._ray.shutdown()
        self._ray = None
        self._started_ray = False

    def run_job(
        self,
        job: JobConfig,
        context: RunContext,
        slots: Sequence[Slot],
        emit: Callable[[EpisodeRecord], None],
    ) -> bool:
        """Run ``slots`` of ``job`` as Ray tasks, at most ``workers`` at once;
        return whether the env reported the success key."""
        ray = self._ensure_ray()
        shards = job_shards(
            slots, self.workers, job.num_envs, self.shard_size, native=job.vectorization == "native"
        )
        pending: deque[Shard] = deque(shards)
        job_json = job.model_dump_json()
        running: list[_Running] = []
        failure: ShardFailed | WorkersExhausted | None = None
        while pending or running:
            while pending and len(running) < self.workers and failure is None:
                shard = pending.popleft()
                shard.attempts += 1
                running.append(_Running(shard, self._remote.remote(job_json, context, shard.remaining)))
            if failure is not None:
                pending.clear()
            if not running:
                break
            ready, _ = ray.wait([r.generator for r in running], num_returns=1, timeout=1.0)
            for task in [r for r in running if r.generator in ready]:
                ended, task_failure = self._advance(ray, task, emit, pending)
                if ended:
                    running.remove(task)
                    failure = failure or task_failure
        if failure is not None:
            raise failure
        return any(shard.success_seen for shard in shards)

    def _advance(
        self, ray: Any, task: _Running, emit: Callable[[EpisodeRecord], None], pending: deque[Shard]
    ) -> tuple[bool, ShardFailed | WorkersExhausted | None]:
        """Take the next item of a shard's stream: ``(ended, failure)``, where
        ``ended`` says the task is over (its stream ended, it failed, or its
        worker died and the rest of the shard went back to ``pending``)."""
        shard = task.shard
        try:
            ref = next(task.generator)
        except StopIteration:
            return True, None
        try:
            item = ray.get(ref)
        except Exception as exc:  # the worker died (WorkerCrashedError, node failure...)
            logger.warning("a Ray worker died running %s: %s", shard.describe(), exc)
            return True, requeue_after_worker_death(shard, pending, self.max_retries, f"a Ray worker: {exc}")
        if item[0] == "records":
            records, lines = parse_record_block(item[1])
            for record in records:
                shard.received.add(record.episode)
            emit_many(emit, records, lines)
            return False, None
        if item[0] == "error":
            return True, ShardFailed(item[1], item[2])
        shard.success_seen |= item[1] == "1"  # "done": the stream ends with StopIteration next
        return False, None
