"""Pydantic models for every file of a run directory (format version 1).

These models are the contract between the rollout side (which writes the files)
and the readers (report, analysis, compare, replay). They import nothing from
the rollout side, so readers can depend on them freely.

Example:
    >>> rec = EpisodeRecord.model_validate_json(
    ...     '{"schema": 1, "run": "r", "job": "j", "episode": 0, "seed": 1, "env_index": 0,'
    ...     ' "factors": {}, "outcome": {"success": true, "return": 1.0, "length": 3},'
    ...     ' "started_at": "2026-11-21T19:00:01.123Z", "ended_at": "2026-11-21T19:00:01.541Z"}')
    >>> rec.outcome["return"], rec.outcome["success"], rec.outcome.get("success_at_end")
    (1.0, True, None)
    >>> rec.to_json_line()[80:141]   # what was given is written back, in its order
    '"outcome":{"success":true,"return":1.0,"length":3},"video":{}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

SCHEMA_VERSION = 1

FactorValue = float | int | str | bool
OutcomeValue = float | int | bool | None

JobState = Literal["pending", "running", "completed", "failed", "interrupted"]
"""``interrupted``: the user stopped the run (Ctrl+C) while the job ran; ``--resume`` continues it."""
SuccessStatus = Literal["reported", "rule", "absent"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


if TYPE_CHECKING:  # mypy does not know PEP 728's extra_items yet
    Outcome = TypedDict(
        "Outcome",
        {
            "success": bool | None,
            "success_at_end": bool | None,
            "return": float | None,
            "length": int | None,
            "terminated": bool | None,
            "truncated": bool | None,
            "time_to_success": int | None,
            "nonfinite_reward": bool,
        },
        total=False,
    )
else:
    Outcome = TypedDict(
        "Outcome",
        {
            "success": bool | None,
            "success_at_end": bool | None,
            "return": float | None,
            "length": int | None,
            "terminated": bool | None,
            "truncated": bool | None,
            "time_to_success": int | None,
            "nonfinite_reward": bool,
        },
        total=False,
        extra_items=OutcomeValue,
    )
"""What one episode came to: the standard terms, typed, plus custom terms.

Every trialrun rollout writes all the standard terms (``return`` is a Python
keyword, so the type is spelled functionally); records made elsewhere may
lack some. ``nonfinite_reward: true`` appears only on an episode whose rewards
included NaN or inf (its ``return`` is then ``null``). Custom outcome terms
(``outcomes:`` in a job) are extra keys whose values must be scalars. A
TypedDict rather than a model: records are read and written by the hundred
thousand, and a dict validates in pydantic's core and writes back exactly the
keys it was given, in their order.
"""
Outcome.__pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[attr-defined]  # pydantic reads it


class EpisodeRecord(_Strict):
    """One finished episode, one line of ``episodes.jsonl``.

    ``(job, episode)`` is the identity of an episode; ``seed`` and ``factors``
    are a pure function of the run seed, the job name and ``episode``.
    ``run`` and the times are always written by ``trialrun run``; records made
    elsewhere (``trialrun import``, ``analyze --episodes``) may lack them.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    run: str = ""
    job: str
    episode: int = Field(ge=0)
    seed: int = Field(ge=0)
    env_index: int = Field(default=0, ge=0)
    factors: dict[str, FactorValue] = Field(default_factory=dict)
    outcome: Outcome
    video: dict[str, str] = Field(default_factory=dict)
    trajectory: str | None = None
    """The episode's trajectory file, relative to the run directory (only
    written when the job keeps one for this episode)."""
    started_at: str | None = None
    ended_at: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_json_line(self) -> str:
        """The record as one line of JSON (no trailing newline), keys in schema order.

        ``model_dump_json``'s own serializer, called directly: the wrapper's
        keyword handling is a third of the cost of a record's line."""
        exclude = _NO_TRAJECTORY if self.trajectory is None else None
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude=exclude).decode()


_NO_TRAJECTORY = {"trajectory"}
"""What :meth:`EpisodeRecord.to_json_line` leaves out of a record without a trajectory (never mutated)."""


class FactorSpec(_Strict):
    """What the analysis and the report need to know about one factor.

    Read from the run (the manifest), never inferred from the data's min/max, so
    an effect near a bound that the sampler rarely reached is not hidden.
    """

    name: str
    kind: Literal["continuous", "categorical"]
    low: float | None = None
    high: float | None = None
    values: list[FactorValue] | None = None
    scale: Literal["linear", "log"] = "linear"
    nominal: FactorValue | None = None
    variation: dict[str, Any] = Field(default_factory=dict)
    units: str | None = None
    applies_at: Literal["reset", "build"] | None = None


class NativeRun(_Strict):
    """How a ``vectorization: native`` job's simulator resets its worlds
    (docs/batched.md). In ``wave`` mode an episode depends on the wave it ran
    in, so results depend on ``num_envs``."""

    mode: Literal["exact", "wave"]
    num_envs: int = Field(ge=1)
    depends_on_num_envs: bool
    compile_seconds: float | None = Field(default=None, ge=0)
    """Seconds spent compiling the simulator's programs before the job's
    first episode, in the run's latest start (a resume compiles again,
    usually from JAX's persistent cache); None when it compiles nothing."""
    lanes: int | None = Field(default=None, ge=1)
    """Worlds one compiled step computes side by side (MuJoCo Playground's
    ``lanes``); a world's episode is identical for any ``num_envs`` at one
    ``lanes``, and differs at float rounding level between two. A resume
    keeps the run's ``lanes`` (:mod:`trialrun.execution.native_resume`).
    None for simulators without lanes, and in runs recorded before it was."""


class StoppedEarly(_Strict):
    """Why a job ran fewer episodes than planned: ``trialrun run --stop-when``
    stopped it once an anytime-valid sequential test against a baseline run
    decided (docs/compare.md, "Stopping early"). The episodes it ran are the
    first ``completed`` of the plan (slot seeds are fixed), so ``--resume``
    runs the rest and the run becomes the fixed-n run."""

    decision: Literal["better", "worse", "equivalent"]
    """This run's policy against the baseline's, on ``metric`` (equivalent: within ``margin``)."""
    at_episode: int = Field(ge=0)
    """Episodes (a prefix of the plan) the deciding look read."""
    planned: int = Field(ge=0)
    saved: int = Field(ge=0)
    """Planned episodes that were not run."""
    e_value: float
    metric: str
    stop_when: Literal["better", "worse", "equivalent", "decided"] | None = None
    baseline: str | None = None
    batch: int | None = Field(default=None, ge=1)
    alpha: float | None = None
    bound: float | None = None
    """The bound of a continuous metric's paired differences (None for a binary one)."""
    margin: float | None = None
    """The equivalence margin (``--margin``), in the metric's units."""
    final_look: bool = False
    """Decided at the planned count by the truncated test's final critical value."""


class JobManifest(_Strict):
    """Per-job state in the manifest.

    A job stopped by ``--stop-when`` is ``completed`` with ``completed <
    planned`` and ``stopped_early`` saying why."""

    name: str
    status: JobState = "pending"
    planned: int = Field(ge=0)
    completed: int = Field(default=0, ge=0)
    error: str | None = None
    traceback: str | None = None
    factors: list[FactorSpec] = Field(default_factory=list)
    native: NativeRun | None = None
    started_at: str | None = None
    ended_at: str | None = None
    stopped_early: StoppedEarly | None = None


class Manifest(_Strict):
    """``manifest.json``: everything needed to know what a run was and to resume it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    run: str
    seed: int
    config: dict[str, Any]
    config_path: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    host: str = ""
    python: str = ""
    platform: str = ""
    command: list[str] = Field(default_factory=list)
    started_at: str
    ended_at: str | None = None
    jobs: dict[str, JobManifest] = Field(default_factory=dict)
    source: dict[str, Any] | None = None
    """Set on a run made by ``trialrun import``: ``{"imported": true, "format",
    "file", ...}`` (None for a run made by ``trialrun run``)."""


class Interval(_Strict):
    """A two-sided confidence interval."""

    low: float
    high: float
    level: float = 0.95
    method: str


class JobSummary(_Strict):
    """Aggregates over the episodes of one job (or of the whole run)."""

    job: str
    status: JobState | None = None
    planned: int
    episodes: int
    successes: int
    success_rate: float | None
    success_ci: Interval | None
    return_mean: float | None
    return_ci: Interval | None
    return_iqm: float | None
    return_std: float | None
    length_mean: float | None
    terminated: int
    truncated: int
    invalid_returns: int = 0
    half_width: float | None = None
    """Half the width of ``success_ci`` (the precision the episodes bought)."""
    target_half_width: float | None = None
    """The run config's ``target_half_width`` (None when the user set none)."""
    meets_target: bool | None = None
    """Whether ``half_width <= target_half_width`` (None without a target or episodes)."""
    success_status: SuccessStatus | None = None
    """Where ``success`` came from: ``reported`` (the env or the source reported
    it), ``rule`` (the job's ``success:`` rule decided it) or ``absent`` (nothing
    ever reported it, so the success rate means nothing); None when unknown
    (summaries written before this field existed)."""
    policy_seconds: float | None = None
    """Wall seconds the job's steps waited for the policy (from the records'
    ``extra.timing``; None when no record has timings, e.g. imported ones)."""
    env_seconds: float | None = None
    """Wall seconds the job's steps spent in the env's ``step``."""


class Summary(_Strict):
    """``summary.json``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    run: str
    jobs: dict[str, JobSummary]
    overall: JobSummary
