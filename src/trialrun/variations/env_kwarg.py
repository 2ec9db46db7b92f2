"""``env_kwarg``: a ``gymnasium.make`` keyword argument as a factor.

Applied at build time: the env is rebuilt for each distinct value. Slots are
grouped by their build-time values, so each distinct env is built once per
worker, not once per episode. This is how a Meta-World task, a terrain file
or any constructor option becomes a factor.

Example:
    >>> v = EnvKwargVariation({"key": "env_name"})
    >>> v.applies_at, v.params.key
    ('build', 'env_name')
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import AppliesAt, FactorValue, Variation
from trialrun.variations.registry import register_variation


class EnvKwargParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, description="the gymnasium.make keyword argument")


@register_variation
class EnvKwargVariation(Variation):
    """Passes the factor value to ``gymnasium.make`` as ``key=value``."""

    type_name = "env_kwarg"
    Params: ClassVar[type[BaseModel]] = EnvKwargParams
    applies_at: ClassVar[AppliesAt] = "build"

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._nominal: FactorValue | None = None

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        spec = env.spec
        kwargs = dict(spec.kwargs) if spec is not None else {}
        value = kwargs.get(self.params.key, inspect.Parameter.empty)
        if value is inspect.Parameter.empty:
            # Not passed to make(): the constructor's default is the nominal value.
            try:
                parameter = inspect.signature(type(env.unwrapped).__init__).parameters.get(self.params.key)
            except (TypeError, ValueError):
                parameter = None
            value = parameter.default if parameter is not None else None
        self._nominal = value if isinstance(value, str | int | float | bool) else None

    def nominal(self) -> FactorValue | None:  # type: ignore[override]
        """The value the env is built with by default (None when it has none)."""
        return self._nominal

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        spec = env.spec
        built = (spec.kwargs if spec is not None else {}).get(self.params.key, value)
        return built if isinstance(built, str | int | float | bool) else value

    def restore(self, env: gym.Env[Any, Any]) -> None:
        """Nothing to undo: a different value means a different env."""

    def build_kwargs(self, value: FactorValue) -> dict[str, Any]:
        return {self.params.key: value}
