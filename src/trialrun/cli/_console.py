"""What every command module shares: the typer apps, the two consoles, the
error guard and exit codes, logging, the progress bar and number formatting.

Errors a user can cause (config, arguments, files) print one message naming
the file and field and exit with :data:`EXIT_BAD_INPUT`, without a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from trialrun.errors import RunWriteError, TrialrunError
from trialrun.runfiles.schema import EpisodeRecord, JobState

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

P = ParamSpec("P")
R = TypeVar("R")


def guard(command: Callable[P, R]) -> Callable[P, R]:
    """Turn errors a user can cause into one message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RunWriteError as exc:
            raise fail(
                f"{exc}\nEpisodes recorded so far are kept; fix the problem and continue with: "
                "trialrun run --resume RUN_DIR",
                EXIT_FAILED,
            ) from None
        except TrialrunError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            stderr.print("interrupted; continue with: trialrun run --resume RUN_DIR")
            raise typer.Exit(130) from None

    return wrapper


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``message`` as the command's one error line; raise the returned exit."""
    # User text (config values, paths) may contain [brackets]: never parse it as markup.
    stderr.print(f"[bold red]trialrun: error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich: INFO with ``--verbose``, else WARNING."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
        force=True,
    )


class ProgressObserver:
    """Draws one bar per job: episodes done / planned, episodes per second."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}

    def job_started(self, job: str, planned: int, done: int) -> None:
        self.tasks[job] = self.progress.add_task(escape(job), total=planned, completed=done, rate="")
        self.started[job] = time.monotonic()

    def episode_finished(self, record: EpisodeRecord) -> None:
        self._advance(record.job, 1)

    def episodes_finished(self, job: str, records: Sequence[EpisodeRecord]) -> None:
        """A block of records (one step's): one bar update for all of them."""
        self._advance(job, len(records))

    def _advance(self, job: str, count: int) -> None:
        task = self.tasks[job]
        self.progress.advance(task, count)
        elapsed = max(time.monotonic() - self.started[job], 1e-9)
        done_now = self.progress.tasks[task].completed
        self.progress.update(task, rate=f"{done_now / elapsed:.1f} ep/s")

    def job_finished(self, job: str, status: JobState, error: str | None) -> None:
        label = escape(job) if status == "completed" else f"{escape(job)} [red]({status})[/]"
        self.progress.update(self.tasks[job], description=label)

    def job_phase(self, job: str, phase: str) -> None:
        """A job's bar says "compiling" while its simulator compiles; the
        rate starts counting when episodes run."""
        label = escape(job) if phase == "running" else f"{escape(job)} [yellow]({phase})[/]"
        self.progress.update(self.tasks[job], description=label)
        self.started[job] = time.monotonic()


def progress_bar(eta: bool) -> Progress:
    """One bar per job: episodes done / planned, episodes per second, elapsed (and ETA)."""
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=stderr, transient=False)


def report_after_run(run_dir: Path, quiet: bool) -> None:
    """Build the run's report; a failure is logged and never changes the run's exit code."""
    from trialrun.report import build_report

    try:
        path = build_report(run_dir)
    except Exception as exc:  # the run's results are on disk either way
        logging.getLogger("trialrun.report").debug("report build failed", exc_info=True)
        stderr.print(
            f"[yellow]warning:[/] could not build the report: {escape(str(exc))}; "
            f"try again with: trialrun report {escape(str(run_dir))}",
            highlight=False,
            soft_wrap=True,
        )
        return
    if not quiet:
        stdout.print(f"report in {escape(str(path))}", highlight=False)


def fmt_ci(value: float | None, low: float | None, high: float | None, pct: bool) -> str:
    """``value [low, high]`` as a percentage or with one decimal; ``-`` for no value."""
    if value is None:
        return "-"
    if pct:
        return f"{value:.1%} [{low:.1%}, {high:.1%}]"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def exact(value: object) -> str:
    """A value as its record shows it (full float precision, true/false/null)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def short(value: object) -> str:
    """A float with 4 significant digits, anything else as it prints."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
