"""The HTML report of a run, and a small server to view it.

The report reads run files only (``manifest.json``, ``episodes.jsonl``,
``summary.json``, ``videos/``, ``trajectories/``, ``analysis/``) and never imports the rollout
side, so it can be built anywhere the run directory is copied.

Example (a run directory made by ``trialrun run``)::

    from trialrun.report import build_report
    build_report("runs/cartpole-sweep-20261121T190000Z")
    # -> runs/cartpole-sweep-20261121T190000Z/report/index.html
"""

from trialrun.errors import PortInUseError
from trialrun.report.builder import build_report, default_out_dir, render_report, report_is_stale
from trialrun.report.data import RunView, load_run
from trialrun.report.server import RunServer, is_loopback, make_server

__all__ = [
    "PortInUseError",
    "RunServer",
    "RunView",
    "build_report",
    "default_out_dir",
    "is_loopback",
    "load_run",
    "make_server",
    "render_report",
    "report_is_stale",
]
