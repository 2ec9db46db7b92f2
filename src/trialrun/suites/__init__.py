"""Training-time evaluation: suites files, ``EvalManager`` and loggers.

Example:
    >>> from trialrun.suites import EvalManager
    >>> EvalManager.from_dict({"evaluators": {"e": {"jobs": [
    ...     {"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 2}]}}}, loggers=[]).due(3)
    ['e']
"""

from trialrun.errors import EvaluatorError
from trialrun.suites.config import EvaluatorConfig, SuitesConfig, load_suites, parse_suites
from trialrun.suites.loggers import EvalLogger
from trialrun.suites.manager import EvalManager
from trialrun.suites.result import EvalResult, JobResult

__all__ = [
    "EvalLogger",
    "EvalManager",
    "EvalResult",
    "EvaluatorConfig",
    "EvaluatorError",
    "JobResult",
    "SuitesConfig",
    "load_suites",
    "parse_suites",
]
