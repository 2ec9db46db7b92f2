"""Remote policies: a policy served by ``trialrun serve-policy`` and driven
over a WebSocket (extra ``remote``: websockets + msgpack).

Use: ``{type: remote, url: ws://127.0.0.1:8765, timeout: 10}``. The client is
synchronous (``websockets.sync.client``), so it runs inside the rollout loop.

Wire format (protocol 1). Every message is one binary WebSocket frame holding
one msgpack map with a ``type``. Arrays are maps
``{"__ndarray__": 1, "dtype": "<f4", "shape": [2, 4], "data": <bytes>}``
(``dtype`` is numpy's ``dtype.str``, ``data`` the C-ordered bytes); numpy
scalars travel as 0-d arrays; a ``Dict`` observation is a map of arrays. Spaces
are maps with a ``space`` key: ``Box`` (low, high, dtype), ``Discrete`` (n,
start), ``MultiDiscrete`` (nvec, start), ``MultiBinary`` (n), ``Dict``
(``spaces`` as a list of ``[key, space]`` pairs), ``Tuple`` (``spaces`` list).

==============================================================  ==========================================
client -> server                                                server -> client
==============================================================  ==========================================
``hello``: protocol, session, num_envs, observation_space,      ``ready``: session, resumed, policy
action_space, env_id, env_kwargs, instruction
``act``: seq, obs                                               ``action``: seq, action
``reset``: seq, mask (bool array), seeds (list of int or nil)   ``reset_done``: seq
``close``                                                       (the server drops the session)
any                                                             ``error``: seq, message, fatal
==============================================================  ==========================================

Failures: every answer must arrive within ``timeout`` seconds, otherwise the
job fails saying so. A dropped connection is re-opened (and the request sent
again) for up to ``timeout`` seconds; the hello names the session, so a server
that is still up re-attaches it with its policy state intact, and answers a
repeated ``seq`` from its cache instead of acting twice. A restarted server
builds a fresh policy; the client then replays the last reset of every
sub-env (a stateless policy gives identical results; a recurrent one restarts
its memory). A server that stays unreachable fails the job within ``timeout``
with a message naming the URL.

Example:
    >>> blob = packb({"type": "act", "seq": 3, "obs": np.arange(4, dtype=np.float32).reshape(2, 2)})
    >>> unpackb(blob)["obs"]
    array([[0., 1.],
           [2., 3.]], dtype=float32)
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import ssl
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.settings import seconds, text_line, ws_url

logger = logging.getLogger(__name__)

PROTOCOL = 1
#: Largest message either side accepts (``serve-policy --max-frame-bytes`` defaults to it).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Most sub-environments a hello may ask a policy server to build a policy for.
MAX_NUM_ENVS = 1 << 16
#: Most elements one space may have (a 4K RGB image has 25M), and deepest Dict/Tuple nesting.
MAX_SPACE_ELEMENTS = 1 << 26
MAX_SPACE_DEPTH = 16
#: Environment variable with the token a client sends (``Authorization: Bearer``) and a server requires.
TOKEN_ENV = "TRIALRUN_TOKEN"
DEFAULT_TIMEOUT = 10.0
"""Seconds a request may wait for its answer."""
_ND = "__ndarray__"


# --------------------------------------------------------------------------- encoding


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)  # tobytes() below is C-ordered whatever the layout
        if arr.dtype.hasobject:
            raise TypeError("object arrays cannot be sent to a policy server")
        return {_ND: 1, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot encode a {type(obj).__name__} for a policy server")


def _object_hook(obj: dict[Any, Any]) -> Any:
    if obj.get(_ND) == 1 and "dtype" in obj:
        arr = np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"]))
        return arr.reshape(obj["shape"]).copy()
    return obj


def packb(message: Any) -> bytes:
    """One message as msgpack bytes (numpy arrays in the documented form)."""
    msgpack = require_extra("msgpack", "remote", "a remote policy")
    data: bytes = msgpack.packb(message, default=_default, use_bin_type=True)
    return data


def unpackb(data: bytes) -> Any:
    """The message in ``data`` (arrays decoded to numpy)."""
    msgpack = require_extra("msgpack", "remote", "a remote policy")
    return msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=False)


def space_to_wire(space: gym.Space[Any]) -> dict[str, Any]:
    """A Gymnasium space as a plain map (see the module docstring)."""
    if isinstance(space, gym.spaces.Box):
        return {"space": "Box", "low": space.low, "high": space.high, "dtype": np.dtype(space.dtype).str}
    if isinstance(space, gym.spaces.Discrete):
        return {"space": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"space": "MultiDiscrete", "nvec": space.nvec, "start": space.start}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"space": "MultiBinary", "n": list(space.shape)}
    if isinstance(space, gym.spaces.Dict):
        return {"space": "Dict", "spaces": [[k, space_to_wire(v)] for k, v in space.spaces.items()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"space": "Tuple", "spaces": [space_to_wire(s) for s in space.spaces]}
    raise ValueError(f"space {space} cannot be sent to a policy server")


def space_from_wire(data: dict[str, Any], depth: int = 0) -> gym.Space[Any]:
    """The inverse of :func:`space_to_wire`.

    A server builds spaces from what any peer sends, so sizes and nesting are
    capped (:data:`MAX_SPACE_ELEMENTS`, :data:`MAX_SPACE_DEPTH`).

    Raises:
        ValueError: not a space this format describes, or one over the caps.
    """
    if not isinstance(data, dict):
        raise ValueError("a space must be a map")
    if depth > MAX_SPACE_DEPTH:
        raise ValueError(f"spaces nested deeper than {MAX_SPACE_DEPTH}")
    kind = data.get("space")
    space: gym.Space[Any]
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        low, high = np.asarray(data["low"]), np.asarray(data["high"])
        space = gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), dtype=dtype)
    elif kind == "Discrete":
        space = gym.spaces.Discrete(int(data["n"]), start=int(data["start"]))
    elif kind == "MultiDiscrete":
        space = gym.spaces.MultiDiscrete(data["nvec"], start=data["start"])
    elif kind == "MultiBinary":
        n = [int(k) for k in data["n"]]
        if int(np.prod(n, dtype=np.float64)) > MAX_SPACE_ELEMENTS:
            raise ValueError(f"a space has more than {MAX_SPACE_ELEMENTS} elements")
        space = gym.spaces.MultiBinary(n[0] if len(n) == 1 else n)
    elif kind == "Dict":
        space = gym.spaces.Dict({str(k): space_from_wire(v, depth + 1) for k, v in data["spaces"]})
    elif kind == "Tuple":
        space = gym.spaces.Tuple([space_from_wire(s, depth + 1) for s in data["spaces"]])
    else:
        raise ValueError(f"unknown space kind {kind!r}")
    if space.shape is not None and int(np.prod(space.shape, dtype=np.float64)) > MAX_SPACE_ELEMENTS:
        raise ValueError(f"a space has more than {MAX_SPACE_ELEMENTS} elements")
    return space


# --------------------------------------------------------------------------- TLS


def tls_context(url: str, ca_file: str | os.PathLike[str] | None, *, field: str) -> ssl.SSLContext | None:
    """The TLS settings of a ``wss://`` client (None for ``ws://``), built once per client.

    ``ca_file`` (a PEM file of CA certificates) replaces the system's CAs, for
    a server behind a private CA; without it :func:`ssl.create_default_context`
    honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` as other OpenSSL clients do.
    Certificates and host names are always checked: there is no way to turn
    that off, since a policy server sees every observation of the run.

    Raises:
        ConfigError: ``ca_file`` with a ``ws://`` URL, a missing file, or one with no certificate.
    """
    secure = url.startswith("wss://")
    if ca_file is None:
        return ssl.create_default_context() if secure else None
    if not isinstance(ca_file, str | os.PathLike) or not str(ca_file).strip():
        raise ConfigError(f"must be the path of a PEM file, got {ca_file!r}", field=field)
    if not secure:
        raise ConfigError(f"applies only to wss:// URLs; {url} is not encrypted", field=field)
    path = os.path.expanduser(os.fspath(ca_file))
    if not os.path.isfile(path):
        raise ConfigError(f"no such file: {path}", field=field)
    try:
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{path} holds no CA certificate in PEM form ({exc})", field=field) from None


def untrusted(server: str, exc: ssl.SSLCertVerificationError) -> str:
    """The one-line error of a TLS handshake whose certificate check failed (retrying cannot help)."""
    why = str(exc.verify_message or exc.reason or exc).rstrip(".")
    return (
        f"{server}: its TLS certificate was not trusted ({why}); for a server behind a private CA, "
        "set 'ca_file:' in the policy (or SSL_CERT_FILE) to the CA's PEM file"
    )


# --------------------------------------------------------------------------- client


def _open_connection(module: Any, url: str, **kwargs: Any) -> Any:
    """A plain client connection. websockets >= 17 asks callers that manage the
    connection themselves (as this client does, to reconnect on its own terms)
    to say so with ``legacy=True``; older versions have no such flag."""
    if "legacy" in inspect.signature(module.connect).parameters:
        kwargs["legacy"] = True
    return module.connect(url, **kwargs)


def _close_quietly(ws: Any) -> None:
    with contextlib.suppress(Exception):  # closing a dead socket: nothing left to do
        ws.close()


def check_remote_settings(settings: Mapping[str, Any]) -> None:
    """Check :class:`RemotePolicy`'s settings (each given or at its default)
    without connecting (``ca_file`` is checked when the run file is loaded).

    Raises:
        ConfigError: naming ``policy.<setting>`` and what is allowed.
    """
    ws_url(settings["url"])
    seconds(settings["timeout"], "timeout")
    if settings.get("token") is not None:
        text_line(settings["token"], "token")


class RemotePolicy:
    """The client side: a Policy whose ``act``/``reset`` run on a policy server."""

    def __init__(
        self,
        context: PolicyContext,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._ws_sync = require_extra("websockets.sync.client", "remote", "a remote policy")
        self._exc = require_extra("websockets.exceptions", "remote", "a remote policy")
        require_extra("msgpack", "remote", "a remote policy")
        check_remote_settings({"url": url, "timeout": timeout, "token": token})
        self.url, self.timeout = url, float(timeout)
        self._tls = tls_context(self.url, ca_file, field="policy.ca_file")
        self._token = token or os.environ.get(TOKEN_ENV) or None
        self.session = uuid.uuid4().hex
        self._resume: str | None = None  # the session's secret, from the server's 'ready'
        self.num_envs = context.num_envs
        self._hello = {
            "type": "hello",
            "protocol": PROTOCOL,
            "session": self.session,
            "num_envs": context.num_envs,
            "observation_space": space_to_wire(context.observation_space),
            "action_space": space_to_wire(context.action_space),
            "env_id": context.env_id,
            "env_kwargs": context.env_kwargs,
            "instruction": context.instruction,
        }
        self._seq = 0
        self._last_seeds: list[int | None] = [None] * context.num_envs
        self._ws: Any = None
        self.reconnects = 0
        self.server_policy = ""
        self._connect(time.monotonic() + self.timeout)
        self._finalizer = weakref.finalize(self, _close_quietly, self._ws)

    # -- connection ------------------------------------------------------

    def _unreachable(self, reason: str) -> RemotePolicyError:
        return RemotePolicyError(
            f"remote policy server {self.url} is unreachable ({reason}); gave up after {self.timeout:g} s "
            "(is 'trialrun serve-policy' running there?)"
        )

    def _refused(self, exc: Exception) -> str:
        """Why the handshake was refused; raises at once when retrying cannot help (HTTP 401)."""
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        body = bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace").strip()
        if status == 401:
            sent = "the token it was sent" if self._token else "the connection: no token was sent"
            raise RemotePolicyError(
                f"the policy server at {self.url} refused {sent} ({body or 'HTTP 401'}); set 'token:' in "
                f"the policy or {TOKEN_ENV} to the server's --token"
            )
        if status is not None:
            return f"HTTP {status}: {body}" if body else f"HTTP {status}"
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _closed(self, exc: Exception) -> str:
        """Why the server closed the connection; raises when a retry would be refused the same way."""
        rcvd = getattr(exc, "rcvd", None)
        code, reason = getattr(rcvd, "code", None), getattr(rcvd, "reason", "")
        if code == 1009:
            raise RemotePolicyError(
                f"the policy server at {self.url} refused a message as too big ({reason}); raise its "
                "--max-frame-bytes or send smaller observations"
            )
        if code is not None and reason:
            return f"closed by the server ({code}: {reason})"
        return type(exc).__name__

    def _connect(self, deadline: float) -> bool:
        """Open the connection and say hello, retrying until ``deadline``.
        Returns whether the server still had this session (its policy state)."""
        delay = 0.05
        last = "no attempt"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        tls = {"ssl": self._tls} if self._tls is not None else {}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unreachable(last)
            if self._resume is None:  # a hello that never got its 'ready' must not name a session twice
                self.session = uuid.uuid4().hex
            try:
                ws = _open_connection(
                    self._ws_sync,
                    self.url,
                    open_timeout=remaining,
                    close_timeout=1,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,
                    proxy=None,
                    additional_headers=headers,
                    **tls,
                )
            except self._exc.InvalidURI as exc:
                raise ConfigError(f"invalid URL {self.url!r}: {exc}", field="policy.url") from None
            except ssl.SSLCertVerificationError as exc:
                raise RemotePolicyError(untrusted(f"remote policy server {self.url}", exc)) from None
            except (OSError, TimeoutError, self._exc.InvalidHandshake, self._exc.ConnectionClosed) as exc:
                last = self._refused(exc)
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 0.5)
                continue
            try:
                ws.send(packb({**self._hello, "session": self.session, "resume": self._resume}))
                reply = unpackb(ws.recv(timeout=max(remaining, 0.01)))
            except (OSError, TimeoutError, self._exc.ConnectionClosed) as exc:
                _close_quietly(ws)
                last = f"no answer to hello: {self._closed(exc)}"
                continue
            if isinstance(reply, dict) and reply.get("type") == "error" and reply.get("fatal") is False:
                _close_quietly(ws)  # refused for now (its session is busy, the server is full): retry
                last = str(reply.get("message"))
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 0.5)
                continue
            self._raise_if_error(reply, "hello")
            if reply.get("type") != "ready":
                _close_quietly(ws)
                raise RemotePolicyError(
                    f"{self.url} answered hello with {reply.get('type')!r}, expected 'ready'"
                )
            self._ws = ws
            self.server_policy = str(reply.get("policy", ""))
            self._resume = str(reply["resume"]) if reply.get("resume") else None
            if hasattr(self, "_finalizer"):
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _close_quietly, ws)
            if self._seq > 0 and not reply.get("resumed"):
                logger.warning(
                    "remote policy server %s lost this session (restarted?); its policy starts afresh for "
                    "the episodes in progress",
                    self.url,
                )
                self._replay_reset(deadline)
                return False
            return True

    def _replay_reset(self, deadline: float) -> None:
        assert self._ws is not None
        self._seq += 1
        message = {
            "type": "reset",
            "seq": self._seq,
            "mask": np.ones(self.num_envs, dtype=bool),
            "seeds": list(self._last_seeds),
        }
        self._ws.send(packb(message))
        reply = unpackb(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        self._raise_if_error(reply, "reset")

    def _raise_if_error(self, reply: Any, what: str) -> None:
        if not isinstance(reply, dict):
            raise RemotePolicyError(f"{self.url} sent a message that is not a map in answer to {what}")
        if reply.get("type") == "error":
            raise RemotePolicyError(
                f"remote policy server {self.url} failed on {what}: {reply.get('message')}"
            )

    def _drop(self) -> None:
        if self._ws is not None:
            _close_quietly(self._ws)
            self._ws = None

    def _request(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        self._seq += 1
        message["seq"] = self._seq
        blob = packb(message)
        deadline: float | None = None
        while True:
            try:
                if self._ws is None:
                    resumed = self._connect(deadline or time.monotonic() + self.timeout)
                    self.reconnects += 1
                    if not resumed:  # a new session: its sequence restarted after the replayed reset
                        self._seq += 1
                        message["seq"] = self._seq
                        blob = packb(message)
                self._ws.send(blob)
                raw = self._ws.recv(timeout=self.timeout)
            except TimeoutError:
                self._drop()
                raise RemotePolicyError(
                    f"remote policy server {self.url} did not answer '{message['type']}' "
                    f"within {self.timeout:g} s"
                ) from None
            except (OSError, self._exc.ConnectionClosed) as exc:
                self._drop()
                why = self._closed(exc)
                deadline = deadline or time.monotonic() + self.timeout
                logger.warning("connection to %s lost (%s); reconnecting", self.url, why)
                if time.monotonic() >= deadline:
                    raise self._unreachable(f"connection lost: {why}") from None
                continue
            reply = unpackb(raw)
            self._raise_if_error(reply, message["type"])
            if reply.get("type") != expect or reply.get("seq") != self._seq:
                raise RemotePolicyError(
                    f"{self.url} answered {message['type']} #{self._seq} with {reply.get('type')!r} "
                    f"#{reply.get('seq')}"
                )
            return reply  # type: ignore[no-any-return]

    # -- Policy protocol -------------------------------------------------

    def act(self, obs: Any) -> Any:
        reply = self._request({"type": "act", "obs": obs}, "action")
        return reply["action"]

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        seed_list: list[int | None] = [None] * len(mask)
        if seeds is not None:
            seed_list = [None if s is None else int(s) for s in list(seeds)[: len(mask)]]
        for i in np.flatnonzero(mask):
            self._last_seeds[i] = seed_list[i]
        self._request({"type": "reset", "mask": mask, "seeds": seed_list}, "reset_done")

    def close(self) -> None:
        """Tell the server to drop the session and close the connection."""
        if self._ws is not None:
            with contextlib.suppress(Exception):  # the server is gone already
                self._ws.send(packb({"type": "close"}))
            self._drop()
        self._finalizer.detach()
