"""The client side of Isaac GR00T's policy server: ZeroMQ REQ/REP, one batched request per step.

GR00T serves a policy with ``gr00t/eval/run_gr00t_server.py`` (N1.6, whose
``PolicyServer`` is in ``gr00t/policy/server_client.py``; N1.5 had
``gr00t/eval/service.py`` and ``robot.py``). The protocol, as that code
speaks it:

- a ZeroMQ REP socket on ``tcp://HOST:PORT``; each request is one msgpack map
  ``{"endpoint": NAME, "data": ..., "api_token": TOKEN}`` (``data`` only for
  endpoints that take input, ``api_token`` only when the client has one) and
  gets exactly one reply (:mod:`.gr00t_codec` has the array encoding);
- ``ping`` answers ``{"status": "ok", ...}``; ``get_action`` takes a *batched*
  observation (every array has a leading batch axis, video ``(B, T, H, W, C)``
  uint8, state ``(B, T, D)`` float32, the instruction a list of ``B``
  strings) and answers action arrays ``(B, H, D)``; ``reset`` (N1.6 only)
  takes ``{"options": ...}``;
- N1.6 calls ``policy.get_action(observation=..., options=...)`` with the
  keyword arguments of ``data`` and answers ``[actions, info]``; N1.5 calls
  ``policy.get_action(data)`` and answers the actions dict itself;
- a failed request answers ``{"error": str(exception)}``; a wrong token answers
  ``{"error": "Unauthorized: Invalid API token"}``.

``api`` picks the server's flavour: ``n1.6`` (the default; the server runs with
``--use-sim-policy-wrapper``, flat keys ``video.<camera>``, ``state.<part>``,
the language key, answers ``action.<part>``), ``n1.6-nested`` (a plain
``Gr00tPolicy``: ``{"video": {...}, "state": {...}, "language": {key: [[text]]}}``,
answers ``<part>``) or ``n1.5``.

trialrun's requests carry one frame per world (``(H, W, 3)``, state ``(D,)``);
this transport adds GR00T's time axis (``T = 1``) and casts float state to
float32, and turns the answer into one ``(H, action_dim)`` chunk per world by
concatenating the action parts in ``action_keys`` order (default: sorted keys).

A REQ socket that missed its reply can never send again, so on a timeout the
socket is thrown away and a new one connects (ZeroMQ's "lazy pirate"
pattern). A socket monitor sees the server's connection drop: the request is
then re-sent once on a new socket, and a second loss, or no server accepting
connections again within ``connect_timeout``, fails the job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.policies.vla.factories import GR00T_CONNECT_TIMEOUT, check_gr00t_settings
from trialrun.policies.vla.gr00t_codec import MAX_MESSAGE_BYTES, Gr00tCodecError, decode, encode
from trialrun.policies.vla.transport import Reply, Request

log = logging.getLogger(__name__)

_MONITOR_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED


class Gr00tServerError(RemotePolicyError):
    """The GR00T server answered ``{"error": ...}``; its whole text is kept for the manifest."""

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = remote_traceback


class Gr00tTransport:
    """A :class:`~trialrun.policies.vla.transport.Transport` to one GR00T policy server.

    Construction connects and pings, so a wrong address or token fails the job
    before any episode starts. One instance serves one thread (a REQ socket
    has one request in flight).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        api_token: str | None = None,
        timeout: float = 30.0,
        action_keys: Sequence[str] | None = None,
        api: str = "n1.6",
        connect_timeout: float = GR00T_CONNECT_TIMEOUT,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        check_gr00t_settings(
            {
                "host": host,
                "port": port,
                "api_token": api_token,
                "timeout": timeout,
                "action_keys": action_keys,
                "api": api,
                "connect_timeout": connect_timeout,
            }
        )
        ipv6 = ":" in host
        self.address = f"tcp://[{host}]:{port}" if ipv6 else f"tcp://{host}:{port}"
        self.api = api
        self.api_token = api_token
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.action_keys = list(action_keys) if action_keys is not None else None
        self.max_message_bytes = int(max_message_bytes)
        self._ipv6 = ipv6
        self._reset_supported = api != "n1.5"
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._connected = False
        self._closed = False
        try:
            self._open()
            self._call("ping", None, with_data=False)
        except BaseException:
            self.close()
            raise

    # -- the Transport protocol ------------------------------------------------------------

    def infer(self, requests: Sequence[Request]) -> list[Reply]:
        """All worlds' requests as one batched ``get_action``; per world ``{"actions": (H, action_dim)}``."""
        if not requests:
            return []
        observation = self._batch(requests)
        data: Any = observation if self.api == "n1.5" else {"observation": observation, "options": None}
        answer = self._call("get_action", data)
        actions, info = self._split_answer(answer)
        chunks = self._chunks(actions, len(requests))
        timing = info.get("server_timing")
        replies: list[Reply] = []
        for i in range(len(requests)):
            reply: Reply = {"actions": chunks[i]}
            if isinstance(timing, Mapping):
                reply["server_timing"] = dict(timing)
            replies.append(reply)
        return replies

    def reset(self, worlds: Sequence[int]) -> None:
        """Tell an N1.6 server that episodes start (its ``reset`` is server-wide: GR00T has no
        per-world state to reset). N1.5 servers have no ``reset``; a server that answers
        "Unknown endpoint" is not asked again."""
        if not worlds or not self._reset_supported:
            return
        try:
            self._call("reset", {"options": None})
        except Gr00tServerError as exc:
            if "unknown endpoint" not in str(exc).lower():
                raise
            self._reset_supported = False
            log.info(
                "the GR00T policy server at %s has no 'reset' endpoint; not calling it again", self.address
            )

    def close(self) -> None:
        """Close the socket and the ZeroMQ context (idempotent; nothing lingers)."""
        if self._closed:
            return
        self._closed = True
        self._close_sockets()
        self._context.term()

    # -- sockets ---------------------------------------------------------------------------

    def _open(self) -> None:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        if self._ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        self._monitor = socket.get_monitor_socket(_MONITOR_EVENTS)
        socket.connect(self.address)
        self._socket = socket
        self._connected = False

    def _close_sockets(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._socket.disable_monitor()
            self._socket.close(linger=0)
            self._socket = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        self._connected = False

    def _reopen(self) -> None:
        """A fresh REQ socket: the old one may be waiting for a reply that will never come."""
        self._close_sockets()
        self._open()

    def _drain_monitor(self) -> bool:
        """Apply the monitor's pending events to ``_connected``; True if the connection dropped."""
        dropped = False
        monitor = self._monitor
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected = False
                dropped = True
        return dropped

    # -- one request -----------------------------------------------------------------------

    def _call(self, endpoint: str, data: Any, *, with_data: bool = True) -> Any:
        """Send one request and wait for its reply, within ``timeout`` seconds in all."""
        if self._closed:
            raise RemotePolicyError(f"the GR00T transport to {self.address} is closed")
        request: dict[str, Any] = {"endpoint": endpoint}
        if with_data:
            request["data"] = data
        if self.api_token:
            request["api_token"] = self.api_token
        try:
            payload = encode(request)
        except Gr00tCodecError as exc:
            raise RemotePolicyError(
                f"cannot send '{endpoint}' to the GR00T policy server at {self.address}: {exc}"
            ) from exc
        if len(payload) > self.max_message_bytes:
            raise RemotePolicyError(
                f"the '{endpoint}' request to {self.address} is {len(payload)} bytes, over the limit of "
                f"{self.max_message_bytes} (max_message_bytes)"
            )
        start = time.monotonic()
        message = self._exchange(endpoint, payload, start)
        if message == b"ERROR":
            raise Gr00tServerError(
                f"the GR00T policy server at {self.address} answered '{endpoint}' with ERROR"
            )
        try:
            answer = decode(message, max_bytes=self.max_message_bytes)
        except Gr00tCodecError as exc:
            raise RemotePolicyError(
                f"the GR00T policy server at {self.address} answered '{endpoint}' with a message "
                f"trialrun refuses: {exc}"
            ) from exc
        if isinstance(answer, Mapping) and "error" in answer:
            raise self._server_error(endpoint, answer)
        return answer

    def _exchange(self, endpoint: str, payload: bytes, start: float) -> bytes:
        """The reply bytes: resend once on a new socket if the connection drops, else time out."""
        deadline = start + self.timeout
        self._drain_monitor()
        resent = False
        connect_by = None if self._connected else start + min(self.connect_timeout, self.timeout)
        self._send(payload)
        while True:
            socket, monitor = self._socket, self._monitor
            if socket is None or monitor is None:  # closed from another thread
                raise RemotePolicyError(
                    f"the GR00T transport to {self.address} was closed during '{endpoint}'"
                )
            now = time.monotonic()
            until = deadline if connect_by is None else min(deadline, connect_by)
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            ready = dict(poller.poll(max(0, math.ceil((until - now) * 1000.0))))
            if socket in ready:
                return socket.recv()
            if monitor in ready and self._drain_monitor():
                if resent:
                    self._reopen()
                    raise RemotePolicyError(
                        f"the GR00T policy server at {self.address} dropped the connection during "
                        f"'{endpoint}' twice (after {time.monotonic() - start:.1f} s); gave up"
                    )
                log.warning(
                    "the GR00T policy server at %s dropped the connection during '%s'; "
                    "reconnecting and resending once",
                    self.address,
                    endpoint,
                )
                resent = True
                self._reopen()
                connect_by = time.monotonic() + min(self.connect_timeout, self.timeout)
                self._send(payload)
                continue
            if self._connected:
                connect_by = None
            now = time.monotonic()
            if connect_by is not None and now >= connect_by and not self._connected:
                self._reopen()
                what = (
                    "went away and no server accepts connections there again"
                    if resent
                    else ("is unreachable: nothing accepts connections there")
                )
                raise RemotePolicyError(
                    f"the GR00T policy server at {self.address} {what} (waited {now - start:.1f} s for "
                    f"'{endpoint}'); is it running (python gr00t/eval/run_gr00t_server.py --port ...)?"
                )
            if now >= deadline:
                self._reopen()
                raise RemotePolicyError(
                    f"the GR00T policy server at {self.address} did not answer '{endpoint}' within "
                    f"{self.timeout:g} s (timeout; waited {now - start:.1f} s)"
                )

    def _send(self, payload: bytes) -> None:
        socket = self._socket
        if socket is None:
            raise RemotePolicyError(f"the GR00T transport to {self.address} is closed")
        try:
            socket.send(payload, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._reopen()
            raise RemotePolicyError(
                f"cannot send to the GR00T policy server at {self.address}: {exc}"
            ) from exc

    def _server_error(self, endpoint: str, answer: Mapping[Any, Any]) -> Gr00tServerError:
        text = str(answer.get("error"))
        traceback = answer.get("traceback")  # GR00T sends only str(exception); some forks add this
        first = next((line.strip() for line in text.splitlines() if line.strip()), "(no message)")
        if first.startswith("Unauthorized"):
            why = (
                "refused the api_token it was sent"
                if self.api_token
                else "wants an api_token and none was set"
            )
            message = f"the GR00T policy server at {self.address} {why} ({first})"
        else:
            message = f"the GR00T policy server at {self.address} failed on '{endpoint}': {first}"
            if endpoint == "get_action" and "argument" in first:
                message += (
                    f" (api is {self.api}; is the server another GR00T version? "
                    "api: n1.6, n1.6-nested or n1.5)"
                )
        whole = text if not isinstance(traceback, str) or not traceback else f"{text}\n{traceback}"
        return Gr00tServerError(message, remote_traceback=whole)

    # -- observations and actions ----------------------------------------------------------

    def _batch(self, requests: Sequence[Request]) -> dict[str, Any]:
        """Stack the worlds' requests into GR00T's batched observation (flat or nested)."""
        keys = list(requests[0])
        for i, request in enumerate(requests):
            if set(request) != set(keys):
                raise ValueError(f"request {i} has keys {sorted(request)}, request 0 has {sorted(keys)}")
        nested = self.api == "n1.6-nested"
        flat: dict[str, Any] = {}
        out: dict[str, Any] = {"video": {}, "state": {}, "language": {}} if nested else flat
        for key in keys:
            values = [request[key] for request in requests]
            if all(v is None for v in values):
                continue  # e.g. the default prompt of a job without an instruction
            if any(isinstance(v, str) for v in values):
                if not all(isinstance(v, str) for v in values):
                    raise ConfigError(
                        f"'{key}' is text for some worlds and not for others: "
                        f"{[type(v).__name__ for v in values]}",
                        field="policy.obs_map",
                    )
                if nested:
                    out["language"][key] = [[v] for v in values]
                else:
                    flat[key] = list(values)
                continue
            if any(v is None for v in values):
                raise ConfigError(f"'{key}' has no value for some worlds", field="policy.obs_map")
            arrays = [np.asarray(v) for v in values]
            if len({a.shape for a in arrays}) > 1:
                raise ConfigError(
                    f"'{key}' has different shapes across worlds: {sorted({a.shape for a in arrays})}",
                    field="policy.obs_map",
                )
            stacked = np.stack(arrays)
            modality, _, name = key.partition(".")
            if modality == "video" and name:
                if stacked.ndim == 4:  # (B, H, W, C): one frame per world
                    stacked = stacked[:, None]
            elif modality == "state" and name:
                if stacked.ndim == 2:  # (B, D): one state per world
                    stacked = stacked[:, None]
                if stacked.dtype.kind == "f":
                    stacked = stacked.astype(np.float32, copy=False)
            elif nested:
                raise ConfigError(
                    f"'{key}': with api n1.6-nested, arrays go to video.<camera> or state.<part> keys",
                    field="policy.obs_map",
                )
            if nested:
                out[modality][name] = np.ascontiguousarray(stacked)
            else:
                flat[key] = np.ascontiguousarray(stacked)
        return out

    def _split_answer(self, answer: Any) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
        """``(actions, info)`` of an N1.6 answer ``[actions, info]`` or an N1.5 answer ``actions``."""
        if isinstance(answer, list | tuple) and len(answer) == 2 and isinstance(answer[0], Mapping):
            info = answer[1] if isinstance(answer[1], Mapping) else {}
            return answer[0], info
        if isinstance(answer, Mapping):
            return answer, {}
        raise RemotePolicyError(
            f"the GR00T policy server at {self.address} answered 'get_action' with a "
            f"{type(answer).__name__}, not a dict of action arrays"
        )

    def _chunks(self, actions: Mapping[Any, Any], batch: int) -> np.ndarray:
        """``(B, H, action_dim)``: the action parts concatenated in ``action_keys`` order."""
        available = sorted(str(k) for k, v in actions.items() if isinstance(v, np.ndarray))
        keys = self.action_keys if self.action_keys is not None else available
        if not keys:
            raise RemotePolicyError(
                f"the GR00T policy server at {self.address} answered 'get_action' without action arrays "
                f"(keys: {sorted(map(str, actions))})"
            )
        parts: list[np.ndarray] = []
        for key in keys:
            name = key if key in actions else f"action.{key}"
            value = actions.get(name)
            if not isinstance(value, np.ndarray):
                raise RemotePolicyError(
                    f"the GR00T policy server at {self.address} answered without action '{key}' "
                    f"(it sent {', '.join(available) or 'none'}); check action_keys"
                )
            if value.dtype.kind not in "biuf":
                raise RemotePolicyError(
                    f"action '{name}' from {self.address} has dtype {value.dtype}, not numbers"
                )
            part = value[:, :, None] if value.ndim == 2 else value
            if part.ndim != 3 or part.shape[0] != batch:
                raise RemotePolicyError(
                    f"the GR00T policy server at {self.address} answered '{name}' with shape "
                    f"{value.shape} for a batch of {batch}; expected (B={batch}, horizon, dim)"
                )
            parts.append(part)
        horizons = {p.shape[1] for p in parts}
        if len(horizons) > 1:
            raise RemotePolicyError(
                f"the GR00T policy server at {self.address} answered action parts with different horizons "
                f"{dict(zip(keys, (p.shape[1] for p in parts), strict=True))}"
            )
        return np.concatenate(parts, axis=-1)
