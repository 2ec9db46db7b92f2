"""``trialrun report``: build a run's HTML report, or serve the run to a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from trialrun.cli._console import app, fail, guard, setup_logging, stderr, stdout


@app.command()
@guard
def report(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.")],
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the run directory over HTTP and print the report's URL.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --serve (0: any free port).")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Address for --serve (default loopback only).")
    ] = "127.0.0.1",
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="With --serve: another name browsers may use for this server (the Host check).",
        ),
    ] = None,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout", min=0.001, help="With --serve: close a connection idle this long (s)."
        ),
    ] = 30.0,
    max_connections: Annotated[
        int,
        typer.Option("--max-connections", min=1, help="With --serve: connections at once; more get 503."),
    ] = 64,
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

    setup_logging(verbose)
    try:
        out_dir = out if out is not None else default_out_dir(run_dir)
        if not serve:
            path = build_report(run_dir, out_dir)
            stdout.print(f"report in {escape(str(path))}", highlight=False)
            return
        root = run_dir.resolve()
        index = out_dir.resolve() / "index.html"
        if root not in index.parents:
            raise fail(f"--out must be inside the run directory with --serve (only {run_dir} is served)")
        if report_is_stale(run_dir, out_dir):
            build_report(run_dir, out_dir)
        if not is_loopback(host):
            stderr.print(
                f"[yellow]warning:[/] serving on {escape(host)}: anyone who can reach this machine "
                "can read this run's files (config, commands, videos)",
                highlight=False,
            )
        server = make_server(
            run_dir,
            host=host,
            port=port,
            index_path=index.relative_to(root).as_posix(),
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            allowed_hosts=tuple(allow_host or ()),
        )
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
