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
instructions (``instruct``, or ``act(obs, instruction)``). Requests are
answered one at a time on the server's event loop, as openpi's server
answers them: a policy's state is never touched by two requests at once, and
no thread hop is paid per request (on 127.0.0.1 it cost a fifth of the round
trip); a slow policy delays other connections' requests and handshakes
meanwhile, as it would in openpi. The server keeps no
per-episode state and never calls ``reset`` (openpi's protocol has none), so
a recurrent policy carries its memory across episodes, as an openpi server would.

The bounds of :class:`~trialrun.policies.server.ServerLimits` apply as for
trialrun's protocol (this server is a :class:`~trialrun.policies.server.PolicyServer`
with another handler): connections (HTTP 503 over the cap), frame size
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

import asyncio
import math
import threading
import time
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra
from trialrun.policies.registry import build_policy
from trialrun.policies.server import _FAILURES, PolicyServer, ServerLimits
from trialrun.policies.vla.openpi import AUTH_HEADER, AUTH_SCHEME, CLOSE_INTERNAL_ERROR
from trialrun.policies.vla.openpi_codec import packb, unpackb

DEFAULT_OBS_KEY = "observation/state"
"""Where a flat observation is in a request (trialrun's openpi client puts it there by default)."""
DICT_KEY_PREFIX = "observation/"
"""A ``Dict`` observation's entry ``k`` is read from ``observation/k``."""
PROMPT_KEY = "prompt"
ERROR_CLOSE_REASON = "Internal server error. Traceback included in previous frame."
"""openpi's close reason after an error frame, word for word."""
HEALTH_PATH = "/healthz"


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

    def _observation_keys(self) -> list[str]:
        if isinstance(self.observation_space, gym.spaces.Dict):
            return [DICT_KEY_PREFIX + str(k) for k in self.observation_space.spaces]
        return [self.obs_key]

    # -- one request ------------------------------------------------------------------------

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to one decoded request, as openpi's ``policy.infer`` gives it (plus ``infer_ms``).

        Raises:
            ValueError: the request lacks a key the policy needs or has a value of the wrong size.
        """
        start = time.monotonic()
        obs = self._observation(request)
        prompt = request.get(PROMPT_KEY)
        with self._lock:
            if callable(self._instruct):
                self._instruct(np.ones(1, dtype=bool), [prompt if isinstance(prompt, str) else None])
            action = self.policy.act(obs)
        if isinstance(action, Mapping):
            raise ValueError(
                f"policy '{self.type_name}' returned a dict; openpi answers one array of actions"
            )
        actions = np.asarray(action)
        actions = actions.reshape(1, -1) if actions.ndim != 2 or len(actions) != 1 else actions
        return {"actions": actions, "server_timing": {"infer_ms": (time.monotonic() - start) * 1000.0}}

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

    def _answer_frame(self, raw: Any, prev_total: float | None) -> bytes:
        """Decode, answer and encode one request (on the event loop, as openpi does)."""
        reply = self.answer(unpackb(raw))
        if prev_total is not None:
            reply["server_timing"]["prev_total_ms"] = prev_total * 1000.0
        return packb(reply)

    # -- the connection ---------------------------------------------------------------------

    def _check_request(self, connection: Any, request: Any) -> Any:
        """``/healthz`` as openpi; an ``Api-Key`` is checked as trialrun's ``Bearer`` token; then the caps."""
        if request.path == HEALTH_PATH:
            return connection.respond(HTTPStatus.OK, "OK\n")
        scheme, _, key = str(request.headers.get(AUTH_HEADER, "")).partition(" ")
        if scheme.lower() == AUTH_SCHEME.lower():
            del request.headers[AUTH_HEADER]
            request.headers[AUTH_HEADER] = f"Bearer {key}"
        return super()._check_request(connection, request)

    async def _handle(self, ws: Any) -> None:
        exceptions = require_extra("websockets.exceptions", "remote", "serve-policy")
        prev_total: float | None = None
        try:
            await ws.send(self._metadata_frame)
            while True:
                timeout = self.limits.session_idle_timeout
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except asyncio.TimeoutError:
                    await ws.close(1000, f"no request within {timeout:g} s")
                    return
                start = time.monotonic()
                try:
                    reply = self._answer_frame(raw, prev_total)  # inline: see the module docstring
                except Exception as exc:  # openpi's answer to any failure: the traceback, then 1011
                    _FAILURES.warning("openpi request failed: %s: %s", type(exc).__name__, exc)
                    await ws.send(traceback.format_exc())
                    await ws.close(CLOSE_INTERNAL_ERROR, ERROR_CLOSE_REASON)
                    return
                finally:
                    raw = b""  # let a big request go now, not when the next one arrives
                    ws.message_done()
                await ws.send(reply)
                prev_total = time.monotonic() - start
        except exceptions.ConnectionClosed:
            return


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
