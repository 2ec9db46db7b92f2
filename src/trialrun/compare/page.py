"""``compare.html``: the comparison as one self-contained page.

Rendered with jinja2 (autoescape on) from ``report/templates/compare.html.j2``
with the report's own stylesheet inlined, so it looks like the run's report,
opens from disk, runs no script and fetches nothing. The charts are inline
SVG whose geometry is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from trialrun.runfiles.comparison import Comparison, FactorComparison
from trialrun.stats import wilson_interval

TEMPLATE = "compare.html.j2"
STYLESHEET = "report.css"

# The report's palette (report.css): worse, better, neutral.
_BAD, _GOOD, _INK = "#b91c1c", "#15803d", "#1f2937"


def _report_dir() -> Any:
    return resources.files("trialrun").joinpath("report")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    templates = str(_report_dir().joinpath("templates"))
    env = Environment(loader=FileSystemLoader(templates), autoescape=True, undefined=StrictUndefined)
    env.filters["rate_ci"] = rate_with_interval
    return env


def rate_with_interval(successes: int, n: int) -> str:
    """``"72.5% [60.1, 82.3]"``: a success rate with its Wilson 95% interval, in percent.

    Example:
        >>> rate_with_interval(8, 10)
        '80.0% [49.0, 94.3]'
    """
    if n <= 0:
        return "-"
    low, high = wilson_interval(successes, n)
    return f"{100 * successes / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _stylesheet() -> str:
    return str(_report_dir().joinpath("static").joinpath(STYLESHEET).read_text(encoding="utf-8"))


def _scale(values: Sequence[float], extra: Sequence[float] = (), rates: bool = True) -> tuple[float, float]:
    """A readable x/y range for differences: covers the values, 0 and ``extra``
    (clamped to [-1, 1] for differences of rates)."""
    pts = [v for v in [*values, *extra, 0.0] if math.isfinite(v)]
    lo, hi = min(pts), max(pts)
    span = max(hi - lo, 0.1 if rates else 1e-9)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    return (max(-1.0, lo), min(1.0, hi)) if rates else (lo, hi)


def _forest(comparison: Comparison) -> dict[str, Any]:
    """Geometry of the per-job forest plot (B - A on the compared metric, with its interval).

    Jobs compared on another metric than the first job's are left out (their units differ)."""
    mcs = [(jc, jc.metric_comparison) for jc in comparison.jobs.values() if jc.metric_comparison is not None]
    metric = mcs[0][1].metric if mcs else "success"
    rows = [(jc, mc) for jc, mc in mcs if mc.metric == metric]
    rates = all(mc.kind == "binary" for _, mc in rows)
    width, left, right, top, row_h = 720, 170, 30, 28, 30
    lows = [s.ci.low for _, s in rows]
    highs = [s.ci.high for _, s in rows]
    lo, hi = _scale(lows + highs, [-comparison.margin], rates=rates)

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    height = top + row_h * max(len(rows), 1) + 30
    items = []
    for i, (jc, s) in enumerate(rows):
        items.append(
            {
                "job": jc.job,
                "y": top + row_h * i + row_h / 2,
                "x": x(s.difference),
                "x1": x(s.ci.low),
                "x2": x(s.ci.high),
                "colour": _BAD if jc.worse_beyond_margin else (_GOOD if jc.verdict == "B better" else _INK),
                "title": f"{jc.job}: B - A = {s.difference:+.3g} [{s.ci.low:+.3g}, {s.ci.high:+.3g}]",
            }
        )
    ticks = [{"x": x(t), "label": f"{t:+.3g}"} for t in np.linspace(lo, hi, 5)]
    return {
        "metric": metric,
        "left_out": len(mcs) - len(rows),
        "width": width,
        "height": height,
        "left": left,
        "zero": x(0.0),
        "margin_x": x(-comparison.margin) if comparison.margin > 0 else None,
        "bottom": height - 24,
        "top": top - 8,
        "items": items,
        "ticks": ticks,
    }


def _bin_chart(fc: FactorComparison) -> dict[str, Any]:
    """Geometry of one factor's chart: B - A success per bin with intervals."""
    width, height, left, right, top, bottom = 720, 230, 60, 20, 16, 56
    vals = [v for b in fc.bins if b.ci for v in (b.ci.low, b.ci.high)]
    lo, hi = _scale(vals)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    step = (width - left - right) / max(len(fc.bins), 1)
    items = []
    for i, b in enumerate(fc.bins):
        cx = left + step * (i + 0.5)
        item: dict[str, Any] = {"x": cx, "label": b.label, "pairs": b.pairs, "has": b.ci is not None}
        if b.ci is not None and b.difference is not None:
            item.update(
                {
                    "y": y(b.difference),
                    "y1": y(b.ci.high),
                    "y2": y(b.ci.low),
                    "title": f"{fc.factor} {b.label}: B - A = {b.difference:+.3f} "
                    f"[{b.ci.low:+.3f}, {b.ci.high:+.3f}], {b.pairs} pairs",
                    "colour": _BAD if b.ci.high < 0 else (_GOOD if b.ci.low > 0 else _INK),
                }
            )
        items.append(item)
    ticks = [{"y": y(t), "label": f"{t:+.2f}"} for t in np.linspace(lo, hi, 5)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "zero": y(0.0),
        "axis": height - bottom,
        "items": items,
        "ticks": ticks,
    }


def render_compare_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page (the report's stylesheet
    inlined, inline SVG, no scripts, no network; every user-provided text is
    escaped)."""
    charts = {name: [_bin_chart(fc) for fc in jc.factors] for name, jc in comparison.jobs.items()}
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(c=comparison, f=_forest(comparison), charts=charts, css=Markup(_stylesheet()))
    )
