"""What a VLA policy server's client does on the wire: the transport protocol.

trialrun's server policies (``openpi``, ``gr00t``) share everything above the
wire: mapping observations to the server's keys (:mod:`.mapping`), action
chunks and replanning (:mod:`.chunks`), per-episode latency, the policy
protocol (:mod:`.policy`). A transport does only the wire: it sends one
request per world that needs a new action chunk and returns the replies in the
same order.

A request is a flat ``dict[str, Any]`` of the server's keys (``"observation/state"``,
``"observation/image"``, ``"prompt"``...) to numpy arrays (one world's, no
batch axis), numpy scalars or strings. A reply is the server's answer as a
dict; trialrun reads ``"actions"`` (a chunk of shape ``(H, action_dim)``, or
one action of shape ``(action_dim,)``) and, when present,
``"server_timing"["infer_ms"]``.

Errors are :class:`~trialrun.errors.RemotePolicyError` with a message that
names the server's address and what happened (timeout with the elapsed time,
an error frame with the server's traceback as ``remote_traceback``, a
connection that could not be re-established).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Request = dict[str, Any]
Reply = dict[str, Any]


class Transport(Protocol):
    """The wire side of a server policy (one per policy object, i.e. per shard)."""

    address: str
    """Where the server is (``ws://host:port``, ``tcp://host:port``), for messages."""

    def infer(self, requests: Sequence[Request]) -> list[Reply]:
        """One reply per request, in order. Requests for different worlds may
        go out concurrently (openpi: one per connection of a bounded pool) or
        as one batched message (GR00T). Raises RemotePolicyError."""
        ...

    def reset(self, worlds: Sequence[int]) -> None:
        """New episodes start in ``worlds`` (a server that keeps per-episode
        state is told so; openpi's servers keep none)."""
        ...

    def close(self) -> None:
        """Close every connection (idempotent)."""
        ...
