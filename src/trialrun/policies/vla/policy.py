"""A policy behind a VLA server: observation mapping, action chunks and latency around a transport.

:class:`ServerPolicy` is what ``policy: {type: openpi, ...}`` and ``policy:
{type: gr00t, ...}`` build. Each step it asks the server only for the worlds
whose action chunk is used up (all of them at the first step; with chunks of
``H`` and ``replan_steps: K``, one request per world every ``K`` steps), maps
their observations to the server's keys, and returns one action per world.
When a world's episode ends, its chunk is dropped and the server is told
(:meth:`Transport.reset`).

Per episode it records where the time went, under ``extra.server`` of the
episode record: requests sent, mean and 95th-percentile round trip (ms) and
the server's own ``infer_ms`` when it reports one.

Example (a transport that answers every request with a 3-step chunk of the world's state):
    >>> import numpy as np, gymnasium as gym
    >>> from trialrun.policies.base import PolicyContext
    >>> class Echo:
    ...     address = "memory://echo"
    ...     def infer(self, requests):
    ...         return [{"actions": np.repeat(r["observation/state"][None, :1], 3, 0)} for r in requests]
    ...     def reset(self, worlds): pass
    ...     def close(self): pass
    >>> ctx = PolicyContext("X-v0", 2, gym.spaces.Box(-9, 9, (2,)), gym.spaces.Box(-9, 9, (1,)), {})
    >>> policy = ServerPolicy(Echo(), ctx)
    >>> policy.act(np.array([[1.0, 0.0], [2.0, 0.0]])).tolist()
    [[1.0], [2.0]]
    >>> policy.episode_extra(0)["server"]["requests"]
    1
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trialrun.errors import RemotePolicyError
from trialrun.policies.base import PolicyContext
from trialrun.policies.vla.chunks import ActionChunks
from trialrun.policies.vla.mapping import ObservationMapper
from trialrun.policies.vla.transport import Reply, Transport


class ServerPolicy:
    """The :class:`~trialrun.policies.base.Policy` of a VLA server reached through ``transport``."""

    def __init__(
        self,
        transport: Transport,
        context: PolicyContext,
        *,
        obs_map: Mapping[str, Any] | None = None,
        replan_steps: int | None = None,
        field: str = "policy",
    ) -> None:
        self.transport = transport
        self.num_envs = context.num_envs
        self.action_shape = tuple(context.action_space.shape or ())
        self.action_dtype = context.action_space.dtype
        self.mapper = ObservationMapper(
            obs_map, context.observation_space, field=field, has_instruction=context.instruction is not None
        )
        self.chunks = ActionChunks(context.num_envs, replan_steps)
        self.instructions: list[str | None] = [context.instruction] * context.num_envs
        self._round_trips: list[list[float]] = [[] for _ in range(context.num_envs)]
        self._infer_ms: list[list[float]] = [[] for _ in range(context.num_envs)]

    def act(self, obs: Any) -> np.ndarray:
        """One action per world: the next of its chunk, asking the server for the worlds that ran out."""
        waiting = self.chunks.waiting()
        if waiting:
            requests = self.mapper.requests(obs, waiting, self.instructions)
            start = time.perf_counter()
            replies = self.transport.infer(requests)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            if len(replies) != len(waiting):
                raise RemotePolicyError(
                    f"the policy server at {self.transport.address} answered {len(replies)} of "
                    f"{len(waiting)} requests"
                )
            for world, reply in zip(waiting, replies, strict=True):
                self.chunks.load(world, self._chunk(reply))
                self._round_trips[world].append(elapsed_ms)
                infer_ms = _infer_ms(reply)
                if infer_ms is not None:
                    self._infer_ms[world].append(infer_ms)
        actions = self.chunks.pop()
        return actions.astype(self.action_dtype, copy=False) if self.action_dtype is not None else actions

    def _chunk(self, reply: Reply) -> np.ndarray:
        """The reply's actions as (H, *action_shape); a single action is a chunk of one."""
        if not isinstance(reply, Mapping) or "actions" not in reply:
            keys = sorted(map(str, reply)) if isinstance(reply, Mapping) else type(reply).__name__
            raise RemotePolicyError(
                f"the policy server at {self.transport.address} answered without 'actions' (got {keys})"
            )
        actions = np.asarray(reply["actions"])
        single = actions.ndim == len(self.action_shape)
        chunk = actions[None] if single else actions
        if chunk.ndim == 0 or len(chunk) == 0:
            raise RemotePolicyError(
                f"the policy server at {self.transport.address} answered an empty action chunk"
            )
        if chunk.shape[1:] != self.action_shape and chunk[0].size == int(np.prod(self.action_shape)):
            chunk = chunk.reshape(len(chunk), *self.action_shape)  # (H, 1) for a Discrete env, say
        return chunk

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """New episodes in the worlds of ``mask``: their chunks and timings start over."""
        worlds = np.asarray(mask).nonzero()[0].tolist()
        self.chunks.clear(worlds)
        for i in worlds:
            self._round_trips[i] = []
            self._infer_ms[i] = []
        if worlds:
            self.transport.reset(worlds)

    def instruct(self, mask: np.ndarray, instructions: Sequence[str | None]) -> None:
        """Episode instructions (a ``language`` factor) of the worlds in ``mask``, sent as the prompt."""
        for i in np.asarray(mask).nonzero()[0].tolist():
            self.instructions[i] = instructions[i]

    def episode_extra(self, world: int) -> dict[str, Any]:
        """What the episode's record keeps under ``extra``: where its policy time went (``server``)."""
        trips = self._round_trips[world]
        out: dict[str, Any] = {"requests": len(trips)}
        if trips:
            out["round_trip_ms_mean"] = round(float(np.mean(trips)), 3)
            out["round_trip_ms_p95"] = round(float(np.percentile(trips, 95)), 3)
        if self._infer_ms[world]:
            out["infer_ms_mean"] = round(float(np.mean(self._infer_ms[world])), 3)
        return {"server": out}

    def close(self) -> None:
        self.transport.close()


def _infer_ms(reply: Reply) -> float | None:
    timing = reply.get("server_timing") if isinstance(reply, Mapping) else None
    value = timing.get("infer_ms") if isinstance(timing, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
