"""Environment building and the bundled environments."""

import gymnasium as gym

from trialrun.envs.build import check_env_id, ensure_headless_rendering, make_env

if "trialrun/SeedProbe-v0" not in gym.registry:
    gym.register(
        id="trialrun/SeedProbe-v0",
        entry_point="trialrun.envs.probe:SeedProbeEnv",
        vector_entry_point="trialrun.envs.probe_vector:SeedProbeVectorEnv",
    )

__all__ = ["check_env_id", "ensure_headless_rendering", "make_env"]

from trialrun.envs.metaworld import register_metaworld_ids

register_metaworld_ids()
