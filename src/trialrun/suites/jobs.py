"""The jobs of an evaluator: steps 3 to 5 of its resolution.

:mod:`trialrun.suites.config` merges an evaluator's ``inherits`` chain into an
:class:`~trialrun.suites.config.EvaluatorConfig`; this module turns that into
a run document: the evaluator's ``video`` merged under each job's own, then
its ``job_overrides``, then (once the nominal values are known) the
``nominal: true`` pins, and validates the result as a run file.

Example:
    >>> from trialrun.suites.config import EvaluatorConfig
    >>> config = EvaluatorConfig(
    ...     jobs=[{"name": "p", "env": "CartPole-v1", "episodes": 2}], job_overrides={"episodes": 5})
    >>> document = resolve_jobs("probe", config)
    >>> document["jobs"][0]["episodes"], document["jobs"][0]["policy"] == {"type": TRAINER_POLICY}
    (5, True)
    >>> validate_jobs("probe", document, file=None).jobs[0].env.id
    'CartPole-v1'
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from pydantic import ValidationError

from trialrun.config import RunConfig, format_validation_error
from trialrun.documents import YamlDocument, expand_job_shorthands, set_dotted
from trialrun.errors import ConfigError
from trialrun.inherits import deep_merge

if TYPE_CHECKING:
    from trialrun.suites.config import EvaluatorConfig

__all__ = ["TRAINER_POLICY", "pinned_factors", "resolve_jobs", "validate_jobs"]

# A job without ``policy`` evaluates the trainer's policy; until one is given,
# it names this factory, which explains that when built.
TRAINER_POLICY = "trialrun.suites.manager:trainer_policy"


def _override_factor(key: str) -> str | None:
    """The factor a ``factors.<name>...`` override key targets (None otherwise)."""
    parts = key.split(".")
    return parts[1] if parts[0] == "factors" and len(parts) > 1 else None


def _sets_sampler(key: str, factor: str) -> bool:
    """Whether override ``key`` explicitly sets ``factor``'s sampler."""
    return key in {"factors", f"factors.{factor}", f"factors.{factor}.sampler"} or key.startswith(
        f"factors.{factor}.sampler."
    )


def pinned_factors(config: EvaluatorConfig, job: dict[str, YamlDocument]) -> list[str]:
    """The factors of a resolved raw ``job`` that ``nominal: true`` pins (all
    but those set explicitly: constant samplers and ``job_overrides`` targets)."""
    factors = job.get("factors") or {}
    pinned = []
    for name, body in factors.items():
        sampler = body.get("sampler") if isinstance(body, dict) else None
        if isinstance(sampler, dict) and sampler.get("type") == "constant":
            continue
        if any(_sets_sampler(key, name) for key in config.job_overrides):
            continue
        pinned.append(name)
    return pinned


def resolve_jobs(
    name: str,
    config: EvaluatorConfig,
    *,
    policy: dict[str, YamlDocument] | None = None,
    nominal_values: dict[str, dict[str, YamlDocument]] | None = None,
    file: str | None = None,
) -> dict[str, YamlDocument]:
    """The raw run document of an evaluator: steps 3 to 5 of
    :mod:`trialrun.suites.config`'s docstring.

    ``policy`` replaces every job's policy (the checkpoint or spec under
    evaluation); jobs with no policy get :data:`TRAINER_POLICY` otherwise.
    ``nominal_values[job][factor]`` pins factors when ``config.nominal`` is
    true; without it factors are left as they are (validation only).
    """
    prefix = f"evaluators.{name}"
    jobs: list[dict[str, YamlDocument]] = []
    for index, raw in enumerate(config.jobs):
        if not isinstance(raw, dict):
            raise ConfigError("must be a mapping (a job)", file=file, field=f"{prefix}.jobs.{index}")
        job = expand_job_shorthands(copy.deepcopy(raw))
        if config.video is not None:
            own = job.get("video")
            job["video"] = (
                deep_merge(config.video, own)
                if isinstance(own, dict)
                else (copy.deepcopy(config.video) if own is None else own)
            )
        if policy is not None:
            job["policy"] = copy.deepcopy(policy)
        elif "policy" not in job:
            job["policy"] = {"type": TRAINER_POLICY}
        jobs.append(job)

    for key, value in config.job_overrides.items():
        factor = _override_factor(key)
        targets = [j for j in jobs if factor is None or factor in (j.get("factors") or {})]
        if factor is not None and not targets:
            have = sorted({f for j in jobs for f in (j.get("factors") or {})})
            raise ConfigError(
                f"no job of evaluator '{name}' has a factor '{factor}'; "
                f"factors: {', '.join(have) or '(none)'}",
                file=file,
                field=f"{prefix}.job_overrides.{key}",
            )
        for job in targets:
            try:
                set_dotted(job, key, copy.deepcopy(value), source=f"{prefix}.job_overrides")
            except ConfigError as exc:
                raise ConfigError(exc.message, file=file, field=f"{prefix}.job_overrides.{key}") from None

    if config.nominal and nominal_values is not None:
        for job in jobs:
            values = nominal_values.get(str(job.get("name")), {})
            for factor in pinned_factors(config, job):
                if factor in values:
                    job["factors"][factor]["sampler"] = {"type": "constant", "value": values[factor]}
    return {"name": name, "seed": config.seed, "jobs": jobs}


def validate_jobs(name: str, document: dict[str, YamlDocument], file: str | None) -> RunConfig:
    """Validate a document from :func:`resolve_jobs` as a run file; errors name
    ``evaluators.<name>.<field>``."""
    try:
        return RunConfig.model_validate(document)
    except ValidationError as exc:
        raise format_validation_error(exc, None).located(prefix=f"evaluators.{name}", file=file) from None
