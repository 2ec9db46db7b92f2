"""The client side of openpi's policy server: one observation per WebSocket request.

openpi serves a policy (pi0, pi0.5, ...) with
``src/openpi/serving/websocket_policy_server.py``; its own client is
``openpi_client.websocket_client_policy``. The protocol, as that code speaks it:

- a WebSocket on ``ws://HOST:PORT`` with binary frames and no compression;
  an ``api_key`` goes in the handshake as ``Authorization: Api-Key <key>``
  (openpi's server ignores it; a proxy in front may check it);
- the server's first frame on every connection is its metadata, one msgpack
  map (:attr:`OpenpiTransport.metadata` keeps the first connection's);
- each request is one msgpack observation dict (:mod:`.openpi_codec`), with
  no batch axis, and the answer is one msgpack dict: ``actions`` (a chunk
  ``(H, action_dim)``) plus ``server_timing`` (``infer_ms``, and
  ``prev_total_ms`` from the second request on);
- when the policy raises, the server sends the traceback as a *text* frame
  and closes the connection with code 1011. That becomes
  :class:`OpenpiServerError`, a :class:`~trialrun.errors.RemotePolicyError`
  whose message names the address and the traceback's last line and whose
  ``remote_traceback`` holds the whole traceback (the runner puts it in the
  manifest).

openpi's server answers one observation per request, so :meth:`OpenpiTransport.infer`
keeps up to ``max_connections`` connections with one request in flight on
each: it sends a request on every free connection, then waits for the oldest
one and sends the next request on the connection that answered. The waiting
happens in websockets' per-connection reader threads, so no thread pool is
needed and the calling thread only encodes, sends and decodes. Connections
are opened when first needed and kept for the next step.

Failures (each a ``RemotePolicyError`` naming the address):

- no answer within ``timeout`` seconds of sending a request: the error says
  how long it waited;
- a connection that drops (the server restarted, a proxy closed it) is
  re-opened and the request sent again, once; a second drop of that
  request, or a reconnection that fails, is the error;
- an error frame (above), a reply that is not a msgpack map, or a handshake
  the server refuses (HTTP 401/403 on a wrong ``api_key``).

Construction opens the first connection and reads the metadata, so a wrong URL
fails at once with a message naming it. One transport belongs to one thread
(the rollout's).

Example (against trialrun's own openpi server; ``trialrun serve-policy --protocol openpi``):
    >>> import numpy as np, gymnasium as gym
    >>> from trialrun.policies.base import PolicyContext
    >>> from trialrun.policies.vla.openpi_server import OpenpiPolicyServer
    >>> ctx = PolicyContext("Pendulum-v1", 1, gym.spaces.Box(-8, 8, (3,)), gym.spaces.Box(-2, 2, (1,)), {})
    >>> server = OpenpiPolicyServer("zero", {}, ctx, port=0)
    >>> server.start()
    >>> transport = OpenpiTransport(server.url, max_connections=2)
    >>> transport.metadata["action_horizon"]
    1
    >>> [r["actions"].tolist() for r in transport.infer([{"observation/state": np.zeros(3)}] * 2)]
    [[[0.0]], [[0.0]]]
    >>> transport.close(); server.stop()
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.policies.loaders import require_extra
from trialrun.policies.remote import MAX_MESSAGE_BYTES, _close_quietly, _open_connection
from trialrun.policies.vla.openpi_codec import OpenpiCodecError, packb, unpackb
from trialrun.policies.vla.transport import Reply, Request

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds a request may wait for its answer (and the first connection for its metadata)."""
DEFAULT_MAX_CONNECTIONS = 1
"""Connections kept open by default: openpi's own client keeps one."""
MAX_CONNECTIONS = 1024
"""Most connections one transport may keep (each costs the server a handler and a socket)."""
CLOSE_INTERNAL_ERROR = 1011
"""The close code openpi's server sends after the text frame carrying its traceback."""
CLOSE_TIMEOUT = 1.0
"""Seconds to wait for the server's close frame when closing a connection."""
ERROR_CLOSE_WAIT = 2.0
"""Seconds to wait, after an error frame, for the close (1011) that should follow it."""
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Api-Key"
"""openpi's client sends ``Authorization: Api-Key <key>``."""


class OpenpiServerError(RemotePolicyError):
    """The openpi server sent an error frame; ``remote_traceback`` is its whole text."""

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = remote_traceback


def last_line(text: str) -> str:
    """The last non-blank line of a traceback: the exception and its message."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "(no message)")


class _Dropped(Exception):
    """A connection closed without an error frame (retryable once)."""


class OpenpiTransport:
    """A :class:`~trialrun.policies.vla.transport.Transport` to one openpi policy server.

    Args:
        url: ``ws://HOST:PORT`` (or ``wss://``), as openpi's client takes it.
        api_key: sent as ``Authorization: Api-Key <key>`` at every handshake.
        max_connections: concurrent requests at most, one per connection
            (default :data:`DEFAULT_MAX_CONNECTIONS`).
        timeout: seconds each request may take (default :data:`DEFAULT_TIMEOUT`).
        max_message_bytes: largest frame accepted from the server
            (default 256 MiB, as trialrun's own protocol).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._client = require_extra("websockets.sync.client", "remote", "openpi policies")
        self._exc = require_extra("websockets.exceptions", "remote", "openpi policies")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"url must be ws://HOST:PORT, got {url!r}", field="policy.kwargs.url")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or not 1 <= max_connections <= MAX_CONNECTIONS
        ):
            raise ConfigError(
                f"max_connections must be an integer in 1..{MAX_CONNECTIONS}, got {max_connections!r}",
                field="policy.kwargs.max_connections",
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"timeout must be a number of seconds > 0, got {timeout!r}", field="policy.kwargs.timeout"
            )
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip() or "\n" in api_key):
            raise ConfigError("api_key must be a non-empty line of text", field="policy.kwargs.api_key")
        self.address = url
        self.max_connections = max_connections
        self.timeout = float(timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.metadata: dict[Any, Any] = {}
        self.reconnects = 0
        """Connections re-opened after a drop (a resent request each)."""
        self._headers = {AUTH_HEADER: f"{AUTH_SCHEME} {api_key}"} if api_key else None
        self._idle: list[Any] = []  # open connections with nothing in flight
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self._idle)
        first, self.metadata = self._connect(time.monotonic())
        self._idle.append(first)

    # -- the Transport protocol ------------------------------------------------------------

    def infer(self, requests: Sequence[Request]) -> list[Reply]:
        """The server's answer to each request, in order; up to ``max_connections`` in flight."""
        if self._closed:
            raise RemotePolicyError(f"the openpi transport to {self.address} is closed")
        frames = [self._encode(i, request) for i, request in enumerate(requests)]
        replies: list[Reply | None] = [None] * len(frames)
        waiting = collections.deque(range(len(frames)))
        # (connection, request index, when it was sent, whether it is a resend), oldest first
        inflight: collections.deque[tuple[Any, int, float, bool]] = collections.deque()
        try:
            while waiting or inflight:
                while waiting and len(inflight) < self.max_connections:
                    index = waiting.popleft()
                    inflight.append(self._send(self._take(), index, frames[index], resend=False))
                ws, index, sent_at, resent = inflight.popleft()
                try:
                    replies[index] = self._receive(ws, index, sent_at)
                except _Dropped as exc:
                    _close_quietly(ws)
                    if resent:
                        raise RemotePolicyError(
                            f"the openpi policy server at {self.address} dropped the connection twice while "
                            f"answering request {index} ({exc}; {time.monotonic() - sent_at:.1f} s after "
                            "it was resent); gave up"
                        ) from None
                    inflight.append(self._resend(index, frames[index], str(exc)))
                    continue
                self._idle.append(ws)
        except BaseException:
            for ws, *_ in inflight:  # their answers would reach a later step: drop the connections
                _close_quietly(ws)
            raise
        return [reply for reply in replies if reply is not None]

    def reset(self, worlds: Sequence[int]) -> None:
        """Nothing to tell: openpi's servers keep no per-episode state (its client's ``reset`` is a no-op)."""

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        self._finalizer()

    # -- connections -----------------------------------------------------------------------

    def _connect(self, start: float) -> tuple[Any, dict[Any, Any]]:
        """A new connection and the metadata frame it starts with."""
        try:
            ws = _open_connection(
                self._client,
                self.address,
                open_timeout=self.timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=self.max_message_bytes,
                compression=None,
                proxy=None,
                # openpi's server blocks its event loop while it infers, so it may not answer a
                # keepalive ping in time; the per-request timeout finds dead servers instead.
                ping_interval=None,
                additional_headers=self._headers,
            )
        except self._exc.InvalidURI as exc:
            raise ConfigError(f"invalid URL {self.address!r}: {exc}", field="policy.kwargs.url") from None
        except self._exc.InvalidStatus as exc:
            raise RemotePolicyError(self._refused(exc)) from None
        except (OSError, TimeoutError, self._exc.InvalidHandshake, self._exc.ConnectionClosed) as exc:
            raise RemotePolicyError(
                f"cannot connect to the openpi policy server at {self.address}: {_reason(exc)} "
                "(is it running? openpi: scripts/serve_policy.py, trialrun: serve-policy --protocol openpi)"
            ) from None
        try:
            metadata = self._receive(ws, -1, start)
        except _Dropped as exc:
            _close_quietly(ws)
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} closed the connection before sending its "
                f"metadata ({exc})"
            ) from None
        except BaseException:
            _close_quietly(ws)
            raise
        return ws, metadata

    def _refused(self, exc: Exception) -> str:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        body = bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {body.splitlines()[0][:200]}" if body else "")
        if status in (401, 403):
            sent = "the api_key it was sent" if self._headers else "the connection: no api_key was set"
            return f"the openpi policy server at {self.address} refused {sent} ({detail})"
        return f"the openpi policy server at {self.address} refused the connection ({detail})"

    def _take(self) -> Any:
        """A free connection: an idle one, or a new one (callers keep at most ``max_connections``)."""
        if self._idle:
            return self._idle.pop()
        ws, _ = self._connect(time.monotonic())
        return ws

    def _send(self, ws: Any, index: int, frame: bytes, *, resend: bool) -> tuple[Any, int, float, bool]:
        sent_at = time.monotonic()
        try:
            ws.send(frame)
        except (OSError, self._exc.ConnectionClosed) as exc:
            _close_quietly(ws)
            if resend:
                raise RemotePolicyError(
                    f"the openpi policy server at {self.address} dropped the connection twice while "
                    f"sending request {index} ({_reason(exc)}); gave up"
                ) from None
            return self._resend(index, frame, _reason(exc))
        return ws, index, sent_at, resend

    def _resend(self, index: int, frame: bytes, why: str) -> tuple[Any, int, float, bool]:
        """Reconnect once for request ``index`` and send it again."""
        logger.warning(
            "the openpi policy server at %s dropped a connection (%s); reconnecting and resending once",
            self.address,
            why,
        )
        try:
            ws, _ = self._connect(time.monotonic())
        except RemotePolicyError as exc:
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} dropped the connection ({why}) and "
                f"reconnecting failed: {exc}"
            ) from None
        self.reconnects += 1
        return self._send(ws, index, frame, resend=True)

    def _receive(self, ws: Any, index: int, sent_at: float) -> dict[Any, Any]:
        """The decoded answer to what was sent at ``sent_at`` (``index`` -1: the metadata)."""
        what = "its metadata" if index < 0 else f"request {index}"
        try:
            raw = ws.recv(timeout=max(0.0, sent_at + self.timeout - time.monotonic()))
        except TimeoutError:
            _close_quietly(ws)  # its answer may still come: this connection cannot be reused
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} did not answer {what} within "
                f"{self.timeout:g} s (timeout; waited {time.monotonic() - sent_at:.1f} s)"
            ) from None
        except self._exc.ConnectionClosed as exc:
            rcvd = exc.rcvd
            if rcvd is not None and rcvd.code == CLOSE_INTERNAL_ERROR:
                raise OpenpiServerError(
                    f"openpi policy server {self.address}: the server failed: {rcvd.reason or 'code 1011'}",
                    remote_traceback=rcvd.reason or None,
                ) from None
            if rcvd is not None and rcvd.code == 1009:
                raise RemotePolicyError(
                    f"the openpi policy server at {self.address} refused {what} as too big ({rcvd.reason})"
                ) from None
            raise _Dropped(_reason(exc)) from None
        except OSError as exc:
            raise _Dropped(_reason(exc)) from None
        if isinstance(raw, str):  # openpi's error frame: the traceback, then close 1011
            with contextlib.suppress(Exception):  # the close is a courtesy; the text says it all
                ws.recv(timeout=ERROR_CLOSE_WAIT)
            _close_quietly(ws)
            raise OpenpiServerError(
                f"openpi policy server {self.address}: the server failed: {last_line(raw)}",
                remote_traceback=raw,
            )
        try:
            reply = unpackb(raw)
        except OpenpiCodecError as exc:
            _close_quietly(ws)
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} answered {what} with a frame trialrun "
                f"refuses: {exc}"
            ) from None
        if not isinstance(reply, Mapping):
            _close_quietly(ws)
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} answered {what} with a "
                f"{type(reply).__name__}, not a map"
            )
        return dict(reply)

    def _encode(self, index: int, request: Request) -> bytes:
        try:
            frame = packb(request)
        except (TypeError, ValueError) as exc:
            raise RemotePolicyError(
                f"cannot send request {index} to the openpi policy server at {self.address}: {exc}"
            ) from exc
        if len(frame) > self.max_message_bytes:
            raise RemotePolicyError(
                f"request {index} to {self.address} is {len(frame)} bytes, over the limit of "
                f"{self.max_message_bytes} (max_message_bytes)"
            )
        return frame


def _reason(exc: BaseException) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return f"closed with code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_all(connections: list[Any]) -> None:
    while connections:
        _close_quietly(connections.pop())
