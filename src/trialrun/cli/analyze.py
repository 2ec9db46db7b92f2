"""``trialrun analyze``: which factors break the policy (sensitivity analysis)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trialrun.cli._console import app, guard, report_after_run, setup_logging, stdout
from trialrun.errors import InputError


@app.command()
@guard
def analyze(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A run directory (factor specs from its manifest).")
    ] = None,
    episodes: Annotated[
        Path | None, typer.Option("--episodes", help="Records from elsewhere (episodes.jsonl).")
    ] = None,
    factors: Annotated[
        Path | None, typer.Option("--factors", help="Factor specs (YAML) for --episodes.")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Analyse only this job.")] = None,
    outcome: Annotated[str, typer.Option("--outcome", help="An outcome key of the records.")] = "success",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default RUN_DIR/analysis).")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="glm (default) or posterior (extra 'posterior').")
    ] = "glm",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level (Holm-adjusted).")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation and bootstrap draws.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Which factors break the policy: tested effects with intervals (sensitivity.json, sensitivity.png)."""
    from trialrun.analysis import analyze_records, analyze_run, format_analysis_table

    setup_logging(verbose)
    if run_dir is not None and (episodes is not None or factors is not None):
        raise InputError("give either RUN_DIR or --episodes with --factors, not both")
    if run_dir is None:
        if episodes is None or factors is None:
            raise InputError("give a RUN_DIR, or --episodes FILE.jsonl with --factors FACTORS.yaml")
        results = {
            job or "records": analyze_records(
                episodes,
                factors,
                outcome=outcome,
                out_dir=out,
                job=job,
                method=method,
                alpha=alpha,
                seed=seed,
            )
        }
    else:
        results = analyze_run(
            run_dir, job=job, outcome=outcome, out_dir=out, method=method, alpha=alpha, seed=seed
        )
    for result in results.values():
        stdout.print(format_analysis_table(result))
    if run_dir is not None and out is None and (run_dir / "report" / "index.html").exists():
        # Keep the run's report in step with its new analysis section.
        report_after_run(run_dir, quiet=False)
