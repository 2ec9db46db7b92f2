"""The variation interface: a named, registered way to change an environment.

A variation is configured in a job (``variation: {type: mujoco.body_mass,
body: obj, mode: scale}``) and paired with a sampler; together they form a
factor. The config (a pydantic ``Params`` model, unknown keys rejected) is
validated once; at run time :meth:`Variation.bind` attaches it to one env
instance (one per sub-env), checks that its target exists (listing the
available names when it does not) and snapshots the nominal value. Before
every episode the factor hook calls :meth:`Variation.restore` and then
:meth:`Variation.apply`, so every episode starts from the nominal model plus
its own factors and nothing leaks between episodes or sub-envs.

``apply`` returns the value read back from the simulator: that, not the
sampler's output, is what the episode record holds.

Example:
    >>> import gymnasium as gym
    >>> class PoleLength(Variation):
    ...     type_name = "example.pole_length"
    ...     def _bind(self, env): self._nominal = env.unwrapped.length
    ...     def nominal(self): return self._nominal
    ...     def apply(self, env, value):
    ...         env.unwrapped.length = float(value); return env.unwrapped.length
    ...     def restore(self, env): env.unwrapped.length = self._nominal
    >>> env = gym.make("CartPole-v1")
    >>> v = PoleLength({}); v.bind(env)
    >>> v.apply(env, 0.75), v.nominal()
    (0.75, 0.5)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, ValidationError

from trialrun.errors import ConfigError, VariationError

FactorValue = float | int | str | bool
AppliesAt = Literal["reset", "build"]


class NoParams(BaseModel):
    """Parameters of a variation that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TargetInfo:
    """One thing a variation can change in a given env (for ``trialrun list variations``)."""

    variation: str
    target: str
    nominal: Any
    units: str | None = None
    note: str = ""


@dataclass
class VariationDoc:
    """What ``trialrun list variations ENV`` prints for one variation type."""

    type_name: str
    summary: str
    parameters: dict[str, str]
    applies_at: AppliesAt
    targets: list[TargetInfo] = field(default_factory=list)


class Variation(ABC):
    """Base class of all variations (one instance per factor per sub-env).

    Subclasses set ``type_name`` (the registry key), ``Params`` (a pydantic
    model of their config keys, extra keys forbidden), ``applies_at`` and
    ``units``, and implement :meth:`_bind`, :meth:`nominal`, :meth:`apply`
    and :meth:`restore`. ``kind`` is ``continuous`` unless the variation takes
    categorical values.
    """

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    applies_at: ClassVar[AppliesAt] = "reset"
    kind: ClassVar[Literal["continuous", "categorical"]] = "continuous"
    rebuilds_model: ClassVar[bool] = False
    """True when :meth:`bind` replaces the env's simulator model (``mujoco.distractors``):
    the factor hook binds such variations before the others, which then bind to the new model."""

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        self.field = field
        try:
            self.params: Any = self.Params.model_validate(params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(self.Params.model_fields)) or "(none)"
                key = err["loc"][-1]
                msg = f"unknown key '{key}' for variation '{self.type_name}'; allowed keys: {allowed}"
            raise ConfigError(msg, field=f"{field}.{where}" if where else field) from None
        self._bound = False

    @property
    def units(self) -> str | None:
        """Units of the factor value (``scale`` modes are unitless: ``x``)."""
        return None

    def bind(self, env: gym.Env[Any, Any]) -> None:
        """Attach to one env instance: check the target, snapshot the nominal value."""
        self._bind(env)
        self._bound = True

    @abstractmethod
    def _bind(self, env: gym.Env[Any, Any]) -> None:
        """Find the target in ``env.unwrapped`` (raise VariationError listing the
        available names when missing) and remember its nominal value."""

    @abstractmethod
    def nominal(self) -> FactorValue:
        """The factor value that leaves the env unchanged (e.g. 1.0 for a scale)."""

    def begin_episode(self, seed: int | None) -> None:
        """Called by the factor hook before :meth:`apply` with the episode's reset seed.

        A variation that draws something per episode (where distractors
        stand) derives its generator from this seed, never from global
        state, so the slot replays exactly with any ``num_envs``. The
        default does nothing.
        """
        return None

    @abstractmethod
    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        """Apply ``value`` and return the value read back from the simulator."""

    @abstractmethod
    def restore(self, env: gym.Env[Any, Any]) -> None:
        """Put the target back to its nominal value."""

    def build_kwargs(self, value: FactorValue) -> dict[str, Any]:
        """For build-time variations: the ``gymnasium.make`` kwargs for ``value``."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The variation as the manifest records it (type plus parameters)."""
        return {"type": self.type_name, **self.params.model_dump(mode="json")}

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        """What this variation type can change in ``env`` (empty when nothing)."""
        return []

    def error(self, message: str) -> VariationError:
        """A VariationError naming this factor's config field."""
        return VariationError(message, field=self.field)


def require_mujoco(env: gym.Env[Any, Any], variation: str) -> tuple[Any, Any]:
    """``(model, data)`` of a MuJoCo-based env, or a clear error.

    Found as ``env.unwrapped.model``/``.data`` (Gymnasium's MuJoCo envs,
    Meta-World, gymnasium-robotics) or through a dm_control ``Physics``
    (``env.unwrapped.physics``, as shimmy's ``DmControlCompatibilityV0``
    exposes it, or ``env.unwrapped._env.physics``), whose wrappers hold the
    raw ``mujoco.MjModel``/``MjData`` as ``.ptr``: editing those in place is
    what dm_control's own ``physics.model.body_mass[...] = ...`` does.
    """
    base = env.unwrapped
    model = getattr(base, "model", None)
    data = getattr(base, "data", None)
    if model is not None and data is not None and hasattr(model, "body_mass"):
        return model, data
    physics = getattr(base, "physics", None) or getattr(getattr(base, "_env", None), "physics", None)
    if physics is not None:
        model = getattr(getattr(physics, "model", None), "ptr", None)
        data = getattr(getattr(physics, "data", None), "ptr", None)
        if model is not None and data is not None and hasattr(model, "body_mass"):
            return model, data
    raise VariationError(
        f"variation '{variation}' needs a MuJoCo env (with .model and .data, or a dm_control .physics); "
        f"{type(base).__name__} is not one"
    )
