"""``trialrun suite``: run evaluators of a suites file now, as a trainer's EvalManager would."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import (
    EXIT_FAILED,
    EXIT_OK,
    ProgressObserver,
    app,
    fail,
    fmt_ci,
    guard,
    progress_bar,
    setup_logging,
    stderr,
    stdout,
)
from trialrun.errors import ConfigError

if TYPE_CHECKING:
    from trialrun.suites.result import EvalResult


@app.command()
@guard
def suite(
    suites_file: Annotated[Path, typer.Argument(help="The suites file (YAML) with named evaluators.")],
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="What to evaluate: a checkpoint file or directory (its newest checkpoint), a registered "
            "policy, package.module:factory, or a YAML mapping {type: ..., kwargs: {...}}. "
            "Default: each job's own policy.",
        ),
    ] = None,
    policy_type: Annotated[
        str | None,
        typer.Option(
            "--policy-type", help="Policy type that loads the checkpoint (default: from its suffix)."
        ),
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Option("--name", help="Evaluator to run (repeatable; default: every enabled one)."),
    ] = None,
    epoch: Annotated[
        int | None, typer.Option("--epoch", help="Training epoch (names the run dir).", min=0)
    ] = None,
    global_step: Annotated[
        int | None, typer.Option("--global-step", help="Trainer step the loggers record at.", min=0)
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Overrides the file's output_dir.")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Exact run directory (with a single --name).")
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write to the file's loggers.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Run evaluators of a suites file now (as a trainer's EvalManager would) and log their metrics."""
    from trialrun.policies.spec import spec_from_text
    from trialrun.suites.manager import EvalManager

    setup_logging(verbose)
    manager = EvalManager.from_yaml(suites_file, output_dir=output_dir, loggers=[] if no_log else None)
    selected = list(names) if names else manager.enabled()
    if not selected:
        raise fail(f"{suites_file}: no enabled evaluator to run (pass --name EVALUATOR)")
    if run_dir is not None and len(selected) != 1:
        raise fail("--run-dir needs exactly one --name EVALUATOR")
    spec = spec_from_text(policy, policy_type) if policy else None
    if policy_type and not policy:
        raise fail("--policy-type needs --policy CHECKPOINT")
    for name in selected:
        try:
            manager.preflight(name, policy=spec)
        except ConfigError as exc:
            if exc.file is None and (exc.field or "").startswith("policy"):
                raise exc.located(file="--policy") from None
            raise
    results: list[EvalResult] = []
    with manager:
        for name in selected:
            observer = None
            progress: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
            if not quiet:
                stdout.print(f"evaluator [bold]{escape(name)}[/]", highlight=False)
                bar = progress_bar(eta=False)
                progress, observer = bar, ProgressObserver(bar)
            with progress:
                result = manager.run(
                    name,
                    policy=spec,
                    epoch=epoch,
                    global_step=global_step,
                    run_dir=run_dir,
                    in_process=True,
                    observer=observer,
                )
            results.append(result)
    if not quiet:
        _print_results(suites_file, results)
    for r in results:
        if not r.ok:
            message = escape(r.error or "")
            stderr.print(f"[red]evaluator '{escape(r.evaluator)}' failed:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


def _print_results(suites_file: Path, results: list[EvalResult]) -> None:
    """One table row per evaluator, then where each one's run directory is."""
    table = Table(title=f"suite {escape(str(suites_file))}")
    for column in ("evaluator", "status", "episodes", "success [95% CI]", "return", "length", "seconds"):
        table.add_column(column, justify="left" if column in ("evaluator", "status") else "right")
    for r in results:
        table.add_row(
            escape(r.evaluator),
            r.status,
            str(r.episodes),
            fmt_ci(r.success_rate, r.success_ci_low, r.success_ci_high, pct=True),
            "-" if r.return_mean is None else f"{r.return_mean:.1f}",
            "-" if r.length_mean is None else f"{r.length_mean:.1f}",
            f"{r.eval_seconds:.1f}",
            style="" if r.ok else "red",
        )
    stdout.print(table)
    for r in results:
        stdout.print(f"{escape(r.evaluator)}: {escape(str(r.run_dir))}", highlight=False)
