"""``policy: {type: openpi, ...}`` and ``policy: {type: gr00t, ...}``: a transport plus :class:`ServerPolicy`.

The transports import their wire libraries (websockets, pyzmq; extra
``remote``) when a job builds one, so listing policies stays light. Each
factory's settings are checked by a function of the same settings without a
context (:func:`check_openpi_settings`, :func:`check_gr00t_settings`), which
preflight calls on a run file's settings alone: no connection, no wire library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.settings import host_name, integer_in, names, one_of, seconds, text_line, ws_url
from trialrun.policies.vla.policy import ServerPolicy

DEFAULT_TIMEOUT = 30.0
"""Seconds a server may take to answer one request before the job fails."""
DEFAULT_CONNECTIONS = 16
"""Default cap on concurrent openpi connections (one request in flight on each)."""
MAX_CONNECTIONS = 1024
"""Most connections one openpi transport may keep (each costs the server a handler and a socket)."""
APIS = ("n1.6", "n1.6-nested", "n1.5")
"""GR00T server flavours: N1.6 with the sim policy wrapper (flat keys), N1.6 plain (nested keys), N1.5."""
GR00T_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection before saying that nothing listens at the address."""


def openpi_policy(
    context: PolicyContext,
    url: str,
    *,
    api_key: str | None = None,
    obs_map: Mapping[str, Any] | None = None,
    replan_steps: int | None = None,
    max_connections: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ca_file: str | None = None,
) -> ServerPolicy:
    """A client of an openpi policy server (``ws://HOST:PORT`` or ``wss://``): one
    observation per request, requests of the worlds sent concurrently over up to
    ``max_connections`` connections (default ``min(num_envs, 16)``). ``ca_file``:
    the CAs a ``wss://`` server's certificate is checked against (default: the
    system's, or ``SSL_CERT_FILE``)."""
    require_extra("websockets", "remote", "openpi policies")
    require_extra("msgpack", "remote", "openpi policies")
    from trialrun.policies.vla.openpi import OpenpiTransport

    connections = min(context.num_envs, DEFAULT_CONNECTIONS) if max_connections is None else max_connections
    transport = OpenpiTransport(
        url, api_key=api_key, max_connections=connections, timeout=timeout, ca_file=ca_file
    )
    return _server_policy(transport, context, obs_map, replan_steps)


def gr00t_policy(
    context: PolicyContext,
    host: str = "127.0.0.1",
    port: int = 5555,
    *,
    api_token: str | None = None,
    obs_map: Mapping[str, Any] | None = None,
    replan_steps: int | None = None,
    action_keys: Sequence[str] | None = None,
    api: str = "n1.6",
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
) -> ServerPolicy:
    """A client of an Isaac GR00T policy server (ZeroMQ, ``tcp://HOST:PORT``):
    the worlds that need actions go out as one batched request. ``api`` is the
    server's GR00T version (``n1.6``, ``n1.6-nested``, ``n1.5``: their wire
    formats differ; docs/policies.md)."""
    require_extra("zmq", "remote", "GR00T policies")
    require_extra("msgpack", "remote", "GR00T policies")
    from trialrun.policies.vla.gr00t import Gr00tTransport

    options: dict[str, Any] = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    transport = Gr00tTransport(
        host,
        port,
        api_token=api_token,
        timeout=timeout,
        action_keys=list(action_keys) if action_keys else None,
        api=api,
        **options,
    )
    return _server_policy(transport, context, obs_map, replan_steps)


def check_openpi_settings(settings: Mapping[str, Any]) -> None:
    """Check :func:`openpi_policy`'s settings (each given or at its default)
    without connecting; its transport runs the same check when built (where
    ``replan_steps`` is not one of its settings). ``obs_map`` is checked against the env's cameras by
    preflight and against its observations when the policy is built;
    ``ca_file`` when the run file is loaded.

    Raises:
        ConfigError: naming ``policy.<setting>`` and what is allowed.
    """
    ws_url(settings["url"])
    if settings.get("api_key") is not None:
        text_line(settings["api_key"], "api_key")
    if settings.get("max_connections") is not None:
        integer_in(settings["max_connections"], "max_connections", 1, MAX_CONNECTIONS)
    seconds(settings["timeout"], "timeout")
    _check_replan_steps(settings.get("replan_steps"))


def check_gr00t_settings(settings: Mapping[str, Any]) -> None:
    """Check :func:`gr00t_policy`'s settings (each given or at its default)
    without connecting; its transport runs the same check when built.

    Raises:
        ConfigError: naming ``policy.<setting>`` and what is allowed.
    """
    host_name(settings["host"])
    integer_in(settings["port"], "port", 1, 65535)
    if settings.get("api_token") is not None:
        text_line(settings["api_token"], "api_token")
    if settings.get("action_keys") is not None:
        names(settings["action_keys"], "action_keys")
    one_of(settings["api"], "api", APIS)
    seconds(settings["timeout"], "timeout")
    if settings.get("connect_timeout") is not None:
        seconds(settings["connect_timeout"], "connect_timeout")
    _check_replan_steps(settings.get("replan_steps"))


def _check_replan_steps(replan_steps: object) -> None:
    if replan_steps is not None and (
        isinstance(replan_steps, bool) or not isinstance(replan_steps, int) or replan_steps < 1
    ):
        raise ConfigError(
            f"replan_steps must be an integer >= 1, got {replan_steps!r}", field="policy.replan_steps"
        )


def _server_policy(
    transport: Any, context: PolicyContext, obs_map: Mapping[str, Any] | None, replan_steps: int | None
) -> ServerPolicy:
    try:
        _check_replan_steps(replan_steps)
        return ServerPolicy(transport, context, obs_map=obs_map, replan_steps=replan_steps)
    except BaseException:
        transport.close()
        raise
