"""Sensor and actuation perturbations: ``obs_noise``, ``action_noise``, ``action_delay``, ``action_repeat``.

These variations change nothing in the simulator: they change what the
policy sees (noise on state observations) or what the env gets (noisy,
late or held actions). Each is a factor like any other: the factor's
sampled value is the parameter named by ``param`` (``std`` or ``steps``),
and the nominal value is the unperturbed one (std 0, 0 steps of delay, a
repeat of 1). ``image_noise`` (in :mod:`trialrun.variations.image_noise`)
is the same for camera images.

How they act: :meth:`~Perturbation.apply` only stores the episode's value.
After the reset, the sub-env's :class:`~trialrun.envs.slot_wrapper.SlotWrapper`
asks every bound perturbation to :meth:`~Perturbation.begin` the episode
with the slot's seed; those not at nominal wrap the episode's step
function, innermost (nearest the env) first:

1. ``action_repeat`` (layer 0): one policy step is ``steps`` env steps with
   the same action; the rewards of those steps are summed, the repeat stops
   early at the first terminated/truncated step, and the observation and
   ``info`` are the last env step's. An episode's ``length`` (in the record)
   counts policy steps: ``ceil(env steps / steps)``; ``max_steps`` still
   counts env steps. A flag set in ``info`` only on an intermediate env step
   (Meta-World's non-sticky ``success``) is not seen.
2. ``action_noise`` (layer 1): Gaussian noise on the action the env gets
   (``std`` times the optional per-dimension ``scale``), clipped to the
   action space's bounds unless ``clip: false``; one draw per policy step.
3. ``action_delay`` (layer 2): the env gets the action the policy chose
   ``steps`` policy steps earlier; the first ``steps`` steps of an episode
   get the ``fill`` action (default zeros, clipped into a Box's bounds;
   action 0 of a Discrete space, which is not a no-op for every env: set
   ``fill`` then).
4. ``obs_noise`` (layer 3): Gaussian noise on the float state observation
   the policy gets (a Box, or the float Box entries of a Dict other than
   ``camera/*`` images, or the ``keys`` named), ``std`` times the optional
   per-dimension ``scale``; not clipped to the space's bounds.

Recorders sit inside all of this: videos show the simulator, trajectories
hold the env's clean observations and the actions the env really got, one
row per env step.

Every draw comes from a generator of the slot's seed and the factor's name
(:func:`episode_generator`), fresh at every reset: an episode's noise is the
same whichever sub-env or worker runs it, with any ``num_envs``, and on replay.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("Pendulum-v1")
    >>> v = ObsNoise({"param": "std"}); v.bind(env)
    >>> v.apply(env, 0.1), v.nominal(), v.begin(seed=7, name="noise")
    (0.1, 0.0, True)
    >>> obs = np.zeros(3, np.float32)
    >>> bool(np.array_equal(v.observe(obs), v.observe(obs)))  # two draws differ
    False
    >>> v.restore(env); v.begin(seed=7, name="noise")  # at nominal: nothing to do
    False
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeGuard

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trialrun.plan import stable_hash_words
from trialrun.variations.base import FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation

__all__ = [
    "ActionDelay",
    "ActionNoise",
    "ActionRepeat",
    "ObsNoise",
    "Perturbation",
    "episode_generator",
]

logger = logging.getLogger(__name__)

StepFn = Callable[[Any], tuple[Any, Any, bool, bool, dict[str, Any]]]

CAMERA_PREFIX = "camera/"
"""Observation key prefix of camera images (as
:class:`trialrun.recording.camera_obs.CameraObservations` adds them)."""

# Separates a perturbation's spawn key from the slot's own keys.
_PERTURB_KEY = 0x50455254  # "PERT"


def episode_generator(seed: int | None, name: str) -> np.random.Generator:
    """The generator of factor ``name`` in the episode reset with ``seed``.

    A reset without a seed (an unseeded env) gets fresh OS entropy: such an
    episode is not reproducible anyway.

    Example:
        >>> a = episode_generator(3, "noise").random()
        >>> a == episode_generator(3, "noise").random(), a == episode_generator(3, "other").random()
        (True, False)
    """
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(
        np.random.SeedSequence(entropy=int(seed), spawn_key=(_PERTURB_KEY, *stable_hash_words(name)))
    )


class Perturbation(Variation):
    """A variation that acts on each step of an episode instead of on the simulator.

    Subclasses set ``layer`` (lower = nearer the env), ``nominal_value`` and
    :meth:`_check` (the factor value, validated), and override
    :meth:`wrap_step` and/or :meth:`observe`; :meth:`_start` sets up the
    episode's state once the generator exists.
    """

    layer: ClassVar[int] = 0
    nominal_value: ClassVar[FactorValue] = 0.0
    units_name: ClassVar[str | None] = None

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._value: Any = self.nominal_value
        self._rng: np.random.Generator = np.random.default_rng(0)

    @property
    def units(self) -> str | None:
        return self.units_name

    def nominal(self) -> FactorValue:
        return self.nominal_value

    def apply(self, env: gym.Env[Any, Any] | None, value: FactorValue) -> FactorValue:
        self._value = self._check(value)
        return self._value  # type: ignore[no-any-return]

    def restore(self, env: gym.Env[Any, Any] | None) -> None:
        self._value = self.nominal_value

    def _check(self, value: FactorValue) -> Any:
        """The factor value as this perturbation uses it (a VariationError when invalid)."""
        return _non_negative(self, value, "std")

    def active(self) -> bool:
        """Whether this episode is perturbed at all (False at nominal)."""
        return bool(self._value != self.nominal_value)

    def begin(self, seed: int | None, name: str) -> bool:
        """Start an episode reset with ``seed``; False when there is nothing to do."""
        if not self.active():
            return False
        self._rng = episode_generator(seed, name)
        self._start()
        return True

    def _start(self) -> None:
        """Set up per-episode state (after the generator is made)."""

    def observe(self, obs: Any) -> Any:
        """The observation as the policy gets it (identity unless overridden)."""
        return obs

    def wrap_step(self, step: StepFn) -> StepFn:
        """This episode's step function around ``step`` (observations go through :meth:`observe`)."""

        def perturbed(action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
            obs, reward, terminated, truncated, info = step(action)
            return self.observe(obs), reward, terminated, truncated, info

        return perturbed

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        if not cls._fits(env):
            return []
        return [TargetInfo(cls.type_name, cls._target_name, cls.nominal_value, cls.units_name, cls._note)]

    @classmethod
    def _fits(cls, env: gym.Env[Any, Any]) -> bool:
        """Whether this perturbation can act on ``env`` (for ``trialrun list variations``)."""
        return True

    _target_name: ClassVar[str] = ""
    _note: ClassVar[str] = ""


def _non_negative(variation: Variation, value: FactorValue, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise variation.error(f"{variation.type_name}: {what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise variation.error(f"{variation.type_name}: {what} must be >= 0, got {value!r}")
    return number


def _float_box(space: gym.Space[Any]) -> TypeGuard[gym.spaces.Box]:
    return isinstance(space, gym.spaces.Box) and bool(np.issubdtype(space.dtype, np.floating))


def _whole(variation: Variation, value: FactorValue, minimum: int) -> int:
    number = _non_negative(variation, value, "steps")
    if number != int(number) or number < minimum:
        raise variation.error(
            f"{variation.type_name}: steps must be a whole number >= {minimum}, got {value!r} "
            "(use a choice sampler over whole numbers, e.g. values: [0, 1, 2, 4])"
        )
    return int(number)


def _scale(variation: Variation, scale: list[float] | None, shape: tuple[int, ...], what: str) -> Any:
    """The per-dimension multiplier of ``std`` (1.0 when not given), checked against ``shape``."""
    if scale is None:
        return 1.0
    size = int(np.prod(shape)) if shape else 1
    if len(scale) != size:
        raise variation.error(
            f"{variation.type_name}: scale has {len(scale)} entries but the {what} has {size} dimensions "
            f"(shape {shape})"
        )
    return np.asarray(scale, dtype=np.float64).reshape(shape)


class _StdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    param: Literal["std"] = "std"
    """The parameter the factor's value sets."""
    scale: list[float] | None = Field(default=None, min_length=1)
    """Per-dimension multipliers of ``std`` (one per element of the perturbed array)."""


class ObsNoiseParams(_StdParams):
    keys: list[str] | None = Field(default=None, min_length=1)
    """Dict observation entries to perturb (default: every float Box entry that is not ``camera/*``)."""


@register_variation
class ObsNoise(Perturbation):
    """Gaussian noise on the state observation the policy gets (std in observation units)."""

    type_name = "obs_noise"
    Params = ObsNoiseParams
    layer = 3
    _target_name = "observation"
    _note = "Gaussian noise on state observations (param: std)"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        space = env.observation_space
        keys = self.params.keys
        if isinstance(space, gym.spaces.Dict):
            floats = [
                k
                for k, s in space.spaces.items()
                if isinstance(s, gym.spaces.Box)
                and np.issubdtype(s.dtype, np.floating)
                and not k.startswith(CAMERA_PREFIX)
            ]
            if keys is not None:
                unknown = [k for k in keys if k not in floats]
                if unknown:
                    raise self.error(
                        f"obs_noise: {unknown} not float Box entries of the observation; "
                        f"those are: {', '.join(floats) or '(none)'}"
                    )
                floats = list(keys)
            if not floats:
                raise self.error(f"obs_noise: the observation has no float Box entry to perturb ({space})")
            self._keys: list[str] | None = floats
            shapes = {k: space.spaces[k].shape or () for k in floats}
            self._scales = {k: _scale(self, self.params.scale, shapes[k], f"entry '{k}'") for k in floats}
            return
        if keys is not None:
            raise self.error(f"obs_noise: keys name entries of a Dict observation; this env's is {space}")
        if not _float_box(space):
            raise self.error(
                f"obs_noise needs a float Box observation (or a Dict of them); this env has {space}"
            )
        self._keys = None
        self._scales = {"": _scale(self, self.params.scale, space.shape, "observation")}

    @classmethod
    def _fits(cls, env: gym.Env[Any, Any]) -> bool:
        space = env.observation_space
        return isinstance(space, gym.spaces.Dict) or _float_box(space)

    def _noisy(self, value: Any, scale: Any) -> Any:
        array = np.asarray(value)
        noise = self._rng.normal(0.0, self._value, array.shape) * scale
        return (array + noise).astype(array.dtype, copy=False)

    def observe(self, obs: Any) -> Any:
        if self._keys is None:
            return self._noisy(obs, self._scales[""])
        out = dict(obs)
        for key in self._keys:
            out[key] = self._noisy(obs[key], self._scales[key])
        return out


class ActionNoiseParams(_StdParams):
    clip: bool = True
    """Clip the noisy action to the action space's bounds."""


@register_variation
class ActionNoise(Perturbation):
    """Gaussian noise on the action the env gets (std in action units)."""

    type_name = "action_noise"
    Params = ActionNoiseParams
    layer = 1
    _target_name = "action"
    _note = "Gaussian noise on Box actions (param: std)"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        space = env.action_space
        if not _float_box(space):
            raise self.error(f"action_noise needs a float Box action space; this env has {space}")
        self._space = space
        self._scale = _scale(self, self.params.scale, space.shape, "action")

    @classmethod
    def _fits(cls, env: gym.Env[Any, Any]) -> bool:
        return _float_box(env.action_space)

    def wrap_step(self, step: StepFn) -> StepFn:
        space, clip = self._space, self.params.clip

        def noisy(action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
            array = np.asarray(action, dtype=space.dtype)
            moved = array + self._rng.normal(0.0, self._value, space.shape) * self._scale
            if clip:
                moved = np.clip(moved, space.low, space.high)
            return step(moved.astype(space.dtype, copy=False))

        return noisy


class ActionDelayParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    param: Literal["steps"] = "steps"
    fill: int | float | list[float] | None = None
    """The action the env gets before the first delayed one arrives (default zeros)."""


class _ActionTiming(Perturbation):
    """A perturbation whose value is a whole number of steps (at least its nominal)."""

    units_name = "steps"
    _target_name = "action"

    def _check(self, value: FactorValue) -> Any:
        return _whole(self, value, int(self.nominal_value))


@register_variation
class ActionDelay(_ActionTiming):
    """The env gets the action chosen ``steps`` policy steps earlier (latency)."""

    type_name = "action_delay"
    Params = ActionDelayParams
    layer = 2
    nominal_value = 0
    _note = "K policy steps of latency; fill action first (param: steps)"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        space = env.action_space
        fill = self.params.fill
        action: Any
        if isinstance(space, gym.spaces.Discrete):
            action = int(space.start) if fill is None else fill
        elif isinstance(space, gym.spaces.Box) and fill is None:
            action = np.clip(np.zeros(space.shape), space.low, space.high).astype(space.dtype)
        else:
            try:
                action = np.asarray(0 if fill is None else fill, dtype=space.dtype).reshape(space.shape or ())
            except (TypeError, ValueError):
                action = None
        if action is None or not space.contains(action):
            raise self.error(f"action_delay: fill {fill!r} is not an action of {space}")
        self._fill = action

    def _start(self) -> None:
        self._queue: collections.deque[Any] = collections.deque([self._fill] * int(self._value))

    def wrap_step(self, step: StepFn) -> StepFn:
        queue = self._queue

        def delayed(action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
            queue.append(np.copy(action))
            return step(queue.popleft())

        return delayed


class ActionRepeatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    param: Literal["steps"] = "steps"


@register_variation
class ActionRepeat(_ActionTiming):
    """One policy step is ``steps`` env steps with the same action (control frequency)."""

    type_name = "action_repeat"
    Params = ActionRepeatParams
    layer = 0
    nominal_value = 1
    _note = "env steps per policy step; rewards summed (param: steps)"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        """Any env: nothing to check."""

    def wrap_step(self, step: StepFn) -> StepFn:
        repeats = int(self._value)

        def repeated(action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
            total = 0.0
            for _ in range(repeats):
                obs, reward, terminated, truncated, info = step(action)
                total += float(reward)
                if terminated or truncated:
                    break
            return obs, total, terminated, truncated, info

        return repeated
