"""The CLI's view of a sensitivity analysis: :func:`format_analysis_table`
turns a :class:`~trialrun.analysis.models.SensitivityResult` into a rich table
(``trialrun analyze`` prints it).
"""

from __future__ import annotations

from rich.table import Table

from trialrun.analysis.models import SensitivityResult


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def format_analysis_table(result: SensitivityResult) -> Table:
    """The per-factor results as a rich table, strongest factor first; notes and
    the top interaction go in the caption.

    Example:
        >>> from trialrun.analysis.api import analyze
        >>> from trialrun.analysis.synthetic import make_sweep
        >>> table = format_analysis_table(analyze(*make_sweep(n=100).as_inputs()))
        >>> table.row_count
        6
    """
    what = "success rate" if result.outcome_kind == "binary" else f"mean {result.outcome}"
    base = f"{result.base_rate:.3g}" if result.base_rate is not None else "–"
    title = f"Sensitivity of '{result.outcome}'"
    if result.job:
        title += f" (job {result.job})"
    title += f": n = {result.n}, {what} = {base}"
    table = Table(title=title, title_justify="left")
    test = result.model.test if result.model else "likelihood-ratio"
    table.add_column("#", justify="right")
    table.add_column("factor")
    table.add_column("kind")
    table.add_column("p (LRT)" if test == "likelihood-ratio" else "p (F)", justify="right")
    table.add_column("p adj. (Holm)", justify="right")
    table.add_column("signif.", justify="center")
    table.add_column(f"effect on {what} [95% CI]", justify="right")
    table.add_column("chi² p (bins)", justify="right")
    table.add_column("GBT importance (null p)", justify="right")
    for f in sorted(result.factors, key=lambda f: f.rank):
        effect = "–"
        if f.effect is not None:
            effect = f"{f.effect:.3g}"
            if f.effect_ci is not None:
                effect += f" [{f.effect_ci[0]:.3g}, {f.effect_ci[1]:.3g}]"
        imp = "–"
        if f.importance is not None:
            imp = f"{f.importance:.3g} ({_p(f.importance_null_p)})"
        kind = f.kind + (", log" if f.scale == "log" else "")
        if f.status == "constant":
            kind += ", constant"
        table.add_row(
            str(f.rank),
            f"[bold]{f.name}[/bold]" if f.significant else f.name,
            kind,
            _p(f.p_value),
            _p(f.p_adjusted),
            "[bold red]yes[/bold red]" if f.significant else "no",
            effect,
            _p(f.chi2_p),
            imp,
        )
    caption = []
    if result.interactions:
        top = result.interactions[0]
        caption.append(
            f"top interaction: {top.factors[0]} x {top.factors[1]} "
            f"(p = {_p(top.p_value)}, Holm {_p(top.p_adjusted)}"
            + (", significant)" if top.significant else ")")
        )
    caption += [f"note: {n}" for n in result.notes]
    if caption:
        table.caption = "\n".join(caption)
        table.caption_justify = "left"
    return table
