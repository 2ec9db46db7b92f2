"""Designs: the factor values of every slot of a job.

``factor_values`` returns one ``{factor name: value}`` per episode; entry ``k``
belongs to slot ``k``. It is a pure function of its arguments (run seed, job
name, samplers, design, episode count): no global random state, no built-in
``hash()`` (salted per process). Any worker can recompute any slot's values,
a resumed run gets the values the crashed one had, and two policies evaluated
with one config see identical episodes.

- ``random`` (default): every (slot, factor) pair has its own generator,
  seeded from the slot's ``factor_seed`` (see :func:`trialrun.plan.slot_for`)
  and the factor's *name*. So value ``k`` does not depend on ``episodes``
  (growing a run from 50 to 200 episodes keeps the first 50), and adding,
  removing or reordering other factors leaves a factor's values unchanged.
  Renaming a factor gives it new values.
- ``lhs`` / ``sobol``: one Latin hypercube / scrambled Sobol' design of
  ``episodes`` rows over the non-constant factors, seeded from (run seed, job);
  row ``k`` goes to slot ``k`` and each column goes through the factor's
  inverse CDF. They cover the factor space more evenly than ``random`` for the
  same budget, at a price: the whole design depends on ``episodes`` and on the
  set and order of factors, so changing either changes every value.
  Sobol' points are balanced only for a power-of-2 count; other counts log one
  warning.
- ``grid``: the Cartesian product of each factor's grid levels (factors in
  config order, the first varying slowest); slot ``k`` gets point
  ``k % size``, so ``episodes`` must be a multiple of the grid size and every
  point gets ``episodes / size`` episodes (the first ``size`` slots cover the
  grid once). No randomness.
- ``one_at_a_time`` (Colosseum's single-factor sweep): each varied factor
  alone, the others at nominal, plus a nominal block. A factor is *varied*
  when its sampler has more than one grid level (``constant`` and a
  one-value ``choice`` are not; they hold their value in every slot). With
  ``F`` varied factors (config order) there are ``F + 1`` blocks,
  interleaved: slot ``k`` is in block ``b = k % (F + 1)`` and is the
  ``j = k // (F + 1)``-th slot of it. Block 0 is the nominal block: no
  varied factor is set. Block ``i`` sets the ``i``-th varied factor to its
  grid level ``j % L`` (``L`` levels, as the grid design makes them:
  ``levels`` or ``grid_default_levels`` evenly spaced points of a continuous
  range, a ``choice``'s values) and leaves the others out. ``episodes`` must
  be a multiple of ``F + 1`` (every block gets ``episodes / (F + 1)``
  slots); when a block's size is not a multiple of ``L``, the first levels
  get one slot more (a warning says so). A factor left out of a slot is at
  its *nominal* value: the variation's own, restored before every episode
  and reported as the applied value in the record (a build-time factor left
  out builds the env without its kwarg). No randomness. Interleaving keeps a
  prefix of the slots balanced over the blocks (a run stopped early).
- ``combined``: every factor varied at once, each slot drawn independently:
  exactly the ``random`` design's values (the same slots get the same
  values). It is its own name so that a report pairs a ``combined`` job
  with a ``one_at_a_time`` job of the same factors (the "drop from nominal"
  chart shows the combined rate beside the single-factor ones).

Values are bit-identical across processes and runs on one machine; across
platforms, ``log``/``exp``/``truncnorm.ppf`` of the same uniform numbers can
differ in the last bit (the uniform numbers themselves do not).

Example:
    >>> from trialrun.variations.samplers import ChoiceSampler, UniformSampler
    >>> samplers = {"friction": UniformSampler(low=0, high=1, levels=2),
    ...             "task": ChoiceSampler(values=["push", "pick"])}
    >>> factor_values(samplers, "grid", run_seed=0, job="sweep", episodes=4)
    [{'friction': 0.0, 'task': 'push'}, {'friction': 0.0, 'task': 'pick'}, \
{'friction': 1.0, 'task': 'push'}, {'friction': 1.0, 'task': 'pick'}]
    >>> samplers = {"task": ChoiceSampler(values=["push", "pick"])}
    >>> rows = factor_values(samplers, "random", run_seed=0, job="sweep", episodes=10)
    >>> rows[3] == random_values_for_slot(samplers, run_seed=0, job="sweep", episode=3)
    True
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np

# A module import (not ``from ... import``) so that trialrun.plan may import
# this module at its top without a circular-import failure.
import trialrun.plan as _plan
from trialrun.errors import ConfigError
from trialrun.variations.samplers import ConstantSampler, SamplerModel, ScalarValue

__all__ = [
    "DESIGNS",
    "Design",
    "factor_values",
    "grid_size",
    "one_at_a_time_block",
    "random_values_for_slot",
]

logger = logging.getLogger(__name__)

Design = Literal["random", "grid", "lhs", "sobol", "one_at_a_time", "combined"]
DESIGNS: tuple[str, ...] = get_args(Design)

# Separates the design seed's spawn key from a slot's ``(job hash, episode)`` key.
_DESIGN_KEY = 0x44455347  # "DESG"


def _factor_generator(factor_seed: int, name: str) -> np.random.Generator:
    """The generator of one factor in one slot: (slot factor seed, factor name)."""
    return np.random.default_rng(
        np.random.SeedSequence(entropy=factor_seed, spawn_key=_plan.stable_hash_words(name))
    )


def random_values_for_slot(
    samplers: Mapping[str, SamplerModel], run_seed: int, job: str, episode: int
) -> dict[str, ScalarValue]:
    """The ``random`` design's factor values of one slot, computed alone.

    Each factor draws from a generator seeded by the slot's ``factor_seed``
    and the factor's name, so the result does not depend on the other
    factors or on the job's episode count.

    Example:
        >>> from trialrun.variations.samplers import UniformSampler
        >>> a = random_values_for_slot({"g": UniformSampler(low=8, high=11)}, 7, "job", 0)
        >>> b = random_values_for_slot({"g": UniformSampler(low=8, high=11),
        ...                             "m": UniformSampler(low=0, high=1)}, 7, "job", 0)
        >>> a["g"] == b["g"], 8 <= a["g"] <= 11
        (True, True)
    """
    factor_seed = _plan.slot_for(run_seed, job, episode).factor_seed
    return {name: sampler.draw(_factor_generator(factor_seed, name)) for name, sampler in samplers.items()}


def grid_size(samplers: Mapping[str, SamplerModel], grid_default_levels: int = 5) -> int:
    """The number of points of the grid design (1 for no factors).

    Example:
        >>> from trialrun.variations.samplers import ChoiceSampler, UniformSampler
        >>> grid_size({"a": UniformSampler(low=0, high=1, levels=4),
        ...            "b": ChoiceSampler(values=[1, 2, 3])})
        12
    """
    return math.prod(len(s.grid_levels(grid_default_levels)) for s in samplers.values())


def factor_values(
    samplers: Mapping[str, SamplerModel],
    design: Design,
    run_seed: int,
    job: str,
    episodes: int,
    grid_default_levels: int = 5,
) -> list[dict[str, Any]]:
    """One dict of factor values per episode (index ``k`` = slot ``k``).

    ``samplers`` maps factor names to samplers, in config order (the order
    matters for ``grid``, ``lhs`` and ``sobol``). ``grid_default_levels`` is
    the number of grid points of a continuous factor without ``levels``.
    Raises :class:`~trialrun.errors.ConfigError` (``field="design"``) for an
    unknown design or a grid that ``episodes`` does not fill evenly.

    Example:
        >>> import math
        >>> from trialrun.variations.samplers import LogUniformSampler
        >>> rows = factor_values({"mass": LogUniformSampler(low=0.1, high=10)}, "lhs", 0, "j", 4)
        >>> sorted(int((math.log10(r["mass"]) + 1) * 2) for r in rows)  # one value per log-stratum
        [0, 1, 2, 3]
    """
    if design not in DESIGNS:
        raise ConfigError(f"unknown design {design!r}; allowed: {', '.join(DESIGNS)}", field="design")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer (got {episodes!r})")
    if not samplers:
        return [{} for _ in range(episodes)]
    warn_unused_levels(samplers, design, job)
    if design in ("random", "combined"):
        return random_values_for_slots(samplers, run_seed, job, np.arange(episodes))
    if design == "grid":
        return _grid(samplers, episodes, grid_default_levels)
    if design == "one_at_a_time":
        return _one_at_a_time(samplers, episodes, grid_default_levels, job)
    return _quasi_random(samplers, design, run_seed, job, episodes)


def warn_unused_levels(samplers: Mapping[str, SamplerModel], design: Design, job: str) -> None:
    """Warn about factors that set ``levels`` under a design that ignores them."""
    if design in ("grid", "one_at_a_time"):
        return
    ignored = [name for name, s in samplers.items() if getattr(s, "levels", None) is not None]
    if ignored:
        logger.warning(
            "job %r: factor(s) %s set 'levels', which only the grid and one_at_a_time designs use "
            "(design: %s)",
            job,
            ", ".join(repr(n) for n in ignored),
            design,
        )


#: Designs whose slot ``k`` values depend on ``k`` alone (not on the episode
#: count): a plan computes them a block at a time (:func:`random_values_for_slots`).
PER_SLOT_DESIGNS: tuple[Design, ...] = ("random", "combined")


def random_values_for_slots(
    samplers: Mapping[str, SamplerModel], run_seed: int, job: str, episodes: np.ndarray
) -> list[dict[str, Any]]:
    """The ``random`` design's factor values of the slots ``episodes`` (any
    subset, in any order), one dict each.

    Same numbers as :func:`random_values_for_slot` (``draw == from_unit(rng.random())``),
    but one vectorised inverse-CDF call per factor instead of one per slot. A
    slot's values depend only on its factor seed, so a lazy plan computes
    them a block at a time instead of holding a dict per episode of the job.
    """
    words = _plan.slot_seed_words(run_seed, _plan.stable_hash_words(job), episodes).astype(np.uint64)
    factor_seeds = (words[:, 2] | (words[:, 3] << np.uint64(32))).tolist()
    columns: dict[str, list[ScalarValue]] = {}
    for name, sampler in samplers.items():
        if isinstance(sampler, ConstantSampler):  # nothing to draw
            columns[name] = [sampler.value] * len(factor_seeds)
        else:
            units = [float(_factor_generator(seed, name).random()) for seed in factor_seeds]
            columns[name] = sampler.from_units(units)
    return [{name: column[k] for name, column in columns.items()} for k in range(len(factor_seeds))]


def _grid_message(sizes: list[int], episodes: int) -> str:
    size = math.prod(sizes)
    shape = f"{' x '.join(str(n) for n in sizes)} = {size}" if len(sizes) > 1 else str(size)
    below, above = (episodes // size) * size, (episodes // size + 1) * size
    suggestion = f"use {below} or {above}" if below > 0 else f"use {above}"
    return (
        f"grid design has {shape} points; episodes must be a multiple of {size} "
        f"(got {episodes}; {suggestion})"
    )


def _grid(
    samplers: Mapping[str, SamplerModel], episodes: int, grid_default_levels: int
) -> list[dict[str, Any]]:
    levels = [s.grid_levels(grid_default_levels) for s in samplers.values()]
    sizes = [len(points) for points in levels]
    size = math.prod(sizes)
    if episodes % size:
        raise ConfigError(_grid_message(sizes, episodes), field="design")
    names = list(samplers)
    points = [dict(zip(names, point, strict=True)) for point in itertools.product(*levels)]
    return [dict(points[k % size]) for k in range(episodes)]


def one_at_a_time_block(episode: int, varied: int) -> int:
    """The block of slot ``episode`` in a ``one_at_a_time`` design with ``varied``
    varied factors: 0 is the nominal block, ``i`` the ``i``-th varied factor.

    Example:
        >>> [one_at_a_time_block(k, 2) for k in range(6)]
        [0, 1, 2, 0, 1, 2]
    """
    return episode % (varied + 1)


def _one_at_a_time(
    samplers: Mapping[str, SamplerModel], episodes: int, grid_default_levels: int, job: str
) -> list[dict[str, Any]]:
    levels = {name: s.grid_levels(grid_default_levels) for name, s in samplers.items()}
    varied = [name for name in samplers if len(levels[name]) > 1]
    held = {name: points[0] for name, points in levels.items() if len(points) == 1}
    blocks = len(varied) + 1
    if episodes % blocks:
        below, above = (episodes // blocks) * blocks, (episodes // blocks + 1) * blocks
        suggestion = f"use {below} or {above}" if below > 0 else f"use {above}"
        raise ConfigError(
            f"one_at_a_time design has {blocks} blocks (nominal + {len(varied)} varied factor(s)); "
            f"episodes must be a multiple of {blocks} (got {episodes}; {suggestion})",
            field="design",
        )
    size = episodes // blocks
    uneven = [f"{name} ({len(levels[name])} levels)" for name in varied if size % len(levels[name])]
    if uneven:
        logger.warning(
            "job %r: one_at_a_time blocks of %d episodes do not divide evenly over the levels of %s; "
            "the first levels get one episode more",
            job,
            size,
            ", ".join(uneven),
        )
    rows = []
    for k in range(episodes):
        row = dict(held)
        block = one_at_a_time_block(k, len(varied))
        if block:
            name = varied[block - 1]
            points = levels[name]
            row[name] = points[(k // blocks) % len(points)]
        rows.append({name: row[name] for name in samplers if name in row})
    return rows


def _design_rng(run_seed: int, job: str, design: str) -> np.random.Generator:
    """The generator of a job's LHS/Sobol design: (run seed, job, design name).

    The spawn key is longer than any slot's ``(job hash, episode)`` key, so it
    never coincides with a slot's seed sequence.
    """
    key = (*_plan.stable_hash_words(job), _DESIGN_KEY, *_plan.stable_hash_words(design))
    return np.random.default_rng(np.random.SeedSequence(entropy=run_seed, spawn_key=key))


def _rng_kwarg(engine: type) -> str:
    """scipy >= 1.15 takes ``rng=``; older versions only ``seed=``."""
    return "rng" if "rng" in inspect.signature(engine).parameters else "seed"


def _unit_design(
    design: str, dimensions: int, episodes: int, rng: np.random.Generator, job: str
) -> np.ndarray:
    from scipy.stats import qmc  # slow to import; only these designs need it

    if design == "lhs":
        engine: qmc.QMCEngine = qmc.LatinHypercube(dimensions, **{_rng_kwarg(qmc.LatinHypercube): rng})
        return np.asarray(engine.random(episodes))
    engine = qmc.Sobol(dimensions, scramble=True, **{_rng_kwarg(qmc.Sobol): rng})
    if episodes & (episodes - 1):
        below = 1 << (episodes.bit_length() - 1)
        logger.warning(
            "job %r: sobol design with %d episodes; Sobol' points are evenly balanced only for a "
            "power-of-2 count, so coverage is somewhat uneven (use %d or %d episodes for the full benefit)",
            job,
            episodes,
            below,
            below * 2,
        )
    with warnings.catch_warnings():
        # Reported once above, in words a user can act on.
        warnings.filterwarnings("ignore", message="The balance properties of Sobol", category=UserWarning)
        return np.asarray(engine.random(episodes))


def _quasi_random(
    samplers: Mapping[str, SamplerModel], design: str, run_seed: int, job: str, episodes: int
) -> list[dict[str, Any]]:
    # Constants take no dimension: adding a pinned factor does not reshuffle the others.
    varied = [name for name, s in samplers.items() if not isinstance(s, ConstantSampler)]
    columns: dict[str, list[ScalarValue]] = {}
    if varied:
        units = _unit_design(design, len(varied), episodes, _design_rng(run_seed, job, design), job)
        for j, name in enumerate(varied):
            columns[name] = samplers[name].from_units(units[:, j])
    for name, sampler in samplers.items():
        if isinstance(sampler, ConstantSampler):
            columns[name] = [sampler.value] * episodes
    return [{name: columns[name][k] for name in samplers} for k in range(episodes)]
