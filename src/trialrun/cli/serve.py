"""``trialrun serve-policy``: serve a policy over WebSocket for remote-policy jobs.

Two protocols: trialrun's own (``--protocol trialrun``, the default; clients
are ``{type: remote}`` jobs, which send their spaces in a hello) and openpi's
(``--protocol openpi``; clients are ``{type: openpi}`` jobs and openpi's own
``WebsocketClientPolicy``). openpi's protocol has no hello, so the policy is
built once, for one world, with the spaces of ``--env ENV_ID`` (the env is
built once to read them).

Every bound of the server is an option here (defaults in
:class:`trialrun.policies.server.ServerLimits`; docs/security.md explains them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from trialrun.cli._console import app, fail, guard, setup_logging, stdout
from trialrun.errors import TrialrunError

if TYPE_CHECKING:
    from trialrun.policies.server import PolicyServer, ServerLimits

# trialrun.policies.remote.TOKEN_ENV, spelled out: importing the policies here would slow every command.
TOKEN_ENV = "TRIALRUN_TOKEN"
PROTOCOLS = ("trialrun", "openpi")
# trialrun.policies.vla.openpi_server.DEFAULT_OBS_KEY, spelled out for the same reason.
OPENPI_OBS_KEY = "observation/state"


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
        str, typer.Option("--host", help="Address to listen on (set --token on any but loopback).")
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="A secret every client must send (Authorization: Bearer); clients read it from "
            f"'token:' in their policy or {TOKEN_ENV}.",
            show_default=False,
        ),
    ] = None,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Open connections at most; more get HTTP 503.")
    ] = 64,
    max_sessions: Annotated[
        int,
        typer.Option(
            "--max-sessions",
            min=1,
            help="Sessions held at most (the least recently used idle one is evicted).",
        ),
    ] = 256,
    session_idle_timeout: Annotated[
        float,
        typer.Option(
            "--session-idle-timeout",
            min=0.001,
            help="Seconds a session may go without a request before it is dropped.",
        ),
    ] = 300.0,
    max_frame_bytes: Annotated[
        int,
        typer.Option(
            "--max-frame-bytes",
            min=0,
            help="Largest message accepted (close code 1009); default: the protocol's 256 MiB.",
            show_default=False,
        ),
    ] = 0,
    max_buffered_bytes: Annotated[
        int,
        typer.Option(
            "--max-buffered-bytes",
            min=0,
            help="Bytes of requests in flight over all connections at most (close code 1013 over it); "
            "default: --max-frame-bytes.",
            show_default=False,
        ),
    ] = 0,
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
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="Wire protocol: trialrun (clients: {type: remote}) or openpi (clients: {type: openpi} "
            "and openpi's WebsocketClientPolicy; needs --env).",
        ),
    ] = "trialrun",
    env_id: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="With --protocol openpi: the env whose observation and action spaces the policy is "
            "built for (built once to read them).",
            show_default=False,
        ),
    ] = None,
    obs_key: Annotated[
        str,
        typer.Option(
            "--obs-key",
            help="With --protocol openpi: the request key holding a flat (non-Dict) observation; a Dict "
            "observation's entry K is read from observation/K.",
        ),
    ] = OPENPI_OBS_KEY,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            "--tls-cert",
            help="Serve wss:// (TLS) with this PEM certificate (then any intermediates); clients trust it "
            "through their system CAs, SSL_CERT_FILE, or 'ca_file:' in their policy.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            "--tls-key",
            help="The PEM private key of --tls-cert (default: read from the --tls-cert file).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log connections.")] = False,
) -> None:
    """Serve a policy over WebSocket for jobs with 'policy: {type: remote, url: ws://HOST:PORT}'
    (or, with --protocol openpi, 'policy: {type: openpi, url: ...}' and openpi's clients)."""
    from trialrun.policies.remote import MAX_MESSAGE_BYTES
    from trialrun.policies.server import PolicyServer, ServerLimits, server_tls_context
    from trialrun.policies.spec import parse_policy_spec

    setup_logging(verbose)
    if protocol not in PROTOCOLS:
        raise fail(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "openpi" and not env_id:
        raise fail(
            "--protocol openpi needs --env ENV_ID: openpi's clients send no spaces, so the policy is built "
            "for that env's observation and action spaces"
        )
    if not obs_key.strip():
        raise fail("--obs-key is empty")
    if protocol == "trialrun" and (env_id is not None or obs_key != OPENPI_OBS_KEY):
        raise fail(
            "--env and --obs-key apply only to --protocol openpi (trialrun's clients send their spaces)"
        )
    if tls_key is not None and tls_cert is None:
        raise fail("--tls-key needs --tls-cert")
    if tls_cert is not None and protocol == "openpi":
        raise fail(
            "--tls-cert applies only to --protocol trialrun; serve openpi's protocol over wss:// behind a "
            "TLS-terminating proxy (as openpi's own server is)"
        )
    tls = None
    if tls_cert is not None:
        try:
            tls = server_tls_context(tls_cert, tls_key)
        except FileNotFoundError as exc:
            option = "--tls-key" if exc.filename == tls_key and tls_key != tls_cert else "--tls-cert"
            raise fail(f"{option}: no such file: {exc.filename}") from None
        except ValueError as exc:
            raise fail(str(exc)) from None
    policy = parse_policy_spec(spec, policy_type, kwarg or [], option="SPEC")
    max_frame_bytes = max_frame_bytes or MAX_MESSAGE_BYTES
    try:
        limits = ServerLimits(
            max_connections=max_connections,
            max_sessions=max_sessions,
            session_idle_timeout=session_idle_timeout,
            max_frame_bytes=max_frame_bytes,
            max_buffered_bytes=max_buffered_bytes or max_frame_bytes,
        )
    except ValueError as exc:
        message = str(exc).replace("max_buffered_bytes", "--max-buffered-bytes")
        raise fail(message.replace("max_frame_bytes", "--max-frame-bytes")) from None
    if protocol == "openpi" and env_id:  # --env was checked above
        server: PolicyServer = _openpi_server(
            policy.type, policy.kwargs, env_id, obs_key, host, port, limits, token
        )
    else:
        server = PolicyServer(
            policy.type, policy.kwargs, host=host, port=port, limits=limits, token=token, tls=tls
        )
    try:
        server.bind()  # warns when the address is not loopback and there is no token
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stdout.print(
        f"serving policy '{escape(policy.type)}' on {server.url} "
        + ("(openpi protocol; Ctrl-C to stop)" if protocol == "openpi" else "(Ctrl-C to stop)"),
        highlight=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


def _openpi_server(
    policy_type: str,
    kwargs: dict[str, Any],
    env_id: str,
    obs_key: str,
    host: str,
    port: int,
    limits: ServerLimits,
    token: str | None,
) -> PolicyServer:
    """An openpi-protocol server for ``env_id``'s spaces (the env is built once, then closed)."""
    from trialrun.envs.build import check_env_id, make_env
    from trialrun.policies.base import PolicyContext
    from trialrun.policies.vla.openpi_server import OpenpiPolicyServer

    check_env_id(env_id, field="--env")
    env = make_env(env_id, {})
    try:
        context = PolicyContext(env_id, 1, env.observation_space, env.action_space, {})
    finally:
        env.close()
    try:
        return OpenpiPolicyServer(
            policy_type, kwargs, context, obs_key=obs_key, host=host, port=port, limits=limits, token=token
        )
    except TrialrunError:
        raise
    except Exception as exc:  # the policy's own code failed to build it (a corrupt file, say)
        raise fail(f"cannot build policy '{policy_type}' for {env_id}: {type(exc).__name__}: {exc}") from None
