"""trialrun: evaluate control and robot policies across environment variations.

The public API is small; everything else lives in modules whose names say what
they do. Names are imported on first use, so ``import trialrun`` stays fast
(the simulators, torch and the statistics stack load only when needed).

Example:
    >>> import trialrun
    >>> sorted(trialrun.__all__)[:3]
    ['EvalManager', 'Policy', '__version__']
    >>> trialrun.run_evaluation.__module__
    'trialrun.execution.runner'
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING

from trialrun._lazy import lazy_exports
from trialrun._version import __version__

# MuJoCo picks its GL backend once, at import: default to EGL (headless) before
# anything imports mujoco. A user's explicit MUJOCO_GL wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

if TYPE_CHECKING:
    from trialrun.analysis.api import analyze_run
    from trialrun.compare import compare_runs
    from trialrun.execution.runner import run_evaluation
    from trialrun.policies.base import Policy
    from trialrun.report.data import load_run
    from trialrun.suites.manager import EvalManager

_LAZY = {
    "run_evaluation": "trialrun.execution.runner",
    "EvalManager": "trialrun.suites.manager",
    "Policy": "trialrun.policies.base",
    "analyze_run": "trialrun.analysis.api",
    "compare_runs": "trialrun.compare",
    "load_run": "trialrun.report.data",
}

__all__ = [
    "EvalManager",
    "Policy",
    "__version__",
    "analyze_run",
    "compare_runs",
    "load_run",
    "run_evaluation",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
