"""Meta-World object and goal placement ranges as factors.

Each Meta-World task draws the object's (and, for most tasks, the goal's)
initial position per episode from a box, ``_random_reset_space``: object
coordinates first, goal coordinates next. These variations scale that box
around its centre along the chosen axes (``scale`` mode; value 1 is nominal,
0 pins the position to the centre, 2 doubles the spread) or shift it
(``offset`` mode, metres). The episode's own seed still picks the point
inside the box, so the factor controls how far from the nominal placement
episodes can start.

Example:
    >>> import gymnasium as gym, trialrun.envs
    >>> env = gym.make("metaworld/push-v3")
    >>> v = MetaWorldObjectRange({"mode": "scale"}); v.bind(env)
    >>> v.apply(env, 2.0)
    2.0
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trialrun.variations.base import FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation

_AXES = {"x": 0, "y": 1, "z": 2}


class RangeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["scale", "offset"] = "scale"
    axes: str = Field(default="xy", pattern=r"^[xyz]{1,3}$", description="e.g. 'xy'")

    @field_validator("axes")
    @classmethod
    def _distinct(cls, value: str) -> str:
        if len(set(value)) != len(value):
            raise ValueError(f"axes '{value}' repeats an axis")
        return value


class _MetaWorldRange(Variation):
    """Shared logic: the variation changes a slice of ``_random_reset_space``."""

    Params: ClassVar[type[BaseModel]] = RangeParams
    offset_index: ClassVar[int] = 0
    what: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._low = np.zeros(0)
        self._high = np.zeros(0)
        self._dims: list[int] = []

    @property
    def units(self) -> str | None:
        return "x" if self.params.mode == "scale" else "m"

    @staticmethod
    def _space(env: gym.Env[Any, Any]) -> Any:
        return getattr(env.unwrapped, "_random_reset_space", None)

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        space = self._space(env)
        if space is None:
            raise self.error(f"variation '{self.type_name}' needs a Meta-World env (metaworld/<task>)")
        size = int(np.asarray(space.low).size)
        if size < self.offset_index + 3:
            raise self.error(
                f"this Meta-World task has no {self.what} range (its reset space has {size} values)"
            )
        self._low = np.array(space.low, dtype=np.float64)
        self._high = np.array(space.high, dtype=np.float64)
        dims = [self.offset_index + _AXES[a] for a in self.params.axes]
        if self.params.mode == "scale":
            dims = [d for d in dims if self._high[d] > self._low[d]]
            if not dims:
                raise self.error(f"the {self.what} range has zero width along '{self.params.axes}'")
        self._dims = dims

    def nominal(self) -> FactorValue:
        return 1.0 if self.params.mode == "scale" else 0.0

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        if isinstance(value, str | bool):
            raise self.error(f"needs a number, got {value!r}")
        space = self._space(env)
        low, high = self._low.copy(), self._high.copy()
        for d in self._dims:
            if self.params.mode == "scale":
                if value < 0:
                    raise self.error(f"a range scale must be >= 0, got {value}")
                centre, half = (low[d] + high[d]) / 2, (high[d] - low[d]) / 2
                low[d], high[d] = centre - half * value, centre + half * value
            else:
                low[d], high[d] = low[d] + value, high[d] + value
        space.low[:], space.high[:] = low, high
        d = self._dims[0]
        if self.params.mode == "scale":
            return float((space.high[d] - space.low[d]) / (self._high[d] - self._low[d]))
        return float(space.low[d] - self._low[d])

    def restore(self, env: gym.Env[Any, Any]) -> None:
        space = self._space(env)
        space.low[:], space.high[:] = self._low, self._high

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        space = cls._space(env)
        if space is None or np.asarray(space.low).size < cls.offset_index + 3:
            return []
        sl = slice(cls.offset_index, cls.offset_index + 3)
        lo = [round(float(x), 3) for x in space.low[sl]]
        hi = [round(float(x), 3) for x in space.high[sl]]
        return [TargetInfo(cls.type_name, cls.what, 1.0, "x", f"xyz box {lo} .. {hi}")]


@register_variation
class MetaWorldObjectRange(_MetaWorldRange):
    """Scales or shifts the box the object's initial position is drawn from."""

    type_name = "metaworld.object_range"
    offset_index = 0
    what = "object"


@register_variation
class MetaWorldGoalRange(_MetaWorldRange):
    """Scales or shifts the box the goal position is drawn from."""

    type_name = "metaworld.goal_range"
    offset_index = 3
    what = "goal"
