"""Adapters that present batched GPU / multi-process simulators as a
:class:`~trialrun.envs.batched.BatchedEnv` (see ``docs/batched.md``).

Each adapter follows one real API by duck typing and imports nothing from the
simulator's package, so it can be imported (and tested against doubles) on a
machine without that simulator:

- :class:`IsaacLabBatchedEnv`: Isaac Lab's ``ManagerBasedRLEnv`` (wave mode);
- :class:`ManiSkillBatchedEnv`: ManiSkill3's ``BaseEnv`` (exact mode);
- :class:`PufferLibBatchedEnv`: PufferLib's ``Serial`` / ``Multiprocessing``
  vector envs (wave mode).
"""

from trialrun.envs.adapters.isaaclab import IsaacLabBatchedEnv
from trialrun.envs.adapters.maniskill import ManiSkillBatchedEnv
from trialrun.envs.adapters.pufferlib import PufferLibBatchedEnv

__all__ = ["IsaacLabBatchedEnv", "ManiSkillBatchedEnv", "PufferLibBatchedEnv"]
