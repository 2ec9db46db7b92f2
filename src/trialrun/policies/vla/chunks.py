"""Action chunks: a server answers with H actions, the env takes them one per step.

VLA servers (openpi's pi0, GR00T) return a *chunk* of ``H`` future actions per
request. ``replan_steps: K`` executes the first ``K`` actions open loop, then
asks again (openpi's LIBERO client uses ``K = 5`` of ``H = 10``); a chunk
shorter than ``K`` asks again when it runs out. Each world (sub-env) has its
own queue, cleared when its episode ends, so a new episode never starts on
the old episode's plan.

Example:
    >>> import numpy as np
    >>> chunks = ActionChunks(num_envs=2, replan_steps=2)
    >>> chunks.waiting()
    [0, 1]
    >>> chunks.load(0, np.array([[0.0], [1.0], [2.0]])); chunks.load(1, np.array([[5.0]]))
    >>> chunks.pop().tolist(), chunks.waiting()
    ([[0.0], [5.0]], [1])
    >>> chunks.load(1, np.array([[6.0], [7.0]]))
    >>> chunks.pop().tolist(), chunks.waiting()   # world 0 used K = 2 of its chunk: it asks again
    ([[1.0], [6.0]], [0])
"""

from __future__ import annotations

from collections import deque

import numpy as np


class ActionChunks:
    """One queue of planned actions per world."""

    def __init__(self, num_envs: int, replan_steps: int | None = None) -> None:
        if replan_steps is not None and replan_steps < 1:
            raise ValueError("replan_steps must be >= 1")
        self.num_envs = num_envs
        self.replan_steps = replan_steps
        self._queues: list[deque[np.ndarray]] = [deque() for _ in range(num_envs)]

    def waiting(self) -> list[int]:
        """Worlds with no action planned for this step (they need a request)."""
        return [i for i, queue in enumerate(self._queues) if not queue]

    def load(self, world: int, chunk: np.ndarray) -> None:
        """Plan ``world``'s next steps: the first ``replan_steps`` rows of ``chunk`` (all without it)."""
        rows = chunk if self.replan_steps is None else chunk[: self.replan_steps]
        if len(rows) == 0:
            raise ValueError("an empty action chunk")
        self._queues[world] = deque(rows)

    def pop(self) -> np.ndarray:
        """This step's action of every world, stacked (every world must have one)."""
        return np.stack([queue.popleft() for queue in self._queues])

    def clear(self, worlds: list[int]) -> None:
        """Forget the plans of ``worlds`` (their episodes ended)."""
        for i in worlds:
            self._queues[i].clear()
