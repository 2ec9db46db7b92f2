"""Executors by name: what ``trialrun run --executor NAME`` builds.

``local`` runs every slot in this process, ``process`` on a pool of worker
processes on this machine, ``ray`` as Ray tasks (an existing cluster at
``ray_address``, or a local Ray started for the run). Each is a context
manager: leaving it stops the workers (or the Ray it started).

Example:
    >>> with make_executor("local") as executor:
    ...     type(executor).__name__
    'LocalExecutor'
    >>> make_executor("local", ray_address="auto")
    Traceback (most recent call last):
        ...
    trialrun.errors.InputError: --ray-address needs --executor ray
    >>> make_executor("slurm")
    Traceback (most recent call last):
        ...
    trialrun.errors.InputError: --executor must be one of: local, process, ray (got 'slurm')
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

from typing_extensions import Self

from trialrun.errors import InputError
from trialrun.execution.runner import Executor, LocalExecutor

ExecutorName = Literal["local", "process", "ray"]
EXECUTOR_NAMES: tuple[ExecutorName, ...] = get_args(ExecutorName)


class ManagedExecutor(Executor, Protocol):
    """An :class:`~trialrun.execution.runner.Executor` that is also a context
    manager: ``with`` starts nothing extra, leaving it releases the workers."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def make_executor(
    name: str,
    *,
    workers: int = 2,
    max_retries: int = 2,
    max_shards_per_worker: int = 0,
    shard_size: int | None = None,
    ray_address: str | None = None,
) -> ManagedExecutor:
    """The executor called ``name`` (one of :data:`ExecutorName`).

    ``workers``, ``max_retries``, ``max_shards_per_worker`` and ``shard_size``
    configure the ``process`` and ``ray`` executors; ``ray_address`` (``auto``,
    ``ray://host:port``) only the ``ray`` one.

    Raises:
        InputError: for an unknown name, ``ray_address`` without ``ray``, or
            ``ray`` without Ray installed.
    """
    if name not in EXECUTOR_NAMES:
        raise InputError(f"--executor must be one of: {', '.join(EXECUTOR_NAMES)} (got '{name}')")
    if ray_address and name != "ray":
        raise InputError("--ray-address needs --executor ray")
    if name == "local":
        return LocalExecutor()
    if name == "process":
        from trialrun.execution.process import ProcessExecutor

        return ProcessExecutor(workers, max_retries, max_shards_per_worker, shard_size)
    from trialrun.execution.ray_executor import RayExecutor, import_ray

    import_ray()  # a clear InputError before anything runs when Ray is missing
    return RayExecutor(ray_address, workers, max_retries, max_shards_per_worker, shard_size)
