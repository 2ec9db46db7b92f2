"""The ``trialrun`` command line.

Errors a user can cause (config, arguments, files) print one message naming
the file and field and exit with code 2, without a traceback. A run exits 0
when every job completed and 1 when any job failed or a run file could not be
written.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from trialrun.errors import TrialrunError
from trialrun.recording.files import RunWriteError
from trialrun.recording.schema import EpisodeRecord, JobState, Summary

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="trialrun",
    help="Evaluate control and robot policies in simulation across environment variations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List what can be evaluated.", no_args_is_help=True)
app.add_typer(list_app, name="list")

# Piped output (CI logs, tests) gets a wide console so tables do not wrap.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

F = TypeVar("F", bound=Callable[..., Any])


def _guard(command: F) -> F:
    """Turn errors a user can cause into one message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrialrunError as exc:
            raise _fail(str(exc)) from None
        except RunWriteError as exc:
            raise _fail(
                f"{exc}\nEpisodes recorded so far are kept; fix the problem and continue with: "
                "trialrun run --resume RUN_DIR",
                EXIT_FAILED,
            ) from None
        except KeyboardInterrupt:
            stderr.print("interrupted; continue with: trialrun run --resume RUN_DIR")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
        force=True,
    )


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    stderr.print(f"[bold red]trialrun: error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


class _ProgressObserver:
    """Draws one bar per job: episodes done / planned, episodes per second."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}

    def job_started(self, job: str, planned: int, done: int) -> None:
        self.tasks[job] = self.progress.add_task(job, total=planned, completed=done, rate="")
        self.started[job] = time.monotonic()

    def episode_finished(self, record: EpisodeRecord) -> None:
        task = self.tasks[record.job]
        self.progress.advance(task)
        elapsed = max(time.monotonic() - self.started[record.job], 1e-9)
        done_now = self.progress.tasks[task].completed
        self.progress.update(task, rate=f"{done_now / elapsed:.1f} ep/s")

    def job_finished(self, job: str, status: JobState, error: str | None) -> None:
        label = job if status == "completed" else f"{job} [red]({status})[/]"
        self.progress.update(self.tasks[job], description=label)


def _fmt_ci(value: float | None, low: float | None, high: float | None, pct: bool) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{value:.1%} [{low:.1%}, {high:.1%}]"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def summary_table(summary: Summary) -> Table:
    """The end-of-run table: one row per job, with 95% intervals."""
    table = Table(title=f"run {summary.run}", show_lines=False)
    for column in (
        "job",
        "status",
        "episodes",
        "success [95% CI]",
        "return [95% CI]",
        "IQM return",
        "length",
    ):
        table.add_column(column, justify="left" if column in ("job", "status") else "right")
    for job in summary.jobs.values():
        style = "" if job.status == "completed" else "red"
        sci, rci = job.success_ci, job.return_ci
        table.add_row(
            job.job,
            job.status or "-",
            f"{job.episodes}/{job.planned}",
            _fmt_ci(job.success_rate, sci and sci.low, sci and sci.high, pct=True),
            _fmt_ci(job.return_mean, rci and rci.low, rci and rci.high, pct=False),
            "-" if job.return_iqm is None else f"{job.return_iqm:.1f}",
            "-" if job.length_mean is None else f"{job.length_mean:.1f}",
            style=style,
        )
    return table


@app.command()
@_guard
def run(
    target: Annotated[
        Path, typer.Argument(help="The run file (YAML), or with --resume an existing run directory.")
    ],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: --set jobs.0.episodes=50.")
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Parent folder of new run directories.")
    ] = Path("runs"),
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Exact run directory (instead of <output-dir>/<name>-<time>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Run only the episodes missing from an existing run.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Run every job of a run file and write episodes.jsonl, manifest.json and summary.json."""
    from trialrun.config import load_run_config
    from trialrun.execution.runner import default_run_dir, load_for_resume, run_evaluation

    _setup_logging(verbose)
    config_path: Path | None
    if resume and target.is_dir():
        if overrides:
            raise _fail("--set cannot be combined with resuming a run directory (its config is fixed)")
        if run_dir is not None and run_dir != target:
            raise _fail("give the run directory once: trialrun run --resume RUN_DIR")
        config, manifest = load_for_resume(target)
        directory = target
        config_path = Path(manifest.config_path) if manifest.config_path else None
    else:
        if target.is_dir():
            raise _fail(f"{target} is a directory; to continue a run use: trialrun run --resume {target}")
        config = load_run_config(target, overrides)
        config_path = target.resolve()
        if resume and run_dir is None:
            raise _fail("--resume with a run file needs --run-dir RUN_DIR (or pass the run directory itself)")
        directory = run_dir if run_dir is not None else default_run_dir(output_dir, config.name)

    if quiet:
        result = run_evaluation(config, directory, resume=resume, config_path=config_path, argv=sys.argv)
    else:
        stdout.print(f"run [bold]{config.name}[/] -> {directory}", highlight=False)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=False,
        )
        with progress:
            result = run_evaluation(
                config,
                directory,
                resume=resume,
                config_path=config_path,
                observer=_ProgressObserver(progress),
                argv=sys.argv,
            )
        stdout.print(summary_table(result.summary))
        for job, error in result.errors.items():
            stderr.print(f"[red]job '{job}' failed:[/] {error}", highlight=False)
        stdout.print(f"results in {result.run_dir}", highlight=False)
    raise typer.Exit(result.exit_code)


@list_app.command("envs")
@_guard
def list_envs(
    pattern: Annotated[str | None, typer.Argument(help="Only ids containing this text.")] = None,
) -> None:
    """Environment ids that jobs can use (Gymnasium's registry)."""
    import gymnasium as gym

    import trialrun.envs  # noqa: F401

    table = Table("id", "entry point", "max steps")
    for env_id, spec in sorted(gym.registry.items()):
        if pattern and pattern.lower() not in env_id.lower():
            continue
        table.add_row(env_id, str(spec.entry_point), str(spec.max_episode_steps or "-"))
    stdout.print(table)


@list_app.command("policies")
@_guard
def list_policies() -> None:
    """Registered policy names (any 'package.module:factory' works too)."""
    from trialrun.policies.registry import available_policies

    table = Table("name", "description")
    for name, entry in sorted(available_policies().items()):
        table.add_row(name, entry.description)
    stdout.print(table)


@list_app.command("variations")
@_guard
def list_variations(
    env_id: Annotated[
        str | None, typer.Argument(help="An env id: show what each variation can change in it.")
    ] = None,
) -> None:
    """Variation types, and for ENV the bodies/geoms/lights/cameras they can target."""
    from trialrun.envs.build import check_env_id, make_env
    from trialrun.variations.registry import available_variations

    classes = available_variations()
    if env_id is None:
        table = Table("type", "applies at", "parameters", "what it does")
        for name, cls in sorted(classes.items()):
            params = ", ".join(cls.Params.model_fields) or "-"
            doc = (cls.__doc__ or "").strip().split("\n")[0]
            table.add_row(name, cls.applies_at, params, doc)
        stdout.print(table)
        return
    check_env_id(env_id, field="ENV")
    env = make_env(env_id, {})
    try:
        table = Table("variation", "target", "nominal", "units", "note", title=f"variations for {env_id}")
        for name, cls in sorted(classes.items()):
            for target in cls.targets(env):
                table.add_row(name, target.target, _short(target.nominal), target.units or "", target.note)
        stdout.print(table)
    finally:
        env.close()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
