"""``trialrun serve-policy``: serve a policy over WebSocket for remote-policy jobs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from trialrun.cli._console import app, fail, guard, setup_logging, stderr, stdout


@app.command("serve-policy")
@guard
def serve_policy(
    spec: Annotated[
        str,
        typer.Argument(
            help="The policy: a registered name, 'module:callable', a checkpoint file (.zip, .pt, .onnx, "
            ".npz) or directory (its newest checkpoint), or a mapping such as "
            "'{type: sb3, path: model.zip}'."
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
    policy_type: Annotated[
        str | None,
        typer.Option(
            "--policy-type", help="Policy type that loads the checkpoint SPEC (default: from its suffix)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log connections.")] = False,
) -> None:
    """Serve a policy over WebSocket for jobs with 'policy: {type: remote, url: ws://HOST:PORT}'."""
    from trialrun.policies.server import PolicyServer
    from trialrun.policies.spec import parse_policy_spec

    setup_logging(verbose)
    policy = parse_policy_spec(spec, policy_type, kwarg or [], option="SPEC")
    server = PolicyServer(policy.type, policy.kwargs, host=host, port=port)
    try:
        server.bind()
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(f"warning: serving on {escape(host)} without authentication", highlight=False)
    stdout.print(
        f"serving policy '{escape(policy.type)}' on {server.url} (Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
