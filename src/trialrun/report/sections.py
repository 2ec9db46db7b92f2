"""The analysis and comparison sections of the report, read from the run directory.

``analysis/**/sensitivity.json`` is read leniently: the report of an older
trialrun shows a newer analysis (unknown fields ignored, missing ones shown as
"-"); the typed reader of that file is :func:`trialrun.runfiles.sensitivity.read_sensitivity`.
``compare/*/comparison.json`` goes through its typed reader.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trialrun.binning import is_number, shown_units
from trialrun.runfiles import (
    COMPARE_DIR,
    COMPARE_HTML,
    COMPARISON_FILE,
    SENSITIVITY_FILE,
    RunFileError,
)
from trialrun.runfiles.comparison import read_comparison
from trialrun.runfiles.names import ANALYSIS_DIR as ANALYSIS_DIR  # re-exported for the builder

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- sensitivity


@dataclass
class SensitivityView:
    """One ``sensitivity.json`` as the report shows it; ``data`` is the parsed
    JSON as written (read leniently), ``figures`` the PNGs next to it, as paths
    relative to the run directory."""

    path: str
    title: str
    data: dict[str, Any]
    figures: list[str]
    error: str | None = None

    @property
    def factors(self) -> list[dict[str, Any]]:
        """Factor rows (dicts), strongest first (by ``rank``, then adjusted p)."""
        raw = self.data.get("factors")
        rows = [dict(f) for f in raw if isinstance(f, dict)] if isinstance(raw, list) else []
        for row in rows:
            units = row.get("units")
            row["units"] = shown_units(units) if isinstance(units, str) else None
            ci = row.get("effect_ci")
            if isinstance(ci, list | tuple) and len(ci) == 2 and all(is_number(v) for v in ci):
                row["effect_ci"] = (float(ci[0]), float(ci[1]))
            else:
                row["effect_ci"] = None

        def number(value: Any) -> float:
            return float(value) if is_number(value) else math.inf

        return sorted(rows, key=lambda f: (number(f.get("rank")), number(f.get("p_adjusted"))))

    @property
    def interactions(self) -> list[dict[str, Any]]:
        """Interaction rows (dicts); ``factors`` made a list of names."""
        raw = self.data.get("interactions")
        rows = [dict(i) for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
        for row in rows:
            names = row.get("factors")
            row["factors"] = [str(n) for n in names] if isinstance(names, list | tuple) else [str(names)]
        return rows

    @property
    def notes(self) -> list[str]:
        """The analysis' notes, as text."""
        notes = self.data.get("notes") or []
        return [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]

    @property
    def binary(self) -> bool:
        """True when the analysed outcome is binary (effects are in rate units)."""
        kind = self.data.get("outcome_kind")
        if kind is not None:
            return bool(kind == "binary")
        return self.data.get("base_rate") is not None


_FIGURE_ORDER = ("sensitivity.png", "interaction.png", "posterior.png")


def read_sensitivity(run_dir: Path) -> list[SensitivityView]:
    """Every ``analysis/**/sensitivity.json`` of the run, sorted by path.

    A file that cannot be parsed becomes a view with ``error`` set, so a broken
    analysis output is reported in the page instead of failing the build.
    """
    run_dir = Path(run_dir)
    root = run_dir / ANALYSIS_DIR
    if not root.is_dir():
        return []
    views = []
    for path in sorted(root.rglob(SENSITIVITY_FILE)):
        rel = path.relative_to(run_dir).as_posix()
        folder = path.parent
        figures = [(folder / name) for name in _FIGURE_ORDER if (folder / name).is_file()]
        figures += sorted(p for p in folder.glob("*.png") if p.name not in _FIGURE_ORDER)
        fig_rel = [p.relative_to(run_dir).as_posix() for p in figures]
        sub = folder.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("%s: cannot read the sensitivity analysis: %s", path, exc)
            views.append(SensitivityView(rel, sub if sub != "." else "analysis", {}, fig_rel, str(exc)))
            continue
        job = data.get("job")
        title = str(job) if job else (sub if sub != "." else "all episodes")
        views.append(SensitivityView(rel, title, data, fig_rel))
    return views


# --------------------------------------------------------------------------- comparisons


@dataclass
class ComparisonView:
    """One ``compare/*/comparison.json`` written by ``trialrun compare`` into
    this run (the run is B): one row per compared job."""

    path: str
    page: str | None
    against: str
    margin: float | None
    rows: list[dict[str, Any]]
    error: str | None = None


def read_comparisons(run_dir: Path) -> list[ComparisonView]:
    """Every paired comparison stored in the run, sorted by path.

    A file that cannot be read becomes a view with ``error`` set, so a broken
    comparison is reported in the page instead of failing the build.
    """
    run_dir = Path(run_dir)
    root = run_dir / COMPARE_DIR
    if not root.is_dir():
        return []
    views = []
    for path in sorted(root.glob(f"*/{COMPARISON_FILE}")):
        rel = path.relative_to(run_dir).as_posix()
        html = path.parent / COMPARE_HTML
        page = html.relative_to(run_dir).as_posix() if html.is_file() else None
        try:
            comparison = read_comparison(path.parent)
        except RunFileError as exc:
            logger.warning("%s: cannot read the comparison: %s", path, exc)
            views.append(ComparisonView(rel, page, path.parent.name, None, [], str(exc)))
            continue
        rows = []
        for name, job in comparison.jobs.items():
            # The compared metric (success, return or a custom term) when the
            # comparison chose one; older files compared success only.
            metric = job.metric_comparison
            success = job.success
            values: tuple[float | None, ...]
            if metric is not None:
                values = (metric.a_value, metric.b_value, metric.difference, metric.ci.low, metric.ci.high)
                p, label, binary = metric.p_value, metric.metric, metric.kind == "binary"
            elif success is not None:
                values = (success.a_rate, success.b_rate, success.difference, success.ci.low, success.ci.high)
                p, label, binary = success.mcnemar_p, "success", True
            else:
                values, p, label, binary = (None, None, None, None, None), None, "success", True
            a_value, b_value, difference, ci_low, ci_high = values
            rows.append(
                {
                    "job": name,
                    "metric": label,
                    "binary": binary,
                    "pairs": job.pairs,
                    "a_rate": a_value,
                    "b_rate": b_value,
                    "difference": difference,
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                    "p": p,
                    "verdict": job.verdict,
                    "worse": job.worse_beyond_margin,
                }
            )
        against = comparison.run_a.name or path.parent.name
        views.append(ComparisonView(rel, page, against, comparison.margin, rows))
    return views
