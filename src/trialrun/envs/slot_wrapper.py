"""The wrapper around every sub-env: it prepares each episode from its slot.

A vector env resets all masked sub-envs with one shared ``options`` dict, so
per-slot settings travel in ``options["trialrun"][env_index]`` and each
wrapper picks its own entry. Before resetting the inner env it runs its
pre-reset hooks (variations apply factor values there); the values the hooks
report as applied come back in ``info["trialrun_applied"]`` (JSON text, so the
vector env can batch it like any other info value). A wrapper without hooks
adds nothing to ``info``.

When the slot's settings carry ``video`` (see
:class:`trialrun.recording.video.VideoSelection`), the wrapper records the
episode in this process, whichever process that is (the rollout's, an async
worker, an executor worker): the post-reset frame, one frame per step, and at
the terminal step the finished files' names in ``info["trialrun_video"]``.

Example:
    >>> import gymnasium as gym
    >>> def long_pole(env, settings, seed):
    ...     env.unwrapped.length = settings["factors"]["length"]
    ...     return {"length": env.unwrapped.length}
    >>> env = SlotWrapper(gym.make("CartPole-v1"), env_index=0, hooks=[long_pole])
    >>> obs, info = env.reset(seed=3, options={"trialrun": {0: {"factors": {"length": 0.75}}}})
    >>> info["trialrun_applied"]
    '{"length": 0.75}'
    >>> env.step_target == env.env.step   # nothing recorded: the vector env skips this layer
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from trialrun.recording.video import INFO_KEY as VIDEO_INFO_KEY
from trialrun.recording.video import EpisodeRecorder

ResetHook = Callable[[gym.Env[Any, Any], dict[str, Any], int | None], dict[str, Any]]
"""``hook(env, slot_settings, seed) -> applied values`` run before each reset."""


class SlotWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Applies a slot's settings before each reset and reports what was applied."""

    def __init__(self, env: gym.Env[Any, Any], env_index: int, hooks: list[ResetHook] | None = None) -> None:
        super().__init__(env)
        self.env_index = env_index
        self.hooks = list(hooks or [])
        self._recorder: EpisodeRecorder | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        settings: dict[str, Any] = {}
        inner_options = None
        if options:
            inner_options = {k: v for k, v in options.items() if k != "trialrun"} or None
            settings = (options.get("trialrun") or {}).get(self.env_index, {})
        applied: dict[str, Any] = {}
        for hook in self.hooks:
            applied.update(hook(self.env, settings, seed))
        if self._recorder is not None:
            self._recorder.abort()  # a reset before the end drops the episode's video
        obs, info = self.env.reset(seed=seed, options=inner_options)
        if self.hooks:
            info = dict(info)
            info["trialrun_applied"] = json.dumps(applied, sort_keys=True)
        if settings.get("video"):
            if self._recorder is None:
                self._recorder = EpisodeRecorder()
            self._recorder.begin(self.env, settings["video"])
        return obs, info

    @property
    def step_target(self) -> Callable[[Any], tuple[Any, Any, bool, bool, dict[str, Any]]]:
        """What steps the current episode: :meth:`step` while it is recorded,
        otherwise the inner env's ``step``.

        Why: the vector env calls this once per reset instead of going through
        this wrapper at every step; on a fast env such as CartPole one wrapper
        layer is ~5% of the step time.
        """
        if self._recorder is not None and self._recorder.recording:
            return self.step
        return self.env.step

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        recorder = self._recorder
        if recorder is not None and recorder.recording:
            recorder.capture(self.env)
            if terminated or truncated:
                info = dict(info)
                info[VIDEO_INFO_KEY] = json.dumps(recorder.finish(), sort_keys=True)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        super().close()
