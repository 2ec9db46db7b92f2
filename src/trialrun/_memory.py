"""Peak memory of a process, as the benchmarks, tests and the trajectory writer read it.

Why ``VmHWM`` from ``/proc`` and not ``ru_maxrss``: Linux keeps a process's
high-water mark across ``exec``, so a child's ``ru_maxrss`` starts at its
parent's (a 13 MB child of a 600 MB parent reports 613 MB); ``VmHWM`` is the
process's own.

Example:
    >>> peak_rss_mb() > 0
    True
    >>> peak_rss_mb(2**22 + 1)  # no such process (pid_max is at most 2**22)
    0.0
"""

from __future__ import annotations

import contextlib


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (``VmHWM``) of process ``pid`` in MB; 0.0 once it has exited."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
