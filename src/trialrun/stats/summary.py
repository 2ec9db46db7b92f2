"""Per-job and per-run summaries of recorded episodes (``summary.json``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from trialrun.runfiles.schema import (
    EpisodeRecord,
    Interval,
    JobState,
    JobSummary,
    Outcome,
    SuccessStatus,
    Summary,
)
from trialrun.stats.intervals import bootstrap_mean_interval, iqm, wilson_interval
from trialrun.stats.tally import OutcomeTally

logger = logging.getLogger(__name__)


class HasOutcome(Protocol):
    """What a summary reads from an episode: an :class:`EpisodeRecord` or an
    :class:`EpisodeOutcome`."""

    @property
    def job(self) -> str: ...

    @property
    def episode(self) -> int: ...

    @property
    def outcome(self) -> Outcome: ...


class EpisodeOutcome(NamedTuple):
    """The part of a record a summary needs.

    Why: the runner keeps every finished episode until the run's summary; a
    tuple of plain values costs a fraction of a full record's memory and, unlike
    a record, is not traversed by the garbage collector over and over.
    """

    job: str
    episode: int
    outcome: Outcome
    seconds: tuple[float, float] | None = None
    """(policy, env) wall seconds of the episode, from its ``extra.timing``."""

    @classmethod
    def of(cls, record: EpisodeRecord) -> EpisodeOutcome:
        """The outcome part of ``record``."""
        return cls(record.job, record.episode, record.outcome, episode_seconds(record))


def episode_seconds(record: Any) -> tuple[float, float] | None:
    """(policy, env) wall seconds of an episode: an EpisodeOutcome's own, or
    from a record's ``extra.timing`` (mean ms per step) and its length."""
    if isinstance(record, EpisodeOutcome):
        return record.seconds
    timing = (getattr(record, "extra", None) or {}).get("timing")
    length = record.outcome.get("length")
    if not isinstance(timing, dict) or not isinstance(length, int):
        return None
    policy, env = timing.get("policy_ms"), timing.get("env_ms")
    if not isinstance(policy, int | float) or not isinstance(env, int | float):
        return None
    return policy * length / 1000.0, env * length / 1000.0


# --------------------------------------------------------------------------- summaries

#: The job name of a summary's overall entry.
OVERALL = "(all)"


def _number(value: float | None) -> float:
    """An outcome value as a float; missing values (JSON null) become NaN."""
    return float("nan") if value is None else float(value)


#: The fix printed when a job's success is ``absent`` (docs/configuration.md).
SUCCESS_FIX = "set success: survived / {min_return: X} / {key: NAME} in the job"


def _status(
    success_rule: bool, success_seen: bool | None, episodes: int, any_success: bool, any_success_value: bool
) -> SuccessStatus | None:
    """:func:`success_status` from the counts it depends on."""
    if success_rule:
        return "rule"
    if success_seen or any_success:
        return "reported"
    if success_seen is False:
        return "absent"
    if not episodes:
        return None
    if not any_success_value:
        return "absent"
    return "reported"


def success_status(
    records: Sequence[HasOutcome], success_rule: bool = False, success_seen: bool | None = None
) -> SuccessStatus | None:
    """Where a job's ``success`` came from.

    ``rule`` when the job configures a success rule (``survived``,
    ``min_return`` or an explicit ``key``); else ``reported`` when an episode
    succeeded or the env reported the key (``success_seen``); else ``absent``
    when the env never reported it (``success_seen=False``) or no record has a
    ``success`` value (records made elsewhere). With ``success_seen`` unknown
    (None) and only failed episodes, the records cannot tell: ``reported``.
    None for a job without episodes and without a rule.

    Example:
        >>> fail = EpisodeOutcome("j", 0, {"success": False, "return": -3.0})
        >>> success_status([fail]), success_status([fail], success_seen=False)
        ('reported', 'absent')
        >>> success_status([fail], success_rule=True), success_status([EpisodeOutcome("j", 0, {})])
        ('rule', 'absent')
    """
    return _status(
        success_rule,
        success_seen,
        len(records),
        any(r.outcome.get("success") for r in records),
        any(r.outcome.get("success") is not None for r in records),
    )


def _tally_of(records: Sequence[HasOutcome]) -> tuple[OutcomeTally, np.ndarray]:
    """The counts of ``records`` as a tally, and their returns in the records'
    order (duplicates kept, unlike a tally's by-episode array)."""
    tally = OutcomeTally()
    returns = np.array([_number(r.outcome.get("return")) for r in records], dtype=float)
    for r in records:
        # Duplicates count twice, as they always did (a tally's add would not).
        tally.count(r.outcome, episode_seconds(r))
    return tally, returns


def summarize_job(
    job: str,
    records: Sequence[HasOutcome],
    planned: int,
    seed: int,
    status: JobState | None = None,
    target_half_width: float | None = None,
    *,
    success_rule: bool = False,
    success_seen: bool | None = None,
    columns: tuple[OutcomeTally, np.ndarray] | None = None,
) -> JobSummary:
    """Aggregates of one job's records: success rate with a Wilson 95% interval,
    mean return with a seeded bootstrap 95% interval, IQM of return, mean length.

    ``half_width`` is half the success interval's width; with a
    ``target_half_width``, ``meets_target`` says whether the job reached it.
    ``success_rule`` (the job configures ``success:``) and ``success_seen``
    (the env reported the success key at some step; None when not known) give
    ``success_status`` (see :func:`success_status`); ``absent`` logs a warning
    naming the job and the fix. ``columns`` (a tally and its returns in
    episode order) stand for the records when given (``records`` is then
    ignored): the same numbers, without the records."""
    tally, raw_returns = columns if columns is not None else _tally_of(records)
    n = tally.episodes
    successes = tally.successes
    signal = _status(success_rule, success_seen, n, successes > 0, tally.any_success_value)
    if signal == "absent" and n and job != OVERALL:
        logger.warning(
            "job '%s': success was never reported (no info['success'] or info['is_success']), "
            "so its success rate means nothing; %s",
            job,
            SUCCESS_FIX,
        )
    finite = np.isfinite(raw_returns)
    invalid_returns = int((~finite).sum())
    if invalid_returns:
        # A diverged simulation can return NaN or inf: leave those episodes out
        # of the return statistics (and say so) rather than poison the mean.
        logger.warning(
            "job '%s': %d episode(s) have no finite return; return statistics leave them out",
            job,
            invalid_returns,
        )
    returns = raw_returns[finite] if invalid_returns else raw_returns
    del finite
    m = len(returns)
    success_ci = None
    return_ci = None
    if n:
        lo, hi = wilson_interval(successes, n)
        success_ci = Interval(low=lo, high=hi, method="wilson")
    if m:
        blo, bhi = bootstrap_mean_interval(returns, seed=seed)
        return_ci = Interval(low=blo, high=bhi, method="percentile-bootstrap")
    half_width = (success_ci.high - success_ci.low) / 2 if success_ci is not None else None
    return JobSummary(
        job=job,
        status=status,
        planned=planned,
        episodes=n,
        successes=successes,
        success_rate=successes / n if n else None,
        success_ci=success_ci,
        return_mean=float(returns.mean()) if m else None,
        return_ci=return_ci,
        return_iqm=iqm(returns) if m else None,
        return_std=float(returns.std(ddof=1)) if m > 1 else (0.0 if m else None),
        invalid_returns=invalid_returns,
        # The lengths are integers: their sum is exact, so this is the float mean.
        length_mean=float(tally.length_total) / n if n else None,
        terminated=tally.terminated,
        truncated=tally.truncated,
        half_width=half_width,
        target_half_width=target_half_width,
        meets_target=None
        if target_half_width is None or half_width is None
        else bool(half_width <= target_half_width + 1e-12),
        success_status=signal,
        policy_seconds=round(tally.policy_seconds, 3) if tally.timed else None,
        env_seconds=round(tally.env_seconds, 3) if tally.timed else None,
    )


def summarize_run(
    run: str,
    records: Sequence[HasOutcome],
    planned: dict[str, int],
    statuses: dict[str, JobState],
    seed: int,
    target_half_width: float | None = None,
    *,
    success_rules: dict[str, bool] | None = None,
    success_seen: dict[str, bool] | None = None,
) -> Summary:
    """Per-job and overall summaries. Jobs appear in ``planned`` order; the
    bootstrap of each job uses its own seed derived from ``seed`` and the job's
    position, so adding a job does not change another job's interval.
    ``target_half_width`` (the run config's) is checked for every job.
    ``success_rules`` (job -> the job configures a success rule) and
    ``success_seen`` (job -> the env reported the success key) give each job's
    ``success_status``; a job missing from them counts as no rule / unknown.
    The overall status is the jobs' common status (None when they differ)."""
    by_job: dict[str, list[HasOutcome]] = {name: [] for name in planned}
    for rec in records:
        by_job.setdefault(rec.job, []).append(rec)
    for recs in by_job.values():
        recs.sort(key=lambda r: r.episode)
    columns = {name: _tally_of(recs) for name, recs in by_job.items()}
    overall = _tally_of([r for recs in by_job.values() for r in recs]) if len(by_job) > 1 else None
    return _summarize_columns(
        run, columns, planned, statuses, seed, target_half_width, success_rules, success_seen, overall
    )


def summarize_tallies(
    run: str,
    tallies: dict[str, OutcomeTally],
    planned: dict[str, int],
    statuses: dict[str, JobState],
    seed: int,
    target_half_width: float | None = None,
    *,
    success_rules: dict[str, bool] | None = None,
    success_seen: dict[str, bool] | None = None,
) -> Summary:
    """:func:`summarize_run` from each job's :class:`OutcomeTally` instead of
    its records: the same summary (the runner's, in bounded memory).

    Example:
        >>> tally = OutcomeTally(2)
        >>> tally.add(0, {"success": True, "return": 2.0, "length": 5})
        >>> tally.add(1, {"success": False, "return": 4.0, "length": 7})
        >>> s = summarize_tallies("r", {"j": tally}, {"j": 2}, {"j": "completed"}, seed=0)
        >>> s.jobs["j"].success_rate, s.jobs["j"].return_mean, s.overall.length_mean
        (0.5, 3.0, 6.0)
    """
    columns = {name: (tally, tally.returns()) for name, tally in tallies.items()}
    for name in planned:
        columns.setdefault(name, (OutcomeTally(), np.empty(0)))
    ordered = {name: columns[name] for name in [*planned, *(k for k in columns if k not in planned)]}
    return _summarize_columns(
        run, ordered, planned, statuses, seed, target_half_width, success_rules, success_seen
    )


def _summarize_columns(
    run: str,
    columns: dict[str, tuple[OutcomeTally, np.ndarray]],
    planned: dict[str, int],
    statuses: dict[str, JobState],
    seed: int,
    target_half_width: float | None,
    success_rules: dict[str, bool] | None,
    success_seen: dict[str, bool] | None,
    overall_columns: tuple[OutcomeTally, np.ndarray] | None = None,
) -> Summary:
    """The summary of jobs given as (counts, returns in episode order), in
    order; the overall entry from ``overall_columns`` or the jobs' merged."""
    rules = success_rules or {}
    seen = success_seen or {}
    seeds = np.random.SeedSequence(seed).spawn(len(columns) + 1)
    jobs = {
        name: summarize_job(
            name,
            (),
            planned.get(name, tally.episodes),
            int(seeds[i].generate_state(1)[0]),
            statuses.get(name),
            target_half_width,
            success_rule=rules.get(name, False),
            success_seen=seen.get(name),
            columns=(tally, returns),
        )
        for i, (name, (tally, returns)) in enumerate(columns.items())
    }
    if len(jobs) == 1:
        # One job: the overall numbers are that job's (no second bootstrap).
        (only,) = jobs.values()
        overall = only.model_copy(
            update={"job": OVERALL, "status": None, "target_half_width": None, "meets_target": None}
        )
    else:
        overall = summarize_job(
            OVERALL,
            (),
            sum(planned.values()),
            int(seeds[-1].generate_state(1)[0]),
            columns=overall_columns or _merged(list(columns.values())),
        )
        kinds = {j.success_status for j in jobs.values()}
        overall.success_status = kinds.pop() if len(kinds) == 1 else None
    return Summary(run=run, jobs=jobs, overall=overall)


def _merged(columns: list[tuple[OutcomeTally, np.ndarray]]) -> tuple[OutcomeTally, np.ndarray]:
    """The counts and returns of several jobs, as one (in the given order)."""
    total = OutcomeTally()
    for tally, _ in columns:
        total.absorb(tally)
    return total, np.concatenate([returns for _, returns in columns]) if columns else np.empty(0)
