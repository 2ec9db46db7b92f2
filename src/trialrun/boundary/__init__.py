"""Where user code and trialrun meet: limits and checks on the calls that cross.

- :mod:`~trialrun.boundary.guard`: a job's time limits and action checks
  (:class:`GuardConfig`, :class:`Guard`), used by both rollouts;
- :mod:`~trialrun.boundary.actions`: actions against the action space;
- :mod:`~trialrun.boundary.timeouts`: interrupting a call that runs too long;
- :mod:`~trialrun.boundary.interrupts`: a real Ctrl+C versus a ``sys.exit``
  in a policy;
- :mod:`~trialrun.boundary.parent`: helper processes that die with their parent.

It imports nothing of the pipeline (only gymnasium, numpy and
:mod:`trialrun.errors`), so every layer may use it. Names are imported on
first use: the video encoder process imports :mod:`~trialrun.boundary.parent`
and must not load gymnasium for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trialrun._lazy import lazy_exports

if TYPE_CHECKING:
    from trialrun.boundary.actions import ActionCheck, OnNonfinite, OnOutOfBounds
    from trialrun.boundary.guard import DEFAULT_ACT_TIMEOUT, Guard, GuardConfig
    from trialrun.boundary.interrupts import InterruptWatch, as_job_failure
    from trialrun.boundary.parent import die_with_parent
    from trialrun.boundary.timeouts import TimeLimits

_EXPORTS = {
    "ActionCheck": "trialrun.boundary.actions",
    "OnNonfinite": "trialrun.boundary.actions",
    "OnOutOfBounds": "trialrun.boundary.actions",
    "DEFAULT_ACT_TIMEOUT": "trialrun.boundary.guard",
    "Guard": "trialrun.boundary.guard",
    "GuardConfig": "trialrun.boundary.guard",
    "InterruptWatch": "trialrun.boundary.interrupts",
    "as_job_failure": "trialrun.boundary.interrupts",
    "die_with_parent": "trialrun.boundary.parent",
    "TimeLimits": "trialrun.boundary.timeouts",
}

__all__ = [
    "DEFAULT_ACT_TIMEOUT",
    "ActionCheck",
    "Guard",
    "GuardConfig",
    "InterruptWatch",
    "OnNonfinite",
    "OnOutOfBounds",
    "TimeLimits",
    "as_job_failure",
    "die_with_parent",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
