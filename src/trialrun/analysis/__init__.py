"""Sensitivity analysis: which factors break a policy, and how.

Reads run files only (``manifest.json``, ``episodes.jsonl``); never imports the
rollout side. See ``docs/analysis.md`` for the methods and how to read the plots.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.analysis import analyze_records, make_sweep
    >>> episodes, factors = make_sweep(n=300, seed=0).write(pathlib.Path(tempfile.mkdtemp()))
    >>> result = analyze_records(episodes, factors, outcome="success")
    >>> "light" in result.significant_factors()
    False
"""

from trialrun.analysis.api import (
    analyze,
    analyze_records,
    analyze_run,
    load_run_analyses,
    load_sensitivity,
)
from trialrun.analysis.factors_file import load_factors_yaml
from trialrun.analysis.models import (
    FactorResult,
    FactorsFile,
    Interaction,
    InteractionView,
    SensitivityResult,
)
from trialrun.analysis.synthetic import SyntheticSweep, make_sweep
from trialrun.analysis.table import format_analysis_table

__all__ = [
    "FactorResult",
    "FactorsFile",
    "Interaction",
    "InteractionView",
    "SensitivityResult",
    "SyntheticSweep",
    "analyze",
    "analyze_records",
    "analyze_run",
    "format_analysis_table",
    "load_factors_yaml",
    "load_run_analyses",
    "load_sensitivity",
    "make_sweep",
]
