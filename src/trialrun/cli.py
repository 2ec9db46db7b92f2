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
from rich.markup import escape
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

from trialrun.errors import InputError, RunWriteError, TrialrunError
from trialrun.runfiles.schema import EpisodeRecord, JobState, Summary

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
        except RunWriteError as exc:
            raise _fail(
                f"{exc}\nEpisodes recorded so far are kept; fix the problem and continue with: "
                "trialrun run --resume RUN_DIR",
                EXIT_FAILED,
            ) from None
        except TrialrunError as exc:
            raise _fail(str(exc)) from None
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
    # User text (config values, paths) may contain [brackets]: never parse it as markup.
    stderr.print(f"[bold red]trialrun: error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _ProgressObserver:
    """Draws one bar per job: episodes done / planned, episodes per second."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}

    def job_started(self, job: str, planned: int, done: int) -> None:
        self.tasks[job] = self.progress.add_task(escape(job), total=planned, completed=done, rate="")
        self.started[job] = time.monotonic()

    def episode_finished(self, record: EpisodeRecord) -> None:
        task = self.tasks[record.job]
        self.progress.advance(task)
        elapsed = max(time.monotonic() - self.started[record.job], 1e-9)
        done_now = self.progress.tasks[task].completed
        self.progress.update(task, rate=f"{done_now / elapsed:.1f} ep/s")

    def job_finished(self, job: str, status: JobState, error: str | None) -> None:
        label = escape(job) if status == "completed" else f"{escape(job)} [red]({status})[/]"
        self.progress.update(self.tasks[job], description=label)


def _progress_bar(eta: bool) -> Progress:
    """One bar per job: episodes done / planned, episodes per second, elapsed (and ETA)."""
    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=stderr, transient=False)


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
            escape(job.job),
            job.status or "-",
            f"{job.episodes}/{job.planned}",
            _fmt_ci(job.success_rate, sci.low if sci else None, sci.high if sci else None, pct=True),
            _fmt_ci(job.return_mean, rci.low if rci else None, rci.high if rci else None, pct=False),
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
) -> None:
    """Run every job of a run file and write episodes.jsonl, manifest.json and summary.json."""
    from trialrun.config import load_run_config
    from trialrun.execution.runner import default_run_dir, load_for_resume

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

    executor = make_executor(
        executor_name, workers, max_retries, max_shards_per_worker, shard_size, ray_address
    )
    with executor:
        result = _run_with_progress(config, directory, resume, config_path, executor, quiet)
    if not no_report:
        _report_after_run(result.run_dir, quiet)
    raise typer.Exit(result.exit_code)


def _report_after_run(run_dir: Path, quiet: bool) -> None:
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


def make_executor(
    name: str,
    workers: int,
    max_retries: int,
    max_shards_per_worker: int,
    shard_size: int | None,
    ray_address: str | None,
) -> Any:
    """The executor named on the command line (a context manager)."""
    from trialrun.execution.runner import LocalExecutor

    if name == "local":
        if ray_address:
            raise _fail("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "process":
        from trialrun.execution.process import ProcessExecutor

        return ProcessExecutor(workers, max_retries, max_shards_per_worker, shard_size)
    if name == "ray":
        from trialrun.execution.ray_executor import RayExecutor, import_ray

        import_ray()
        return RayExecutor(ray_address, workers, max_retries, max_shards_per_worker, shard_size)
    raise _fail(f"--executor must be one of: local, process, ray (got '{name}')")


def _run_with_progress(
    config: Any, directory: Path, resume: bool, config_path: Path | None, executor: Any, quiet: bool
) -> Any:
    from trialrun.execution.runner import run_evaluation

    if quiet:
        return run_evaluation(
            config, directory, resume=resume, config_path=config_path, argv=sys.argv, executor=executor
        )
    stdout.print(f"run [bold]{escape(config.name)}[/] -> {escape(str(directory))}", highlight=False)
    progress = _progress_bar(eta=True)
    with progress:
        result = run_evaluation(
            config,
            directory,
            resume=resume,
            config_path=config_path,
            observer=_ProgressObserver(progress),
            argv=sys.argv,
            executor=executor,
        )
    stdout.print(summary_table(result.summary))
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


@app.command()
@_guard
def replay(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.", metavar="RUN_DIR")],
    job: Annotated[str, typer.Argument(help="The job's name.", metavar="JOB")],
    episode: Annotated[int, typer.Argument(help="The episode index (0-based).", metavar="EPISODE")],
    video: Annotated[
        bool, typer.Option("--video", help="Record the replay: RUN_DIR/replays/JOB/ep<k>-<camera>.mp4.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the replay's videos (implies --video).")
    ] = None,
    cameras: Annotated[
        list[str] | None,
        typer.Option("--camera", help="Camera to record (repeatable; default: the job's video cameras)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Re-run one episode exactly (same seed, factors and policy) and compare it with its record.

    Exit code 0 when the replay matches the record, 1 when it does not, 2 for bad arguments.
    """
    import traceback

    from trialrun.replay import load_replay_target, replay_episode

    _setup_logging(verbose)
    if episode < 0:
        raise _fail(f"EPISODE must be 0 or more, got {episode}")
    load_replay_target(run_dir, job, episode)  # bad arguments: exit 2 before anything runs
    try:
        result = replay_episode(
            run_dir, job, episode, video=video or out is not None or bool(cameras), out=out, cameras=cameras
        )
    except InputError:
        raise
    except Exception as exc:  # the env or policy raised: the episode cannot be replayed
        if verbose:
            stderr.print(traceback.format_exc(), highlight=False, markup=False)
        raise _fail(f"the replay failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    slot = result.target.slot
    table = Table(
        title=f"replay of {escape(job)} episode {episode} (seed {slot.seed}) from {escape(str(run_dir))}"
    )
    table.add_column("field")
    table.add_column("recorded", justify="right")
    table.add_column("replayed", justify="right")
    table.add_column("", justify="center")
    for row in result.comparisons:
        table.add_row(
            escape(row.name),
            escape(_exact(row.recorded)),
            escape(_exact(row.replayed)),
            "[green]same[/]" if row.matches else "[bold red]DIFFERS[/]",
        )
    stdout.print(table)
    for camera, path in result.videos.items():
        stdout.print(f"video {escape(camera)}: {escape(str(path))}", highlight=False)
    if result.matches:
        stdout.print("[green]matches[/]: the replayed episode equals its record", highlight=False)
        raise typer.Exit(EXIT_OK)
    stdout.print(
        f"[bold red]does not match[/]: {escape(', '.join(result.mismatches))} differ from the record",
        highlight=False,
    )
    raise typer.Exit(EXIT_FAILED)


@app.command()
@_guard
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

    _setup_logging(verbose)
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
        _report_after_run(run_dir, quiet=False)


@app.command()
@_guard
def report(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.")],
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the run directory over HTTP and print the report's URL.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --serve (0: any free port).")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Address for --serve (default loopback only).")
    ] = "127.0.0.1",
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for index.html (default RUN_DIR/report).")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log more (with --serve: every request).")
    ] = False,
) -> None:
    """Build the HTML report (RUN_DIR/report/index.html); with --serve, serve the run to a browser."""
    from trialrun.report import build_report, default_out_dir, is_loopback, make_server, report_is_stale
    from trialrun.report.server import serve_until_stopped

    _setup_logging(verbose)
    try:
        out_dir = out if out is not None else default_out_dir(run_dir)
        if not serve:
            path = build_report(run_dir, out_dir)
            stdout.print(f"report in {escape(str(path))}", highlight=False)
            return
        root = run_dir.resolve()
        index = out_dir.resolve() / "index.html"
        if root not in index.parents:
            raise _fail(f"--out must be inside the run directory with --serve (only {run_dir} is served)")
        if report_is_stale(run_dir, out_dir):
            build_report(run_dir, out_dir)
        if not is_loopback(host):
            stderr.print(
                f"[yellow]warning:[/] serving on {escape(host)}: anyone who can reach this machine "
                "can read this run's files (config, commands, videos)",
                highlight=False,
            )
        server = make_server(run_dir, host=host, port=port, index_path=index.relative_to(root).as_posix())
        stdout.print(
            f"serving {escape(str(run_dir))} at {server.url(server.index_path)} (Ctrl+C to stop)",
            highlight=False,
            soft_wrap=True,
        )
        serve_until_stopped(server)
        stdout.print("stopped", highlight=False)
    except KeyboardInterrupt:  # Ctrl+C while building: nothing to resume
        stderr.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


@app.command("serve-policy")
@_guard
def serve_policy(
    spec: Annotated[
        str,
        typer.Argument(
            help="The policy: a registered name, 'module:callable', a checkpoint file (.zip, .pt, .onnx, "
            ".npz) or a mapping such as '{type: sb3, path: model.zip}'."
        ),
    ],
    port: Annotated[
        int, typer.Option("--port", help="TCP port (0: any free port).", min=0, max=65535)
    ] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (no authentication!).")
    ] = "127.0.0.1",
    kwarg: Annotated[
        list[str] | None,
        typer.Option("--kwarg", help="A policy keyword argument: --kwarg deterministic=false."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log connections.")] = False,
) -> None:
    """Serve a policy over WebSocket for jobs with 'policy: {type: remote, url: ws://HOST:PORT}'."""
    from trialrun.policies.server import PolicyServer

    _setup_logging(verbose)
    type_name, kwargs = parse_policy_spec(spec, kwarg or [])
    server = PolicyServer(type_name, kwargs, host=host, port=port)
    try:
        server.bind()
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(f"warning: serving on {escape(host)} without authentication", highlight=False)
    stdout.print(
        f"serving policy '{escape(type_name)}' on {server.url} (Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


def parse_policy_spec(spec: str, kwarg_texts: list[str]) -> tuple[str, dict[str, Any]]:
    """``(type, kwargs)`` from a serve-policy SPEC and ``--kwarg key=value``
    options; file paths are resolved against the working directory."""
    import yaml
    from pydantic import ValidationError

    from trialrun.config import PolicyConfig, format_validation_error, is_path_kwarg, parse_override
    from trialrun.errors import ConfigError
    from trialrun.policies.loaders import infer_policy_type
    from trialrun.policies.registry import resolve_policy_factory

    kwargs: dict[str, Any] = {}
    inferred = infer_policy_type(spec)
    if inferred and Path(spec).expanduser().is_file():
        type_name, kwargs = inferred, {"path": spec}
    else:
        try:
            doc = yaml.safe_load(spec)
        except yaml.YAMLError:
            doc = spec
        if isinstance(doc, dict):
            try:
                config = PolicyConfig.model_validate(doc)
            except ValidationError as exc:
                raise format_validation_error(exc, None) from None
            type_name, kwargs = config.type, dict(config.kwargs)
        elif isinstance(doc, str) and doc:
            type_name = doc
        else:
            raise ConfigError(f"'{spec}' is not a policy name, checkpoint file or mapping", field="SPEC")
    for text in kwarg_texts:
        key, value = parse_override(text)
        kwargs[key] = value
    for key, value in list(kwargs.items()):
        if is_path_kwarg(key) and isinstance(value, str):
            path = Path(value).expanduser().resolve()
            if not path.exists():
                raise ConfigError(f"no such file: {path}", field=key)
            kwargs[key] = str(path)
    resolve_policy_factory(type_name, field="SPEC")
    return type_name, kwargs


@app.command()
@_guard
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
    bins: Annotated[int, typer.Option("--bins", help="Bins per continuous factor.", min=1, max=50)] = 4,
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
        if s is None or r is None:
            table.add_row(escape(jc.job), "0", "-", "-", "-", "-", "-", jc.verdict)
            continue
        verdict = jc.verdict + (" (beyond margin)" if jc.worse_beyond_margin else "")
        table.add_row(
            escape(jc.job),
            str(jc.pairs),
            f"{s.a_rate:.1%}",
            f"{s.b_rate:.1%}",
            f"{s.difference:+.3f} [{s.ci.low:+.3f}, {s.ci.high:+.3f}]",
            f"{s.mcnemar_p:.3g}",
            f"{r.difference:+.2f} [{r.ci.low:+.2f}, {r.ci.high:+.2f}]",
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
        _report_after_run(run_b, quiet=True)
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


@app.command("plan-episodes")
@_guard
def plan_episodes(
    rate: Annotated[float, typer.Option("--rate", help="The success rate you expect (0..1).")],
    half_width: Annotated[float, typer.Option("--half-width", help="The interval half-width you want.")],
    level: Annotated[float, typer.Option("--level", help="Confidence level.")] = 0.95,
) -> None:
    """How many episodes a Wilson interval of the given half-width needs at the given success rate."""
    from trialrun.stats import wilson_episodes_needed

    if not 0 < level < 1:
        raise _fail(f"--level must be between 0 and 1, got {level}")
    try:
        n = wilson_episodes_needed(rate, half_width, level)
    except ValueError as exc:
        raise _fail(f"{exc} (--rate in [0, 1], --half-width in (0, 0.5))") from None
    stdout.print(
        f"{n} episodes give a {level:.0%} Wilson interval of half-width <= {half_width:g} "
        f"at a success rate of {rate:g}",
        highlight=False,
    )


@app.command()
@_guard
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
    import contextlib

    from trialrun.suites.checkpoints import parse_policy_spec as parse_suite_policy
    from trialrun.suites.manager import EvalManager

    _setup_logging(verbose)
    manager = EvalManager.from_yaml(suites_file, output_dir=output_dir, loggers=[] if no_log else None)
    selected = list(names) if names else manager.enabled()
    if not selected:
        raise _fail(f"{suites_file}: no enabled evaluator to run (pass --name EVALUATOR)")
    if run_dir is not None and len(selected) != 1:
        raise _fail("--run-dir needs exactly one --name EVALUATOR")
    spec = parse_suite_policy(policy, policy_type) if policy else None
    if policy_type and not policy:
        raise _fail("--policy-type needs --policy CHECKPOINT")
    for name in selected:
        manager.preflight(name, policy=spec)
    results = []
    with manager:
        for name in selected:
            observer = None
            progress: Any = contextlib.nullcontext()
            if not quiet:
                stdout.print(f"evaluator [bold]{escape(name)}[/]", highlight=False)
                progress = _progress_bar(eta=False)
                observer = _ProgressObserver(progress)
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
        table = Table(title=f"suite {escape(str(suites_file))}")
        for column in ("evaluator", "status", "episodes", "success [95% CI]", "return", "length", "seconds"):
            table.add_column(column, justify="left" if column in ("evaluator", "status") else "right")
        for r in results:
            table.add_row(
                escape(r.evaluator),
                r.status,
                str(r.episodes),
                _fmt_ci(r.success_rate, r.success_ci_low, r.success_ci_high, pct=True),
                "-" if r.return_mean is None else f"{r.return_mean:.1f}",
                "-" if r.length_mean is None else f"{r.length_mean:.1f}",
                f"{r.eval_seconds:.1f}",
                style="" if r.ok else "red",
            )
        stdout.print(table)
        for r in results:
            stdout.print(f"{escape(r.evaluator)}: {escape(str(r.run_dir))}", highlight=False)
    for r in results:
        if not r.ok:
            message = escape(r.error or "")
            stderr.print(f"[red]evaluator '{escape(r.evaluator)}' failed:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


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
        table.add_row(escape(env_id), escape(str(spec.entry_point)), str(spec.max_episode_steps or "-"))
    stdout.print(table)


@list_app.command("policies")
@_guard
def list_policies() -> None:
    """Registered policy names (any 'package.module:factory' works too)."""
    from trialrun.policies.registry import available_policies

    table = Table("name", "description")
    for name, entry in sorted(available_policies().items()):
        table.add_row(escape(name), escape(entry.description))
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
            table.add_row(name, cls.applies_at, params, escape(doc))
        stdout.print(table)
        return
    check_env_id(env_id, field="ENV")
    env = make_env(env_id, {})
    try:
        table = Table("variation", "target", "nominal", "units", "note", title=f"variations for {env_id}")
        for name, cls in sorted(classes.items()):
            for target in cls.targets(env):
                table.add_row(
                    name,
                    escape(target.target),
                    escape(_short(target.nominal)),
                    target.units or "",
                    escape(target.note),
                )
        stdout.print(table)
    finally:
        env.close()


def _exact(value: Any) -> str:
    """A value as its record shows it (full float precision, true/false/null)."""
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
