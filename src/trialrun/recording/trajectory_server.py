"""Inside the trajectory writer process: the protocol and the loop that serves it.

The rollout's side (:class:`~trialrun.recording.trajectory_writer.TrajectoryWriter`)
starts ``python -m trialrun.recording.trajectory_server``, whose entry point is
:func:`main` here. This module imports nothing of trialrun but
:mod:`~trialrun.recording.trajectory_file` (and h5py), so the process starts
in the time numpy and h5py take to import.

Protocol (rollout -> writer, on the writer's stdin): a header ``kind, file
id, payload length`` then a pickled payload. ``OPEN`` (``{"path", "partial",
"settings"}``: the file is created under its ``partial`` name at once),
``APPEND`` (``(observations, steps, infos)``, as
:meth:`~trialrun.recording.trajectory_file.EpisodeFile.append`), ``CLOSE``
(the step count: complete and rename), ``ABORT`` (delete the partial file),
``SYNC`` (answered once everything before it is done). ``CLOSE`` and ``SYNC``
are answered with one JSON line ``{"id": ..., "error": null | "...", "disk":
false | true}`` (``disk``: the error is the file system's, an ``OSError``); an
error while opening or appending is kept and given as the answer to
``CLOSE``. At end of input every open file is aborted; the process also exits
when its parent dies (its partial files stay, and are removed before their
episodes run again).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from trialrun.recording.trajectory_file import EpisodeFile, h5py_module

PARENT_PID_ENV = "TRIALRUN_TRAJECTORY_PARENT"
"""The rollout's pid, passed to the writer (which exits when that process dies)."""
HEADER = struct.Struct("<BIQ")
OPEN, APPEND, CLOSE, ABORT, SYNC = 1, 2, 3, 4, 5


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The writer's loop: do what ``inp`` asks until it ends, answer on ``out``."""
    files: dict[int, EpisodeFile] = {}
    failed: dict[int, tuple[str, bool]] = {}

    def answer(file_id: int, error: str | None, disk: bool = False) -> None:
        out.write(json.dumps({"id": file_id, "error": error, "disk": disk}).encode() + b"\n")
        out.flush()

    while (header := _read_exact(inp, HEADER.size)) is not None:
        kind, file_id, length = HEADER.unpack(header)
        data = _read_exact(inp, length)
        if data is None:
            break
        if kind == SYNC:
            answer(file_id, None)
            continue
        if kind == ABORT:
            failed.pop(file_id, None)
            aborted = files.pop(file_id, None)
            if aborted is not None:
                aborted.abort()
            continue
        if kind == CLOSE and file_id in failed:
            answer(file_id, *failed.pop(file_id))
            continue
        try:
            payload = pickle.loads(data)
            if kind == OPEN:
                files[file_id] = EpisodeFile(
                    Path(payload["path"]), payload["settings"], Path(payload["partial"])
                )
            elif kind == APPEND and file_id in files:
                files[file_id].append(*payload)
            elif kind == CLOSE:
                files.pop(file_id).finish(int(payload))
                answer(file_id, None)
        except Exception as exc:
            broken = files.pop(file_id, None)
            if broken is not None:
                broken.abort()
            reason = f"{type(exc).__name__}: {exc}", isinstance(exc, OSError)
            if kind == CLOSE:
                answer(file_id, *reason)
            else:
                failed[file_id] = reason
    for left in files.values():
        left.abort()


def main() -> None:
    """The writer process: serve stdin; answers go to the original stdout,
    and anything printed goes to stderr, so it cannot corrupt them."""
    import signal

    from trialrun.boundary.parent import die_with_parent

    # Ctrl-C goes to the whole process group: the rollout decides what happens,
    # and its exit (end of input) stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(int(os.environ.get(PARENT_PID_ENV, os.getppid())))
    h5py_module()  # imported while the rollout has nothing to send yet
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    serve(sys.stdin.buffer.raw, answers)  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
