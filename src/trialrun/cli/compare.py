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
        typer.Option("--margin", help="Tolerated drop in success rate for --fail-if-worse.", min=0, max=1),
    ] = 0.02,
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

    comparison = compare_runs(
        run_a, run_b, job=job, margin=margin, bins=bins, seed=seed, target_half_width=target_half_width
    )
    json_path, html_path = write_comparison(comparison, out or default_out_dir(run_a, run_b))
    table = Table(title=f"B = {escape(str(run_b))} vs A = {escape(str(run_a))}")
    columns = ["job", "pairs", "A success", "B success", "B - A [95% CI]", "McNemar p"]
    columns += ["return B - A", "verdict"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("job", "verdict") else "right")
    for jc in comparison.jobs.values():
        s, r = jc.success, jc.return_
        if s is None:
            table.add_row(escape(jc.job), str(jc.pairs), "-", "-", "-", "-", "-", jc.verdict)
            continue
        verdict = jc.verdict + (" (beyond margin)" if jc.worse_beyond_margin else "")
        returns = "-" if r is None else f"{r.difference:+.2f} [{r.ci.low:+.2f}, {r.ci.high:+.2f}]"
        table.add_row(
            escape(jc.job),
            str(jc.pairs),
            f"{s.a_rate:.1%}",
            f"{s.b_rate:.1%}",
            f"{s.difference:+.3f} [{s.ci.low:+.3f}, {s.ci.high:+.3f}]",
            f"{s.mcnemar_p:.3g}",
            returns,
            verdict,
            style="red" if jc.worse_beyond_margin else "",
        )
    stdout.print(table)
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
            stderr.print(
                f"[bold red]gate failed:[/] B is worse than A by more than {margin:g} (95% confidence) in: "
                f"{escape(', '.join(comparison.failing_jobs))}",
                highlight=False,
            )
            raise typer.Exit(EXIT_FAILED)
        stdout.print(f"gate passed: B is not worse than A by more than {margin:g}", highlight=False)
    raise typer.Exit(EXIT_OK)
