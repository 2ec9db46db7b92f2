"""Suites files: named evaluators that a trainer runs while it trains.

A suites file (YAML) names evaluators. Each is a set of jobs (the job schema of
a run file) plus when and how to run them::

    output_dir: evals
    loggers: [tensorboard, jsonl]          # wandb, tensorboard, mlflow, jsonl
    evaluators:
      base:                                # no jobs and used as a parent: a template
        interval: 10
        video: {episodes: 2, cameras: [corner]}
      nominal:
        inherits: base
        nominal: true                      # every factor at its nominal value
        jobs: [...]
      heavy_objects:
        inherits: base
        interval: 50
        jobs: [...]
        job_overrides: {episodes: 40, factors.object_mass.sampler.low: 10}
        gate: {baseline: previous, metric: success, margin: 0.05}

``gate`` compares each run of the evaluator with a baseline run (a run
directory, or ``previous``: this evaluator's last completed run in this
manager) with ``trialrun compare`` and reports ``gate_passed`` (see
:class:`GateConfig`).

Resolution of one evaluator, in order (steps 1 and 2 here, with
:mod:`trialrun.inherits`; steps 3 to 5 in :mod:`trialrun.suites.jobs`):

1. ``inherits`` chains are deep-merged, root ancestor first (a child's keys
   win; lists such as ``jobs`` are replaced, not concatenated). Every merge
   copies, so two children of one parent never share a mutable object.
2. A section is a *template* (never runs) when it has no jobs of its own and
   another section inherits from it, or when it ends up with no jobs at all.
3. For every job: the evaluator's ``video`` is merged under the job's own
   ``video`` (the job's keys win); then every ``job_overrides`` entry (a dotted
   key, as with ``--set``) is applied. A ``factors.<name>...`` key applies to the
   jobs that have that factor (and is an error when none has it); any other key
   applies to every job.
4. ``nominal: true`` pins every factor at its nominal value (a constant
   sampler), except factors set explicitly: a factor whose sampler is already
   ``constant`` (a pin the job chose), and a factor that a ``job_overrides`` key
   reaches (``factors``, ``factors.<name>``, ``factors.<name>.sampler`` or
   below it). The nominal value is the variation's own, read from the env
   (:meth:`trialrun.variations.factors.FactorSet.nominal_values`); that needs
   the env, so :class:`~trialrun.suites.manager.EvalManager` does it the first
   time the evaluator runs.
5. The jobs are validated as a run file named after the evaluator, with the
   evaluator's ``seed`` (default 0: every epoch sees the same episodes, so
   epochs are a paired comparison).

A job may leave out ``policy``: the policy under evaluation is the one the
trainer passes in (or the checkpoint). Errors name the file and the dotted
field (``evaluators.nominal.jobs.0.episodes``).

Example:
    >>> suites = parse_suites({"evaluators": {
    ...     "base": {"interval": 5},
    ...     "probe": {"inherits": "base", "jobs": [
    ...         {"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 4}]}}})
    >>> sorted(suites.evaluators), suites.templates, suites.evaluators["probe"].config.interval
    (['probe'], ['base'], 5)
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trialrun.config import RunConfig, format_validation_error
from trialrun.documents import YamlDocument, load_yaml
from trialrun.errors import ConfigError
from trialrun.inherits import INHERITS, inheritance_chain, merge_chain
from trialrun.suites.jobs import TRAINER_POLICY, pinned_factors, resolve_jobs, validate_jobs

__all__ = [
    "LOGGER_TYPES",
    "RESERVED_NAMES",
    "TRAINER_POLICY",
    "AnyLoggerConfig",
    "Evaluator",
    "EvaluatorConfig",
    "GateConfig",
    "JsonlLoggerConfig",
    "LoggerConfig",
    "MlflowLoggerConfig",
    "SuitesConfig",
    "TensorBoardLoggerConfig",
    "WandbLoggerConfig",
    "load_suites",
    "parse_suites",
    "pinned_factors",
    "resolve_jobs",
    "validate_jobs",
]
# ``TRAINER_POLICY``, ``pinned_factors``, ``resolve_jobs`` and ``validate_jobs``
# live in trialrun.suites.jobs; they stay importable from here.

RESERVED_NAMES = frozenset(
    {"checkpoints", "tensorboard", "wandb", "mlruns", "mlflow.db", "mlartifacts", "metrics.jsonl"}
)
"""Names an evaluator cannot take: they are files and folders of ``output_dir``."""

_EVALUATOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
LOGGER_TYPES = ("jsonl", "mlflow", "tensorboard", "wandb")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- loggers


class JsonlLoggerConfig(_Model):
    """One JSON object per evaluator run appended to ``path`` (no dependency)."""

    type: Literal["jsonl"] = "jsonl"
    path: str = "metrics.jsonl"


class TensorBoardLoggerConfig(_Model):
    """Scalars (and GIFs of the recorded videos) in TensorBoard event files."""

    type: Literal["tensorboard"] = "tensorboard"
    log_dir: str = "tensorboard"
    backend: Literal["auto", "tensorboardX", "torch"] = "auto"


class WandbLoggerConfig(_Model):
    """A Weights & Biases run (the trainer's active run if there is one)."""

    type: Literal["wandb"] = "wandb"
    project: str = "trialrun"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    mode: Literal["online", "offline", "disabled"] | None = None
    dir: str | None = None


class MlflowLoggerConfig(_Model):
    """An MLflow run (the trainer's active run if there is one, else a run in a
    local SQLite store ``<output_dir>/mlflow.db`` with artifacts in
    ``<output_dir>/mlartifacts``)."""

    type: Literal["mlflow"] = "mlflow"
    tracking_uri: str | None = None
    experiment: str = "trialrun"
    run_name: str | None = None


AnyLoggerConfig = Union[  # noqa: UP007
    JsonlLoggerConfig, TensorBoardLoggerConfig, WandbLoggerConfig, MlflowLoggerConfig
]
"""The config of one logger, whichever its type."""

LoggerConfig = Annotated[AnyLoggerConfig, Field(discriminator="type")]
"""A logger config in a suites file, told apart by its ``type``."""


class _TopLevel(_Model):
    output_dir: Path = Path("evals")
    loggers: list[LoggerConfig] = Field(default_factory=list)
    evaluators: dict[str, YamlDocument] = Field(min_length=1)

    @field_validator("loggers", mode="before")
    @classmethod
    def _logger_shorthand(cls, value: YamlDocument) -> YamlDocument:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError(f"must be a list of logger names ({', '.join(LOGGER_TYPES)}) or mappings")
        out = []
        for item in value:
            entry = {"type": item} if isinstance(item, str) else item
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind not in LOGGER_TYPES:
                raise ValueError(f"unknown logger {kind!r}; allowed loggers: {', '.join(LOGGER_TYPES)}")
            out.append(entry)
        types = [e["type"] for e in out]
        twice = sorted({t for t in types if types.count(t) > 1})
        if twice:
            raise ValueError(f"logger '{twice[0]}' is listed twice")
        return out


# --------------------------------------------------------------------------- evaluators


class GateConfig(_Model):
    """``gate:`` of an evaluator: each run is compared with ``baseline``
    (:func:`trialrun.compare.compare_runs`, paired by episode) and fails the
    gate when it is worse than the baseline by more than ``margin`` (in the
    metric's units) with 95% confidence on some job (Holm across jobs)."""

    baseline: str = Field(min_length=1)
    """A run directory (relative paths: against the current directory), or
    ``previous``: the evaluator's last completed run in this manager (no gate
    decision on its first run)."""
    metric: str | None = Field(default=None, min_length=1)
    """``success``, ``return`` or an outcome term; default: success when the
    job reports it, else return (as ``trialrun compare``)."""
    margin: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class EvaluatorConfig(_Model):
    """One evaluator after inheritance (see the module docstring for the order
    in which its keys are applied)."""

    jobs: list[dict[str, YamlDocument]] = Field(default_factory=list)
    interval: int = Field(default=1, ge=1)
    """Runs at every epoch that this divides (epoch 0 included)."""
    enabled: bool = True
    mode: Literal["inline", "subprocess"] = "inline"
    timeout: float | None = Field(default=None, gt=0)
    """Seconds a subprocess evaluation may take before its process group is killed
    (default 3600); inline evaluations cannot be interrupted, so they reject it."""
    seed: int = Field(default=0, ge=0, lt=2**63)
    nominal: bool = False
    video: dict[str, YamlDocument] | None = None
    job_overrides: dict[str, YamlDocument] = Field(default_factory=dict)
    checkpoint_type: str | None = Field(default=None, min_length=1)
    """Policy type that loads this evaluator's checkpoints (default: from the file suffix)."""
    gate: GateConfig | None = None

    @field_validator("job_overrides")
    @classmethod
    def _dotted_keys(cls, value: dict[str, YamlDocument]) -> dict[str, YamlDocument]:
        for key in value:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"job_overrides key '{key}' has an empty part (write a.b.c)")
            if key.split(".")[0] == "name":
                raise ValueError("job_overrides cannot rename jobs (job names must stay unique)")
        return value

    @model_validator(mode="after")
    def _timeout_needs_subprocess(self) -> EvaluatorConfig:
        if self.mode == "inline" and self.timeout is not None:
            raise ValueError(
                "'timeout' applies to mode: subprocess only (an inline evaluation runs in the "
                "trainer's process and cannot be interrupted); remove it or set timeout: null"
            )
        return self

    @property
    def effective_timeout(self) -> float:
        """The subprocess timeout in seconds (3600 when not set)."""
        return 3600.0 if self.timeout is None else self.timeout


@dataclass
class Evaluator:
    """A runnable evaluator: its merged config and its validated jobs."""

    name: str
    config: EvaluatorConfig
    chain: list[str]
    """Inheritance chain, root ancestor first, ending with this evaluator."""
    run_config: RunConfig
    """The jobs as a run file (factors not yet pinned for ``nominal: true``)."""
    trainer_policy_jobs: list[str] = field(default_factory=list)
    """Jobs that name no policy of their own (they need the trainer's)."""


@dataclass
class SuitesConfig:
    """A parsed suites file."""

    output_dir: Path
    loggers: list[AnyLoggerConfig]
    evaluators: dict[str, Evaluator]
    """Runnable evaluators (templates excluded), in file order."""
    templates: list[str]
    raw: dict[str, YamlDocument]
    """The document as written (used to hand the same file to a child process)."""
    file: Path | None = None

    def evaluator(self, name: str) -> Evaluator:
        """The evaluator ``name``, or a ConfigError listing the runnable ones."""
        if name in self.evaluators:
            return self.evaluators[name]
        known = ", ".join(self.evaluators) or "(none)"
        if name in self.templates:
            raise ConfigError(
                f"evaluator '{name}' is a template (it has no jobs of its own and others inherit "
                f"from it); it never runs. Evaluators: {known}",
                file=_str(self.file),
                field="--name",
            )
        raise ConfigError(
            f"unknown evaluator '{name}'; evaluators: {known}", file=_str(self.file), field="--name"
        )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


_LOGGER_MODELS: dict[str, type[BaseModel]] = {
    "jsonl": JsonlLoggerConfig,
    "tensorboard": TensorBoardLoggerConfig,
    "wandb": WandbLoggerConfig,
    "mlflow": MlflowLoggerConfig,
}


def _top_level_error(exc: ValidationError, file: str | None) -> ConfigError:
    """The first error of the top-level keys, with the logger's type tag taken
    out of the path (``loggers.0.project``, not ``loggers.0.wandb.project``)."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    tag = loc[2] if len(loc) > 2 and loc[0] == "loggers" and loc[2] in _LOGGER_MODELS else None
    if tag is not None:
        del loc[2]
    field = ".".join(str(p) for p in loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        if tag is not None:
            allowed = sorted(_LOGGER_MODELS[str(tag)].model_fields)
        elif len(loc) == 1:
            allowed = sorted(_TopLevel.model_fields)
        else:
            allowed = []
        message = f"unknown key '{loc[-1]}'" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    return ConfigError(message, file=file, field=field or None)


def parse_suites(raw: YamlDocument, *, file: str | Path | None = None) -> SuitesConfig:
    """Validate a suites document (see the module docstring)."""
    file_str = None if file is None else str(file)
    if not isinstance(raw, dict):
        raise ConfigError("a suites file must be a YAML mapping with 'evaluators'", file=file_str)
    if not raw.get("evaluators"):
        raise ConfigError(
            "a suites file needs at least one evaluator (a mapping of name to evaluator keys)",
            file=file_str,
            field="evaluators",
        )
    try:
        top = _TopLevel.model_validate(raw)
    except ValidationError as exc:
        raise _top_level_error(exc, file_str) from None

    sections: dict[str, dict[str, YamlDocument]] = {}
    allowed = sorted([*EvaluatorConfig.model_fields, INHERITS])
    for name, body in top.evaluators.items():
        where = f"evaluators.{name}"
        if not isinstance(name, str) or not _EVALUATOR_NAME.match(name):
            raise ConfigError(
                "an evaluator name must start with a letter, digit or '_' and use only letters, digits, "
                "'_', '.', '-' (at most 100 characters; it names a folder and a metric prefix)",
                file=file_str,
                field=where,
            )
        if name in RESERVED_NAMES:
            raise ConfigError(
                f"'{name}' is reserved (it is a file or folder of output_dir: "
                f"{', '.join(sorted(RESERVED_NAMES))}); choose another name",
                file=file_str,
                field=where,
            )
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError("must be a mapping of evaluator keys", file=file_str, field=where)
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown key '{unknown[0]}'; allowed keys: {', '.join(allowed)}",
                file=file_str,
                field=f"{where}.{unknown[0]}",
            )
        sections[name] = body

    parents = {body.get(INHERITS) for body in sections.values()}
    evaluators: dict[str, Evaluator] = {}
    templates: list[str] = []
    for name, body in sections.items():
        chain = inheritance_chain(sections, name, noun="evaluator", path="evaluators", file=file_str)
        merged = merge_chain(sections, chain)
        try:
            config = EvaluatorConfig.model_validate(merged)
        except ValidationError as exc:
            located = format_validation_error(exc, None).located(prefix=f"evaluators.{name}", file=file_str)
            raise located from None
        own_jobs = bool(body.get("jobs"))
        if (not own_jobs and name in parents) or not config.jobs:
            templates.append(name)
            continue
        document = resolve_jobs(name, config, file=file_str)
        run_config = validate_jobs(name, document, file_str)
        no_policy = [
            str(job.get("name")) for job in config.jobs if isinstance(job, dict) and "policy" not in job
        ]
        evaluators[name] = Evaluator(
            name=name, config=config, chain=chain, run_config=run_config, trainer_policy_jobs=no_policy
        )
    return SuitesConfig(
        output_dir=top.output_dir,
        loggers=list(top.loggers),
        evaluators=evaluators,
        templates=templates,
        raw=copy.deepcopy(raw),
        file=None if file is None else Path(file),
    )


def load_suites(path: Path) -> SuitesConfig:
    """Read and validate a suites file."""
    return parse_suites(load_yaml(Path(path)), file=Path(path))
