"""The wrapper around every sub-env: it prepares each episode from its slot.

A vector env resets all masked sub-envs with one shared ``options`` dict, so
per-slot settings travel in ``options["trialrun"][env_index]`` and each
wrapper picks its own entry. Before resetting the inner env it runs its
pre-reset hooks (variations apply factor values there); the values the hooks
report as applied come back in ``info["trialrun_applied"]`` (JSON text, so the
vector env can batch it like any other info value). A wrapper without hooks
adds nothing to ``info``.

When the slot's settings carry ``video`` (what the rollout's video plan, e.g.
:class:`trialrun.recording.selection.VideoSelection`, decided), the wrapper
records the episode in this process, whichever process that is (the
rollout's, an async worker, an executor worker): the post-reset frame, one
frame per step, and at the terminal step the finished files' names in
``info["trialrun_video"]``. The recorder is injected: whoever builds the
sub-env passes ``recorder_factory`` (for example
:class:`trialrun.recording.capture.EpisodeRecorder`; a module-level class or
function, so async workers can unpickle the env fn), and the wrapper makes
one :class:`EpisodeCapture` from it the first time an episode is recorded.
Settings carrying ``trajectory`` work the same with a :class:`StepCapture`
made by ``step_recorder_factory`` (e.g.
:class:`trialrun.recording.trajectory.TrajectoryRecorder`), which sees every
step's action, observation, reward, flags and info, and names its file in
``info["trialrun_trajectory"]``. This package never imports :mod:`trialrun.recording`.

A hook may also hand out :class:`Perturbation` objects (its
``perturbations()`` method: the factor hook's ``obs_noise``,
``action_delay``... variations, :mod:`trialrun.variations.perturbations`).
After each reset the wrapper begins them with the reset seed; those that
are active wrap the episode's step function around the recording one
(lowest ``layer`` innermost) and change the first observation. Recorders
therefore see the env's clean steps, and the policy the perturbed ones.
An episode without an active perturbation steps exactly as before.

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
from typing import Any, Protocol

import gymnasium as gym

from trialrun.envs.info import APPLIED_KEY, TRAJECTORY_KEY, VIDEO_KEY

ResetHook = Callable[[gym.Env[Any, Any], dict[str, Any], int | None], dict[str, Any]]
"""``hook(env, slot_settings, seed) -> applied values`` run before each reset."""

StepFn = Callable[[Any], tuple[Any, Any, bool, bool, dict[str, Any]]]


class Perturbation(Protocol):
    """Changes what the policy sees or what the env gets, for one episode at a time.

    ``begin(seed, name)`` starts an episode (``name`` keys its generator) and
    says whether there is anything to do; ``observe`` maps the reset
    observation; ``wrap_step`` returns the episode's step around ``step``.
    ``layer`` orders several: the lowest wraps nearest the env.
    """

    layer: int

    def begin(self, seed: int | None, name: str) -> bool: ...

    def observe(self, obs: Any) -> Any: ...

    def wrap_step(self, step: StepFn) -> StepFn: ...


class EpisodeCapture(Protocol):
    """Records episodes inside a sub-env (the hook a :class:`SlotWrapper` is given).

    ``begin`` right after a reset, with the episode's video settings (it
    captures the post-reset frame); ``capture`` after every step; ``finish``
    after the terminal step completes the files and returns
    ``{camera: file name}``; ``abort`` drops the episode being recorded;
    ``close`` releases everything. ``recording`` is true between ``begin``
    and ``finish``/``abort``.
    """

    @property
    def recording(self) -> bool: ...

    def begin(self, env: gym.Env[Any, Any], settings: dict[str, Any]) -> None: ...

    def capture(self, env: gym.Env[Any, Any]) -> None: ...

    def finish(self) -> dict[str, str]: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


CaptureFactory = Callable[[], EpisodeCapture]
"""Makes a sub-env's :class:`EpisodeCapture` (picklable: a module-level class or function)."""


class StepCapture(Protocol):
    """Records the steps of episodes inside a sub-env (a trajectory recorder).

    ``begin`` right after a reset with the episode's settings, its first
    observation and info; ``capture`` after every step with the action the
    env got and what the step returned; ``finish`` after the terminal step
    completes the file and returns ``{"trajectory": file name}``; ``abort``
    drops the episode; ``close`` releases everything.
    """

    @property
    def recording(self) -> bool: ...

    def begin(
        self, env: gym.Env[Any, Any], settings: dict[str, Any], obs: Any, info: dict[str, Any]
    ) -> None: ...

    def capture(
        self,
        env: gym.Env[Any, Any],
        action: Any,
        obs: Any,
        reward: Any,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None: ...

    def finish(self) -> dict[str, str]: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


StepCaptureFactory = Callable[[], StepCapture]
"""Makes a sub-env's :class:`StepCapture` (picklable, like :data:`CaptureFactory`)."""


class SlotWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Applies a slot's settings before each reset and reports what was applied."""

    def __init__(
        self,
        env: gym.Env[Any, Any],
        env_index: int,
        hooks: list[ResetHook] | None = None,
        recorder_factory: CaptureFactory | None = None,
        step_recorder_factory: StepCaptureFactory | None = None,
    ) -> None:
        super().__init__(env)
        self.env_index = env_index
        self.hooks = list(hooks or [])
        self.recorder_factory = recorder_factory
        self.step_recorder_factory = step_recorder_factory
        self._recorder: EpisodeCapture | None = None
        self._stepper: StepCapture | None = None
        self._perturbed: StepFn | None = None

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
        if self._stepper is not None:
            self._stepper.abort()
        obs, info = self.env.reset(seed=seed, options=inner_options)
        if self.hooks:
            info = dict(info)
            info[APPLIED_KEY] = json.dumps(applied, sort_keys=True)
        if settings.get("video"):
            if self._recorder is None:
                if self.recorder_factory is None:
                    raise RuntimeError(
                        f"sub-env {self.env_index} was asked to record a video but has no recorder: "
                        "build it with SlotWrapper(..., recorder_factory=EpisodeRecorder)"
                    )
                self._recorder = self.recorder_factory()
            self._recorder.begin(self.env, settings["video"])
        if settings.get("trajectory"):
            if self._stepper is None:
                if self.step_recorder_factory is None:
                    raise RuntimeError(
                        f"sub-env {self.env_index} was asked to record a trajectory but has no step "
                        "recorder: build it with SlotWrapper(..., step_recorder_factory=TrajectoryRecorder)"
                    )
                self._stepper = self.step_recorder_factory()
            # The trajectory's attributes are the values applied (read back), as in the record.
            step_settings = dict(settings["trajectory"])
            if self.hooks:
                step_settings["factors"] = applied
            self._stepper.begin(self.env, step_settings, obs, info)
        self._perturbed = None
        if self.hooks:
            obs = self._begin_perturbations(obs, seed)
        return obs, info

    def _begin_perturbations(self, obs: Any, seed: int | None) -> Any:
        """Begin the hooks' perturbations; wrap this episode's steps with the active ones."""
        active: list[Perturbation] = []
        for hook in self.hooks:
            found = getattr(hook, "perturbations", None)
            if found is not None:
                active.extend(p for name, p in found().items() if p.begin(seed, name))
        if not active:
            return obs
        step: StepFn = self._recorded_step
        for perturbation in sorted(active, key=lambda p: p.layer):
            step = perturbation.wrap_step(step)
            obs = perturbation.observe(obs)
        self._perturbed = step
        return obs

    @property
    def step_target(self) -> Callable[[Any], tuple[Any, Any, bool, bool, dict[str, Any]]]:
        """What steps the current episode: its perturbed step function when a
        perturbation is active, :meth:`step` while it is recorded, otherwise
        the inner env's ``step``.

        Why: the vector env calls this once per reset instead of going through
        this wrapper at every step; on a fast env such as CartPole one wrapper
        layer is ~5% of the step time.
        """
        if self._perturbed is not None:
            return self._perturbed
        if (self._recorder is not None and self._recorder.recording) or (
            self._stepper is not None and self._stepper.recording
        ):
            return self.step
        return self.env.step

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        if self._perturbed is not None:
            return self._perturbed(action)
        return self._recorded_step(action)

    def _recorded_step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """One env step, captured by the recorders that are recording."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        recorder, stepper = self._recorder, self._stepper
        video = recorder is not None and recorder.recording
        steps = stepper is not None and stepper.recording
        if video or steps:
            ended = bool(terminated or truncated)
            step_info = info
            if ended:
                info = dict(info)
            if recorder is not None and video:
                recorder.capture(self.env)
                if ended:
                    info[VIDEO_KEY] = json.dumps(recorder.finish(), sort_keys=True)
            if stepper is not None and steps:
                stepper.capture(self.env, action, obs, reward, bool(terminated), bool(truncated), step_info)
                if ended:
                    info[TRAJECTORY_KEY] = json.dumps(stepper.finish(), sort_keys=True)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        if self._stepper is not None:
            self._stepper.close()
            self._stepper = None
        super().close()
