"""``trialrun analyze``: which factors break the policy (sensitivity analysis)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trialrun.cli._console import app, guard, report_after_run, setup_logging, stdout
from trialrun.errors import InputError
from trialrun.runfiles import (
    ANALYSIS_DIR,
    INTERACTION_FIGURE,
    POSTERIOR_FIGURE,
    SENSITIVITY_FIGURE,
    SENSITIVITY_FILE,
    RunLayout,
)

#: What the analysis writes, in the order ``trialrun analyze`` lists it.
OUTPUT_NAMES = (SENSITIVITY_FILE, SENSITIVITY_FIGURE, INTERACTION_FIGURE, POSTERIOR_FIGURE)

_Stamp = tuple[int, int, int]


def _outputs(root: Path) -> dict[Path, _Stamp]:
    """The analysis files under ``root`` (itself and one job folder deep) with
    (inode, mtime, size), to tell afterwards which ones this command wrote."""
    found: dict[Path, _Stamp] = {}
    for folder in [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]:
        for name in OUTPUT_NAMES:
            path = folder / name
            try:
                st = path.stat()
            except OSError:
                continue
            found[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def written_outputs(root: Path, before: dict[Path, _Stamp]) -> list[Path]:
    """The analysis files under ``root`` that are new or changed since ``before``
    (an atomic write makes a new inode; a figure rewritten in place a new mtime),
    folder by folder, each in :data:`OUTPUT_NAMES` order."""
    return [path for path, stamp in _outputs(root).items() if before.get(path) != stamp]


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
    # Where the outputs land (the analysis API's defaults), to list what was written there.
    if out is not None:
        root = out
    elif run_dir is not None:
        root = RunLayout(run_dir).analysis_dir
    else:
        root = (episodes or Path()).parent / ANALYSIS_DIR
    before = _outputs(root)
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
    for path in written_outputs(root, before):  # a user should not have to guess where the figures went
        stdout.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)
    if run_dir is not None and out is None and (run_dir / "report" / "index.html").exists():
        # Keep the run's report in step with its new analysis section.
        report_after_run(run_dir, quiet=False)
