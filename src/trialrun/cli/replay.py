"""``trialrun replay``: re-run one episode exactly and compare it with its record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import (
    EXIT_FAILED,
    EXIT_OK,
    app,
    exact,
    fail,
    guard,
    setup_logging,
    stderr,
    stdout,
)
from trialrun.errors import InputError


@app.command()
@guard
def replay(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.", metavar="RUN_DIR")],
    job: Annotated[str, typer.Argument(help="The job's name.", metavar="JOB")],
    episode: Annotated[int, typer.Argument(help="The episode index (0-based).", metavar="EPISODE")],
    video: Annotated[
        bool, typer.Option("--video", help="Record the replay: RUN_DIR/replays/JOB/ep<k>-<camera>.mp4.")
    ] = False,
    trajectory: Annotated[
        bool,
        typer.Option("--trajectory", help="Write the replay's trajectory: RUN_DIR/replays/JOB/ep<k>.h5."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the replay's videos and trajectory (alone: implies --video)."),
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

    setup_logging(verbose)
    if episode < 0:
        raise fail(f"EPISODE must be 0 or more, got {episode}")
    load_replay_target(run_dir, job, episode)  # bad arguments: exit 2 before anything runs
    try:
        wants_video = video or bool(cameras) or (out is not None and not trajectory)
        result = replay_episode(
            run_dir, job, episode, video=wants_video, out=out, cameras=cameras, trajectory=trajectory
        )
    except InputError:
        raise
    except Exception as exc:  # the env or policy raised: the episode cannot be replayed
        if verbose:
            stderr.print(traceback.format_exc(), highlight=False, markup=False)
        raise fail(f"the replay failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
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
            escape(exact(row.recorded)),
            escape(exact(row.replayed)),
            "[green]same[/]" if row.matches else "[bold red]DIFFERS[/]",
        )
    stdout.print(table)
    for camera, path in result.videos.items():
        stdout.print(f"video {escape(camera)}: {escape(str(path))}", highlight=False)
    if result.trajectory is not None:
        stdout.print(f"trajectory: {escape(str(result.trajectory))}", highlight=False)
    if result.matches:
        stdout.print("[green]matches[/]: the replayed episode equals its record", highlight=False)
        raise typer.Exit(EXIT_OK)
    stdout.print(
        f"[bold red]does not match[/]: {escape(', '.join(result.mismatches))} differ from the record",
        highlight=False,
    )
    raise typer.Exit(EXIT_FAILED)
