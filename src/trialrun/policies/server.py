"""The policy server behind ``trialrun serve-policy``: any policy trialrun can
build, served over a WebSocket with the wire format of
:mod:`trialrun.policies.remote`.

Each client session gets its own policy, built when its ``hello`` arrives
(the policy needs the client's spaces and ``num_envs``). A session outlives a
dropped connection for ``session_idle_timeout`` seconds, so a client that
reconnects continues with the same policy state; the last answer of each
session is kept so a request sent twice (its first answer was lost) is not
acted on twice.

Everything a peer can make the server hold is bounded (:class:`ServerLimits`):

* connections: over ``max_connections`` a handshake is answered with HTTP 503
  (the server goes on serving the others); connections still in their
  handshake are capped too, and a connection must say ``hello`` within
  ``hello_timeout`` seconds;
* sessions: one per connection; a detached session expires after
  ``session_idle_timeout`` seconds, an attached one whose client stays silent
  that long is closed; at ``max_sessions`` a new hello evicts the least
  recently used detached session, or is refused when every session is in use;
* bytes: a message larger than ``max_frame_bytes`` is refused from its
  header, before its payload is read (close code 1009); the bytes of requests
  in flight over all connections (received, queued or being answered) stay
  under ``max_buffered_bytes``: the connection holding the most is closed
  with 1013 "try again later" when a new chunk would pass the cap;
* threads: the event loop is one thread; policy calls run in a pool of at most
  ``max_connections`` threads, so a flood of connections starts no thread.

With a certificate and its key (``tls_cert``/``tls_key``, ``serve-policy
--tls-cert/--tls-key``) the server speaks TLS and its URL is ``wss://``: for
a server reached over a network nobody controls, where observations, actions
and the token would otherwise travel in the clear.

A session is resumed only with the secret the server gave its client in
``ready``, and never while another live connection holds it. With a token
(``--token`` or ``TRIALRUN_TOKEN``) a client must send
``Authorization: Bearer <token>`` at the handshake or get HTTP 401.

Example:
    >>> server = PolicyServer("zero", {}, host="127.0.0.1", port=0)
    >>> server.start()
    >>> server.url.startswith("ws://127.0.0.1:")
    True
    >>> server.stop()
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import numpy as np

from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.registry import build_policy
from trialrun.policies.remote import (
    MAX_MESSAGE_BYTES,
    MAX_NUM_ENVS,
    PROTOCOL,
    packb,
    space_from_wire,
    unpackb,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: Close codes (RFC 6455 and the IANA registry) the server uses.
CLOSE_GOING_AWAY, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN_LATER = 1001, 1009, 1013
_CONTROL_OPCODES = {8, 9, 10}  # close, ping, pong


@dataclass(frozen=True)
class ServerLimits:
    """What one policy server holds at most (the ``serve-policy`` options).

    ``max_buffered_bytes`` counts wire bytes of requests not yet answered; the
    memory they cost while decoded is a small multiple of it (the frame, its
    msgpack bytes and the arrays made from them).
    """

    max_connections: int = 64
    max_sessions: int = 256
    session_idle_timeout: float = 300.0
    max_frame_bytes: int = MAX_MESSAGE_BYTES
    max_buffered_bytes: int = MAX_MESSAGE_BYTES
    hello_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_sessions", "max_frame_bytes", "max_buffered_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("session_idle_timeout", "hello_timeout"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.max_buffered_bytes < self.max_frame_bytes:
            raise ValueError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least max_frame_bytes "
                f"({self.max_frame_bytes}): a largest message could never be received"
            )


def server_tls_context(cert: str | os.PathLike[str], key: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """TLS settings for a server: ``cert`` (PEM: the certificate, then any
    intermediates) and ``key`` (PEM; None when ``cert`` holds it too).

    Raises:
        FileNotFoundError: ``cert`` or ``key`` does not exist (its ``filename`` says which).
        ValueError: a file that is not a PEM certificate or key, or a key that does not match.
    """
    for path in (cert, key):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(2, "no such file", os.fspath(path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        names = os.fspath(cert) + (f" and {os.fspath(key)}" if key is not None else "")
        raise ValueError(f"cannot load a TLS certificate and key from {names}: {exc.reason or exc}") from None
    return context


class _Refused(Exception):
    """A request the server declines for now; the client may retry (``fatal: false``)."""


@dataclass
class _Session:
    key: str
    secret: str
    policy: Any
    description: str
    last_active: float
    attached: Any = None  # the connection that holds the session, if any
    last_seq: int = 0
    last_reply: bytes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _reachable_by_others(host: str) -> bool:
    """False for ``localhost`` and loopback addresses: only this machine can connect to them."""
    with contextlib.suppress(ValueError):
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    return host != "localhost"


class _Throttled:
    """A warning that a peer can trigger at will, logged at most once per ``every`` seconds
    (with how many were held back), so a flood cannot flood the log or block on stderr."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = -float("inf")
        self.held_back = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.held_back += 1
            logger.debug(message, *args)
            return
        if self.held_back:
            message += f" (and {self.held_back} more like it in the last {now - self.last:.0f} s)"
        self.last, self.held_back = now, 0
        logger.warning(message, *args)


_REFUSALS, _FAILURES = _Throttled(), _Throttled()


def _wire_size(payload: int) -> int:
    """Bytes a masked client frame with ``payload`` bytes takes on the wire (RFC 6455 5.2)."""
    extended = 0 if payload < 126 else 2 if payload < 65536 else 8
    return 2 + extended + 4 + payload


class _Budget:
    """Bytes of requests in flight over all connections (event-loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.connections: set[Any] = set()  # every TCP connection, handshaking or open
        self.admitted: set[Any] = set()  # connections past the handshake gate
        self.peak = 0

    def admit(self, conn: Any, size: int) -> bool:
        """Count ``size`` new bytes for ``conn``; close the biggest holder when over the cap.
        Returns False when ``conn`` itself was closed."""
        while self.total + size > self.limit:
            hog = max(self.connections, key=lambda c: c.inflight, default=conn)
            if hog.inflight == 0:  # nobody holds anything: this chunk alone is over the cap
                hog = conn
            hog.refuse(
                CLOSE_TRY_AGAIN_LATER,
                f"server busy: over {self.limit} bytes of requests in flight; try again",
            )
            if hog is conn:
                return False
        conn.inflight += size
        self.total += size
        self.peak = max(self.peak, self.total)
        return True

    def release(self, conn: Any, size: int) -> None:
        size = min(size, conn.inflight)
        conn.inflight -= size
        self.total -= size


def _connection_class(budget: _Budget, max_tcp: int) -> type:
    """A websockets ``ServerConnection`` that counts the bytes it buffers in ``budget``."""
    connection_module = require_extra("websockets.asyncio.server", "remote", "serve-policy")

    class _Connection(connection_module.ServerConnection):  # type: ignore[misc, name-defined]
        inflight = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._messages: collections.deque[int] = collections.deque()
            self._partial = 0
            if len(budget.connections) >= max_tcp:  # far over the cap: not even an HTTP answer
                transport.abort()
                return
            budget.connections.add(self)

        def connection_lost(self, exc: Exception | None) -> None:
            budget.connections.discard(self)
            budget.admitted.discard(self)
            budget.release(self, self.inflight)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            counted = self in budget.connections and self.protocol.state.name == "OPEN"
            if counted and not budget.admit(self, len(data)):
                return
            super().data_received(data)

        def process_event(self, event: Any) -> None:
            opcode = getattr(getattr(event, "opcode", None), "value", None)
            if opcode is not None:  # a frame: data frames wait for the handler, control frames are done
                size = _wire_size(len(event.data))
                if opcode in _CONTROL_OPCODES:
                    budget.release(self, size)
                else:
                    self._partial += size
                    if event.fin:
                        self._messages.append(self._partial)
                        self._partial = 0
            super().process_event(event)

        def message_done(self) -> None:
            """The handler answered the oldest message: its bytes are no longer held."""
            if self._messages:
                budget.release(self, self._messages.popleft())

        def refuse(self, code: int, reason: str) -> None:
            """Close now with ``code`` and ``reason``; its buffered bytes are dropped."""
            _REFUSALS.warning("closing a connection from %s: %s", self.remote_address, reason)
            budget.release(self, self.inflight)
            budget.connections.discard(self)
            if self.protocol.state.name == "OPEN":
                self.protocol.fail(code, reason)
                self.send_data()
            self.transport.close()

    return _Connection


class PolicyServer:
    """Serves policy ``type_name`` (with ``kwargs``) to remote clients, within ``limits``."""

    def __init__(
        self,
        type_name: str,
        kwargs: dict[str, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        limits: ServerLimits | None = None,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.type_name = type_name
        self.tls = tls
        """TLS settings (:func:`server_tls_context`); None serves plain ``ws://``."""
        self.kwargs = dict(kwargs)
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.token = token or None
        self._sessions: dict[str, _Session] = {}
        self._budget = _Budget(self.limits.max_buffered_bytes)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- lifecycle --------------------------------------------------------

    def bind(self) -> None:
        """Open the listening socket (``port=0`` picks a free port; :attr:`url` tells which).

        Raises:
            OSError: the address cannot be bound (port in use, unknown host).
        """
        require_extra("websockets.asyncio.server", "remote", "serve-policy")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.create_server((self.host.strip("[]"), self.port), family=family, backlog=128)
        self.port = int(self._sock.getsockname()[1])
        if self.token is None and _reachable_by_others(self.host):
            logger.warning(
                "serving on %s without a token: anyone who can reach it can run this policy "
                "(set --token or TRIALRUN_TOKEN)",
                self.host,
            )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls is not None else 'ws'}://{host}:{self.port}"

    @property
    def session_count(self) -> int:
        """Sessions held now (attached or waiting for their client to come back)."""
        return len(self._sessions)

    def serve_forever(self) -> None:
        """Bind (if not bound yet) and serve until :meth:`stop` or Ctrl-C."""
        if self._sock is None:
            self.bind()
        asyncio.run(self._main())

    def start(self) -> None:
        """Bind now and serve from a background thread."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        """Stop accepting and close every connection (code 1001)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _main(self) -> None:
        ws_server = require_extra("websockets.asyncio.server", "remote", "serve-policy")
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.limits.max_connections, thread_name_prefix="policy-call"
        )
        server = await ws_server.serve(
            self._handle,
            sock=self._sock,
            max_size=self.limits.max_frame_bytes,
            max_queue=1,
            compression=None,
            ssl=self.tls,
            open_timeout=self.limits.hello_timeout,
            process_request=self._check_request,
            create_connection=_connection_class(self._budget, 2 * self.limits.max_connections + 16),
        )
        janitor = asyncio.create_task(self._janitor())
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            janitor.cancel()
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except asyncio.TimeoutError:  # builtin TimeoutError only from Python 3.11
                logger.warning("policy calls still running at shutdown were abandoned")
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- limits -----------------------------------------------------------

    def _check_request(self, connection: Any, request: Any) -> Any:
        """The handshake gate: the connection cap, then the token (HTTP 503 / 401)."""
        open_now = len(self._budget.admitted)
        if open_now >= self.limits.max_connections:
            _REFUSALS.warning("refused a connection: %d connections open", open_now)
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server busy: {open_now} connections open (--max-connections "
                f"{self.limits.max_connections}); try again later\n",
            )
        if self.token is not None:
            scheme, _, sent = str(request.headers.get("Authorization", "")).partition(" ")
            good = scheme.lower() == "bearer" and hmac.compare_digest(
                sent.strip().encode(), self.token.encode()
            )
            if not good:
                _REFUSALS.warning(
                    "refused a connection from %s: missing or wrong token", connection.remote_address
                )
                what = "wrong token" if sent else "a token is required"
                return connection.respond(HTTPStatus.UNAUTHORIZED, f"{what} (Authorization: Bearer ...)\n")
        self._budget.admitted.add(connection)
        return None

    async def _janitor(self) -> None:
        """Expire detached sessions idle for longer than ``session_idle_timeout``."""
        interval = max(0.05, min(self.limits.session_idle_timeout / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, session in list(self._sessions.items()):
                if session.attached is None and now - session.last_active > self.limits.session_idle_timeout:
                    logger.info("session %s expired", key[:8])
                    del self._sessions[key]

    def _make_room(self) -> None:
        """At ``max_sessions``, drop the least recently used detached session."""
        if len(self._sessions) < self.limits.max_sessions:
            return
        idle = [s for s in self._sessions.values() if s.attached is None]
        if not idle:
            raise _Refused(
                f"the server holds {len(self._sessions)} sessions, all in use (--max-sessions); try later"
            )
        oldest = min(idle, key=lambda s: s.last_active)
        logger.info("session %s evicted (--max-sessions %d)", oldest.key[:8], self.limits.max_sessions)
        del self._sessions[oldest.key]

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` in the policy-call pool, off the event loop."""
        assert self._pool is not None and self._loop is not None  # set by _main before serving
        return await self._loop.run_in_executor(self._pool, fn, *args)

    # -- protocol ---------------------------------------------------------

    async def _hello(self, ws: Any, msg: dict[str, Any]) -> tuple[_Session, bytes]:
        if msg.get("protocol") != PROTOCOL:
            raise ValueError(
                f"protocol {msg.get('protocol')!r} is not supported (this server speaks {PROTOCOL})"
            )
        key = str(msg.get("session", ""))
        if not 8 <= len(key) <= 64:
            raise ValueError("a hello needs a session id of 8 to 64 characters")
        session = self._sessions.get(key)
        if session is not None:
            if not hmac.compare_digest(str(msg.get("resume") or "").encode(), session.secret.encode()):
                raise ValueError(f"session {key[:8]} exists and this hello does not hold its secret")
            if session.attached is not None and session.attached is not ws:
                if await self._alive(session.attached):
                    raise _Refused(f"session {key[:8]} is in use by another live connection")
                session.attached.refuse(CLOSE_GOING_AWAY, "session resumed on another connection")
            session.attached, session.last_active = ws, time.monotonic()
            ready = {"type": "ready", "session": key, "resumed": True, "policy": session.description}
            return session, packb({**ready, "resume": session.secret})
        num_envs = msg.get("num_envs")
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or not 1 <= num_envs <= MAX_NUM_ENVS:
            raise ValueError(f"num_envs must be an integer from 1 to {MAX_NUM_ENVS}, got {num_envs!r}")
        self._make_room()
        context = PolicyContext(
            env_id=str(msg.get("env_id", "")),
            num_envs=num_envs,
            observation_space=space_from_wire(msg["observation_space"]),
            action_space=space_from_wire(msg["action_space"]),
            env_kwargs=dict(msg.get("env_kwargs") or {}),
            instruction=msg.get("instruction"),
        )
        policy = await self._call(build_policy, self.type_name, self.kwargs, context)
        self._make_room()  # others may have said hello while the policy was built
        session = _Session(key, secrets.token_hex(16), policy, self.type_name, time.monotonic(), ws)
        self._sessions[key] = session
        logger.info(
            "session %s: built '%s' for %s (%d envs)", key[:8], self.type_name, context.env_id, num_envs
        )
        ready = {"type": "ready", "session": key, "resumed": False, "policy": session.description}
        return session, packb({**ready, "resume": session.secret})

    @staticmethod
    async def _alive(ws: Any) -> bool:
        """Whether ``ws`` answers a ping within 2 s (a half-open connection does not)."""
        try:
            pong = await ws.ping()
            await asyncio.wait_for(pong, 2.0)
        except Exception:  # closed, timed out or failed: not alive either way
            return False
        return True

    @staticmethod
    def _answer(session: _Session, msg: dict[str, Any]) -> bytes:
        seq = int(msg.get("seq", 0))
        with session.lock:
            if seq == session.last_seq and session.last_reply is not None:
                return session.last_reply  # a resend: its first answer was lost
            if seq <= session.last_seq:
                raise ValueError(f"request #{seq} is older than the last one (#{session.last_seq})")
            if msg["type"] == "act":
                action = session.policy.act(msg["obs"])
                if not isinstance(action, dict):
                    action = np.asarray(action)
                reply = packb({"type": "action", "seq": seq, "action": action})
            else:
                mask = np.asarray(msg["mask"], dtype=bool)
                session.policy.reset(mask, msg.get("seeds"))
                reply = packb({"type": "reset_done", "seq": seq})
            session.last_seq, session.last_reply = seq, reply
            return reply

    async def _reply(
        self, ws: Any, session: _Session | None, raw: Any
    ) -> tuple[_Session | None, bytes | None]:
        """The session after request ``raw`` and the answer to send (None: the client said close).

        Its own frame holds the decoded request, so it is freed on return, not
        kept alive by the connection's loop while it waits for the next one.
        """
        exceptions = require_extra("websockets.exceptions", "remote", "serve-policy")
        seq = kind = None
        try:
            msg = await self._call(unpackb, raw)
            if not isinstance(msg, dict):
                raise ValueError("a message must be a map")
            kind, seq = msg.get("type"), msg.get("seq")
            if kind == "hello":
                if session is not None:
                    raise ValueError("one hello per connection")
                return await self._hello(ws, msg)
            if kind == "close":
                if session is not None:
                    self._sessions.pop(session.key, None)
                return None, None
            if kind in ("act", "reset"):
                if session is None:
                    raise ValueError(f"'{kind}' before 'hello'")
                session.last_active = time.monotonic()
                return session, await self._call(self._answer, session, msg)
            raise ValueError(f"unknown message type {kind!r}")
        except exceptions.ConnectionClosed:
            raise
        except Exception as exc:  # report the policy's own error (or the refusal) to the client
            if kind in ("act", "reset"):  # the policy failed: worth the operator's attention
                _FAILURES.warning("request failed: %s: %s", type(exc).__name__, exc)
            else:  # a peer's malformed or refused request
                logger.info("request refused: %s: %s", type(exc).__name__, exc)
            fatal = not isinstance(exc, _Refused)
            message = str(exc) if not fatal else f"{type(exc).__name__}: {exc}"
            return session, packb({"type": "error", "seq": seq, "message": message, "fatal": fatal})

    async def _handle(self, ws: Any) -> None:
        exceptions = require_extra("websockets.exceptions", "remote", "serve-policy")
        session: _Session | None = None
        try:
            while True:
                timeout = self.limits.hello_timeout if session is None else self.limits.session_idle_timeout
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except asyncio.TimeoutError:
                    what = "no hello" if session is None else "no request"
                    await ws.close(1000, f"{what} within {timeout:g} s")
                    return
                try:
                    session, reply = await self._reply(ws, session, raw)
                finally:
                    raw = b""  # let a big request go now, not when the next one arrives
                    ws.message_done()
                if reply is None:
                    return
                await ws.send(reply)
        except exceptions.ConnectionClosed:
            logger.debug("client disconnected")
        finally:
            if session is not None and session.attached is ws:
                session.attached, session.last_active = None, time.monotonic()
