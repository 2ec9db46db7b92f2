"""``trialrun serve-policy --protocol openpi``: any policy trialrun can load, served as openpi serves pi0.

The wire is exactly that of openpi's ``websocket_policy_server.py`` (the
client is :mod:`.openpi`; openpi's own ``WebsocketClientPolicy`` works too):

- the first frame on every connection is the metadata (a msgpack map:
  ``policy``, ``env_id``, ``action_horizon`` 1, ``action_dim``, the
  ``observation_keys`` a request must carry);
- each request is one observation dict; the answer is ``{"actions": (1,
  action_dim), "server_timing": {"infer_ms": ..., "prev_total_ms": ...}}``
  (``prev_total_ms`` from the second request on a connection, as openpi);
- a request that fails (the policy raised, a key is missing, a frame that is
  not msgpack) is answered with the traceback as a text frame, then the
  connection is closed with code 1011;
- ``GET /healthz`` answers ``OK``.

One policy is built at start for one world (``num_envs`` 1) from the
observation and action spaces in ``context`` (the command builds the
``--env`` once to read them). A request maps to that policy's observation
as trialrun's openpi client sends it by default: a ``Dict`` observation from
``observation/<key>`` per key, any other from ``obs_key`` (default
``observation/state``). Values are cast to the space's dtype and, when the
element count matches, reshaped to its shape; other keys (images a LIBERO
client sends, say) are ignored. A ``prompt`` reaches a policy that takes
instructions (``instruct``, or ``act(obs, instruction)``).

How it serves: one thread runs one :mod:`selectors` loop over non-blocking
sockets, with websockets' sans-I/O ``ServerProtocol`` for the handshake and
the framing (a few microseconds a frame; an asyncio task per connection cost
several times that per request). The requests that arrived in one poll are
answered together: their observations are stacked and the policy acts once
on the batch (trialrun policies are batch policies), then each connection
gets its own row, in arrival order. For a policy whose rows do not depend
on each other (every trialrun controller) the actions are the ones it gives
each observation alone; a policy that cannot take a batch of them
(it raises, or answers with another number of rows) is asked one
observation at a time from then on. A policy's state is never touched by
two requests at once; a slow policy delays other connections' requests and
handshakes meanwhile, as it would in openpi. ``infer_ms`` is the time of
the policy call that answered the request. The server keeps no
per-episode state and never calls ``reset`` (openpi's protocol has none), so
a recurrent policy carries its memory across episodes, as an openpi server would.

The bounds of :class:`~trialrun.policies.server.ServerLimits` apply as for
trialrun's protocol (this server is a :class:`~trialrun.policies.server.PolicyServer`
with another loop): connections (HTTP 503 over the cap), frame size
(1009), bytes in flight (1013), and a connection that stays silent for
``session_idle_timeout`` seconds is closed. With a token, a client must send
``Authorization: Api-Key <token>`` (what openpi's client sends for its
``api_key``) or ``Authorization: Bearer <token>``; others get HTTP 401.

Example:
    >>> import numpy as np, gymnasium as gym
    >>> from trialrun.policies.base import PolicyContext
    >>> ctx = PolicyContext("Pendulum-v1", 1, gym.spaces.Box(-8, 8, (3,)), gym.spaces.Box(-2, 2, (1,)), {})
    >>> server = OpenpiPolicyServer("zero", {}, ctx, port=0)
    >>> server.metadata["observation_keys"], server.metadata["action_dim"]
    (['observation/state'], 1)
    >>> reply = server.answer({"observation/state": np.zeros(3, np.float32)})
    >>> reply["actions"], sorted(reply["server_timing"])
    (array([[0.]], dtype=float32), ['infer_ms'])
"""

from __future__ import annotations

import contextlib
import logging
import math
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.registry import build_policy
from trialrun.policies.server import (
    _FAILURES,
    _REFUSALS,
    CLOSE_GOING_AWAY,
    PolicyServer,
    ServerLimits,
    _wire_size,
)
from trialrun.policies.vla.openpi import (
    AUTH_HEADER,
    AUTH_SCHEME,
    CLOSE_INTERNAL_ERROR,
    RECV_BYTES,
    binary_frame,
)
from trialrun.policies.vla.openpi_codec import packb, unpackb

logger = logging.getLogger(__name__)

DEFAULT_OBS_KEY = "observation/state"
"""Where a flat observation is in a request (trialrun's openpi client puts it there by default)."""
DICT_KEY_PREFIX = "observation/"
"""A ``Dict`` observation's entry ``k`` is read from ``observation/k``."""
PROMPT_KEY = "prompt"
ERROR_CLOSE_REASON = "Internal server error. Traceback included in previous frame."
"""openpi's close reason after an error frame, word for word."""
HEALTH_PATH = "/healthz"
CLOSE_WAIT = 2.0
"""Seconds a closing connection may take to answer the close before its socket is closed."""
_WAKE = object()  # the selector key of the socket stop() writes to


class _Peer:
    """One client connection: its socket, websockets' sans-I/O protocol, what is left to send."""

    __slots__ = (
        "deadline",
        "eof",
        "inflight",
        "out",
        "owner",
        "partial",
        "parts",
        "prev_total",
        "protocol",
        "sock",
        "text",
        "writing",
    )

    def __init__(
        self, owner: OpenpiPolicyServer, sock: socket.socket, protocol: Any, deadline: float
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.protocol = protocol
        self.parts: list[bytes] = []  # fragments of a message still arriving
        self.partial = 0  # their bytes on the wire (released when the message is answered)
        self.text = False  # whether that message is a text frame
        self.out = b""  # bytes the socket did not take yet
        self.writing = False  # registered for EVENT_WRITE (``out`` was not empty)
        self.eof = False  # half-close once ``out`` is sent
        self.inflight = 0  # request bytes held (counted by the server's budget)
        self.deadline = deadline  # handshake, idle or close deadline, by state
        self.prev_total: float | None = None  # the last request's total time, for prev_total_ms

    @property
    def remote_address(self) -> Any:
        with contextlib.suppress(OSError):
            return self.sock.getpeername()
        return None

    def respond(self, status: HTTPStatus, text: str) -> Any:
        """An HTTP answer instead of the WebSocket (the handshake gate's ``connection.respond``)."""
        return self.protocol.reject(status, text)

    def refuse(self, code: int, reason: str) -> None:
        """Close now with ``code`` (the server's byte budget calls it on the connection holding most)."""
        self.owner.refuse_peer(self, code, reason)


class OpenpiPolicyServer(PolicyServer):
    """Serves policy ``type_name`` (with ``kwargs``), built for ``context``, over openpi's protocol."""

    def __init__(
        self,
        type_name: str,
        kwargs: dict[str, Any],
        context: PolicyContext,
        *,
        obs_key: str = DEFAULT_OBS_KEY,
        host: str = "127.0.0.1",
        port: int = 8000,
        limits: ServerLimits | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(type_name, kwargs, host=host, port=port, limits=limits, token=token)
        if isinstance(context.action_space, gym.spaces.Dict | gym.spaces.Tuple):
            raise ConfigError(
                f"openpi answers one array of actions; a {type(context.action_space).__name__} action "
                "space cannot be served",
                field="--env",
            )
        self.observation_space = context.observation_space
        self.obs_key = obs_key
        self.policy = build_policy(type_name, dict(kwargs), _one_world(context))
        self._instruct = getattr(self.policy, "instruct", None)
        self._lock = threading.Lock()
        self.batching = True
        """Whether requests that arrive together are answered with one policy call (see the module doc)."""
        action_shape = tuple(context.action_space.shape or ())
        self.metadata: dict[str, Any] = {
            "server": "trialrun",
            "policy": type_name,
            "env_id": context.env_id,
            "action_horizon": 1,
            "action_dim": math.prod(action_shape) if action_shape else 1,
            "observation_keys": self._observation_keys(),
        }
        self._metadata_frame = packb(self.metadata)
        self._ws = require_extra("websockets.server", "remote", "serve-policy")
        # enum members compared by identity on the hot path (``.name`` is a property call)
        states = require_extra("websockets.protocol", "remote", "serve-policy").State
        self._OPEN, self._CLOSED = states.OPEN, states.CLOSED
        opcodes = require_extra("websockets.frames", "remote", "serve-policy").Opcode
        self._TEXT, self._BINARY, self._CONT = opcodes.TEXT, opcodes.BINARY, opcodes.CONT
        self._selector: selectors.BaseSelector | None = None
        self._wake: socket.socket | None = None
        self._stop_requested = False
        self._peers: set[_Peer] = set()

    def _observation_keys(self) -> list[str]:
        if isinstance(self.observation_space, gym.spaces.Dict):
            return [DICT_KEY_PREFIX + str(k) for k in self.observation_space.spaces]
        return [self.obs_key]

    # -- requests ---------------------------------------------------------------------------

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to one decoded request, as openpi's ``policy.infer`` gives it (plus ``infer_ms``).

        Raises:
            ValueError: the request lacks a key the policy needs or has a value of the wrong size.
        """
        start = time.monotonic()
        (actions,) = self._act([self._observation(request)], [request.get(PROMPT_KEY)])
        return {"actions": actions, "server_timing": {"infer_ms": (time.monotonic() - start) * 1000.0}}

    def answer_many(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | Exception]:
        """The reply to each decoded request, or the exception that failed it, in order.

        The requests that map to an observation are answered with one policy
        call while :attr:`batching` holds (see the module docstring); the
        others fail alone.
        """
        results: list[dict[str, Any] | Exception] = list(requests)  # type: ignore[arg-type]
        good: list[int] = []
        observations, prompts = [], []
        for i, request in enumerate(requests):
            try:
                observations.append(self._observation(request))
            except Exception as exc:  # this request's failure, answered on its own connection
                results[i] = exc
                continue
            prompts.append(request.get(PROMPT_KEY))
            good.append(i)
        for i, reply in zip(good, self._answers(observations, prompts), strict=True):
            results[i] = reply
        return results

    def _answers(self, observations: list[Any], prompts: list[Any]) -> list[dict[str, Any] | Exception]:
        if len(observations) > 1 and self.batching:
            start = time.monotonic()
            try:
                rows = self._act(observations, prompts)
            except Exception as exc:  # asked one at a time below: each gets its own error
                why = f"{type(exc).__name__}: {exc}"
            else:
                timing = (time.monotonic() - start) * 1000.0
                return [{"actions": row, "server_timing": {"infer_ms": timing}} for row in rows]
            self.batching = False
            logger.info(
                "policy '%s' cannot act on %d requests at once (%s); answering one at a time",
                self.type_name,
                len(observations),
                why,
            )
        results: list[dict[str, Any] | Exception] = []
        for obs, prompt in zip(observations, prompts, strict=True):
            start = time.monotonic()
            try:
                (actions,) = self._act([obs], [prompt])
            except Exception as exc:  # this request's failure, answered on its own connection
                results.append(exc)
                continue
            results.append(
                {"actions": actions, "server_timing": {"infer_ms": (time.monotonic() - start) * 1000.0}}
            )
        return results

    def _act(self, observations: list[Any], prompts: list[Any]) -> list[np.ndarray]:
        """One policy call on the stacked observations: each one's actions, shape ``(1, action_dim)``."""
        count = len(observations)
        obs = observations[0] if count == 1 else _stack(observations)
        with self._lock:
            if callable(self._instruct):
                self._instruct(
                    np.ones(count, dtype=bool), [p if isinstance(p, str) else None for p in prompts]
                )
            action = self.policy.act(obs)
        if isinstance(action, Mapping):
            raise ValueError(
                f"policy '{self.type_name}' returned a dict; openpi answers one array of actions"
            )
        actions = np.asarray(action)
        if count == 1:
            return [actions.reshape(1, -1) if actions.ndim != 2 or len(actions) != 1 else actions]
        if actions.ndim == 0 or len(actions) != count:
            raise ValueError(
                f"policy '{self.type_name}' answered {count} observations with shape {actions.shape}"
            )
        return [row.reshape(1, -1) for row in actions]

    def _observation(self, request: Mapping[str, Any]) -> Any:
        """The policy's batch of one observation from a request."""
        if not isinstance(request, Mapping):
            raise ValueError(f"a request must be a map of observation keys, got a {type(request).__name__}")
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            return {
                k: self._value(request, DICT_KEY_PREFIX + str(k), sub)[None]
                for k, sub in space.spaces.items()
            }
        return self._value(request, self.obs_key, space)[None]

    @staticmethod
    def _value(request: Mapping[str, Any], key: str, space: gym.Space[Any]) -> np.ndarray:
        if key not in request:
            have = ", ".join(sorted(map(str, request))) or "none"
            raise ValueError(f"the request has no '{key}' (its keys: {have})")
        value = np.array(request[key], dtype=space.dtype)  # a writable copy, not a view of the frame
        shape = tuple(space.shape or ())
        if value.shape != shape:
            if value.size != math.prod(shape):
                raise ValueError(f"'{key}' has shape {value.shape}; the policy's observation is {shape}")
            value = value.reshape(shape)
        return value

    # -- the loop ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Bind (if not bound yet) and serve until :meth:`stop` or Ctrl-C."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None  # bind() opened it
        listener = self._sock
        listener.setblocking(False)
        selector = self._selector = selectors.DefaultSelector()
        wake_read, self._wake = socket.socketpair()
        wake_read.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, None)
        selector.register(wake_read, selectors.EVENT_READ, _WAKE)
        limits = self.limits
        check_every = max(0.01, min(0.5, limits.hello_timeout / 4, limits.session_idle_timeout / 4))
        next_check = time.monotonic() + check_every
        self._ready.set()
        try:
            while not self._stop_requested:
                ready: list[tuple[_Peer, bytes, bool, int]] = []
                for key, events in selector.select(check_every):
                    peer = key.data
                    if peer is None:
                        self._accept(listener)
                    elif peer is _WAKE:
                        with contextlib.suppress(OSError):
                            wake_read.recv(64)
                    else:
                        if events & selectors.EVENT_WRITE:
                            self._flush(peer)
                        if events & selectors.EVENT_READ and peer in self._peers:
                            self._receive(peer, ready)
                if ready:
                    self._answer_ready(ready)
                now = time.monotonic()
                if now >= next_check:
                    self._expire(now)
                    next_check = now + check_every
        finally:
            for peer in list(self._peers):
                self._close(peer, CLOSE_GOING_AWAY, "server shutting down")
                self._drop(peer)
            selector.close()
            for sock in (listener, wake_read, self._wake):
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        """Stop accepting and close every connection (code 1001)."""
        self._stop_requested = True
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a flood of connections does not starve the open ones
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: the others go on
                _REFUSALS.warning("could not accept a connection: %s", exc)
                return
            if len(self._budget.connections) >= 2 * self.limits.max_connections + 16:
                sock.close()  # far over the cap: not even an HTTP answer
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = self._ws.ServerProtocol(max_size=self.limits.max_frame_bytes)
            peer = _Peer(self, sock, protocol, time.monotonic() + self.limits.hello_timeout)
            self._peers.add(peer)
            self._budget.connections.add(peer)
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _receive(self, peer: _Peer, ready: list[tuple[_Peer, bytes, bool, int]]) -> None:
        """Read what ``peer`` sent: handshake, complete messages (onto ``ready``), closes."""
        protocol = peer.protocol
        try:
            data = peer.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(peer)
            return
        if not data:
            protocol.receive_eof()
        elif protocol.state is self._OPEN and peer in self._budget.connections:
            if not self._budget.admit(peer, len(data)):
                return  # over the bytes in flight: closed with 1013
            protocol.receive_data(data)
        else:
            protocol.receive_data(data)
        for event in protocol.events_received():
            kind = getattr(event, "opcode", None)
            if kind is None:
                self._handshake(peer, event)
                continue
            size = _wire_size(len(event.data))
            if kind is self._BINARY or kind is self._TEXT:
                peer.parts, peer.text, peer.partial = [event.data], kind is self._TEXT, size
            elif kind is self._CONT:
                peer.parts.append(event.data)
                peer.partial += size
            else:  # close, ping, pong: websockets answers them
                self._budget.release(peer, size)
                continue
            if event.fin:
                message = peer.parts[0] if len(peer.parts) == 1 else b"".join(peer.parts)
                ready.append((peer, message, peer.text, peer.partial))
                peer.parts, peer.partial = [], 0
        self._send(peer)
        if not data or protocol.state is self._CLOSED:
            self._drop(peer)

    def _handshake(self, peer: _Peer, request: Any) -> None:
        protocol = peer.protocol
        response = self._check_request(peer, request)
        if response is None:
            response = protocol.accept(request)
            if response.status_code != 101:  # not a WebSocket handshake
                self._budget.admitted.discard(peer)
        protocol.send_response(response)
        if protocol.state is self._OPEN:
            protocol.send_binary(self._metadata_frame)
            peer.deadline = time.monotonic() + self.limits.session_idle_timeout
        else:
            peer.deadline = time.monotonic() + CLOSE_WAIT

    def _answer_ready(self, ready: list[tuple[_Peer, bytes, bool, int]]) -> None:
        """Answer the requests that arrived in one poll (one policy call for all, see the module doc)."""
        start = time.monotonic()
        peers: list[tuple[_Peer, int]] = []
        requests: list[Any] = []
        for peer, message, text, size in ready:
            if peer not in self._peers or peer.protocol.state is not self._OPEN:
                self._budget.release(peer, size)
                continue  # closed meanwhile (over the budget, or an earlier request failed)
            try:
                if text:
                    raise ValueError("a request must be a binary msgpack frame, got a text frame")
                requests.append(unpackb(message))
            except Exception as exc:  # openpi's answer to any failure: the traceback, then 1011
                self._fail(peer, exc)
                self._budget.release(peer, size)
                continue
            peers.append((peer, size))
        if not requests:
            return
        results = self.answer_many(requests)
        for (peer, size), result in zip(peers, results, strict=True):
            self._budget.release(peer, size)
            if peer not in self._peers or peer.protocol.state is not self._OPEN:
                continue
            if isinstance(result, Exception):
                self._fail(peer, result)
                continue
            if peer.prev_total is not None:
                result["server_timing"]["prev_total_ms"] = peer.prev_total * 1000.0
            peer.out += binary_frame(packb(result), masked=False)
            self._flush(peer)
            now = time.monotonic()
            peer.prev_total = now - start
            peer.deadline = now + self.limits.session_idle_timeout

    def _fail(self, peer: _Peer, exc: Exception) -> None:
        """openpi's answer to a failed request: the traceback as a text frame, then close 1011."""
        _FAILURES.warning("openpi request failed: %s: %s", type(exc).__name__, exc)
        peer.protocol.send_text("".join(traceback.format_exception(exc)).encode())
        self._close(peer, CLOSE_INTERNAL_ERROR, ERROR_CLOSE_REASON)

    def _close(self, peer: _Peer, code: int, reason: str) -> None:
        """Start the closing handshake; the socket closes when the client answers or after CLOSE_WAIT."""
        with contextlib.suppress(Exception):  # closed already: nothing to say
            if peer.protocol.state.name == "OPEN":
                peer.protocol.send_close(code, reason)
                self._send(peer)
        peer.deadline = time.monotonic() + CLOSE_WAIT

    def refuse_peer(self, peer: _Peer, code: int, reason: str) -> None:
        """Close ``peer`` now with ``code`` (the budget's answer to a connection holding too much)."""
        _REFUSALS.warning("closing a connection from %s: %s", peer.remote_address, reason)
        if peer.protocol.state.name == "OPEN":
            peer.protocol.fail(code, reason)
            self._send(peer)
        self._drop(peer)

    def _send(self, peer: _Peer) -> None:
        for data in peer.protocol.data_to_send():
            if data:
                peer.out += data
            else:
                peer.eof = True
        self._flush(peer)

    def _flush(self, peer: _Peer) -> None:
        """Send what the socket takes now; wait for it to be writable for the rest."""
        if peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(peer)
                return
            peer.out = peer.out[sent:] if sent < len(peer.out) else b""
        if not peer.out and peer.eof:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)
            peer.eof = False
        if bool(peer.out) != peer.writing and self._selector is not None and peer in self._peers:
            peer.writing = bool(peer.out)  # selector calls only when that changes (rarely)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.writing else 0)
            self._selector.modify(peer.sock, events, peer)

    def _drop(self, peer: _Peer) -> None:
        """Forget ``peer`` and close its socket."""
        if peer not in self._peers:
            return
        self._peers.discard(peer)
        self._budget.release(peer, peer.inflight)
        self._budget.connections.discard(peer)
        self._budget.admitted.discard(peer)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(peer.sock)
        with contextlib.suppress(OSError):
            peer.sock.close()

    def _expire(self, now: float) -> None:
        """Close handshakes past ``hello_timeout``, idle connections and unanswered closes."""
        for peer in list(self._peers):
            if now < peer.deadline:
                continue
            state = peer.protocol.state.name
            if state == "OPEN":
                timeout = self.limits.session_idle_timeout
                self._close(peer, 1000, f"no request within {timeout:g} s")
            else:  # a handshake that never ended, or a close never answered
                self._drop(peer)

    # -- the handshake gate -----------------------------------------------------------------

    def _check_request(self, connection: Any, request: Any) -> Any:
        """``/healthz`` as openpi; an ``Api-Key`` is checked as trialrun's ``Bearer`` token; then the caps."""
        if request.path == HEALTH_PATH:
            return connection.respond(HTTPStatus.OK, "OK\n")
        scheme, _, key = str(request.headers.get(AUTH_HEADER, "")).partition(" ")
        if scheme.lower() == AUTH_SCHEME.lower():
            del request.headers[AUTH_HEADER]
            request.headers[AUTH_HEADER] = f"Bearer {key}"
        return super()._check_request(connection, request)


def _stack(observations: list[Any]) -> Any:
    """Batches of one (arrays, or dicts of them) as one batch."""
    if isinstance(observations[0], dict):
        return {k: np.concatenate([o[k] for o in observations]) for k in observations[0]}
    return np.concatenate(observations)


def _one_world(context: PolicyContext) -> PolicyContext:
    """``context`` for one world whose instruction arrives with each request (``prompt``)."""
    return PolicyContext(
        env_id=context.env_id,
        num_envs=1,
        observation_space=context.observation_space,
        action_space=context.action_space,
        env_kwargs=dict(context.env_kwargs),
        instruction=context.instruction,
        episode_instructions=True,
    )
