"""Static figures of the analysis (matplotlib's Agg canvas, no display needed).

Figures are built as :class:`matplotlib.figure.Figure` objects on an Agg canvas,
never through ``pyplot``: no global backend switch, no figure registry, so
importing this module does not change how a user's notebook plots.

``sensitivity.png``: one panel per factor, with the binned rate (points, Wilson
95% error bars, episode count under each), the GLM's partial-dependence curve
and its 95% band, and a rug of successes (top) and failures (bottom); plus a
ranking panel (effect size with its interval, significant factors in red).
``interaction.png``: the top screened pair, model surface next to the observed
cell rates. ``posterior.png``: posterior marginals against the design and the
shuffled-label noise floor.

Everything is drawn from a :class:`SensitivityResult` plus the raw factor
values (for the rug), so the report can redraw the same thing from the JSON.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.analysis.api import analyze
    >>> from trialrun.analysis.synthetic import make_sweep
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = analyze(*make_sweep(n=200).as_inputs(), out_dir=out, importance=False)
    >>> (out / "sensitivity.png").is_file()
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from trialrun.analysis.dataset import Dataset, FactorColumn
from trialrun.analysis.models import (
    FactorResult,
    InteractionView,
    PosteriorResult,
    SensitivityResult,
)
from trialrun.binning import level_key, shown_units

logger = logging.getLogger(__name__)

SIGNIFICANT = "#c0392b"
NEUTRAL = "#7f8c8d"
CURVE = "#1f77b4"
RUG_MAX = 1500
DPI = 110
#: The widest the report shows a figure, in CSS pixels: its content column
#: (``.wrap``: 1240 px less 2 x 24 px padding, less the image's 1 px borders).
#: A wider figure is scaled down to it, its text with it.
REPORT_WIDTH_PX = 1190
#: The smallest font size (em height, CSS pixels) of any text of a figure once
#: the report has scaled it to :data:`REPORT_WIDTH_PX`: 7 pt tick counts on a
#: 1716 px figure came out 7 px tall, too small to read.
MIN_TEXT_PX = 11.0
#: PNG text key holding the figure's smallest font size in points (for checks).
MIN_FONT_KEY = "trialrun:min-font-pt"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 1e-4:
        return f"{p:.0e}"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _tick(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def _label(f: FactorResult) -> str:
    units = shown_units(f.units)
    return f"{f.name} [{units}]" if units else f.name


def _y_label(result: SensitivityResult) -> str:
    if result.outcome_kind == "binary":
        return f"{result.outcome} rate"
    return f"mean {result.outcome}"


def write_sensitivity_png(result: SensitivityResult, ds: Dataset, path: Path) -> Path:
    """Draw ``sensitivity.png`` (see the module docstring) and return its path."""
    factors = sorted(result.factors, key=lambda f: f.rank)
    panels = len(factors) + 1
    ncols = min(3, panels)
    nrows = math.ceil(panels / ncols)
    fig, axes = _figure(nrows, ncols, (5.2 * ncols, 3.9 * nrows))
    columns = {c.name: c for c in ds.columns}
    rng = np.random.default_rng(np.random.SeedSequence([result.seed, 0x7A]))
    for ax, f in zip(axes.flat, factors, strict=False):
        _factor_panel(ax, f, columns[f.name], ds, result, rng)
    _ranking_panel(axes.flat[len(factors)], result)
    for ax in list(axes.flat)[panels:]:
        ax.set_visible(False)
    title = f"Sensitivity of '{result.outcome}'"
    if result.job:
        title += f" — job {result.job}"
    base = (
        (
            f"base rate {result.base_rate:.2f}"
            if result.outcome_kind == "binary"
            else f"mean {result.base_rate:.3g}"
        )
        if result.base_rate is not None
        else ""
    )
    fig.suptitle(f"{title}   (n = {result.n}, {base})", fontsize=13)
    _readable_layout(fig, 0.97)
    return _save(fig, path)


def min_font_pt(fig: Figure) -> float:
    """The smallest font size (points) that is :data:`MIN_TEXT_PX` CSS pixels
    tall when the report shows ``fig``: a figure wider than the report's column
    is scaled down to :data:`REPORT_WIDTH_PX`, so its fonts must be larger.

    Example:
        >>> round(min_font_pt(Figure(figsize=(15.6, 4))), 2)  # 1716 px shown 1190 px wide
        10.38
    """
    fig_px = float(fig.get_figwidth()) * DPI
    return MIN_TEXT_PX * 72 / DPI * fig_px / min(fig_px, REPORT_WIDTH_PX)


def _points(text: Text) -> float:
    """A text's font size in points (``get_fontsize`` is typed ``float | str``)."""
    return float(text.get_fontproperties().get_size_in_points())


def _texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text of ``fig`` (titles, labels, ticks, legends, notes)."""
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _readable_layout(fig: Figure, top: float) -> None:
    """Raise every font of ``fig`` to at least :func:`min_font_pt`, then lay it
    out (``tight_layout`` below ``top``) so the larger text gets its room."""
    floor = min_font_pt(fig)
    for ax in fig.axes:  # tick labels made at draw time take the axis' label size, not the Text's
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis.get_major_ticks()
            if ticks and _points(ticks[0].label1) < floor:
                axis.set_tick_params(which="both", labelsize=floor)
    for text in _texts(fig):
        if _points(text) < floor:
            text.set_fontsize(floor)
    fig.tight_layout(rect=(0, 0, 1, top))


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    smallest = min((_points(t) for t in _texts(fig)), default=0.0)
    fig.savefig(path, dpi=DPI, metadata={MIN_FONT_KEY: f"{smallest:.3f}"})
    return path


def _figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _subsample(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if idx.size > RUG_MAX:
        return np.sort(rng.choice(idx, RUG_MAX, replace=False))
    return idx


def _factor_panel(
    ax: Axes,
    f: FactorResult,
    col: FactorColumn,
    ds: Dataset,
    result: SensitivityResult,
    rng: np.random.Generator,
) -> None:
    binary = result.outcome_kind == "binary"
    categorical = f.kind == "categorical"
    pd_ = f.partial_dependence

    if categorical:
        pos = np.arange(len(f.bins))
        labels = [str(b.level) for b in f.bins]
        bx = pos - (0.12 if pd_ else 0.0)
        at_code = {level_key(b.level): i for i, b in enumerate(f.bins) if b.level is not None}
        code_pos = np.array([at_code[level_key(lv)] for lv in col.levels], dtype=float)
        xs_values = code_pos[col.codes] if col.codes is not None else np.zeros(ds.n)
    else:
        lows = np.array([b.low for b in f.bins], dtype=float)
        highs = np.array([b.high for b in f.bins], dtype=float)
        bx = np.sqrt(lows * highs) if f.scale == "log" and lows.min() > 0 else (lows + highs) / 2
        xs_values = col.values.astype(float)

    # partial dependence and its band
    if pd_ is not None:
        if categorical:
            at = {level_key(b.level): i for i, b in enumerate(f.bins) if b.level is not None}
            px = np.array([at[level_key(v)] for v in pd_.x], dtype=float) + 0.12
            y = np.array(pd_.y)
            ax.errorbar(
                px,
                y,
                yerr=[y - np.array(pd_.low), np.array(pd_.high) - y],
                fmt="s",
                color=CURVE,
                capsize=4,
                label="model (95% band)",
            )
        else:
            px = np.array(pd_.x, dtype=float)
            ax.fill_between(px, pd_.low, pd_.high, color=CURVE, alpha=0.2, linewidth=0)
            ax.plot(px, pd_.y, color=CURVE, linewidth=2, label="model (95% band)")

    # binned rates with intervals and counts
    rate = np.array([np.nan if b.rate is None else b.rate for b in f.bins])
    lo = np.array([np.nan if b.ci_low is None else b.ci_low for b in f.bins])
    hi = np.array([np.nan if b.ci_high is None else b.ci_high for b in f.bins])
    ok = ~np.isnan(rate)
    yerr = np.clip(np.vstack([np.nan_to_num(rate - lo)[ok], np.nan_to_num(hi - rate)[ok]]), 0, None)
    ax.errorbar(
        bx[ok],
        rate[ok],
        yerr=yerr,
        fmt="o",
        color="black",
        capsize=3,
        markersize=4,
        label="binned (Wilson 95%)" if binary else "binned mean (95% CI)",
    )

    # rug of successes / failures (or raw points for a continuous outcome)
    if binary:
        ymin, ymax = -0.1, 1.1
        succ = np.flatnonzero(ds.y == 1)
        fail = np.flatnonzero(ds.y == 0)
        for idx, yy in ((succ, 1.06), (fail, -0.06)):
            idx = _subsample(idx, rng)
            xv = xs_values[idx]
            if categorical:
                xv = xv + rng.uniform(-0.3, 0.3, size=xv.size)
            ax.plot(xv, np.full(xv.size, yy), "|", color=NEUTRAL, alpha=0.35, markersize=7)
        ax.axhline(1.0, color="0.85", linewidth=0.8, zorder=0)
        ax.axhline(0.0, color="0.85", linewidth=0.8, zorder=0)
        count_y = -0.0
    else:
        idx = _subsample(np.arange(ds.n), rng)
        xv = xs_values[idx]
        if categorical:
            xv = xv + rng.uniform(-0.3, 0.3, size=xv.size)
        ax.plot(xv, ds.y[idx], ".", color=NEUTRAL, alpha=0.25, markersize=3)
        q1, q99 = np.percentile(ds.y, [1, 99])
        pad = 0.08 * (q99 - q1 or 1.0)
        ymin, ymax = q1 - pad, q99 + pad
        count_y = ymin
    for x_, b in zip(bx, f.bins, strict=True):
        ax.annotate(
            f"{b.n}",
            (x_, count_y),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="0.45",
        )
    ax.set_ylim(ymin, ymax)

    if categorical:
        ax.set_xticks(pos, labels, rotation=20 if max(map(len, labels)) > 6 else 0)
        ax.set_xlim(-0.6, len(pos) - 0.4)
    else:
        if f.scale == "log":
            ax.set_xscale("log")
        if f.low is not None and f.high is not None and f.low < f.high:
            ax.set_xlim(f.low, f.high)
    ax.set_xlabel(_label(f))
    ax.set_ylabel(_y_label(result))

    if f.status == "constant":
        verdict = "constant: not analysed"
    elif f.p_adjusted is not None:
        verdict = f"p_adj = {_fmt_p(f.p_adjusted)}" + ("  significant" if f.significant else "")
    else:
        verdict = f"chi² p = {_fmt_p(f.chi2_p)} (no model)"
    ax.set_title(
        f"#{f.rank} {f.name}: {verdict}",
        fontsize=10.5,
        color=SIGNIFICANT if f.significant else "black",
        fontweight="bold" if f.significant else "normal",
    )
    ax.grid(alpha=0.25)
    if f.rank == 1:
        ax.legend(fontsize=7.5, loc="best", framealpha=0.8)


def _ranking_panel(ax: Axes, result: SensitivityResult) -> None:
    factors = sorted(result.factors, key=lambda f: f.rank)
    names = [f.name for f in factors]
    ypos = np.arange(len(factors))[::-1]
    has_model = any(f.effect is not None for f in factors)
    if has_model:
        vals = np.array([f.effect or 0.0 for f in factors])
        lo = np.array([(f.effect_ci or (v, v))[0] for f, v in zip(factors, vals, strict=True)])
        hi = np.array([(f.effect_ci or (v, v))[1] for f, v in zip(factors, vals, strict=True)])
        xerr = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        xlabel = (
            "effect: range of success rate over the factor"
            if result.outcome_kind == "binary"
            else f"effect: range of mean {result.outcome}"
        )
    else:
        vals = np.array([-math.log10(max(f.chi2_p, 1e-300)) if f.chi2_p else 0.0 for f in factors])
        xerr = None
        xlabel = "-log10 chi-square p (no model fitted)"
    colors = [SIGNIFICANT if f.significant else NEUTRAL for f in factors]
    ax.barh(ypos, vals, xerr=xerr, color=colors, capsize=3, alpha=0.85)
    ax.set_yticks(ypos, names)
    ax.set_xlabel(xlabel, fontsize=9)
    ends = vals + (xerr[1] if xerr is not None else 0.0)
    for y_, f, end in zip(ypos, factors, ends, strict=True):
        text = f"p_adj {_fmt_p(f.p_adjusted)}" if f.p_adjusted is not None else ""
        if text:
            ax.annotate(text, (end, y_), xytext=(4, 0), textcoords="offset points", fontsize=7.5, va="center")
    ax.margins(x=0.25)
    ax.set_title("ranking (red: significant after Holm)", fontsize=10.5)
    ax.grid(axis="x", alpha=0.25)
    ax.set_xlim(left=0)


def write_interaction_png(view: InteractionView, ds: Dataset, result: SensitivityResult, path: Path) -> Path:
    """Draw ``interaction.png``: model surface (left) and observed cells (right)."""
    cols = {c.name: c for c in ds.columns}
    cx, cy = cols[view.factors[0]], cols[view.factors[1]]
    fig, axes = _figure(1, 2, (12.5, 5.0))
    left, right = axes[0]
    vmin, vmax = (0.0, 1.0) if result.outcome_kind == "binary" else (None, None)
    model = np.array(view.model, dtype=float)

    def axis_values(col: FactorColumn, values: Sequence[object]) -> np.ndarray:
        if col.kind == "categorical":
            return np.arange(len(values), dtype=float)
        return np.array(values, dtype=float)

    gx, gy = axis_values(cx, view.x), axis_values(cy, view.y)
    mesh = left.pcolormesh(gx, gy, model, shading="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(mesh, ax=left, label=_y_label(result))
    left.set_title("model with the pairwise term", fontsize=10.5)

    rate = np.array([[np.nan if r is None else r for r in row] for row in view.rate], dtype=float)
    ex = _edges(cx, view.x_bins)
    ey = _edges(cy, view.y_bins)
    mesh2 = right.pcolormesh(ex, ey, np.ma.masked_invalid(rate), cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(mesh2, ax=right, label=_y_label(result))
    for i in range(rate.shape[0]):
        for j in range(rate.shape[1]):
            xc, yc = (ex[j] + ex[j + 1]) / 2, (ey[i] + ey[i + 1]) / 2
            if cx.kind == "continuous" and cx.is_log:
                xc = math.sqrt(ex[j] * ex[j + 1])
            if cy.kind == "continuous" and cy.is_log:
                yc = math.sqrt(ey[i] * ey[i + 1])
            txt = "–" if np.isnan(rate[i, j]) else f"{rate[i, j]:.2f}"
            right.text(
                xc,
                yc,
                f"{txt}\nn={view.n[i][j]}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if np.isnan(rate[i, j]) or rate[i, j] < 0.6 * (vmax or 1) else "black",
            )
    right.set_title("observed (cell rate and count)", fontsize=10.5)

    cells_x = [b.level for b in view.x_bins]
    cells_y = [b.level for b in view.y_bins]
    for ax, xs, ys in ((left, view.x, view.y), (right, cells_x, cells_y)):
        for col, values, setter, scale in (
            (cx, xs, ax.set_xticks, ax.set_xscale),
            (cy, ys, ax.set_yticks, ax.set_yscale),
        ):
            if col.kind == "categorical":
                setter(np.arange(len(values)), [str(v) for v in values])
            elif col.is_log:
                scale("log")
        ax.set_xlabel(_axis_label(cx.name, cx.spec.units))
        ax.set_ylabel(_axis_label(cy.name, cy.spec.units))
    p = f"p = {_fmt_p(view.p_value)}, p_adj = {_fmt_p(view.p_adjusted)}"
    fig.suptitle(f"Top interaction: {cx.name} x {cy.name}   ({p})", fontsize=12)
    _readable_layout(fig, 0.95)
    return _save(fig, path)


def _edges(col: FactorColumn, bins: list) -> np.ndarray:  # type: ignore[type-arg]
    if col.kind == "categorical":
        return np.arange(len(bins) + 1, dtype=float) - 0.5
    return np.array([bins[0].low] + [b.high for b in bins], dtype=float)


def write_posterior_png(post: PosteriorResult, result: SensitivityResult, path: Path) -> Path:
    """Draw ``posterior.png``: per factor, the posterior marginal given the
    outcome, the design marginal and the shuffled-label range."""
    n = len(post.marginals)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, (5.2 * ncols, 3.5 * nrows))
    specs = {f.name: f for f in result.factors}
    for ax, m in zip(axes.flat, post.marginals, strict=False):
        xs = np.arange(len(m.x))
        ax.fill_between(
            xs,
            m.null_low,
            m.null_high,
            step="mid",
            color=NEUTRAL,
            alpha=0.3,
            label=f"shuffled labels (x{post.n_null})",
        )
        ax.step(xs, m.design, where="mid", color="black", linestyle="--", label="design")
        ax.step(xs, m.posterior, where="mid", color=CURVE, linewidth=2, label=f"posterior ({post.method})")
        labels = [_tick(v) for v in m.x]
        step = max(1, math.ceil(len(labels) / 5))
        ax.set_xticks(xs[::step], labels[::step])
        ax.set_xlabel(_label(specs[m.name]) if m.name in specs else m.name)
        ax.set_ylabel("probability mass")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{m.name}: shift {m.shift:.3f}, null p {_fmt_p(m.null_p)}", fontsize=10.5)
        ax.grid(alpha=0.25)
    axes.flat[0].legend(fontsize=7.5)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(
        f"Posterior of the factors given {result.outcome} = {post.condition:g} (not a significance test)",
        fontsize=12,
    )
    _readable_layout(fig, 0.95)
    return _save(fig, path)


def _axis_label(name: str, units: str | None) -> str:
    """``name [units]``, or the name alone for a dimensionless factor."""
    shown = shown_units(units)
    return f"{name} [{shown}]" if shown else name
