"""The policy protocol every policy source satisfies.

A policy maps a batch of observations (one row per sub-env) to a batch of
actions. ``reset(mask, seeds)`` is called when new episodes start in the
sub-envs where ``mask`` is true: recurrent state and per-episode random
generators of those sub-envs (and only those) are reset. ``seeds[i]`` is the
slot's policy seed for sub-env ``i``, so a stochastic policy draws the same
actions for a slot whichever sub-env runs it.

Example:
    >>> import numpy as np
    >>> class Zero:
    ...     def act(self, obs): return np.zeros(len(obs), dtype=np.int64)
    ...     def reset(self, mask, seeds=None): pass
    >>> isinstance(Zero(), Policy)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Batch in, batch out; per-sub-env state cleared by ``reset(mask)``."""

    def act(self, obs: Any) -> Any:
        """Actions for a batch of observations (first axis = sub-env)."""

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """New episodes start in the sub-envs where ``mask`` is true."""


@dataclass(frozen=True)
class PolicyContext:
    """What a policy factory may need to know about the env it will drive.

    ``instruction`` is the job's language instruction (``instruction:`` in the
    run file), ``None`` when the job has none. A language-conditioned policy
    reads it here at build time, or declares ``act(self, obs, instruction)``
    and receives it with every call (see :func:`trialrun.policies.registry.build_policy`).
    """

    env_id: str
    num_envs: int
    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]
    env_kwargs: dict[str, Any]
    instruction: str | None = None
    episode_instructions: bool = False
    """Whether a ``language`` factor gives each episode its own instruction
    (through the policy's ``instruct(mask, instructions)``)."""


class CallablePolicy:
    """Wraps a stateless ``obs_batch -> action_batch`` function as a Policy."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def act(self, obs: Any) -> Any:
        return self._fn(obs)

    @property
    def pure(self) -> bool:
        """Whether the function is a jitted JAX function (it has ``lower`` and
        ``trace``): a pure function of the observations, so one more call
        changes nothing (a plain function may draw from a global generator).
        The batched rollout then queues steps one ahead
        (:class:`trialrun.envs.batched.StepsAhead`)."""
        return callable(getattr(self._fn, "lower", None)) and callable(getattr(self._fn, "trace", None))

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Stateless: nothing to clear."""


class InstructedPolicy:
    """Adapts a policy whose ``act`` takes an ``instruction`` to the plain
    ``act(obs)`` protocol, passing the job's instruction with every call.

    With a ``language`` factor the rollout calls :meth:`instruct` as episodes
    start, and ``act`` then passes one instruction per sub-env (a list) instead
    of the job's single text.

    Example:
        >>> import numpy as np
        >>> class Echo:
        ...     def act(self, obs, instruction): return [instruction] * len(obs)
        ...     def reset(self, mask, seeds=None): pass
        >>> policy = InstructedPolicy(Echo(), "open the drawer")
        >>> policy.act([0, 0])
        ['open the drawer', 'open the drawer']
        >>> policy.instruct(np.array([True, False]), ["close it", None])
        >>> policy.act([0, 0])
        [['close it', 'open the drawer'], ['close it', 'open the drawer']]
    """

    def __init__(self, inner: Any, instruction: str | None, act: Any = None) -> None:
        self.inner = inner
        self.instruction = instruction
        self._act = act if act is not None else inner.act
        self._per_env: list[str | None] | None = None

    def act(self, obs: Any) -> Any:
        # A copy: the policy may keep what it was given, and the list changes as episodes start.
        instruction = list(self._per_env) if self._per_env is not None else self.instruction
        return self._act(obs, instruction=instruction)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset(mask, seeds)

    def instruct(self, mask: np.ndarray, instructions: Sequence[str | None]) -> None:
        """The instructions of the episodes starting in the sub-envs of ``mask``."""
        if self._per_env is None:
            self._per_env = [self.instruction] * len(mask)
        for i in np.asarray(mask).nonzero()[0].tolist():
            self._per_env[i] = instructions[i]

    def close(self) -> None:
        """Close the wrapped policy if it holds resources."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
