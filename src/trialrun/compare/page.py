"""``compare.html``: the comparison as one self-contained page.

Rendered with jinja2 (autoescape on) from ``report/templates/compare.html.j2``,
which shares the report's top bar (``_topbar.html.j2``), stylesheet, cards,
formats and rate bars (:func:`trialrun.report.charts.interval_bar` for each
run's Wilson interval, :func:`~trialrun.report.charts.difference_bar` for the
paired B - A interval), so the two pages read alike. It opens from disk, runs
no script and fetches nothing (its Content-Security-Policy says so). The
charts are inline SVG whose geometry is computed here.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import trialrun
from trialrun.report.builder import fmt_int, fmt_pct, fmt_raw, fmt_when
from trialrun.report.charts import difference_bar, interval_bar
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
    env.filters.update(rate_ci=rate_with_interval, pct=fmt_pct, raw=fmt_raw, int_sep=fmt_int, when=fmt_when)
    return env


def content_security_policy(style: str) -> str:
    """The page's CSP: its one inline stylesheet (by hash) and nothing else:
    no script at all, no network, so an injected value could not run."""
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'none'",
            f"style-src 'sha256-{digest}'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


@dataclass
class PooledRate:
    """One run's success rate over the paired episodes of every compared job,
    with its Wilson 95% interval and the report's rate bar (the overview cards)."""

    successes: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    bar: Markup


def _pooled(comparison: Comparison, side: str) -> PooledRate:
    successes = n = 0
    for jc in comparison.jobs.values():
        sc = jc.success
        if sc is None:
            continue
        n += sc.both + sc.only_a + sc.only_b + sc.neither
        successes += sc.both + (sc.only_a if side == "A" else sc.only_b)
    if not n:
        return PooledRate(0, 0, None, None, None, Markup(""))
    low, high = wilson_interval(successes, n)
    rate = successes / n
    return PooledRate(successes, n, rate, low, high, interval_bar(rate, low, high, label=side, width=240))


def _job_bars(comparison: Comparison) -> dict[str, dict[str, Markup]]:
    """Per job: A's and B's rate bars (Wilson) and the paired difference bar."""
    bars = {}
    for name, jc in comparison.jobs.items():
        sc = jc.success
        if sc is None:
            continue
        n = sc.both + sc.only_a + sc.only_b + sc.neither
        a, b = sc.both + sc.only_a, sc.both + sc.only_b
        bars[name] = {
            side: interval_bar(k / n, *wilson_interval(k, n), label=f"{name} {side}") if n else Markup("")
            for side, k in (("a", a), ("b", b))
        }
        bars[name]["diff"] = difference_bar(sc.difference, sc.ci.low, sc.ci.high, label=name)
    return bars


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
    css = _stylesheet()
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            c=comparison,
            f=_forest(comparison),
            charts=charts,
            css=Markup(css),
            csp=content_security_policy(css),
            version=trialrun.__version__,
            overall={"a": _pooled(comparison, "A"), "b": _pooled(comparison, "B")},
            job_bars=_job_bars(comparison),
        )
    )
