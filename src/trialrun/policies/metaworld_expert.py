"""``metaworld-expert``: Meta-World's scripted expert for the env's task.

Meta-World ships one hand-written expert per task in ``metaworld.policies``.
This policy picks the right one from the env it drives (the task named by the
``metaworld/<task>`` id or by an ``env_name`` kwarg, which is how a task
factor reaches it: each distinct task is its own env group, and each group
builds its own policy). The experts are state-based, so visual factors
(lighting, camera) should leave their success rate unchanged.

Example:
    >>> expert_class_name("pick-place-v3")
    'SawyerPickPlaceV3Policy'
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext

# Experts whose class name does not follow the task name.
_SPECIAL = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}


def expert_class_name(task: str) -> str:
    """The ``metaworld.policies`` class name of ``task``'s expert."""
    if task in _SPECIAL:
        return _SPECIAL[task]
    *words, version = task.split("-")
    return "Sawyer" + "".join(w.capitalize() for w in words) + version.upper() + "Policy"


def task_of(context: PolicyContext) -> str:
    """The Meta-World task an env context refers to."""
    task = context.env_kwargs.get("env_name")
    if task is None and context.env_id.startswith("metaworld/"):
        task = context.env_id.split("/", 1)[1]
    if not task:
        raise ConfigError(
            f"policy 'metaworld-expert' needs a Meta-World env (metaworld/<task>), got '{context.env_id}'",
            field="policy",
        )
    return str(task)


class MetaWorldExpertPolicy:
    """Runs the task's scripted expert on each sub-env's observation."""

    def __init__(self, context: PolicyContext) -> None:
        try:
            import metaworld.policies as experts
        except ImportError:
            raise ConfigError(
                "Meta-World is not installed; install it with: pip install 'trialrun[metaworld]'",
                field="policy",
            ) from None
        self.task = task_of(context)
        cls = getattr(experts, expert_class_name(self.task), None)
        if cls is None:
            raise ConfigError(f"Meta-World has no scripted expert for task '{self.task}'", field="policy")
        self.expert = cls()
        # The experts warn on every action whose gains exceed [-1, 1]; the env
        # clips actions anyway, and thousands of identical warnings bury real ones.
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        return np.stack([self.expert.get_action(row) for row in obs]).astype(np.float32)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """The experts are stateless functions of the observation."""
