"""``env_kwarg``: a ``gymnasium.make`` keyword argument, or a key inside one, as a factor.

Applied at build time: the env is rebuilt for each distinct value. Slots are
grouped by their build-time values, so each distinct env is built once per
worker, not once per episode. This is how a Meta-World task, a terrain file
or any constructor option becomes a factor.

A dotted key (``config.vehicles_count``, ``config.observation.type``) sets a
key inside a dict argument: many envs take their settings as one dict
(highway-env's ``config``). The factor's value is merged over the rest of
that dict, so the other settings keep their values: over the job's own
``env.kwargs`` dict when it gives one, else over the env's defaults, read
from the built env's attribute of the same name (``env.unwrapped.config``),
because a constructor default is usually ``None`` and the real defaults are
filled in by the env. Several factors may set keys of the same dict. The
value recorded is the one read back from the built env
(``env.unwrapped.config["vehicles_count"]``), and a key the env does not
have is an error listing the keys it has.

Example:
    >>> v = EnvKwargVariation({"key": "config.vehicles_count"})
    >>> v.applies_at, v.build_kwargs(20)
    ('build', {'config': {'vehicles_count': 20}})
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field

from trialrun.variations.base import AppliesAt, FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation

_SCALARS = (str, int, float, bool)


class EnvKwargParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(
        min_length=1,
        pattern=r"^[^.]+(\.[^.]+)*$",
        description="the gymnasium.make keyword argument; a dotted key sets a key inside a dict argument",
    )


def dict_setting(root: Any, path: list[str]) -> tuple[Any, bool]:
    """``(value, True)`` at ``path`` inside nested mappings, or ``(None, False)``."""
    node = root
    for segment in path:
        if not isinstance(node, Mapping) or segment not in node:
            return None, False
        node = node[segment]
    return node, True


@register_variation
class EnvKwargVariation(Variation):
    """Passes the factor value to ``gymnasium.make`` as ``key=value``, or, with
    a dotted key, as one key inside a dict argument (see the module docstring)."""

    type_name = "env_kwarg"
    Params: ClassVar[type[BaseModel]] = EnvKwargParams
    applies_at: ClassVar[AppliesAt] = "build"

    def __init__(self, params: dict[str, Any], *, field: str = "variation") -> None:
        super().__init__(params, field=field)
        self._nominal: FactorValue | None = None
        self.argument, *self.path = self.params.key.split(".")
        """The ``make`` argument, and the keys inside it (empty for a plain argument)."""

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        if self.path:
            value = self._bind_nested(env)
        else:
            value = _given(env).get(self.argument, inspect.Parameter.empty)
            if value is inspect.Parameter.empty:
                # Not passed to make(): the constructor's default is the nominal value.
                value = _constructor_default(env, self.argument)
        self._nominal = value if isinstance(value, _SCALARS) else None

    def _settings(self, env: gym.Env[Any, Any]) -> tuple[Mapping[str, Any] | None, str, bool]:
        """The dict the dotted key points into, where it was found (a format
        string taking the dotted ``path`` walked into it), and whether
        it is complete (holds every key the env knows): the built env's
        attribute (what the env really uses), else the constructor's default
        dict, else the dict given to ``make`` (which may hold only some keys)."""
        base = env.unwrapped
        name = type(base).__name__
        attribute = getattr(base, self.argument, None)
        if isinstance(attribute, Mapping):
            return attribute, name + ".{path}", True
        default = _constructor_default(env, self.argument)
        if isinstance(default, Mapping):
            return (
                {**default, **(_given(env).get(self.argument) or {})},
                "the default '{path}' of " + name,
                True,
            )
        given = _given(env).get(self.argument)
        if isinstance(given, Mapping):
            return given, "the '{path}' given to " + name, False
        return None, name, False

    def _bind_nested(self, env: gym.Env[Any, Any]) -> Any:
        settings, where, complete = self._settings(env)
        if settings is None:
            raise self.error(
                f"env_kwarg '{self.params.key}': {where} has no dict '{self.argument}' (neither an attribute "
                f"nor a make() argument) to set '{'.'.join(self.path)}' in"
            )
        node: Any = settings
        for depth, segment in enumerate(self.path):
            walked = ".".join([self.argument, *self.path[:depth]])
            if not isinstance(node, Mapping):
                raise self.error(
                    f"env_kwarg '{self.params.key}': '{walked}' is a {type(node).__name__}, not a dict, "
                    f"so it has no key '{segment}'"
                )
            if segment not in node:
                if not complete and depth == len(self.path) - 1:
                    return None  # a new key in a partial dict the env does not keep: nothing to check
                keys = ", ".join(sorted(map(str, node))) or "(none)"
                raise self.error(
                    f"env_kwarg '{self.params.key}': unknown key '{segment}' in {where.format(path=walked)}; "
                    f"keys: {keys}"
                )
            node = node[segment]
        return node

    def nominal(self) -> FactorValue | None:  # type: ignore[override]
        """The value the env is built with by default (None when it has none)."""
        return self._nominal

    def apply(self, env: gym.Env[Any, Any], value: FactorValue) -> FactorValue:
        if self.path:
            built, found = dict_setting(getattr(env.unwrapped, self.argument, None), self.path)
            if not found:
                built, found = dict_setting(_given(env).get(self.argument), self.path)
        else:
            built = _given(env).get(self.params.key, value)
        return built if isinstance(built, _SCALARS) else value

    def restore(self, env: gym.Env[Any, Any]) -> None:
        """Nothing to undo: a different value means a different env."""

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        """The scalar keys of the dicts the env keeps from its constructor
        arguments (``config.vehicles_count``), one level deep."""
        out = []
        for argument, settings in _settings_dicts(env).items():
            for key, value in sorted(settings.items(), key=lambda item: str(item[0])):
                if isinstance(value, _SCALARS) and not isinstance(value, str):
                    out.append(
                        TargetInfo(cls.type_name, f"{argument}.{key}", value, None, "rebuilds the env")
                    )
        return out

    def build_kwargs(self, value: FactorValue) -> dict[str, Any]:
        """``{key: value}``; for a dotted key the nested part alone
        (``{"config": {"vehicles_count": value}}``), which
        :meth:`~trialrun.variations.factors.FactorSet.build_kwargs` merges over
        the rest of the dict."""
        nested: Any = value
        for segment in reversed(self.path):
            nested = {segment: nested}
        return {self.argument: nested}


def _settings_dicts(env: gym.Env[Any, Any]) -> dict[str, Mapping[str, Any]]:
    """Constructor arguments the built env keeps as a dict attribute of the
    same name (highway-env's ``config``): the dicts dotted keys can reach."""
    base = env.unwrapped
    try:
        parameters = inspect.signature(type(base).__init__).parameters
    except (TypeError, ValueError):
        return {}
    found = {name: getattr(base, name, None) for name in parameters if not name.startswith("_")}
    return {name: value for name, value in found.items() if isinstance(value, Mapping)}


def _given(env: gym.Env[Any, Any]) -> dict[str, Any]:
    """The kwargs ``env`` was made with."""
    return dict(env.spec.kwargs) if env.spec is not None else {}


def _constructor_default(env: gym.Env[Any, Any], argument: str) -> Any:
    try:
        parameter = inspect.signature(type(env.unwrapped).__init__).parameters.get(argument)
    except (TypeError, ValueError):
        parameter = None
    return parameter.default if parameter is not None else None
