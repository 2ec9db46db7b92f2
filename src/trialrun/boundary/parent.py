"""Helper processes that exit when the process that started them dies.

A process-pool worker hung in a policy call, or a video encoder, used to
outlive a driver killed with ``kill -9``: reparented to init, it held its CPU
and memory for ever. Two mechanisms, because each has a gap:

- ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux): the kernel kills the child the
  moment its parent dies, even while the child is stuck in C code. It fires
  when the parent *thread* that started the child exits, and does not exist
  outside Linux.
- a daemon thread that checks every ``interval`` seconds whether the parent
  is still ``parent_pid`` (a dead parent's children are reparented), and
  ends the process with ``os._exit`` if not. It needs the GIL, so a child
  stuck in C code that holds it is left to the first mechanism.

Usage, first thing in a helper process started by ``parent_pid``::

    die_with_parent(parent_pid)   # returns at once; the watch runs in the background
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 75
"""The exit code of a helper process that ended because its parent died."""


def die_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """End this process when ``parent_pid`` (its parent) dies; returns at once.

    Exits immediately if the parent is already gone (it died before this
    process got here).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                logger.warning("parent process %d is gone; exiting", parent_pid)
                os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="trialrun-parent-watch", daemon=True).start()
