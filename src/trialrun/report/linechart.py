"""Small inline SVG line charts of an episode's trajectory: action and reward against the step.

Drawn like the factor charts (:mod:`trialrun.report.charts`): a string of SVG
markup with labelled gridlines, named axes and a legend inside the chart, no
plotting library and no script. Every name that comes from the run (an action
key) goes through :func:`markupsafe.escape`.

* :func:`action_chart` — one line per action dimension (steps for discrete
  actions), y axis "action value";
* :func:`reward_chart` — the reward of each step (left axis) and the
  cumulative return (right axis).

Each line is a ``<path class="series">`` with ``data-points`` (the points it
draws) and the chart's ``<svg>`` has ``data-length`` (the episode's steps), so
a test can check that nothing was lost or invented.

Example:
    >>> import numpy as np
    >>> from trialrun.report.trajectories import Series, TrajectoryData
    >>> s = Series("reward", np.arange(3), np.array([1.0, 0.0, 2.0]))
    >>> r = Series("cumulative return", np.arange(3), np.array([1.0, 1.0, 3.0]))
    >>> svg = reward_chart(TrajectoryData(length=3, reward=s, ret=r))
    >>> svg.count('class="series"'), 'data-points="3"' in svg
    (2, True)
"""

from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup, escape

from trialrun.report.charts import GRID, INK, MUTED, short_number
from trialrun.report.trajectories import Series, TrajectoryData

W = 480
"""The chart's width in SVG units (it scales to its box)."""
_PLOT_H = 120
_MB = 36
_FONT = 10
_CHAR_W = 5.8  # a 10-unit system font's mean advance, to lay out the legend
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
"""Line colours, one per action dimension (at most 8 are drawn)."""
REWARD = "#2563eb"
RETURN = "#d97706"


def _c(x: float) -> str:
    """A coordinate with one decimal (charts are a few hundred units wide)."""
    text = f"{x:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def _line(cls: str, x1: float, x2: float, y1: float, y2: float, stroke: str) -> str:
    return f'<line class="{cls}" x1="{_c(x1)}" x2="{_c(x2)}" y1="{_c(y1)}" y2="{_c(y2)}" stroke="{stroke}"/>'


def _text(x: float, y: float, text: str, fill: str, anchor: str = "start", extra: str = "") -> str:
    """A 10-unit label; ``text`` is escaped here (it may be a name from the run)."""
    return (
        f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}" font-size="{_FONT}" fill="{fill}"{extra}>'
        f"{escape(text)}</text>"
    )


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[lo, hi]``: about ``count`` steps of 1, 2, 2.5 or 5 times a power of ten.

    Example:
        >>> nice_ticks(0.0, 499.0)
        [0.0, 200.0, 400.0, 600.0]
        >>> nice_ticks(-1.0, 1.0)
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.5 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    k = 0
    while True:
        value = first + k * step
        ticks.append(round(value, 12) + 0.0)
        if value >= hi - 1e-9 * step:
            return ticks
        k += 1


class _Frame:
    """The plot area of a chart and its scales."""

    def __init__(self, length: int, top: float) -> None:
        # The same margins with or without a right axis, so the step axes of an episode's charts line up.
        self.ml, self.mr = 50.0, 50.0
        self.top = top
        self.pw = W - self.ml - self.mr
        self.ph = float(_PLOT_H)
        self.height = top + self.ph + _MB
        self.x_ticks = [t for t in nice_ticks(0.0, max(length - 1, 1)) if t <= max(length - 1, 1)]
        self.x_max = float(max(length - 1, 1))

    def x(self, step: float) -> float:
        return self.ml + step / self.x_max * self.pw

    @staticmethod
    def y_domain(series: list[Series]) -> list[float]:
        finite = [v for s in series for v in np.asarray(s.values, dtype=np.float64) if math.isfinite(v)]
        return nice_ticks(min(finite, default=0.0), max(finite, default=1.0))

    def y(self, value: float, ticks: list[float]) -> float:
        lo, hi = ticks[0], ticks[-1]
        return self.top + (1 - (value - lo) / (hi - lo)) * self.ph


def _legend(items: list[tuple[str, str]], note: str = "") -> tuple[list[str], float]:
    """The legend row(s) above the plot: a short line in each colour and its name.
    Returns the markup and the height it takes."""
    parts: list[str] = []
    x, y = 50.0, 12.0
    for label, colour in items:
        width = 26 + _CHAR_W * len(label) + 12
        if x + width > W - 8 and x > 50:
            x, y = 50.0, y + 14
        parts.append(
            f'<g class="key"><line x1="{_c(x)}" x2="{_c(x + 18)}" y1="{_c(y - 3.5)}" y2="{_c(y - 3.5)}" '
            f'stroke="{colour}" stroke-width="2"/><text x="{_c(x + 23)}" y="{_c(y)}" font-size="{_FONT}" '
            f'fill="{INK}">{escape(label)}</text></g>'
        )
        x += width
    if note:
        y += 14
        parts.append(_text(50, y, note, MUTED, extra=' class="left-out"'))
    return parts, y + 10


def _path(frame: _Frame, series: Series, ticks: list[float], colour: str) -> str:
    """One line: ``M``/``L`` (or ``M``/``H``/``V`` steps for discrete values), broken at non-finite values."""
    cmds: list[str] = []
    points = 0
    pen_up = True
    for step, value in zip(
        series.steps.tolist(), np.asarray(series.values, dtype=np.float64).tolist(), strict=True
    ):
        if not math.isfinite(value):
            pen_up = True
            continue
        x, y = _c(frame.x(step)), _c(frame.y(value, ticks))
        if pen_up:
            cmds.append(f"M{x},{y}")
        elif series.discrete:
            cmds.append(f"H{x}V{y}")
        else:
            cmds.append(f"L{x},{y}")
        pen_up = False
        points += 1
    title = f"{series.name}: {points} points"
    return (
        f'<path class="series" data-series="{escape(series.name)}" data-points="{points}" '
        f'd="{"".join(cmds)}" '
        f'fill="none" stroke="{colour}" stroke-width="1.4" stroke-linejoin="round">'
        f"<title>{escape(title)}</title></path>"
    )


def _y_axis(
    frame: _Frame, ticks: list[float], label: str, side: str, colour: str, grid: bool, integers: bool = False
) -> list[str]:
    """Gridlines (left axis) or ticks on the axis line (right axis) with their values, and the
    axis' name turned along it. ``integers``: label only whole values (a discrete action has no 0.25)."""
    parts = []
    if not grid:
        right = frame.ml + frame.pw
        parts.append(_line("axis", right, right, frame.top, frame.top + frame.ph, colour))
    x_text = frame.ml - 5 if side == "left" else frame.ml + frame.pw + 7
    anchor = "end" if side == "left" else "start"
    for t in ticks:
        if integers and not float(t).is_integer():
            continue
        y = frame.y(t, ticks)
        if grid:
            parts.append(_line("grid", frame.ml, frame.ml + frame.pw, y, y, GRID))
        else:  # the right axis' ticks fall between the gridlines: mark them on the axis
            right = frame.ml + frame.pw
            parts.append(_line("tick", right, right + 4, y, y, colour))
        parts.append(_text(x_text, y + 3.5, short_number(t), MUTED, anchor))
    cy = frame.top + frame.ph / 2
    cx = 11 if side == "left" else W - 6
    rotate = f' class="axis-label" transform="rotate(-90 {cx} {_c(cy)})"'
    parts.append(_text(cx, cy, label, colour, "middle", rotate))
    return parts


def _x_axis(frame: _Frame) -> list[str]:
    base = frame.top + frame.ph
    parts = [_line("axis", frame.ml, frame.ml + frame.pw, base, base, MUTED)]
    for t in frame.x_ticks:
        x = frame.x(t)
        parts.append(_line("tick", x, x, base, base + 4, MUTED))
        parts.append(_text(x, base + 15, short_number(t), INK, "middle"))
    parts.append(_text(frame.ml + frame.pw / 2, base + 30, "step", MUTED, "middle", ' class="axis-label"'))
    return parts


def _svg(kind: str, frame: _Frame, length: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="tchart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {_c(frame.height)}" '
        'role="img" '
        f'aria-label="{escape(label)}" data-chart="{kind}" data-length="{length}">'
        f"<title>{escape(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def action_chart(data: TrajectoryData) -> Markup:
    """The actions of one episode against the step: one line per drawn dimension.

    A legend names the lines when there are several; when the file holds more
    dimensions than are drawn, the chart says how many were left out.
    """
    lines = data.actions
    names = [(s.name, PALETTE[i % len(PALETTE)]) for i, s in enumerate(lines)]
    note = (
        f"{data.dims_left_out} more action dimension{'s' if data.dims_left_out != 1 else ''} not drawn "
        f"(first {len(lines)} of {data.action_dims} shown)"
        if data.dims_left_out
        else ""
    )
    legend, top = _legend(names if len(lines) > 1 else [], note)
    frame = _Frame(data.length, max(top, 10.0))
    ticks = frame.y_domain(lines)
    body = [
        *legend,
        *_y_axis(
            frame, ticks, "action value", "left", MUTED, True, bool(lines) and all(s.discrete for s in lines)
        ),
        *_x_axis(frame),
    ]
    if not lines:
        middle = (frame.ml + frame.pw / 2, frame.top + frame.ph / 2)
        body.append(_text(*middle, "no numeric actions in the file", MUTED, "middle"))
    body += [_path(frame, s, ticks, colour) for s, (_, colour) in zip(lines, names, strict=True)]
    label = f"actions over {data.length} steps" + (f" ({note})" if note else "")
    return _svg("actions", frame, data.length, label, body)


def reward_chart(data: TrajectoryData) -> Markup:
    """The reward of each step (left axis) and the cumulative return (right axis) against the step."""
    reward = data.reward or Series("reward", np.arange(0), np.zeros(0))
    ret = data.ret or Series("cumulative return", np.arange(0), np.zeros(0))
    legend, top = _legend([("reward per step", REWARD), ("cumulative return (right axis)", RETURN)])
    frame = _Frame(data.length, top)
    left, right = frame.y_domain([reward]), frame.y_domain([ret])
    body = [
        *legend,
        *_y_axis(frame, left, "reward", "left", REWARD, grid=True),
        *_y_axis(frame, right, "cumulative return", "right", RETURN, grid=False),
        *_x_axis(frame),
        _path(frame, ret, right, RETURN),
        _path(frame, reward, left, REWARD),
    ]
    return _svg("reward", frame, data.length, f"reward and cumulative return over {data.length} steps", body)
