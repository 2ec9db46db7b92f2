"""``trialrun run``: run (or resume) a run file with a progress bar and an end table.

A run exits 0 when every job completed, 1 when any job failed or a run file
could not be written, and 130 when the user pressed Ctrl+C (the running job is
marked ``interrupted``; ``--resume`` continues it). A job stopped early by ``--stop-when`` (against
``--baseline``) is completed: the table shows ``episodes/planned`` and a note
says how many episodes the stop saved.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import (
    ProgressObserver,
    app,
    fail,
    fmt_ci,
    guard,
    progress_bar,
    report_after_run,
    setup_logging,
    stderr,
    stdout,
)
from trialrun.errors import ConfigError
from trialrun.runfiles.schema import Summary

if TYPE_CHECKING:
    from trialrun.config import RunConfig
    from trialrun.execution.executors import ManagedExecutor
    from trialrun.execution.runner import RunResult
    from trialrun.execution.stopping import StopRule


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
            escape(job.job),
            job.status or "-",
            f"{job.episodes}/{job.planned}",
            "not reported"
            if job.success_status == "absent"
            else fmt_ci(job.success_rate, sci.low if sci else None, sci.high if sci else None, pct=True),
            fmt_ci(job.return_mean, rci.low if rci else None, rci.high if rci else None, pct=False),
            "-" if job.return_iqm is None else f"{job.return_iqm:.1f}",
            "-" if job.length_mean is None else f"{job.length_mean:.1f}",
            style=style,
        )
    return table


@app.command()
@guard
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
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not build report/index.html at the end of the run.")
    ] = False,
    executor_name: Annotated[
        str, typer.Option("--executor", help="Where episodes run: local, process or ray.")
    ] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (process, ray).", min=1)] = 2,
    max_retries: Annotated[
        int, typer.Option("--max-retries", help="Reruns of a shard whose worker died.", min=0)
    ] = 2,
    max_shards_per_worker: Annotated[
        int,
        typer.Option("--max-shards-per-worker", help="Restart a worker after N shards (0: never).", min=0),
    ] = 0,
    shard_size: Annotated[
        int | None,
        typer.Option("--shard-size", help="Slots per shard (default: ~4 shards per worker).", min=1),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="auto, ray://host:port; default: start a local Ray."),
    ] = None,
    stop_when: Annotated[
        str | None,
        typer.Option(
            "--stop-when",
            help="better, worse, equivalent (needs --margin) or decided: run each job in batches and stop "
            "it once an anytime-valid sequential test against --baseline decides (docs/compare.md, "
            "'Stopping early').",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="With --stop-when: a finished run of the same run file."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", help="With --stop-when: success, return or an outcome term (default: as compare)."
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="With --stop-when: slots per batch (default max(num_envs, 10)).", min=1),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="With --stop-when: the test's error rate.")] = 0.05,
    bound: Annotated[
        float | None,
        typer.Option("--bound", help="With --stop-when on a continuous metric: bound of |B - A| per pair."),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            "--margin",
            help="With --stop-when: also decide 'equivalent' once B - A is within +-M (metric units).",
        ),
    ] = None,
) -> None:
    """Run every job of a run file and write episodes.jsonl, manifest.json and summary.json."""
    from trialrun.config import load_run_config
    from trialrun.execution.executors import make_executor
    from trialrun.execution.runner import default_run_dir, load_for_resume

    setup_logging(verbose)
    stop = _stop_rule(stop_when, baseline, metric, batch, alpha, bound, margin)
    config_path: Path | None
    if resume and target.is_dir():
        if overrides:
            raise fail("--set cannot be combined with resuming a run directory (its config is fixed)")
        if run_dir is not None and run_dir != target:
            raise fail("give the run directory once: trialrun run --resume RUN_DIR")
        config, manifest = load_for_resume(target)
        directory = target
        config_path = Path(manifest.config_path) if manifest.config_path else None
    else:
        if target.is_dir():
            raise fail(f"{target} is a directory; to continue a run use: trialrun run --resume {target}")
        config = load_run_config(target, overrides)
        config_path = target.resolve()
        if resume and run_dir is None:
            raise fail("--resume with a run file needs --run-dir RUN_DIR (or pass the run directory itself)")
        directory = run_dir if run_dir is not None else default_run_dir(output_dir, config.name)

    executor = make_executor(
        executor_name,
        workers=workers,
        max_retries=max_retries,
        max_shards_per_worker=max_shards_per_worker,
        shard_size=shard_size,
        ray_address=ray_address,
    )
    try:
        with executor:
            result = _run_with_progress(config, directory, resume, config_path, executor, quiet, stop)
    except ConfigError as exc:
        # Preflight checks the parsed config, which no longer knows its file.
        run_file = config_path if target.is_dir() else target
        if exc.file is None and run_file is not None:
            raise exc.located(file=str(run_file)) from None
        raise
    except KeyboardInterrupt:
        # The runner marked the running job 'interrupted' and wrote the summary of what finished.
        stderr.print(
            f"interrupted; the episodes recorded so far are kept. Continue with: "
            f"trialrun run --resume {escape(str(directory))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    if not no_report:
        report_after_run(result.run_dir, quiet)
    raise typer.Exit(result.exit_code)


def _stop_rule(
    stop_when: str | None,
    baseline: Path | None,
    metric: str | None,
    batch: int | None,
    alpha: float,
    bound: float | None,
    margin: float | None = None,
) -> StopRule | None:
    """The ``--stop-when`` options as a rule (None without ``--stop-when``)."""
    from trialrun.execution.stopping import STOP_WHEN, StopRule

    if stop_when is None:
        given = [
            name
            for name, value in (
                ("--baseline", baseline),
                ("--metric", metric),
                ("--batch", batch),
                ("--bound", bound),
                ("--margin", margin),
            )
            if value is not None
        ]
        if given:
            raise fail(f"{', '.join(given)} only applies with --stop-when {'|'.join(STOP_WHEN)}")
        return None
    if stop_when not in STOP_WHEN:
        raise fail(f"--stop-when must be one of {', '.join(STOP_WHEN)}, got '{stop_when}'")
    if baseline is None:
        raise fail(f"--stop-when {stop_when} needs --baseline RUN_DIR (a finished run of the same run file)")
    if not 0 < alpha < 1:
        raise fail(f"--alpha must be in (0, 1), got {alpha}")
    if stop_when == "equivalent" and margin is None:
        raise fail("--stop-when equivalent needs --margin M (the metric's units; rate points for success)")
    return StopRule(
        when=stop_when, baseline=baseline, metric=metric, batch=batch, alpha=alpha, bound=bound, margin=margin
    )


def _run_with_progress(
    config: RunConfig,
    directory: Path,
    resume: bool,
    config_path: Path | None,
    executor: ManagedExecutor,
    quiet: bool,
    stop: StopRule | None = None,
) -> RunResult:
    """Run ``config`` into ``directory``; unless ``quiet``, with bars, the end table and notes."""
    from trialrun.execution.runner import run_evaluation

    if quiet:
        return run_evaluation(
            config,
            directory,
            resume=resume,
            config_path=config_path,
            argv=sys.argv,
            executor=executor,
            stop=stop,
        )
    stdout.print(f"run [bold]{escape(config.name)}[/] -> {escape(str(directory))}", highlight=False)
    progress = progress_bar(eta=True)
    with progress:
        result = run_evaluation(
            config,
            directory,
            resume=resume,
            config_path=config_path,
            observer=ProgressObserver(progress),
            argv=sys.argv,
            executor=executor,
            stop=stop,
        )
    stdout.print(summary_table(result.summary))
    from trialrun.execution.stopping import stop_phrase

    for job, stopped in result.stopped.items():
        stdout.print(
            f"note: job '{escape(job)}' stopped early: {stop_phrase(stopped)} on "
            f"{escape(stopped.metric)} after {stopped.at_episode} of {stopped.planned} episodes "
            f"(e-value {stopped.e_value:.3g}, alpha {stopped.alpha}); {stopped.saved} episodes saved. "
            "trialrun run --resume RUN_DIR runs the rest",
            highlight=False,
        )
    for job_summary in result.summary.jobs.values():
        if job_summary.meets_target is False and job_summary.half_width is not None:
            stdout.print(
                f"note: job '{escape(job_summary.job)}': success interval ±{job_summary.half_width:.3f} "
                f"is wider than the target ±{job_summary.target_half_width:.3f} (see trialrun plan-episodes)",
                highlight=False,
            )
    for job, error in result.errors.items():
        stderr.print(f"[red]job '{escape(job)}' failed:[/] {escape(error)}", highlight=False)
    stdout.print(f"results in {escape(str(result.run_dir))}", highlight=False)
    return result
