"""``trialrun compare``: paired comparison of two runs, with an optional gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import EXIT_FAILED, EXIT_OK, app, guard, report_after_run, stderr, stdout


@app.command()
@guard
def compare(
    run_a: Annotated[Path, typer.Argument(help="The baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="The candidate run directory (B).")],
    job: Annotated[str | None, typer.Option("--job", help="Compare only this job.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default RUN_B/compare/vs-<RUN_A name>).")
    ] = None,
    fail_if_worse: Annotated[
        bool,
        typer.Option(
            "--fail-if-worse", help="Exit 1 when B is worse than A beyond --margin (95% confidence)."
        ),
    ] = False,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            help="Tolerated drop for --fail-if-worse, and with --sequential the equivalence margin, in the "
            "metric's units (rate points for success).",
            min=0,
        ),
    ] = 0.02,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="success, return or an outcome term (default: success when the job reports success, "
            "else return).",
        ),
    ] = None,
    sequential: Annotated[
        bool,
        typer.Option(
            "--sequential",
            help="Also report where an anytime-valid sequential test would have stopped (planned order); "
            "it also decides 'equivalent' within --margin.",
        ),
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", help="With --sequential: look at the pairs every this many.", min=1)
    ] = 10,
    bins: Annotated[
        int | None,
        typer.Option(
            "--bins", help="Bins per continuous factor (default: ~25 pairs per bin, 3-10).", min=1, max=50
        ),
    ] = None,
    target_half_width: Annotated[
        float | None,
        typer.Option("--target-half-width", help="Note jobs whose B - A interval is wider than this.", min=0),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.", min=0)] = 0,
) -> None:
    """Paired comparison of run B against run A on their shared episodes (writes comparison.json and
    compare.html). Exit 0, or 1 with --fail-if-worse when B is worse beyond the margin; 2 when the runs
    cannot be compared."""
    from trialrun.compare import compare_runs, default_out_dir, write_comparison
    from trialrun.execution.stopping import stop_phrase

    comparison = compare_runs(
        run_a,
        run_b,
        job=job,
        margin=margin,
        bins=bins,
        seed=seed,
        target_half_width=target_half_width,
        metric=metric,
        sequential=sequential,
        batch=batch,
    )
    json_path, html_path = write_comparison(comparison, out or default_out_dir(run_a, run_b))
    several = len(comparison.jobs) > 1
    table = Table(title=f"B = {escape(str(run_b))} vs A = {escape(str(run_a))}")
    columns = ["job", "pairs", "metric", "A", "B", "B - A [95% CI]", "test", "p"]
    columns += ["p (Holm)"] if several else []
    columns += ["success B - A", "verdict"]
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("job", "metric", "test", "verdict") else "right"
        )
    name = escape(comparison.metric or "")
    for jc in comparison.jobs.values():
        mc, s = jc.metric_comparison, jc.success
        if mc is None:
            table.add_row(
                escape(jc.job),
                str(jc.pairs),
                escape(jc.metric or "-"),
                *["-"] * (len(columns) - 4),
                jc.verdict,
            )
            continue
        binary = mc.kind == "binary"
        value_format = ".1%" if binary else ".4g"
        digits = ".3f" if binary else ".2f"
        verdict = jc.verdict + (" (beyond margin)" if jc.worse_beyond_margin else "")
        row = [
            escape(jc.job),
            str(jc.pairs),
            escape(mc.metric),
            _side(mc.a_value, jc.pairs, binary, value_format),
            _side(mc.b_value, jc.pairs, binary, value_format),
            f"{mc.difference:+{digits}} [{mc.ci.low:+{digits}}, {mc.ci.high:+{digits}}]",
            escape(mc.test),
            f"{mc.p_value:.3g}",
        ]
        if several:
            row.append("-" if mc.p_adjusted is None else f"{mc.p_adjusted:.3g}")
        row.append("-" if s is None else f"{s.difference:+.3f} [{s.ci.low:+.3f}, {s.ci.high:+.3f}]")
        row.append(verdict)
        table.add_row(*row, style="red" if jc.worse_beyond_margin else "")
    stdout.print(table)
    stdout.print(
        f"metric: {escape(comparison.metric or '-')}: {escape(comparison.metric_reason or '')}",
        highlight=False,
    )
    if several:
        stdout.print(
            f"overall (Holm-adjusted across {len(comparison.jobs)} jobs): {comparison.overall_verdict}",
            highlight=False,
        )
    for jc in comparison.jobs.values():
        sq = jc.sequential
        if sq is None:
            continue
        if sq.decision == "undecided":
            where = (
                f"undecided after all {sq.stopped_at} pairs "
                f"(max e-value {sq.max_e_value:.3g} < {1 / sq.alpha:g})"
            )
        elif sq.decision == "equivalent":
            where = (
                f"would have stopped at pair {sq.stopped_at} of {sq.planned}: equivalent within "
                f"+-{sq.margin:g} (both one-sided e-values >= {1 / sq.alpha:g}), saving {sq.saved} episodes "
                "per run"
            )
        elif sq.at_final_look:
            where = (
                f"'{sq.decision}' at the final look (pair {sq.stopped_at}): |B only - A only| reached the "
                f"truncated test's critical value {sq.final_critical}"
            )
        else:
            where = (
                f"would have stopped at pair {sq.stopped_at} of {sq.planned} with '{sq.decision}' "
                f"(e-value {sq.e_value:.3g} >= {1 / sq.alpha:g}), saving {sq.saved} episodes per run"
            )
        clip = f"; {sq.clipped} differences clipped to +-{sq.bound:.4g}" if sq.clipped else ""
        stdout.print(
            f"sequential ({escape(sq.metric)}, looks every {sq.batch} pairs): "
            f"{escape(jc.job)}: {where}{clip}",
            highlight=False,
        )
    for jc in comparison.jobs.values():
        for side, se in (("A", jc.stopped_early_a), ("B", jc.stopped_early_b)):
            if se is not None:
                stdout.print(
                    f"note: {escape(jc.job)}: run {side} was stopped early ({stop_phrase(se)} on "
                    f"{escape(se.metric)} after {se.at_episode} of {se.planned} episodes; {se.saved} saved)",
                    highlight=False,
                )
    for jc in comparison.jobs.values():
        extra = ""
        if jc.only_in_a or jc.only_in_b:
            extra = f" ({jc.only_in_a} only in A, {jc.only_in_b} only in B)"
        stdout.print(
            f"{escape(jc.job)}: {jc.pairs} shared completed episodes compared{extra}", highlight=False
        )
        if jc.meets_target is False:
            stdout.print(
                f"note: {escape(jc.job)}: the interval half-width {jc.half_width:.3f} is wider than "
                f"the target {jc.target_half_width:.3f}; run more episodes",
                highlight=False,
            )
    for side, names in (("A", comparison.jobs_only_in_a), ("B", comparison.jobs_only_in_b)):
        if names:
            stdout.print(f"not compared (only in run {side}): {escape(', '.join(names))}", highlight=False)
    stdout.print(f"comparison in {escape(str(html_path))} and {escape(str(json_path.name))}", highlight=False)
    if out is None and (run_b / "report" / "index.html").exists():
        # The comparison is stored in run B: keep B's report in step with it.
        report_after_run(run_b, quiet=True)
    if fail_if_worse:
        if comparison.gate_failed:
            holm = " (Holm-adjusted across jobs)" if several else ""
            stderr.print(
                f"[bold red]gate failed:[/] B is worse than A on {name} by more than "
                f"{margin:g} (95% confidence{holm}) in: {escape(', '.join(comparison.failing_jobs))}",
                highlight=False,
            )
            raise typer.Exit(EXIT_FAILED)
        stdout.print(
            f"gate passed: B is not worse than A on {name} by more than {margin:g}",
            highlight=False,
        )
    raise typer.Exit(EXIT_OK)


def _side(value: float, pairs: int, binary: bool, value_format: str) -> str:
    """One run's value of the metric; a rate carries its Wilson 95% interval."""
    from trialrun.compare.page import rate_with_interval

    if binary:
        return rate_with_interval(round(value * pairs), pairs)
    return f"{value:{value_format}}"
