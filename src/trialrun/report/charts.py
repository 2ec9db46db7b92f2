"""Small inline SVG charts for the report: no plotting library, no script.

Every chart is a string of SVG markup (a :class:`markupsafe.Markup`, so the
template inserts it as is). Every piece of text that comes from the run (factor
names, levels, units) goes through :func:`markupsafe.escape`, so a level called
``<script>`` is drawn as text.

* :func:`interval_bar` — a rate in [0, 1] as a bar with its 95% interval drawn
  as whiskers (the per-job success rate);
* :func:`factor_chart` — success rate against one factor, one bar per bin or
  level with its Wilson interval.

Example:
    >>> svg = interval_bar(0.7, 0.6, 0.8, label="lqr")
    >>> svg.startswith("<svg") and 'data-rate="0.7"' in svg
    True
"""

from __future__ import annotations

import json
import math

from markupsafe import Markup, escape

from trialrun.report.data import BinStat, FactorBins, shown_units

# Palette (kept in step with report.css).
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
TRACK = "#eef1f5"
BAR = "#93b4f5"
BAR_LOW_N = "#c9d8fa"
WHISKER = "#1e3a8a"
GOOD = "#15803d"
BAD = "#b91c1c"
NOMINAL = "#d97706"
OVERALL = "#4b5563"


def _f(x: float) -> str:
    """A coordinate with two decimals and no trailing zeros."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def pct(value: float | None, digits: int = 1) -> str:
    """``0.7166`` -> ``'71.7%'`` (``'-'`` for None)."""
    if value is None:
        return "-"
    return f"{100 * value:.{digits}f}%"


def short_number(value: float) -> str:
    """A tick label: 3 significant digits, no exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    mag = abs(value)
    if 1e-3 <= mag < 1e5:
        text = f"{value:.3g}"
        if "e" in text:
            text = f"{value:.0f}"
        return text
    return f"{value:.2g}"


def _rate_color(rate: float) -> str:
    return GOOD if rate >= 0.5 else BAD


def interval_bar(
    rate: float | None,
    low: float | None,
    high: float | None,
    *,
    label: str = "",
    width: int = 180,
    height: int = 22,
) -> Markup:
    """A horizontal bar from 0 to ``rate`` on a [0, 1] track, with whiskers from
    ``low`` to ``high``. Returns an empty track when ``rate`` is None."""
    pad = 4
    inner = width - 2 * pad
    mid = height / 2
    title = f"{label}: " if label else ""
    parts = [
        f'<svg class="ibar" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"'
    ]
    if rate is None:
        parts.append(f' aria-label="{escape(title)}no episodes">')
        parts.append(f'<rect x="{pad}" y="{_f(mid - 5)}" width="{inner}" height="10" rx="2" fill="{TRACK}"/>')
        parts.append("</svg>")
        return Markup("".join(parts))
    lo = low if low is not None else rate
    hi = high if high is not None else rate
    text = f"{title}{pct(rate)} (95% CI {pct(lo)} to {pct(hi)})"
    parts.append(f' aria-label="{escape(text)}" data-rate="{rate!r}" data-low="{lo!r}" data-high="{hi!r}">')
    parts.append(f"<title>{escape(text)}</title>")
    parts.append(f'<rect x="{pad}" y="{_f(mid - 5)}" width="{inner}" height="10" rx="2" fill="{TRACK}"/>')
    for q in (0.25, 0.5, 0.75):
        x = pad + q * inner
        parts.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(mid - 5)}" y2="{_f(mid + 5)}" stroke="#fff"/>')
    parts.append(
        f'<rect x="{pad}" y="{_f(mid - 5)}" width="{_f(rate * inner)}" height="10" rx="2" '
        f'fill="{_rate_color(rate)}" fill-opacity="0.75"/>'
    )
    parts.append(_whiskers(pad + lo * inner, pad + hi * inner, pad + rate * inner, mid))
    parts.append("</svg>")
    return Markup("".join(parts))


def _whiskers(x0: float, x1: float, point: float, mid: float) -> str:
    """An interval from ``x0`` to ``x1`` with end ticks and a dot at ``point``
    (the same marks on the rate bars and the paired-difference bars)."""
    ticks = "".join(
        f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(mid - 6)}" y2="{_f(mid + 6)}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
        for x in (x0, x1)
    )
    return (
        f'<line x1="{_f(x0)}" x2="{_f(x1)}" y1="{_f(mid)}" y2="{_f(mid)}" stroke="{INK}" stroke-width="1.5"/>'
        f'{ticks}<circle cx="{_f(point)}" cy="{_f(mid)}" r="2.5" fill="{INK}"/>'
    )


def difference_bar(
    diff: float | None,
    low: float | None,
    high: float | None,
    *,
    label: str = "",
    width: int = 180,
    height: int = 22,
) -> Markup:
    """A paired difference of rates (B - A) on a [-1, 1] track: a bar from 0 to
    ``diff`` (green above 0, red below) with whiskers from ``low`` to ``high``.

    The comparison page's counterpart of :func:`interval_bar`, so a difference
    and its interval read the same way as the rates next to it.

    Example:
        >>> 'data-diff="0.25"' in difference_bar(0.25, 0.1, 0.4, label="lqr")
        True
    """
    pad = 4
    inner = width - 2 * pad
    mid = height / 2

    def x(v: float) -> float:
        return pad + (max(-1.0, min(1.0, v)) + 1) / 2 * inner

    parts = [
        f'<svg class="ibar dbar" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"'
    ]
    track = f'<rect x="{pad}" y="{_f(mid - 5)}" width="{inner}" height="10" rx="2" fill="{TRACK}"/>'
    zero = f'<line x1="{_f(x(0))}" x2="{_f(x(0))}" y1="{_f(mid - 8)}" y2="{_f(mid + 8)}" stroke="{MUTED}"/>'
    title = f"{label}: " if label else ""
    if diff is None:
        parts.append(f' aria-label="{escape(title)}no pairs">{track}{zero}</svg>')
        return Markup("".join(parts))
    lo = low if low is not None else diff
    hi = high if high is not None else diff
    text = f"{title}B - A {100 * diff:+.1f} pp (95% CI {100 * lo:+.1f} to {100 * hi:+.1f} pp)"
    parts.append(f' aria-label="{escape(text)}" data-diff="{diff!r}" data-low="{lo!r}" data-high="{hi!r}">')
    parts.append(f"<title>{escape(text)}</title>{track}")
    x0, x1 = sorted((x(0), x(diff)))
    colour = GOOD if diff > 0 else BAD
    parts.append(
        f'<rect x="{_f(x0)}" y="{_f(mid - 5)}" width="{_f(x1 - x0)}" height="10" fill="{colour}" '
        'fill-opacity="0.75"/>'
    )
    parts.append(zero)
    parts.append(_whiskers(x(lo), x(hi), x(diff), mid))
    parts.append("</svg>")
    return Markup("".join(parts))


# --------------------------------------------------------------------------- factor chart

W, H = 300, 170
ML, MR, MT, MB = 38, 12, 12, 40


def _bin_title(fb: FactorBins, b: BinStat) -> str:
    shown = shown_units(fb.spec.units)
    units = f" {shown}" if shown else ""
    where = (
        f"{fb.spec.name} = {b.level}"
        if b.level is not None or fb.spec.kind == "categorical"
        else f"{fb.spec.name} in [{short_number(b.low or 0.0)}, {short_number(b.high or 0.0)}]{units}"
    )
    if not b.n:
        return f"{where}: no episodes"
    lo, hi = b.ci or (0.0, 0.0)
    return f"{where}: {b.successes}/{b.n} succeeded = {pct(b.rate)} (95% CI {pct(lo)} to {pct(hi)})"


def _axes(parts: list[str]) -> None:
    """Solid, labelled gridlines at every quarter of the rate axis.

    Each gridline carries its own percentage, so it needs no legend entry; the
    dotted unlabelled 25% and 75% lines they replace looked like data."""
    pw, ph = W - ML - MR, H - MT - MB
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = MT + (1 - q) * ph
        parts.append(
            f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{_f(y)}" y2="{_f(y)}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{ML - 5}" y="{_f(y + 3.5)}" text-anchor="end" font-size="10" fill="{MUTED}">'
            f"{int(q * 100)}%</text>"
        )


def _overall(parts: list[str], rate: float | None) -> None:
    """The job's success rate over all its episodes, as a dotted line across the
    chart (legend: "job's success rate"): bins above it do better than the job."""
    if rate is None:
        return
    pw, ph = W - ML - MR, H - MT - MB
    y = MT + (1 - rate) * ph
    parts.append(
        f'<line class="overall" x1="{ML}" x2="{ML + pw}" y1="{_f(y)}" y2="{_f(y)}" stroke="{OVERALL}" '
        f'stroke-width="1.2" stroke-dasharray="1.5 2.5"><title>job\'s success rate {pct(rate)}</title></line>'
    )


def _bar(parts: list[str], fb: FactorBins, b: BinStat, x0: float, x1: float) -> None:
    ph = H - MT - MB
    title = escape(_bin_title(fb, b) + (" (click to list these episodes)" if b.n else ""))
    if b.level is not None or fb.spec.kind == "categorical":
        where = f' data-level="{escape(json.dumps(b.level))}"'
    else:
        where = f' data-low="{b.low!r}" data-high="{b.high!r}"'
    parts.append(
        f'<g class="bin" data-n="{b.n}" data-successes="{b.successes}"{where}><title>{title}</title>'
    )
    if b.n and b.rate is not None and b.ci is not None:
        y = MT + (1 - b.rate) * ph
        color = BAR if b.n >= 10 else BAR_LOW_N
        parts.append(
            f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x1 - x0, 1))}" height="{_f(MT + ph - y)}" '
            f'fill="{color}"/>'
        )
        cx = (x0 + x1) / 2
        ylo, yhi = MT + (1 - b.ci[0]) * ph, MT + (1 - b.ci[1]) * ph
        cap = min(5.0, max((x1 - x0) / 4, 2.0))
        parts.append(
            f'<line class="whisker" x1="{_f(cx)}" x2="{_f(cx)}" y1="{_f(ylo)}" y2="{_f(yhi)}" '
            f'stroke="{WHISKER}" stroke-width="1.4"/>'
        )
        for yy in (ylo, yhi):
            parts.append(
                f'<line class="whisker" x1="{_f(cx - cap)}" x2="{_f(cx + cap)}" y1="{_f(yy)}" y2="{_f(yy)}" '
                f'stroke="{WHISKER}" stroke-width="1.4"/>'
            )
        parts.append(f'<circle cx="{_f(cx)}" cy="{_f(y)}" r="2.6" fill="{WHISKER}"/>')
    else:
        parts.append(
            f'<rect x="{_f(x0)}" y="{MT}" width="{_f(max(x1 - x0, 1))}" height="{ph}" fill="url(#hatch)" '
            'opacity="0.6"/>'
        )
    parts.append("</g>")


def _open_svg(fb: FactorBins, label: str) -> list[str]:
    return [
        f'<svg class="fchart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(label)}" data-factor="{escape(fb.spec.name)}" data-bins="{len(fb.bins)}">',
    ]


HATCH_DEFS = Markup(
    '<svg class="defs" width="0" height="0" aria-hidden="true"><defs>'
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#d1d5db" stroke-width="2"/></pattern></defs></svg>'
)
"""The pattern empty bins are filled with; the page includes it once."""


def factor_chart(fb: FactorBins, overall: float | None = None) -> Markup:
    """Success rate against one factor as an SVG bar chart with Wilson whiskers.

    Continuous factors: one bar per bin, placed on the factor's axis (log axis
    for ``scale: log``), a dashed orange line at the nominal value. Bins with
    fewer than 10 episodes are drawn lighter; empty bins hatched. Categorical
    factors: one bar per level, the nominal level marked with a triangle.
    ``overall`` (the job's success rate) is drawn as a dotted line across the
    chart. Every line is either an axis part (labelled gridlines, ticks, the
    base line) or has a key in the page's legend (``class`` = the key's name).

    Example:
        >>> from trialrun.runfiles.schema import FactorSpec
        >>> from trialrun.report.data import bin_factor
        >>> spec = FactorSpec(name="g", kind="continuous", low=1.0, high=3.0)
        >>> svg = factor_chart(bin_factor(spec, [1.5, 2.5], [True, False], bins=2))
        >>> svg.count('class="bin"')
        2
    """
    spec = fb.spec
    label = f"success rate against {spec.name}"
    parts = _open_svg(fb, label)
    _axes(parts)
    pw = W - ML - MR
    base_y = H - MB
    if not fb.bins:
        parts.append(
            f'<text x="{ML + pw / 2}" y="{MT + 50}" text-anchor="middle" font-size="11" fill="{MUTED}">'
            "no episodes</text></svg>"
        )
        return Markup("".join(parts))
    if spec.kind == "categorical" or fb.edges is None:
        k = len(fb.bins)
        band = pw / k
        gap = min(band * 0.18, 10)
        max_chars = max(3, int(band / 6.2))
        for i, b in enumerate(fb.bins):
            x0 = ML + i * band + gap / 2
            _bar(parts, fb, b, x0, x0 + band - gap)
            text = str(b.level) if b.level is not None else "-"
            shown = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
            cx = ML + (i + 0.5) * band
            parts.append(
                f'<text x="{_f(cx)}" y="{base_y + 14}" text-anchor="middle" font-size="10" fill="{INK}">'
                f"<title>{escape(text)}</title>{escape(shown)}</text>"
            )
            if spec.nominal is not None and b.level is not None and str(b.level) == str(spec.nominal):
                parts.append(
                    f'<path d="M{_f(cx - 4)} {base_y + 26} L{_f(cx + 4)} {base_y + 26} '
                    f'L{_f(cx)} {base_y + 20} Z" '
                    f'fill="{NOMINAL}"><title>nominal</title></path>'
                )
    else:
        edges = fb.edges
        lo, hi = edges[0], edges[-1]
        log = spec.scale == "log" and lo > 0
        t = (lambda v: math.log(v)) if log else (lambda v: v)
        span = (t(hi) - t(lo)) or 1.0

        def x_of(v: float) -> float:
            return ML + (t(v) - t(lo)) / span * pw

        for b in fb.bins:
            x0, x1 = x_of(b.low if b.low is not None else lo), x_of(b.high if b.high is not None else hi)
            _bar(parts, fb, b, x0 + 1, x1 - 1)
        ticks = [edges[0], edges[len(edges) // 2], edges[-1]] if len(edges) > 2 else [edges[0], edges[-1]]
        for i, v in enumerate(ticks):
            anchor = "start" if i == 0 else ("end" if i == len(ticks) - 1 else "middle")
            x = x_of(v)
            parts.append(
                f'<line class="tick" x1="{_f(x)}" x2="{_f(x)}" y1="{base_y}" y2="{base_y + 4}" '
                f'stroke="{MUTED}"/>'
            )
            parts.append(
                f'<text x="{_f(x)}" y="{base_y + 15}" text-anchor="{anchor}" font-size="10" fill="{INK}">'
                f"{escape(short_number(v))}</text>"
            )
        nominal = spec.nominal
        if isinstance(nominal, int | float) and not isinstance(nominal, bool) and lo <= nominal <= hi:
            x = x_of(float(nominal))
            parts.append(
                f'<line class="nominal" x1="{_f(x)}" x2="{_f(x)}" y1="{MT}" y2="{base_y}" stroke="{NOMINAL}" '
                f'stroke-width="1.5" stroke-dasharray="4 3"><title>nominal {escape(short_number(nominal))}'
                "</title></line>"
            )
        axis = " ".join(
            part for part in (shown_units(spec.units) or "", "(log scale)" if log else "") if part
        )
        if axis:
            parts.append(
                f'<text x="{ML + pw / 2}" y="{base_y + 30}" text-anchor="middle" font-size="10" '
                f'fill="{MUTED}">'
                f"{escape(axis)}</text>"
            )
    _overall(parts, overall)
    parts.append(
        f'<line class="axis" x1="{ML}" x2="{ML + pw}" y1="{base_y}" y2="{base_y}" stroke="{MUTED}"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
