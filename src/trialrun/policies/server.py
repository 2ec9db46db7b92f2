"""The policy server behind ``trialrun serve-policy``: any policy trialrun can
build, served over a WebSocket with the wire format of
:mod:`trialrun.policies.remote`.

Each client session gets its own policy, built when its ``hello`` arrives
(the policy needs the client's spaces and ``num_envs``). Sessions survive a
dropped connection for ``session_ttl`` seconds, so a client that reconnects
continues with the same policy state; the last answer of each session is
kept so a request sent twice (its first answer was lost) is not acted on twice.

Serve on 127.0.0.1 (the default) unless the network is trusted: there is no
authentication, and a policy spec can name any importable callable.

Example:
    >>> server = PolicyServer("zero", {}, host="127.0.0.1", port=0)
    >>> server.start()
    >>> server.url.startswith("ws://127.0.0.1:")
    True
    >>> server.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.registry import build_policy
from trialrun.policies.remote import MAX_MESSAGE_BYTES, PROTOCOL, packb, space_from_wire, unpackb

logger = logging.getLogger(__name__)


@dataclass
class _Session:
    policy: Any
    description: str
    last_seq: int = 0
    last_reply: bytes | None = None
    detached_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class PolicyServer:
    """Serves policy ``type_name`` (with ``kwargs``) to remote clients."""

    def __init__(
        self,
        type_name: str,
        kwargs: dict[str, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        session_ttl: float = 300.0,
    ) -> None:
        self.type_name = type_name
        self.kwargs = dict(kwargs)
        self.host = host
        self.port = port
        self.session_ttl = session_ttl
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------

    def bind(self) -> None:
        """Open the listening socket (``port=0`` picks a free port; :attr:`url` tells which)."""
        ws_server = require_extra("websockets.sync.server", "remote", "serve-policy")
        self._server = ws_server.serve(
            self._handle,
            self.host,
            self.port,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            open_timeout=10,
        )
        self.port = int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Bind (if not bound yet) and serve until :meth:`stop` or Ctrl-C."""
        if self._server is None:
            self.bind()
        self._server.serve_forever()

    def start(self) -> None:
        """Bind now and serve from a background thread."""
        self.bind()
        self._thread = threading.Thread(target=self._server.serve_forever, name="policy-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- protocol ---------------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [
                k
                for k, s in self._sessions.items()
                if s.detached_at is not None and now - s.detached_at > self.session_ttl
            ]:
                logger.info("session %s expired", key[:8])
                del self._sessions[key]

    def _hello(self, msg: dict[str, Any]) -> tuple[str, _Session, bool]:
        if msg.get("protocol") != PROTOCOL:
            raise ValueError(
                f"protocol {msg.get('protocol')!r} is not supported (this server speaks {PROTOCOL})"
            )
        key = str(msg["session"])
        self._expire()
        with self._lock:
            session = self._sessions.get(key)
        if session is not None:
            session.detached_at = None
            return key, session, True
        context = PolicyContext(
            env_id=str(msg.get("env_id", "")),
            num_envs=int(msg["num_envs"]),
            observation_space=space_from_wire(msg["observation_space"]),
            action_space=space_from_wire(msg["action_space"]),
            env_kwargs=dict(msg.get("env_kwargs") or {}),
            instruction=msg.get("instruction"),
        )
        policy = build_policy(self.type_name, self.kwargs, context)
        session = _Session(policy=policy, description=self.type_name)
        with self._lock:
            self._sessions[key] = session
        logger.info(
            "session %s: built '%s' for %s (%d envs)",
            key[:8],
            self.type_name,
            context.env_id,
            context.num_envs,
        )
        return key, session, False

    def _answer(self, session: _Session, msg: dict[str, Any]) -> bytes:
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

    def _handle(self, ws: Any) -> None:
        exceptions = require_extra("websockets.exceptions", "remote", "serve-policy")
        key: str | None = None
        session: _Session | None = None
        try:
            for raw in ws:
                seq = None
                try:
                    msg = unpackb(raw)
                    kind = msg.get("type")
                    seq = msg.get("seq")
                    if kind == "hello":
                        key, session, resumed = self._hello(msg)
                        ws.send(
                            packb(
                                {
                                    "type": "ready",
                                    "session": key,
                                    "resumed": resumed,
                                    "policy": session.description,
                                }
                            )
                        )
                    elif kind == "close":
                        if key is not None:
                            with self._lock:
                                self._sessions.pop(key, None)
                        key = session = None
                        return
                    elif kind in ("act", "reset"):
                        if session is None:
                            raise ValueError(f"'{kind}' before 'hello'")
                        ws.send(self._answer(session, msg))
                    else:
                        raise ValueError(f"unknown message type {kind!r}")
                except exceptions.ConnectionClosed:
                    raise
                except Exception as exc:  # report the policy's own error to the client
                    logger.warning("request failed: %s: %s", type(exc).__name__, exc)
                    ws.send(
                        packb(
                            {
                                "type": "error",
                                "seq": seq,
                                "message": f"{type(exc).__name__}: {exc}",
                                "fatal": True,
                            }
                        )
                    )
        except exceptions.ConnectionClosed:
            logger.debug("client disconnected")
        finally:
            if session is not None:
                session.detached_at = time.monotonic()
