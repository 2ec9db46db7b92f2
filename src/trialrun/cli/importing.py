"""``trialrun import arena|csv|jsonl FILE``: records made elsewhere -> a run
directory that ``report``, ``analyze`` and ``compare`` read (docs/importing.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trialrun.cli._console import app, guard, setup_logging, stdout
from trialrun.runfiles.schema import EpisodeRecord

import_app = typer.Typer(
    help="Import records made elsewhere (Isaac Lab Arena, a CSV table, JSONL) into a run directory.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

FactorsOpt = Annotated[
    Path | None,
    typer.Option("--factors", help="Factor specs (YAML, as for analyze); default: inferred from the data."),
]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Exact run directory to create.")]
OutputOpt = Annotated[
    Path, typer.Option("--output-dir", "-o", help="Parent folder of the new run directory.")
]
NameOpt = Annotated[str | None, typer.Option("--name", help="Run name (default: the file's name).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")]


def _import(
    fmt: str,
    file: Path,
    read: Callable[[], list[EpisodeRecord]],
    factors: Path | None,
    run_dir: Path | None,
    output_dir: Path,
    name: str | None,
    details: dict[str, object],
    flags: Sequence[tuple[str, object]] = (),
) -> None:
    from trialrun.importers import choose_run_dir, default_run_name, job_specs, write_imported_run

    records = read()
    specs = job_specs(records, factors, file)
    run_name = name or default_run_name(file)
    target = choose_run_dir(run_dir, output_dir, run_name)
    source: dict[str, object] = {
        "format": fmt,
        "file": str(file.resolve()),
        "factors_file": str(factors.resolve()) if factors else None,
        "factors_inferred": factors is None,
        **details,
    }
    write_imported_run(
        records,
        specs,
        run_dir=target,
        name=run_name,
        source=source,
        command=_command(fmt, file, [*flags, ("--factors", factors), ("--name", name)], target),
    )
    jobs: dict[str, int] = {}
    for rec in records:
        jobs[rec.job] = jobs.get(rec.job, 0) + 1
    listing = ", ".join(f"{job} ({n})" for job, n in jobs.items())
    stdout.print(
        f"imported {len(records)} episode(s) of {len(jobs)} job(s): {escape(listing)}\n"
        f"run directory: {escape(str(target))}\n"
        f"next: trialrun report {escape(str(target))} · trialrun analyze {escape(str(target))}",
        highlight=False,
        soft_wrap=True,
    )


def _command(fmt: str, file: Path, flags: Sequence[tuple[str, object]], run_dir: Path) -> list[str]:
    """The import as a command line (for the manifest): what was given, with
    the run directory it chose."""
    argv = ["trialrun", "import", fmt, str(file)]
    for flag, value in flags:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                argv += [flag, str(item)]
    return [*argv, "--run-dir", str(run_dir)]


@import_app.command("arena")
@guard
def import_arena(
    file: Annotated[Path, typer.Argument(help="Arena's episode_summary.jsonl or episode_results*.jsonl.")],
    factors: FactorsOpt = None,
    job_name: Annotated[
        str | None,
        typer.Option("--job-name", help="Put every row in this one job (a sweep run as several Arena jobs)."),
    ] = None,
    run_dir: RunDirOpt = None,
    output_dir: OutputOpt = Path("runs"),
    name: NameOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Isaac Lab Arena's per-episode JSONL (both row shapes) -> a run directory."""
    from trialrun.importers import read_arena

    setup_logging(verbose)
    _import(
        "arena",
        file,
        lambda: read_arena(file, job_name=job_name),
        factors,
        run_dir,
        output_dir,
        name,
        {"job_name": job_name},
        [("--job-name", job_name)],
    )


@import_app.command("csv")
@guard
def import_csv(
    file: Annotated[Path, typer.Argument(help="A CSV table with a header row (e.g. episode_metrics.csv).")],
    episode: Annotated[str, typer.Option("--episode", help="Column of the episode number.")],
    factor: Annotated[list[str] | None, typer.Option("--factor", help="A factor column (repeat).")] = None,
    outcome: Annotated[
        list[str] | None, typer.Option("--outcome", help="An outcome column (repeat).")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Column of the job name.")] = None,
    job_name: Annotated[
        str | None, typer.Option("--job-name", help="Job of every row (default: the file's name).")
    ] = None,
    success: Annotated[
        str | None, typer.Option("--success", help="Column of the success flag (true/false or 1/0).")
    ] = None,
    factors: FactorsOpt = None,
    run_dir: RunDirOpt = None,
    output_dir: OutputOpt = Path("runs"),
    name: NameOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """A CSV table of episodes -> a run directory."""
    from trialrun.importers import read_table

    setup_logging(verbose)
    factor_cols, outcome_cols = list(factor or []), list(outcome or [])
    _import(
        "csv",
        file,
        lambda: read_table(
            file,
            episode=episode,
            factors=factor_cols,
            outcomes=outcome_cols,
            job=job,
            job_name=job_name,
            success=success,
        ),
        factors,
        run_dir,
        output_dir,
        name,
        {
            "episode": episode,
            "factors": factor_cols,
            "outcomes": outcome_cols,
            "job": job,
            "job_name": job_name,
            "success": success,
        },
        [
            ("--episode", episode),
            ("--factor", factor_cols),
            ("--outcome", outcome_cols),
            ("--job", job),
            ("--job-name", job_name),
            ("--success", success),
        ],
    )


@import_app.command("jsonl")
@guard
def import_jsonl(
    file: Annotated[Path, typer.Argument(help="trialrun-shaped records (no run name or timestamps needed).")],
    factors: FactorsOpt = None,
    run_dir: RunDirOpt = None,
    output_dir: OutputOpt = Path("runs"),
    name: NameOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """trialrun-shaped records made elsewhere -> a run directory."""
    from trialrun.importers import read_jsonl

    setup_logging(verbose)
    _import("jsonl", file, lambda: read_jsonl(file), factors, run_dir, output_dir, name, {})
