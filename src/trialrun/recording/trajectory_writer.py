"""The trajectory writer process: HDF5 files written next to, not inside, the rollout.

Why a process: creating, filling and closing one HDF5 file (groups,
datasets, attributes) costs about 3 ms whatever the episode's length; a
500-step CartPole episode takes about 18 ms, so writing every episode's
file in the rollout's process made the job ~1.4x slower. A writer *thread*
did not help (h5py holds the GIL: the step loop got 45% slower). A separate
process writes on another core; the rollout only copies each block of rows
into a pipe (pickled numpy arrays, tens of microseconds for a CartPole
episode). The gain needs a free core: on a machine whose cores are all busy,
the writer's work is the same work, done elsewhere.

Durability: an episode's record names its trajectory only once this process
has renamed the file to its final name and said so. The rollout's side
(:class:`~trialrun.execution.held_records.HeldRecords`) holds each such record
until this process acknowledges its file, collects acknowledgements without
waiting at every episode end, and waits for all of them when the shard ends.
A killed run therefore never has a record naming a file that is not there;
the files of episodes without a record (written, or half-written under their
``.part`` name) are removed before those episodes run again, as before. A file
this process cannot write (disk full, a value h5py cannot store) fails the
job with the reason, and so does this process dying.

Who uses it: a :class:`~trialrun.recording.trajectory.TrajectoryRecorder`
running in the thread that holds the records, inside
:func:`writing_in_background` (the sync and native rollouts of ``select:
first | all``, with any executor). Anywhere else (an async vector-env worker,
``failures | successes`` selections, whose files are deleted or re-simulated
right after the episode, ``trialrun replay``) the recorder writes its file
itself (:class:`~trialrun.recording.trajectory_file.EpisodeFile`).

The writer's side (its protocol and loop) is
:mod:`~trialrun.recording.trajectory_server`, run as ``python -m
trialrun.recording.trajectory_server`` by :class:`TrajectoryWriter`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import pickle
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trialrun._memory import peak_rss_mb
from trialrun.errors import RunWriteError
from trialrun.recording.trajectory_server import ABORT, APPEND, CLOSE, HEADER, OPEN, PARENT_PID_ENV, SYNC
from trialrun.runfiles.names import partial_file

PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux fcntl: grow a pipe's buffer


class TrajectoryWriter:
    """The rollout's side of one writer process (see the module docstring;
    :func:`trajectory_writer` gives this thread's one).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> writer = TrajectoryWriter()
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> settings = {"episode": 0, "seed": 1, "job": "j", "env_id": "E", "factors": {}}
        >>> file_id = writer.open(folder / "ep0.h5", "trajectories/j/ep0.h5", settings)
        >>> writer.append(file_id, {"state": np.zeros((4, 2))}, {"rewards": np.ones(3)})
        >>> writer.close(file_id, 3)
        >>> writer.sync(); writer.take("trajectories/j/ep0.h5"), (folder / "ep0.h5").exists()
        (('', False), True)
        >>> writer.shutdown()
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._next_id = 0
        self._names: dict[int, str] = {}
        """Files sent to the writer and not answered yet: id -> the name records use."""
        self._answers: dict[str, tuple[str, bool]] = {}
        """Answered files not taken yet: name -> ("" (written) or the writer's
        error, whether the error is the file system's)."""
        self._buffer = b""
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env[PARENT_PID_ENV] = str(os.getpid())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trialrun.recording.trajectory_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._in, _F_SETPIPE_SZ, PIPE_BYTES)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def open(self, path: Path, name: str, settings: dict[str, Any]) -> int:
        """Start ``path`` (``name`` is what the episode's record calls it); returns its id."""
        with self._lock:
            self._next_id += 1
            file_id = self._next_id
            spec = {"path": str(path), "partial": str(partial_file(path)), "settings": settings}
            self._send(OPEN, file_id, spec)
            self._names[file_id] = name
            self._answers.pop(name, None)
        return file_id

    def append(
        self,
        file_id: int,
        observations: dict[str, np.ndarray],
        steps: dict[str, np.ndarray],
        infos: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Send one block (as :meth:`EpisodeFile.append
        <trialrun.recording.trajectory_file.EpisodeFile.append>`), copied into the
        pipe: the caller may reuse its arrays at once."""
        self._send(APPEND, file_id, (observations, steps, infos))

    def close(self, file_id: int, steps: int) -> None:
        """Complete the file; :meth:`take` tells when it is on disk under its name."""
        self._send(CLOSE, file_id, steps)

    def abort(self, file_id: int) -> None:
        """Drop the file (the writer deletes its partial file)."""
        with self._lock:
            self._names.pop(file_id, None)
            self._send(ABORT, file_id, None)

    def waiting(self, name: str) -> bool:
        """Whether ``name`` was sent to the writer and not taken yet."""
        with self._lock:
            return name in self._answers or name in self._names.values()

    def take(self, name: str) -> tuple[str, bool] | None:
        """``("", False)`` once ``name`` is written, or the writer's error and
        whether it is the file system's (an ``OSError``), forgetting it; None
        while the writer has not answered. Reads the answers that arrived
        without waiting."""
        with self._lock:
            try:
                self._read(block=False)
            except RunWriteError:
                if name not in self._answers:
                    raise
            return self._answers.pop(name, None)

    def sync(self) -> None:
        """Wait until the writer has done everything sent so far (answers are then ready to :meth:`take`)."""
        with self._lock:
            self._next_id += 1
            mark = self._next_id
            self._names[mark] = ""
            self._send(SYNC, mark, None)
            while mark in self._names:
                self._read(block=True)
            self._answers.pop("", None)

    def forget(self) -> None:
        """Drop the answers nobody took (files whose episode's record was never made)."""
        with self._lock:
            self._answers.clear()

    def peak_rss_mb(self) -> float:
        """The writer process's peak resident memory (``VmHWM``), in MB; 0 once it has exited."""
        return peak_rss_mb(self.proc.pid)

    def shutdown(self) -> None:
        """End of input: the writer aborts what is still open and exits."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    def _send(self, kind: int, file_id: int, payload: Any) -> None:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        parts = [memoryview(HEADER.pack(kind, file_id, len(data))), memoryview(data)]
        with self._lock:
            try:  # header and data in one call, without joining them into a copy
                while parts:
                    written = os.writev(self._in, parts)
                    while parts and written >= len(parts[0]):
                        written -= len(parts[0])
                        parts.pop(0)
                    if parts:
                        parts[0] = parts[0][written:]
            except OSError as exc:
                raise RunWriteError(f"{self._stopped()}: {exc}") from None

    def _read(self, block: bool) -> None:
        """Take the answers that have arrived (``block``: wait until one has)."""
        while True:
            if block:
                select.select([self._out], [], [])
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                if block:
                    continue
                return
            if not chunk:
                raise RunWriteError(self._stopped())
            lines = (self._buffer + chunk).split(b"\n")
            self._buffer = lines.pop()
            for line in lines:
                answer = json.loads(line)
                name = self._names.pop(int(answer["id"]), None)
                if name is not None:
                    self._answers[name] = (answer.get("error") or "", bool(answer.get("disk")))
            if block and lines:
                return

    def _stopped(self) -> str:
        code = self.proc.poll()
        unwritten = sorted(name for name in self._names.values() if name)
        listed = f": {', '.join(unwritten[:3])}{' ...' if len(unwritten) > 3 else ''}" if unwritten else ""
        return (
            f"the trajectory writer process stopped (exit code {code}) "
            f"with {len(unwritten)} trajectory file(s) unwritten{listed}"
        )


class BackgroundFile:
    """An :class:`~trialrun.recording.trajectory_file.EpisodeFile` written by
    the writer process: the same calls, sent instead of done."""

    def __init__(self, writer: TrajectoryWriter, path: Path, name: str, settings: dict[str, Any]) -> None:
        self.writer = writer
        keys = ("episode", "seed", "job", "env_id", "factors")
        self.file_id = writer.open(path, name, {key: settings.get(key) for key in keys})
        self._open = True

    def append(
        self,
        observations: dict[str, np.ndarray],
        steps: dict[str, np.ndarray],
        infos: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.writer.append(self.file_id, observations, steps, infos)

    def finish(self, steps: int) -> None:
        self._open = False
        self.writer.close(self.file_id, steps)

    def abort(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(RunWriteError):  # a dead writer leaves only a partial file
                self.writer.abort(self.file_id)


_writer: TrajectoryWriter | None = None
"""The writer started last in this process (what tests and benchmarks look at)."""
_writer_lock = threading.Lock()
_local = threading.local()
_background: dict[tuple[int, int], TrajectoryWriter] = {}
"""The writer of each (process, thread) inside :func:`writing_in_background`."""


def trajectory_writer() -> TrajectoryWriter:
    """This thread's writer process, started on first use (again if it has exited).

    One per thread, because the kernel kills a helper when the *thread* that
    started it exits (``PR_SET_PDEATHSIG``, :mod:`trialrun.boundary.parent`):
    a writer started by a Ray shard's thread dies with that thread, so the
    next shard, in a new thread, must not find it and write to it.
    """
    global _writer
    writer: TrajectoryWriter | None = getattr(_local, "writer", None)
    if writer is None or writer.pid != os.getpid() or not writer.alive:
        writer = _local.writer = TrajectoryWriter()
        atexit.register(writer.shutdown)
        with _writer_lock:
            _writer = writer
    return writer


@contextlib.contextmanager
def writing_in_background() -> Iterator[TrajectoryWriter]:
    """Recorders running in this thread, inside the block, hand their files to
    the writer process (started now, so its imports overlap the env's)."""
    key = (os.getpid(), threading.get_ident())
    writer = trajectory_writer()
    _background[key] = writer
    try:
        yield writer
    finally:
        _background.pop(key, None)


def background_writer() -> TrajectoryWriter | None:
    """The writer a recorder in this thread hands its file to, or None (write
    it here). Always the block's writer, even once it has died: its records
    wait for it, so its death must fail the files, not move them to a new one."""
    return _background.get((os.getpid(), threading.get_ident()))
