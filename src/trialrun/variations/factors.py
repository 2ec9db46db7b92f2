"""A job's factors at run time: values per slot, env groups, and the reset hook.

The config holds, per factor, a variation and a sampler. :class:`FactorSet` is
the runtime object built from it (a config object paired with the runtime
object built from it, as Isaac Lab's managers do):

- :meth:`FactorSet.values` gives every slot its factor values, a pure function
  of ``(run seed, job name, k)`` (and the episode count for LHS/Sobol/grid).
- Build-time factors (``env_kwarg``) split the slots into groups; each group
  is one env configuration, built once per worker.
- :class:`FactorHook` runs inside each sub-env before every reset: it restores
  every variation to nominal, then applies the slot's values and reports what
  the simulator really holds.

Example:
    >>> from trialrun.config import parse_run_config
    >>> job = parse_run_config({"name": "r", "jobs": [{"name": "j", "env": "CartPole-v1",
    ...     "policy": "zero", "episodes": 2, "factors": {"length": {
    ...     "variation": {"type": "attr", "name": "length"},
    ...     "sampler": {"type": "uniform", "low": 0.4, "high": 0.6}}}}]}).jobs[0]
    >>> values = FactorSet(job).values(run_seed=0)
    >>> len(values), 0.4 <= values[0]["length"] <= 0.6
    (2, True)
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from trialrun.errors import ConfigError
from trialrun.plan import PlannedSlots, Slot
from trialrun.runfiles.schema import FactorSpec
from trialrun.variations.base import FactorValue, Variation
from trialrun.variations.designs import (
    PER_SLOT_DESIGNS,
    factor_values,
    random_values_for_slots,
    warn_unused_levels,
)
from trialrun.variations.registry import build_variation

if TYPE_CHECKING:
    from trialrun.config import JobConfig

logger = logging.getLogger(__name__)


def _field(job_name: str, factor: str) -> str:
    return f"jobs[{job_name}].factors.{factor}"


class FactorSet:
    """The factors of one job (validated; variations built but not bound)."""

    def __init__(self, job: JobConfig) -> None:
        self.job = job
        self.samplers = {name: f.sampler for name, f in job.factors.items()}
        self.variation_configs = {name: dict(f.variation) for name, f in job.factors.items()}
        # Built once here so that bad variation params fail at preflight.
        self.prototypes: dict[str, Variation] = {
            name: build_variation(cfg, _field(job.name, name) + ".variation")
            for name, cfg in self.variation_configs.items()
        }
        self.build_names = [n for n, v in self.prototypes.items() if v.applies_at == "build"]
        languages = [n for n, v in self.prototypes.items() if v.type_name == "language"]
        if len(languages) > 1:
            raise ConfigError(
                f"factors {languages} are both 'language': an episode has one instruction",
                field=f"jobs[{job.name}].factors",
            )
        self.instruction_name: str | None = languages[0] if languages else None
        """The factor that draws each episode's instruction (a ``language`` variation), if any."""
        self.reset_names = [n for n, v in self.prototypes.items() if v.applies_at == "reset"]

    def __bool__(self) -> bool:
        return bool(self.prototypes)

    def values(self, run_seed: int) -> list[dict[str, Any]]:
        """Factor values for every slot of the job, index = episode."""
        return factor_values(self.samplers, self.job.design, run_seed, self.job.name, self.job.episodes)

    def slots(self, run_seed: int) -> PlannedSlots:
        """Every slot of the job with its factor values (a lazy plan: the
        slots are computed when read)."""
        if not self:
            return PlannedSlots(run_seed, self.job.name, range(self.job.episodes))
        if self.job.design in PER_SLOT_DESIGNS:  # computed a block at a time, not a dict per episode
            warn_unused_levels(self.samplers, self.job.design, self.job.name)
            source = partial(random_values_for_slots, self.samplers, run_seed, self.job.name)
            return PlannedSlots(run_seed, self.job.name, range(self.job.episodes), source)
        return PlannedSlots(run_seed, self.job.name, range(self.job.episodes), self.values(run_seed))

    def group_key(self, values: dict[str, Any]) -> str:
        """The build-time part of a slot's values (slots with equal keys share an env);
        a factor absent from ``values`` (at nominal in a ``one_at_a_time`` design) is left out."""
        return json.dumps({n: values[n] for n in self.build_names if n in values}, sort_keys=True)

    def build_kwargs(self, values: dict[str, Any]) -> dict[str, Any]:
        """``gymnasium.make`` kwargs contributed by build-time factors.

        A dict value (from a dotted ``env_kwarg`` key such as
        ``config.vehicles_count``) holds only the keys the factor sets; it is
        merged over the job's own dict for that argument when the job gives
        one, else over the env's defaults (:func:`env_dict_defaults`), so the
        caller's shallow ``{**job.env.kwargs, **build_kwargs}`` keeps every
        other setting, and factors setting keys of the same dict combine.
        """
        kwargs: dict[str, Any] = {}
        for name in self.build_names:
            if name not in values:  # at nominal: the env's own default
                continue
            for argument, value in self.prototypes[name].build_kwargs(values[name]).items():
                if not isinstance(value, dict):
                    kwargs[argument] = value
                    continue
                if argument not in kwargs:
                    given = self.job.env.kwargs.get(argument)
                    base = given if isinstance(given, dict) else env_dict_defaults(self.job, argument)
                    kwargs[argument] = copy.deepcopy(base)
                _merge_into(kwargs[argument], value)
        return kwargs

    def hook(self, build_values: dict[str, Any]) -> FactorHook:
        """A fresh (unbound, picklable) hook for one sub-env."""
        return FactorHook(self.variation_configs, self.job.name, build_values)

    def specs(self, env: gym.Env[Any, Any]) -> list[FactorSpec]:
        """Factor specs for the manifest; binds the variations to ``env`` to read
        nominal values (and to check that every target exists)."""
        specs = []
        for name, sampler in self.samplers.items():
            variation = build_variation(
                self.variation_configs[name], _field(self.job.name, name) + ".variation"
            )
            variation.bind(env)
            fields = sampler.spec_fields()
            specs.append(
                FactorSpec(
                    name=name,
                    nominal=variation.nominal(),
                    variation=variation.describe(),
                    units=variation.units,
                    applies_at=variation.applies_at,
                    **fields,
                )
            )
        return specs

    def nominal_values(self, env: gym.Env[Any, Any]) -> dict[str, FactorValue]:
        """Each factor's nominal value: the variation's own (bound to ``env``,
        e.g. CartPole's pole length, 1.0 for a ``scale`` mode), or the sampler's
        :meth:`~trialrun.variations.samplers.Sampler.nominal_hint` when the
        variation has none (an ``env_kwarg`` the constructor has no default for).

        Used by training-time evaluation's ``nominal: true``, which pins every
        factor at this value.
        """
        values: dict[str, FactorValue] = {}
        for name, sampler in self.samplers.items():
            variation = build_variation(
                self.variation_configs[name], _field(self.job.name, name) + ".variation"
            )
            variation.bind(env)
            nominal = variation.nominal()
            values[name] = _plain(nominal) if nominal is not None else sampler.nominal_hint()
        return values


class FactorHook:
    """Runs before every reset of one sub-env: restore all, apply this slot's values.

    Variations are built and bound lazily, on the first reset, inside the
    process that owns the env (so the hook can travel to async workers).
    """

    def __init__(
        self, variation_configs: dict[str, dict[str, Any]], job: str, build_values: dict[str, Any]
    ) -> None:
        self.variation_configs = variation_configs
        self.job = job
        self.build_values = dict(build_values)
        self._variations: dict[str, Variation] | None = None

    def _bind(self, env: gym.Env[Any, Any]) -> dict[str, Variation]:
        variations = {
            name: build_variation(cfg, _field(self.job, name) + ".variation")
            for name, cfg in self.variation_configs.items()
        }
        # A variation that replaces the env's model binds first; the others bind to the new model.
        for variation in sorted(variations.values(), key=lambda v: not v.rebuilds_model):
            variation.bind(env)
        return variations

    def __call__(self, env: gym.Env[Any, Any], settings: dict[str, Any], seed: int | None) -> dict[str, Any]:
        if self._variations is None:
            self._variations = self._bind(env)
        values: dict[str, FactorValue] = settings.get("factors") or {}
        reset_time = [(n, v) for n, v in self._variations.items() if v.applies_at == "reset"]
        for _, variation in reversed(reset_time):
            variation.restore(env)
        applied: dict[str, Any] = {}
        for name, variation in self._variations.items():
            if name in values:
                variation.begin_episode(seed)
                applied[name] = _plain(variation.apply(env, values[name]))
            else:
                # Left out by a one_at_a_time design: restored, so at nominal.
                nominal = variation.nominal()
                if nominal is not None:
                    applied[name] = _plain(nominal)
        return applied

    def perturbations(self) -> dict[str, Variation]:
        """The bound variations that act on each step (``obs_noise``, ``action_delay``...),
        by factor name: the sub-env's SlotWrapper wraps the episode with them."""
        return {n: v for n, v in (self._variations or {}).items() if hasattr(v, "wrap_step")}


_DICT_DEFAULTS: dict[tuple[str, str, str], dict[str, Any]] = {}
"""Per process: ``(env id, job kwargs, argument)`` -> the env's default dict."""


def env_dict_defaults(job: JobConfig, argument: str) -> dict[str, Any]:
    """The dict the env keeps as ``env.unwrapped.<argument>`` when built with
    the job's kwargs (highway-env's full ``config``), or ``{}`` when it keeps
    none or cannot be built here (the env then merges the partial dict itself,
    or fails when the job's own build does, with its own error).

    One nominal env is built per process, job kwargs and argument, only for a
    dotted ``env_kwarg`` whose dict the job does not give.
    """
    key = (job.env.id, json.dumps(job.env.kwargs, sort_keys=True, default=repr), argument)
    if key not in _DICT_DEFAULTS:
        defaults: dict[str, Any] = {}
        try:
            env = gym.make(job.env.id, **job.env.kwargs)
        except Exception as exc:  # an id only trialrun's builder resolves; the env's own error comes later
            logger.debug("could not build %s to read its default '%s': %s", job.env.id, argument, exc)
        else:
            try:
                value = getattr(env.unwrapped, argument, None)
                if isinstance(value, Mapping):
                    defaults = copy.deepcopy(dict(value))
            finally:
                env.close()
        _DICT_DEFAULTS[key] = defaults
    return _DICT_DEFAULTS[key]


def _merge_into(target: dict[str, Any], update: dict[str, Any]) -> None:
    """Set ``update``'s leaves in ``target``, creating or copying nested dicts."""
    for key, value in update.items():
        if isinstance(value, dict):
            node = target.get(key)
            target[key] = dict(node) if isinstance(node, Mapping) else {}
            _merge_into(target[key], value)
        else:
            target[key] = value


def _plain(value: Any) -> Any:
    """Numpy scalars to Python scalars (records are JSON)."""
    return value.item() if hasattr(value, "item") else value


def group_slots(factor_set: FactorSet, slots: Iterable[Slot]) -> dict[str, Sequence[Slot]]:
    """Slots grouped by build-time values, groups in first-appearance order;
    a plan's groups are sub-plans (no slot is computed)."""
    if not factor_set.build_names:
        return {factor_set.group_key({}): slots if isinstance(slots, Sequence) else list(slots)}
    if isinstance(slots, PlannedSlots):
        positions: dict[str, list[int]] = {}
        for position, values in enumerate(slots.iter_factor_values()):
            positions.setdefault(factor_set.group_key(values), []).append(position)
        return {key: slots.take(np.array(group)) for key, group in positions.items()}
    groups: dict[str, list[Slot]] = {}
    for slot in slots:
        groups.setdefault(factor_set.group_key(slot.factors), []).append(slot)
    return dict(groups)
