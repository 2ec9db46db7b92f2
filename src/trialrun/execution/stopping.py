"""Stopping a job early against a baseline run (``trialrun run --stop-when``).

A candidate policy is run on a config whose episodes a baseline run already
holds (same run seed, same job identity keys: see
:func:`trialrun.compare.pairing.config_difference`). The job's slots run in
their planned order, ``batch`` slots at a time: batch ``i`` is the episodes
``[i * batch, (i + 1) * batch)`` (the last batch may be shorter). Before each
batch, and after the last one, the candidate's finished episodes are paired
with the baseline's records in episode order and the anytime-valid test of
:mod:`trialrun.sequential` looks at every batch boundary of the finished
prefix. The job stops at the first look where the test decides in a wanted
direction (``better``, ``worse``, ``equivalent`` within ``--margin``, or
``decided`` = any of them); otherwise it runs all its planned episodes. The
look at the planned count is the binary test's final look (its truncation:
:func:`trialrun.sequential.final_critical_value`).

Why the stop is reproducible: slot ``k``'s seed and factors are a pure
function of ``(run seed, job, k)``, so the paired outcomes of the first ``k``
episodes do not depend on when, where or in which batch they ran, and the looks
are at fixed episode counts (multiples of ``batch``, and the planned count).
The e-value at a look is a function of the prefix, so the stop point is a
function of the outcomes. With the local executor the outcomes are those of
the fixed-n run; with the process and Ray executors the batch boundaries are
the same too (slots are planned), only the machines differ. A stopped run is
a prefix of the full run: ``--resume`` without ``--stop-when`` runs the rest
(and clears ``stopped_early``), with it the batches continue (a run that
stopped stops again at the same look without running anything).

The metric: ``--metric`` or, by default, the one ``trialrun compare`` would
choose from the baseline (:func:`trialrun.compare.metric.choose_metric`):
success when the job has a success rule or a baseline episode succeeded,
else return. It is fixed before the first episode runs. Binary metrics use the
discordant-pair test; continuous ones the betting test, whose bound is
``--bound`` or, by default, the largest ``|candidate - baseline|`` of the
first look with a nonzero difference, fixed from then on (later differences
are clipped to it; recorded in ``stopped_early.bound``). Pairs with a missing
value on either side are left out, as in ``trialrun compare``.

Example:
    >>> rule = StopRule(when="worse", baseline=Path("runs/base"))
    >>> rule.wants("B worse"), rule.wants("B better"), batch_boundaries(25, 10)
    (True, False, [(0, 10), (10, 20), (20, 25)])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from trialrun.compare.metric import choose_metric
from trialrun.compare.pairing import LoadedRun, config_difference, load_run
from trialrun.config import JobConfig, RunConfig
from trialrun.errors import InputError
from trialrun.plan import Slot
from trialrun.runfiles.schema import Outcome, StoppedEarly
from trialrun.sequential import Decision, Kind, sequential_test
from trialrun.stats import EpisodeOutcome

logger = logging.getLogger(__name__)

StopWhen = Literal["better", "worse", "equivalent", "decided"]
STOP_WHEN: tuple[StopWhen, ...] = ("better", "worse", "equivalent", "decided")
#: Slots per batch when ``--batch`` is not given: ``max(num_envs, DEFAULT_BATCH)``.
DEFAULT_BATCH = 10


@dataclass(frozen=True)
class StopRule:
    """What ``--stop-when WHEN --baseline RUN [--metric M] [--batch N] [--alpha A]
    [--margin M]`` asks for. ``margin`` (the metric's units) adds the decision
    "equivalent within the margin"; ``--stop-when equivalent`` needs it and
    ``decided`` then stops on it too."""

    when: StopWhen
    baseline: Path
    metric: str | None = None
    batch: int | None = None
    alpha: float = 0.05
    bound: float | None = None
    margin: float | None = None

    def wants(self, decision: Decision) -> bool:
        """Whether a decision of the test stops the job."""
        if decision == "undecided":
            return False
        if decision == "equivalent":
            return self.when in ("equivalent", "decided")
        return self.when == "decided" or decision == f"B {self.when}"


def stop_phrase(stopped: StoppedEarly) -> str:
    """How a stop compares the run with its baseline, in words.

    Example:
        >>> stop_phrase(StoppedEarly(decision="equivalent", at_episode=40, planned=50, saved=10,
        ...     e_value=21.0, metric="success", margin=0.2))
        'equivalent to the baseline within +-0.2'
    """
    if stopped.decision == "equivalent":
        return f"equivalent to the baseline within +-{stopped.margin:g}"
    return f"{stopped.decision} than the baseline"


def batch_boundaries(planned: int, batch: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` episode ranges of the batches of a job."""
    return [(start, min(start + batch, planned)) for start in range(0, planned, batch)]


_DECISIONS: dict[Decision, Literal["better", "worse", "equivalent"]] = {
    "B better": "better",
    "B worse": "worse",
    "equivalent": "equivalent",
}


@dataclass
class _JobPlan:
    metric: str
    kind: Kind
    batch: int
    baseline: dict[int, float]


def _value(outcome: Outcome | Mapping[str, object], metric: str) -> float:
    value = outcome.get(metric)
    if metric == "success":
        return float(bool(value))
    if value is None or isinstance(value, str):
        return math.nan
    return float(value)  # type: ignore[arg-type]


class EarlyStopper:
    """Decides, job by job, whether the episodes finished so far settle the
    comparison with the baseline (see the module docstring)."""

    def __init__(self, rule: StopRule, baseline: LoadedRun, config: RunConfig) -> None:
        self.rule = rule
        self.baseline = baseline
        self._plans: dict[str, _JobPlan] = {}
        for index, job in enumerate(config.jobs):
            self._plans[job.name] = self._plan(job, index)

    @classmethod
    def load(cls, rule: StopRule, config: RunConfig, run_dir: Path | None = None) -> EarlyStopper:
        """Load the baseline run and check it defines this config's episodes.

        Raises:
            InputError: the baseline is missing, unreadable, this run itself, lacks
                a job, or its config differs in what defines the episodes; a
                bad ``alpha``, ``batch``, ``bound`` or metric.
        """
        if not 0 < rule.alpha < 1:
            raise InputError(f"--alpha must be in (0, 1), got {rule.alpha}")
        if rule.batch is not None and rule.batch < 1:
            raise InputError(f"--batch must be at least 1, got {rule.batch}")
        if rule.bound is not None and not (rule.bound > 0 and math.isfinite(rule.bound)):
            raise InputError(f"--bound must be a finite number > 0, got {rule.bound}")
        if rule.margin is not None and not (rule.margin > 0 and math.isfinite(rule.margin)):
            raise InputError(f"--margin must be a finite number > 0, got {rule.margin}")
        if rule.when == "equivalent" and rule.margin is None:
            raise InputError(
                "--stop-when equivalent needs --margin M (the metric's units; rate points for success)"
            )
        if run_dir is not None and Path(rule.baseline).resolve() == Path(run_dir).resolve():
            raise InputError(f"--baseline {rule.baseline} is the run being made; give another run")
        baseline = load_run(Path(rule.baseline))
        names = baseline.job_names
        for job in config.jobs:
            if job.name not in names:
                raise InputError(
                    f"--baseline {rule.baseline} has no job '{job.name}' (its jobs: {', '.join(names)}); "
                    "the baseline must be a run of the same run file"
                )
        difference = config_difference(
            baseline.manifest.config, config.model_dump(mode="json"), [job.name for job in config.jobs]
        )
        if difference:
            raise InputError(
                f"--baseline {rule.baseline} was made from another config, so its episodes are not this "
                f"run's: {difference} (A: the baseline, B: this run). Stop against a run of the same run "
                "file (only the policy may differ)"
            )
        return cls(rule, baseline, config)

    def _plan(self, job: JobConfig, index: int) -> _JobPlan:
        metric, reason = choose_metric(self.rule.metric, self.baseline, self.baseline, job.name)
        records = self.baseline.records.get(job.name, {})
        raw = [rec.outcome.get(metric) for rec in records.values()]
        present = [v for v in raw if v is not None]
        if metric != "success" and records and not present:
            terms = sorted({k for rec in records.values() for k in rec.outcome})
            raise InputError(
                f"job '{job.name}': no baseline record has the outcome '{metric}'; its outcomes: "
                f"{', '.join(terms)}"
            )
        kind: Kind = (
            "binary"
            if metric == "success" or (present and all(isinstance(v, bool) for v in present))
            else "continuous"
        )
        batch = self.rule.batch or max(job.num_envs, DEFAULT_BATCH)
        logger.info(
            "job '%s': stops on %s (%s), %s test, batches of %d", job.name, metric, reason, kind, batch
        )
        values = {k: _value(rec.outcome, metric) for k, rec in records.items()}
        return _JobPlan(metric=metric, kind=kind, batch=batch, baseline=values)

    def batch_size(self, job: JobConfig) -> int:
        """Slots per batch of ``job``."""
        return self._plans[job.name].batch

    def decision(self, job: JobConfig, done: Mapping[int, EpisodeOutcome]) -> StoppedEarly | None:
        """The first look over the finished prefix of ``done`` (episodes 0, 1, ...
        with no gap) at which the test stops in a wanted direction, or None."""
        plan = self._plans[job.name]
        prefix = 0
        while prefix in done:
            prefix += 1
        looks = list(range(plan.batch, prefix + 1, plan.batch))
        if prefix == job.episodes and prefix % plan.batch:
            looks.append(prefix)
        cand = np.array([_value(done[k].outcome, plan.metric) for k in range(prefix)], dtype=float)
        base = np.array([plan.baseline.get(k, math.nan) for k in range(prefix)], dtype=float)
        bound = self.rule.bound if plan.kind == "continuous" else None
        for k in looks:
            a, b = base[:k], cand[:k]
            valid = np.isfinite(a) & np.isfinite(b)
            n = int(valid.sum())
            if not n:
                continue
            if plan.kind == "continuous" and bound is None:
                largest = float(np.max(np.abs(b[valid] - a[valid])))
                if largest <= 0:
                    continue
                bound = largest
            result = sequential_test(
                a[valid],
                b[valid],
                kind=plan.kind,
                alpha=self.rule.alpha,
                batch=n,
                bound=bound,
                margin=self.rule.margin,
                final=k == job.episodes,
            )
            if self.rule.wants(result.decision):
                return StoppedEarly(
                    decision=_DECISIONS[result.decision],
                    at_episode=k,
                    planned=job.episodes,
                    saved=job.episodes - len(done),
                    e_value=result.e_value,
                    metric=plan.metric,
                    stop_when=self.rule.when,
                    baseline=str(self.rule.baseline),
                    batch=plan.batch,
                    alpha=self.rule.alpha,
                    bound=bound,
                    margin=self.rule.margin,
                    final_look=result.at_final_look,
                )
        return None


def run_in_batches(
    job: JobConfig,
    slots: Sequence[Slot],
    stopper: EarlyStopper | None,
    done: Mapping[int, EpisodeOutcome],
    run_slots: Callable[[Sequence[Slot]], bool | None],
) -> tuple[bool | None, StoppedEarly | None]:
    """Run the missing ``slots`` of ``job`` batch by batch (planned order),
    looking before each batch and after the last; stop at a decision. Without
    a ``stopper``, all the slots run at once (one call).

    Returns whether the env reported the success key (as the executor's
    ``run_job``; None when no batch could tell) and the stop, if any.
    """
    if stopper is None:
        return run_slots(slots), None
    size = stopper.batch_size(job)
    groups: dict[int, list[Slot]] = {}
    for slot in slots:
        groups.setdefault(slot.episode // size, []).append(slot)
    seen: bool | None = None
    for index in sorted(groups):
        stopped = stopper.decision(job, done)
        if stopped is not None:
            break
        got = run_slots(groups[index])
        if got is not None:
            seen = bool(seen) or got
    else:
        stopped = stopper.decision(job, done)
    if stopped is not None:
        logger.info(
            "job '%s' stopped early: %s on %s after %d of %d episodes (e-value %.3g)",
            job.name,
            stop_phrase(stopped),
            stopped.metric,
            stopped.at_episode,
            stopped.planned,
            stopped.e_value,
        )
    return seen, stopped


__all__ = [
    "DEFAULT_BATCH",
    "STOP_WHEN",
    "EarlyStopper",
    "StopRule",
    "StopWhen",
    "batch_boundaries",
    "run_in_batches",
    "stop_phrase",
]
