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
each: it sends a request on every free connection, then waits for answers
and sends the next request on whichever connection answered first.

How it waits: one thread (the caller's) drives every connection. The
sockets are non-blocking and registered with one :mod:`selectors` selector;
the WebSocket framing is websockets' sans-I/O ``ClientProtocol`` (a few
microseconds a frame), so there is no reader thread per connection and no
hand-off between threads; data frames are written directly
(:func:`binary_frame`). On 127.0.0.1 (``benchmarks/remote.py``, 16
connections) a step's 16 round trips took 2.3 ms with websockets' threaded
client and the asyncio server, 0.73 ms with this client and the selector
server, at about 27 us of client CPU per request.
Connections are opened (handshake and metadata read, blocking, within
``timeout``) when first needed and kept for the next step; an idle
connection the server closed meanwhile is dropped before the next step,
quietly. (Nothing reads the sockets between steps, so a pause of more than
40 s lets openpi's server close them: it pings every 20 s and gives up with
1011 "keepalive ping timeout" 20 s later. That close is not the policy's error.)

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

import contextlib
import functools
import logging
import os
import selectors
import socket
import ssl
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.policies.loaders import require_extra
from trialrun.policies.remote import MAX_MESSAGE_BYTES, tls_context, untrusted
from trialrun.policies.vla.factories import check_openpi_settings
from trialrun.policies.vla.openpi_codec import OpenpiCodecError, packb, unpackb
from trialrun.policies.vla.transport import Reply, Request

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds a request may wait for its answer (and the first connection for its metadata)."""
DEFAULT_MAX_CONNECTIONS = 1
"""Connections kept open by default: openpi's own client keeps one."""
CLOSE_INTERNAL_ERROR = 1011
"""The close code openpi's server sends after the text frame carrying its traceback."""
CLOSE_TOO_BIG = 1009
"""The close code of a frame over a peer's size limit."""
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Api-Key"
"""openpi's client sends ``Authorization: Api-Key <key>``."""
RECV_BYTES = 1 << 18
"""Bytes read per ``recv``: a pendulum reply is 150, a chunk of 50 x 32 floats 6.5 k."""


class OpenpiServerError(RemotePolicyError):
    """The openpi server sent an error frame; ``remote_traceback`` is its whole text."""

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = remote_traceback


def last_line(text: str) -> str:
    """The last non-blank line of a traceback: the exception and its message."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "(no message)")


def binary_frame(payload: bytes, *, masked: bool) -> bytes:
    """``payload`` as one unfragmented binary WebSocket frame (RFC 6455 5.2).

    Written here rather than by websockets' ``Protocol.send_binary``: a data
    frame changes nothing in the protocol's state, and this costs a third of
    the time (a client's frames are masked with 4 fresh random bytes, as the
    RFC asks; a server's are not).
    """
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((0x82, mask_bit | size))
    elif size < 65536:
        head = bytes((0x82, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, mask_bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    masked_payload: bytes = _apply_mask()(payload, mask)
    return head + mask + masked_payload


@functools.cache
def _apply_mask() -> Any:
    """websockets' C ``apply_mask``, or its pure-Python one where the C extension is not built."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # no compiler when websockets was installed
        from websockets.utils import apply_mask
    return apply_mask


class _Dropped(Exception):
    """A connection closed without an error frame (retryable once)."""


class _Connection:
    """One WebSocket: its socket, websockets' sans-I/O protocol, and what it waits for."""

    __slots__ = ("index", "lost", "out", "parts", "protocol", "resent", "sent_at", "sock", "text", "writing")

    def __init__(self, sock: socket.socket, protocol: Any) -> None:
        self.sock = sock
        self.protocol = protocol
        self.parts: list[bytes] = []  # the fragments of a message still arriving
        self.text = False  # whether that message is a text frame (openpi's error)
        self.index = -1  # the request in flight (-1: none; -2: the metadata)
        self.sent_at = 0.0
        self.resent = False
        self.out = b""  # bytes the socket did not take yet
        self.writing = False  # registered for EVENT_WRITE (``out`` was not empty)
        self.lost: str | None = None  # why the connection was cut while idle (it is closed)

    def close(self) -> None:
        """Say goodbye (a close frame, if it fits in the socket's buffer) and close the socket."""
        with contextlib.suppress(Exception):  # a dead socket or protocol: nothing left to say
            if self.protocol.state.name == "OPEN":
                self.protocol.send_close()
                self.sock.send(b"".join(self.protocol.data_to_send()))
        with contextlib.suppress(OSError):
            self.sock.close()


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
        ca_file: with ``wss://``, a PEM file of the CA certificates to trust
            instead of the system's (a server behind a private CA); without
            it, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured as by
            :func:`ssl.create_default_context`.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._ws = require_extra("websockets.client", "remote", "openpi policies")
        self._uri = require_extra("websockets.uri", "remote", "openpi policies")
        self._exc = require_extra("websockets.exceptions", "remote", "openpi policies")
        # enum members compared by identity on the hot path (``.name`` is a property call)
        opcodes = require_extra("websockets.frames", "remote", "openpi policies").Opcode
        self._TEXT, self._BINARY, self._CONT = opcodes.TEXT, opcodes.BINARY, opcodes.CONT
        states = require_extra("websockets.protocol", "remote", "openpi policies").State
        self._OPEN, self._CONNECTING = states.OPEN, states.CONNECTING
        check_openpi_settings(
            {"url": url, "api_key": api_key, "max_connections": max_connections, "timeout": timeout}
        )
        try:
            self._parsed = self._uri.parse_uri(url)
        except self._exc.InvalidURI as exc:
            raise ConfigError(f"invalid URL {url!r}: {exc}", field="policy.url") from None
        self.address = url
        self._tls = tls_context(url, ca_file, field="policy.ca_file")
        self.max_connections = max_connections
        self.timeout = float(timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.metadata: dict[Any, Any] = {}
        self.reconnects = 0
        """Connections re-opened after a drop (a resent request each)."""
        self._api_key = api_key
        self._selector = selectors.DefaultSelector()
        self._idle: list[_Connection] = []  # open connections with nothing in flight
        self._open: set[_Connection] = set()  # every open connection (idle or busy)
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self._open, self._selector)
        first, self.metadata = self._connect()
        self._idle.append(first)

    # -- the Transport protocol ------------------------------------------------------------

    def infer(self, requests: Sequence[Request]) -> list[Reply]:
        """The server's answer to each request, in order; up to ``max_connections`` in flight."""
        if self._closed:
            raise RemotePolicyError(f"the openpi transport to {self.address} is closed")
        frames = [self._encode(i, request) for i, request in enumerate(requests)]
        self._forget_closed_idle()
        replies: list[Any] = [None] * len(frames)
        busy: set[_Connection] = set()
        following, done = 0, 0
        try:
            while done < len(frames):
                while following < len(frames) and len(busy) < self.max_connections:
                    busy.add(self._send(self._take(), following, frames[following], resend=False))
                    following += 1
                for conn, reply in self._wait(busy):
                    if isinstance(reply, _Dropped):
                        busy.add(self._dropped(conn, frames[conn.index], str(reply)))
                        continue
                    replies[conn.index] = reply
                    conn.index = -1
                    self._idle.append(conn)
                    done += 1
        except BaseException:
            for conn in busy:  # their answers would reach a later step: drop the connections
                self._discard(conn)
            raise
        return replies

    def reset(self, worlds: Sequence[int]) -> None:
        """Nothing to tell: openpi's servers keep no per-episode state (its client's ``reset`` is a no-op)."""

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        self._idle.clear()
        self._finalizer()

    # -- waiting ---------------------------------------------------------------------------

    def _forget_closed_idle(self) -> None:
        """Drop idle connections the server closed since the last step (it closes silent ones).

        One poll that does not wait. A connection the server closed with a
        close frame is forgotten quietly; one that was cut (no close frame: the
        server died?) stays in the pool, marked, so the request sent on it next
        takes the reconnect-and-resend path and its error says what happened.
        """
        for key, _ in self._selector.select(0):
            conn = key.data
            if conn not in self._idle:
                continue
            try:
                spoke = self._read(conn) is not None  # a message nobody asked for
            except _Dropped as exc:
                if conn.protocol.close_rcvd is None:
                    conn.lost = str(exc)
                    self._discard(conn)
                    continue
                spoke = True
            except Exception:  # an error frame or a close with an error: of no more use either
                spoke = True
            if spoke:
                self._idle.remove(conn)
                self._discard(conn)

    def _wait(self, busy: set[_Connection]) -> list[tuple[_Connection, Any]]:
        """The connections of ``busy`` that finished (a reply, or a :class:`_Dropped`), removed from it.

        Blocks until at least one did, or the oldest request's time is up.
        """
        while True:
            oldest = min(busy, key=_sent_at)
            remaining = oldest.sent_at + self.timeout - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(oldest)
            finished: list[tuple[_Connection, Any]] = []
            for key, events in self._selector.select(remaining):
                conn = key.data
                try:
                    if events & selectors.EVENT_WRITE:  # the rest of a request too big for one send
                        try:
                            self._flush(conn)
                        except OSError as exc:
                            raise _Dropped(_reason(exc)) from None
                    reply = self._read(conn) if events & selectors.EVENT_READ else None
                except _Dropped as exc:
                    self._discard(conn)
                    if conn in busy:
                        busy.discard(conn)
                        finished.append((conn, exc))
                    elif conn in self._idle:  # the server closed an idle connection: forget it
                        self._idle.remove(conn)
                    continue
                except BaseException:
                    self._discard(conn)
                    busy.discard(conn)
                    raise
                if reply is not None and conn in busy:
                    busy.discard(conn)
                    finished.append((conn, reply))
            if finished:
                return finished

    def _read(self, conn: _Connection) -> dict[Any, Any] | None:
        """Read what ``conn``'s socket holds; the decoded reply once a whole message arrived.

        Raises:
            _Dropped: the connection closed without an error frame.
            OpenpiServerError: an error frame or a close with code 1011.
            RemotePolicyError: a frame over a size limit, or a reply that is not a msgpack map.
        """
        protocol = conn.protocol
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        except TimeoutError:  # only while connecting (a blocking socket): the caller says what timed out
            raise
        except OSError as exc:
            raise _Dropped(_reason(exc)) from None
        if data and isinstance(conn.sock, ssl.SSLSocket):  # wss: TLS may hold decrypted bytes the
            data += _pending_tls(conn.sock)  # selector cannot see: read them now
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        message = None
        for event in protocol.events_received():
            kind = getattr(event, "opcode", None)
            if kind is None:  # the handshake's response: protocol.handshake_exc says if it failed
                continue
            if kind is self._BINARY or kind is self._TEXT:
                conn.parts, conn.text = [event.data], kind is self._TEXT
            elif kind is self._CONT:
                conn.parts.append(event.data)
            else:  # control frames: websockets answers pings and closes itself
                continue
            if event.fin:
                message = conn.parts[0] if len(conn.parts) == 1 else b"".join(conn.parts)
                conn.parts = []
                break  # openpi sends nothing more until the next request
        outgoing = protocol.data_to_send()
        if outgoing:  # a pong, or the answer to a close
            self._queue(conn, b"".join(outgoing))
        if message is not None:
            return self._decode(conn, message)
        if not data or (protocol.state is not self._OPEN and protocol.state is not self._CONNECTING):
            raise self._closed_error(conn)
        return None

    def _closed_error(self, conn: _Connection) -> Exception:
        """What a connection that closed (or was closed by its protocol) means."""
        protocol, what = conn.protocol, _what(conn.index)
        rcvd, sent = protocol.close_rcvd, protocol.close_sent
        if rcvd is not None and rcvd.code == CLOSE_INTERNAL_ERROR:
            return OpenpiServerError(
                f"openpi policy server {self.address}: the server failed: {rcvd.reason or 'code 1011'}",
                remote_traceback=rcvd.reason or None,
            )
        if rcvd is not None and rcvd.code == CLOSE_TOO_BIG:
            return RemotePolicyError(
                f"the openpi policy server at {self.address} refused {what} as too big ({rcvd.reason})"
            )
        if rcvd is None and sent is not None and sent.code == CLOSE_TOO_BIG:
            return RemotePolicyError(
                f"the openpi policy server at {self.address} answered {what} with a frame over "
                f"{self.max_message_bytes} bytes (max_message_bytes)"
            )
        if rcvd is not None:
            return _Dropped(f"closed with code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else ""))
        return _Dropped(_reason(protocol.close_exc) if protocol.state.name == "CLOSED" else "connection lost")

    def _decode(self, conn: _Connection, message: bytes) -> dict[Any, Any]:
        what = _what(conn.index)
        if conn.text:  # openpi's error frame: the traceback (then close 1011, a courtesy we skip)
            text = message.decode("utf-8", "replace")
            raise OpenpiServerError(
                f"openpi policy server {self.address}: the server failed: {last_line(text)}",
                remote_traceback=text,
            )
        try:
            reply = unpackb(message)
        except OpenpiCodecError as exc:
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} answered {what} with a frame trialrun "
                f"refuses: {exc}"
            ) from None
        if not isinstance(reply, Mapping):
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} answered {what} with a "
                f"{type(reply).__name__}, not a map"
            )
        return reply if type(reply) is dict else dict(reply)

    def _timed_out(self, conn: _Connection) -> RemotePolicyError:
        return RemotePolicyError(
            f"the openpi policy server at {self.address} did not answer {_what(conn.index)} within "
            f"{self.timeout:g} s (timeout; waited {time.monotonic() - conn.sent_at:.1f} s)"
        )

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> tuple[_Connection, dict[Any, Any]]:
        """A new connection and the metadata frame it starts with (blocking, within ``timeout``)."""
        start = time.monotonic()
        uri = self._parsed
        try:
            sock = socket.create_connection((uri.host, uri.port), timeout=self.timeout)
        except OSError as exc:
            raise self._unreachable(exc) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=uri.host)
            protocol = self._ws.ClientProtocol(uri, max_size=self.max_message_bytes)
            request = protocol.connect()
            if self._api_key:
                request.headers[AUTH_HEADER] = f"{AUTH_SCHEME} {self._api_key}"
            protocol.send_request(request)
            conn = _Connection(sock, protocol)
            conn.index, conn.sent_at = -2, start
            sock.sendall(b"".join(protocol.data_to_send()))
            metadata = None
            while metadata is None:
                sock.settimeout(max(1e-3, start + self.timeout - time.monotonic()))
                try:
                    metadata = self._read(conn)
                except _Dropped as exc:
                    if protocol.handshake_exc is not None:
                        raise self._handshake_failed(protocol.handshake_exc) from None
                    raise RemotePolicyError(
                        f"the openpi policy server at {self.address} closed the connection before "
                        f"sending its metadata ({exc})"
                    ) from None
                if protocol.handshake_exc is not None:
                    raise self._handshake_failed(protocol.handshake_exc)
        except TimeoutError:
            with contextlib.suppress(OSError):
                sock.close()
            if protocol.state.name == "CONNECTING":
                raise self._unreachable(TimeoutError("timed out during the handshake")) from None
            raise self._timed_out(conn) from None
        except ssl.SSLCertVerificationError as exc:
            with contextlib.suppress(OSError):
                sock.close()
            raise RemotePolicyError(untrusted(f"the openpi policy server at {self.address}", exc)) from None
        except OSError as exc:
            with contextlib.suppress(OSError):
                sock.close()
            raise self._unreachable(exc) from None
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            raise
        sock.setblocking(False)
        conn.index = -1
        self._selector.register(sock, selectors.EVENT_READ, conn)
        self._open.add(conn)
        return conn, metadata

    def _unreachable(self, exc: BaseException) -> RemotePolicyError:
        return RemotePolicyError(
            f"cannot connect to the openpi policy server at {self.address}: {_reason(exc)} "
            "(is it running? openpi: scripts/serve_policy.py, trialrun: serve-policy --protocol openpi)"
        )

    def _handshake_failed(self, exc: BaseException) -> RemotePolicyError:
        if isinstance(exc, self._exc.InvalidStatus):
            return RemotePolicyError(self._refused(exc))
        return self._unreachable(exc)

    def _refused(self, exc: Exception) -> str:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        body = bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace").strip()
        detail = f"HTTP {status}" + (f": {body.splitlines()[0][:200]}" if body else "")
        if status in (401, 403):
            sent = "the api_key it was sent" if self._api_key else "the connection: no api_key was set"
            return f"the openpi policy server at {self.address} refused {sent} ({detail})"
        return f"the openpi policy server at {self.address} refused the connection ({detail})"

    def _take(self) -> _Connection:
        """A free connection: an idle one, or a new one (callers keep at most ``max_connections``)."""
        if self._idle:
            return self._idle.pop()
        return self._connect()[0]

    def _discard(self, conn: _Connection) -> None:
        """Forget ``conn`` and close it."""
        if conn in self._open:
            self._open.discard(conn)
            self._selector.unregister(conn.sock)
        conn.close()

    def _send(self, conn: _Connection, index: int, frame: bytes, *, resend: bool) -> _Connection:
        """Send request ``index`` on ``conn`` (or, if that fails, on a new connection, once)."""
        if conn.lost is not None:  # cut while idle: as if this send had failed
            return self._resend(index, frame, conn.lost)
        conn.index, conn.sent_at, conn.resent = index, time.monotonic(), resend
        conn.out += binary_frame(frame, masked=True)  # after a pong still queued, if any
        try:
            self._flush(conn)
        except OSError as exc:
            self._discard(conn)
            if resend:
                raise RemotePolicyError(
                    f"the openpi policy server at {self.address} dropped the connection twice while "
                    f"sending request {index} ({_reason(exc)}); gave up"
                ) from None
            return self._resend(index, frame, _reason(exc))
        return conn

    def _queue(self, conn: _Connection, data: bytes) -> None:
        """Send a control frame websockets owes the server (a pong, a close's answer).

        Why queued: it goes after the bytes of a request still going out (a
        frame written into the middle of another corrupts the stream), and what
        a full socket buffer does not take now is sent when it drains (a pong
        dropped there lets openpi's keepalive close the connection).
        A socket error is left to the next read, which reports the drop.
        """
        conn.out += data
        with contextlib.suppress(OSError):
            if conn in self._open:
                self._flush(conn)
            else:  # still connecting: a blocking socket, not in the selector yet
                conn.sock.sendall(conn.out)
                conn.out = b""

    def _flush(self, conn: _Connection) -> None:
        """Send what the socket takes now; wait for it to be writable for the rest."""
        try:
            sent = conn.sock.send(conn.out) if conn.out else 0
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        conn.out = conn.out[sent:] if sent < len(conn.out) else b""
        if bool(conn.out) != conn.writing:  # selector calls only when that changes (rarely)
            conn.writing = bool(conn.out)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.writing else 0)
            self._selector.modify(conn.sock, events, conn)

    def _dropped(self, conn: _Connection, frame: bytes, why: str) -> _Connection:
        """Request ``conn.index`` lost its connection: resend it once on a new one."""
        index = conn.index
        if conn.resent:
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} dropped the connection twice while "
                f"answering request {index} ({why}; {time.monotonic() - conn.sent_at:.1f} s after "
                "it was resent); gave up"
            )
        return self._resend(index, frame, why)

    def _resend(self, index: int, frame: bytes, why: str) -> _Connection:
        """Reconnect once for request ``index`` and send it again."""
        logger.warning(
            "the openpi policy server at %s dropped a connection (%s); reconnecting and resending once",
            self.address,
            why,
        )
        try:
            conn, _ = self._connect()
        except RemotePolicyError as exc:
            raise RemotePolicyError(
                f"the openpi policy server at {self.address} dropped the connection ({why}) and "
                f"reconnecting failed: {exc}"
            ) from None
        self.reconnects += 1
        return self._send(conn, index, frame, resend=True)

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


def _pending_tls(sock: ssl.SSLSocket) -> bytes:
    """What TLS decrypted already but ``recv`` did not return (one record per call)."""
    parts = []
    while sock.pending():
        try:
            parts.append(sock.recv(RECV_BYTES))
        except (BlockingIOError, ssl.SSLWantReadError):
            break
    return b"".join(parts)


def _sent_at(conn: _Connection) -> float:
    return conn.sent_at


def _what(index: int) -> str:
    return "its metadata" if index < 0 else f"request {index}"


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return f"closed with code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_all(connections: set[_Connection], selector: selectors.BaseSelector) -> None:
    while connections:
        connections.pop().close()
    selector.close()
