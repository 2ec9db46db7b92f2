"""Meta-World v3 tasks as ordinary Gymnasium ids: ``metaworld/<task>``.

Meta-World needs care to evaluate reproducibly; this module takes it:

- ``reset(seed=...)`` is ignored by Meta-World; :class:`MetaWorldSeeding`
  calls ``env.unwrapped.seed(s)`` before each reset, so ``reset(seed=s)``
  gives the same object and goal positions every time, in any process.
- Object and goal positions are drawn per episode from the env's own
  generator (``seeded_rand_vec``), never from numpy's global state (the
  goal-observable classes Meta-World ships call ``np.random.seed``).
- ``info["success"]`` is not sticky; the rollout records "ever succeeded".
- Rendering uses fast software-renderer settings: no shadows, no
  reflections, no multisampling (6-10x faster under EGL/OSMesa).
- Episodes are at most 500 steps (Meta-World raises past its path length).

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("metaworld/reach-v3")
    >>> a, _ = env.reset(seed=3); b, _ = env.reset(seed=3)
    >>> bool((a == b).all())
    True
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from trialrun.errors import ConfigError, did_you_mean

METAWORLD_MAX_STEPS = 500

METAWORLD_V3_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3",
    "door-lock-v3", "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3",
    "drawer-open-v3", "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3",
    "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3",
    "plate-slide-back-v3", "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3",
    "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3",
    "reach-v3", "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

# Cameras whose images Meta-World renders upside down.
UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})


def is_metaworld_env(env: gym.Env[Any, Any]) -> bool:
    """Whether ``env`` (any wrapper of it) is a Meta-World task."""
    return type(env.unwrapped).__module__.startswith("metaworld.")


def camera_is_upside_down(env: gym.Env[Any, Any], camera: str) -> bool:
    """Whether frames of ``camera`` must be turned 180° to be upright: Meta-World's
    corner cameras are defined with their image "up" axis pointing down."""
    return camera in UPSIDE_DOWN_CAMERAS and is_metaworld_env(env)


def _import_metaworld() -> Any:
    try:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    except ImportError:
        raise ConfigError(
            "Meta-World is not installed; install it with: pip install 'trialrun[metaworld]'",
            field="env.id",
        ) from None
    return ALL_V3_ENVIRONMENTS


class MetaWorldSeeding(gym.Wrapper[Any, Any, Any, Any]):
    """Routes ``reset(seed=s)`` to Meta-World's ``seed(s)``, which it needs,
    and brings the scene's drawn positions up to date after a reset.

    Why the second: Meta-World moves the goal site at reset without
    recomputing where sites are, so a frame rendered right after ``reset``
    showed the previous episode's goal marker (up to 6 cm off): a pixel
    policy's first image, and a video's first frame, depended on what the
    sub-env ran before. ``mj_kinematics`` recomputes positions from ``qpos``
    only; the next ``mj_step`` recomputes them anyway, so the physics (and
    every state observation) is unchanged.
    """

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        import mujoco

        if seed is not None:
            self.env.unwrapped.seed(int(seed))  # type: ignore[attr-defined]
        obs, info = self.env.reset(seed=None, options=options)
        base: Any = self.env.unwrapped
        mujoco.mj_kinematics(base.model, base.data)
        return obs, dict(info)


def fast_render_settings(model: Any) -> None:
    """Software-renderer settings that keep frames cheap: no MSAA, shadows or
    reflections (none of which a policy evaluation video needs)."""
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0


def make_metaworld_env(
    env_name: str,
    render_mode: str | None = None,
    camera_name: str | None = None,
    width: int = 224,
    height: int = 224,
) -> gym.Env[Any, Any]:
    """One Meta-World v3 task with the goal observable and positions drawn per
    episode from the env's seeded generator."""
    classes = _import_metaworld()
    if env_name not in classes:
        hint = did_you_mean(env_name, classes, quote=False)
        raise ConfigError(f"unknown Meta-World task '{env_name}'{hint}", field="env.kwargs.env_name")
    env = classes[env_name](render_mode=render_mode, camera_name=camera_name, width=width, height=height)
    env._partially_observable = False
    # The observation bounds were cached while the goal was hidden (zero-width
    # goal bounds would clip the goal out of every observation): recompute them,
    # and hand the recomputed space to policies too (MujocoEnv stored the hidden
    # one as ``observation_space`` when it was built).
    if "sawyer_observation_space" in vars(env):
        del env.sawyer_observation_space
    env.observation_space = env.sawyer_observation_space
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env._set_task_called = True
    fast_render_settings(env.model)
    env.seed(0)
    env.reset()
    return MetaWorldSeeding(env)


def register_metaworld_ids() -> None:
    """Register ``metaworld/<task>`` for every v3 task (metaworld is imported
    only when one is made)."""
    for task in METAWORLD_V3_TASKS:
        env_id = f"metaworld/{task}"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="trialrun.envs.metaworld:make_metaworld_env",
                kwargs={"env_name": task},
                max_episode_steps=METAWORLD_MAX_STEPS,
                disable_env_checker=True,
            )


def is_metaworld_id(env_id: str) -> bool:
    return env_id.startswith("metaworld/")
