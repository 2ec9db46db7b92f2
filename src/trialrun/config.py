"""Run configuration: YAML in, validated pydantic models out.

A run file lists jobs. Before validation, ``defaults`` are merged into every
job (the job's own keys win), named ``templates`` are merged into the jobs that
name them with ``inherits:`` (:mod:`trialrun.inherits`), and command-line
overrides (``--set a.b=3``, :mod:`trialrun.documents`) are applied to the raw
document. Validation rejects unknown keys and wrong types and names the file
and the dotted field path.

Example:
    >>> cfg = parse_run_config({"name": "demo", "jobs": [
    ...     {"name": "a", "env": "CartPole-v1", "policy": "random", "episodes": 4}]})
    >>> cfg.jobs[0].env.id, cfg.jobs[0].num_envs
    ('CartPole-v1', 1)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# ``deep_merge``, ``load_yaml``, ``parse_override`` and ``set_dotted`` live in trialrun.inherits and
# trialrun.documents; ``x as x`` re-exports them for the modules that import them from here.
from trialrun.boundary import DEFAULT_ACT_TIMEOUT, GuardConfig, OnNonfinite, OnOutOfBounds
from trialrun.documents import YamlDocument, expand_run_shorthands
from trialrun.documents import load_yaml as load_yaml
from trialrun.documents import parse_override as parse_override
from trialrun.documents import set_dotted as set_dotted
from trialrun.errors import ConfigError, did_you_mean
from trialrun.inherits import INHERITS, inheritance_chain, merge_chain
from trialrun.inherits import deep_merge as deep_merge
from trialrun.variations.designs import Design
from trialrun.variations.samplers import SamplerConfig

_NAME_PATTERN = re.compile(r"^[^/\\\x00]+$")

MAX_EPISODES = 10_000_000
"""Most episodes one job may plan (docs/configuration.md, "Limits"). Checked when
the run file is validated, so ``episodes: 1000000000000`` fails before any run
directory exists instead of running out of memory planning slot seeds."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class EnvConfig(_Model):
    """An environment: a Gymnasium id (``module:Env-v0`` imports ``module``
    first) plus keyword arguments for ``gymnasium.make``."""

    id: str = Field(min_length=1)
    kwargs: dict[str, YamlDocument] = Field(default_factory=dict)


# Policy keys that may be written next to ``type`` as a shorthand for
# ``kwargs.<key>``: ``{type: sb3, path: model.zip}``, ``{type: remote, url: ..., timeout: 10}``.
POLICY_SHORTHAND_KEYS = (
    "path",
    "url",
    "timeout",
    # The settings of the remote and VLA server policies (docs/policies.md), so
    # ``{type: gr00t, host: h, port: 5555, obs_map: ...}`` reads as documented.
    "host",
    "port",
    "token",
    "api_key",
    "api_token",
    "api",
    "obs_map",
    "cameras",
    "replan_steps",
    "max_connections",
    "action_keys",
    "connect_timeout",
    "ca_file",
)


class PolicyConfig(_Model):
    """A policy: a registered name (``trialrun list policies``) or a
    ``package.module:factory`` callable, plus keyword arguments.

    ``path``, ``url``, ``timeout`` and the server policies' settings
    (:data:`POLICY_SHORTHAND_KEYS`) may be given next to ``type`` and are
    moved into ``kwargs``. A ``kwargs`` entry named ``path`` or ending in
    ``_path`` (or ``ca_file``) is a file: :func:`load_run_config` resolves a relative one
    against the run file's directory and rejects a missing one.
    """

    type: str = Field(min_length=1)
    kwargs: dict[str, YamlDocument] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand_keys(cls, data: YamlDocument) -> YamlDocument:
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - {"type", "kwargs", *POLICY_SHORTHAND_KEYS})
        if unknown:
            # Checked here, not by pydantic, so the message lists the keys written next to 'type' too.
            allowed = sorted(["type", "kwargs", *POLICY_SHORTHAND_KEYS])
            raise ValueError(
                f"unknown key '{unknown[0]}'; allowed keys: {', '.join(allowed)} (any other setting "
                f"goes under 'kwargs'){did_you_mean(unknown[0], allowed)}"
            )
        if not any(k in data for k in POLICY_SHORTHAND_KEYS):
            return data
        data = dict(data)
        kwargs = data.get("kwargs")
        kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
        for key in POLICY_SHORTHAND_KEYS:
            if key in data:
                value = data.pop(key)
                if key in kwargs and kwargs[key] != value:
                    raise ValueError(f"'{key}' is set both next to 'type' and in 'kwargs'; set it once")
                kwargs[key] = value
        data["kwargs"] = kwargs
        return data


class SuccessConfig(_Model):
    """How an episode's success is decided.

    By default the env's ``info["success"]`` (then ``info["is_success"]``) is
    read at every step and ``success`` means "ever succeeded". Envs with no such
    key (CartPole, Pendulum) need a rule: ``survived`` (reached the time limit
    without terminating) or ``min_return``.
    """

    key: str | None = None
    survived: bool = False
    min_return: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_rule(self) -> SuccessConfig:
        rules = [self.key is not None, self.survived, self.min_return is not None]
        if sum(rules) > 1:
            raise ValueError("set only one of 'key', 'survived' and 'min_return'")
        return self


class OutcomeTermConfig(_Model):
    """A custom outcome term: ``module:Factory`` building an
    :class:`trialrun.outcomes.OutcomeTerm`, plus keyword arguments."""

    type: str = Field(min_length=1)
    name: str | None = None
    kwargs: dict[str, YamlDocument] = Field(default_factory=dict)


class FactorConfig(_Model):
    """A factor: a variation (what to change; ``trialrun list variations ENV``)
    paired with a sampler (how to draw its value per episode)."""

    variation: dict[str, YamlDocument]
    sampler: SamplerConfig

    @field_validator("variation")
    @classmethod
    def _has_type(cls, value: dict[str, YamlDocument]) -> dict[str, YamlDocument]:
        if not isinstance(value.get("type"), str):
            raise ValueError("a variation needs a 'type' (see 'trialrun list variations ENV')")
        return value


VideoSelect = Literal["first", "failures", "successes", "all"]
"""Which episodes of a job keep a video (see :class:`VideoConfig`)."""

Vectorization = Literal["sync", "async", "native"]
"""How a job's ``num_envs`` worlds step: separate env copies in this process
(``sync``) or in worker processes (``async``), or one natively batched simulator
(``native``, docs/batched.md)."""
NativeMode = Literal["auto", "exact", "wave"]
"""How a native simulator's worlds are reset (docs/batched.md); ``auto`` detects it."""
MAX_ENV_COPIES = 1024
MAX_WORLDS = 1 << 20


class VideoConfig(_Model):
    """Per-episode videos of a job: one mp4 per (episode, camera) under
    ``videos/<job>/ep<k>-<camera>.mp4`` (see docs/video.md).

    ``cameras`` are MuJoCo camera names (``trialrun list variations ENV``
    lists them) or ``default``, the env's own ``render()`` image (the only
    choice for classic-control envs). ``size`` is ``[width, height]`` in
    pixels (unset: the env's own aspect ratio). ``select`` picks which episodes keep a video: the ``first``
    ``episodes`` by episode index, at most ``episodes`` ``failures`` or
    ``successes``, or ``all`` of them (``episodes`` is then ignored).
    ``video: true`` records with the defaults.
    """

    cameras: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    episodes: int = Field(default=8, ge=0)
    select: VideoSelect = "first"
    size: tuple[int, int] | None = None
    """``[width, height]``; unset: named MuJoCo cameras render 224x224 and a
    ``default`` camera keeps the env's own aspect ratio at about 224x224 pixels."""
    fps: float = Field(default=30.0, gt=0, le=240)

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", name):
                raise ValueError(
                    f"camera name '{name}' may use only letters, digits, '_', '.', '-' (it names files)"
                )
        if len(set(value)) != len(value):
            raise ValueError("a camera is listed twice")
        return value

    @field_validator("size")
    @classmethod
    def _even_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        for side in value or ():
            if side < 16 or side > 4096 or side % 2:
                raise ValueError(
                    f"size is [width, height] in pixels, each even and between 16 and 4096 "
                    f"(H.264 in yuv420p needs even sides), got {list(value or ())}"
                )
        return value


TrajectoryFormat = Literal["hdf5", "lerobot"]
"""How trajectories are written (docs/trajectories.md): per-episode HDF5 files,
and with ``lerobot`` also a LeRobot dataset gathered from them when the job ends."""


class TrajectoryConfig(_Model):
    """Per-step data of chosen episodes: one HDF5 file per episode under
    ``trajectories/<job>/ep<k>.h5``, in robomimic's layout (see
    docs/trajectories.md).

    ``select`` and ``episodes`` choose episodes as for videos (``failures``
    and ``successes`` re-simulate the kept episodes from their actions).
    ``info_keys`` are the ``info`` entries stored at every step; ``cameras``
    (with ``size``, ``[width, height]``) adds each camera's image to the
    observations. ``trajectories: true`` records with the defaults.
    """

    episodes: int = Field(default=8, ge=0)
    select: VideoSelect = "first"
    format: TrajectoryFormat = "hdf5"
    info_keys: list[str] = Field(default_factory=list)
    cameras: list[str] = Field(default_factory=list)
    size: tuple[int, int] = (84, 84)
    fps: int = Field(default=30, gt=0, le=1000)
    """Steps per second: the LeRobot dataset's timestamps and video frame rate."""

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a camera is listed twice")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= side <= 4096 and side % 2 == 0 for side in value):
            raise ValueError(
                f"size is [width, height] in pixels, each even and 16 to 4096 "
                f"(a LeRobot dataset stores images as H.264 videos), got {list(value)}"
            )
        return value


class JobConfig(_Model):
    """One job: an environment, a policy and how many episodes to run."""

    name: str = Field(min_length=1, max_length=200)
    env: EnvConfig
    policy: PolicyConfig
    episodes: int = Field(ge=1, le=MAX_EPISODES)
    num_envs: int = Field(default=1, ge=1, le=MAX_WORLDS)
    max_steps: int | None = Field(default=None, ge=1)
    vectorization: Vectorization = "sync"
    native_mode: NativeMode = "auto"
    success: SuccessConfig = Field(default_factory=SuccessConfig)
    outcomes: list[OutcomeTermConfig] = Field(default_factory=list)
    factors: dict[str, FactorConfig] = Field(default_factory=dict)
    design: Design = "random"
    video: VideoConfig | None = None
    """Per-episode videos (``None``: none)."""
    trajectories: TrajectoryConfig | None = None
    """Per-step data of chosen episodes (``None``: none)."""
    instruction: str | None = None
    """A language instruction for language-conditioned policies (PolicyContext.instruction)."""
    act_timeout: float | None = Field(default=DEFAULT_ACT_TIMEOUT, gt=0, allow_inf_nan=False)
    """Seconds one policy call (``act``, ``reset``) may take before the job fails (null: no limit)."""
    episode_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Wall seconds one episode may take, env and policy together, before the job fails (null: no limit)."""
    on_nonfinite: OnNonfinite = "fail"
    """NaN or inf actions: ``fail`` the job, or ``warn`` once and pass them on."""
    on_out_of_bounds: OnOutOfBounds = "warn"
    """Box actions outside the bounds: ``warn`` once, ``clip`` them, or ``fail`` the job."""
    allow_unseeded: bool = False
    """Run the job although its env's episodes do not follow from their reset seed
    (preflight's seed check otherwise refuses it); the manifest's config keeps the mark."""

    @property
    def limits(self) -> GuardConfig:
        """The limits and checks the rollout applies to this job's policy and env calls."""
        return GuardConfig(
            act_timeout=self.act_timeout,
            episode_timeout=self.episode_timeout,
            on_nonfinite=self.on_nonfinite,
            on_out_of_bounds=self.on_out_of_bounds,
        )

    @field_validator("vectorization")
    @classmethod
    def _copies_limit(cls, value: Vectorization, info: ValidationInfo) -> Vectorization:
        num_envs = info.data.get("num_envs")
        if value != "native" and isinstance(num_envs, int) and num_envs > MAX_ENV_COPIES:
            raise ValueError(
                f"num_envs {num_envs} needs vectorization: native (one simulator stepping every world); "
                f"'{value}' builds one env copy per world, at most {MAX_ENV_COPIES}"
            )
        return value

    @field_validator("native_mode")
    @classmethod
    def _native_only(cls, value: NativeMode, info: ValidationInfo) -> NativeMode:
        if value != "auto" and info.data.get("vectorization") != "native":
            raise ValueError(f"native_mode '{value}' needs vectorization: native")
        return value

    @field_validator("factors")
    @classmethod
    def _factor_names(cls, value: dict[str, FactorConfig]) -> dict[str, FactorConfig]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", name):
                raise ValueError(
                    f"factor name '{name}' must start with a letter or '_' and use only "
                    "letters, digits, '_', '.', '-'"
                )
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value) or value in {".", ".."} or value != value.strip():
            raise ValueError(
                "a job name may not contain '/', '\\' or NUL, be '.' or '..', "
                "or start or end with spaces (it names a folder of the run)"
            )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_shorthand(cls, value: YamlDocument) -> YamlDocument:
        return {"id": value} if isinstance(value, str) else value

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_shorthand(cls, value: YamlDocument) -> YamlDocument:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("video", "trajectories", mode="before")
    @classmethod
    def _video_shorthand(cls, value: YamlDocument) -> YamlDocument:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("success", mode="before")
    @classmethod
    def _success_shorthand(cls, value: YamlDocument) -> YamlDocument:
        if value == "survived":
            return {"survived": True}
        return value

    @model_validator(mode="before")
    @classmethod
    def _success_key_alias(cls, data: YamlDocument) -> YamlDocument:
        # ``success_key: name`` is the documented shorthand for ``success: {key: name}``.
        if isinstance(data, dict) and "success_key" in data:
            data = dict(data)
            key = data.pop("success_key")
            if "success" in data:
                raise ValueError("set either 'success_key' or 'success', not both")
            data["success"] = {"key": key}
        return data


class RunConfig(_Model):
    """A run file."""

    name: str = Field(min_length=1, max_length=200)
    seed: int = Field(default=0, ge=0, lt=2**63)
    target_half_width: float | None = Field(default=None, gt=0, lt=0.5)
    """Wanted half-width of each job's 95% success interval; summary.json says which jobs meet it."""
    imports: list[str] = Field(default_factory=list)
    """Modules imported before anything is checked (they register envs, policies, variations)."""
    jobs: list[JobConfig] = Field(min_length=1)

    @field_validator("imports")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", name):
                raise ValueError(f"'{name}' is not a module name (like 'package.module')")
        return value

    @field_validator("name")
    @classmethod
    def _safe_run_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value) or value in {".", ".."}:
            raise ValueError("a run name may not contain '/', '\\' or NUL (it names the run folder)")
        return value

    @model_validator(mode="after")
    def _unique_job_names(self) -> RunConfig:
        seen: set[str] = set()
        for job in self.jobs:
            if job.name in seen:
                raise ValueError(f"job name '{job.name}' is used twice; job names must be unique")
            seen.add(job.name)
        return self

    def job(self, name: str) -> JobConfig:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)


# --------------------------------------------------------------------------- raw document


def resolve_document(raw: dict[str, YamlDocument], file: str | None = None) -> dict[str, YamlDocument]:
    """Merge ``defaults`` and ``templates`` into the jobs; return a document in
    the shape :class:`RunConfig` validates (no ``defaults``/``templates`` keys).

    A job's own keys win over its templates' (root ancestor first, see
    :mod:`trialrun.inherits`), which win over ``defaults``.
    """
    doc = copy.deepcopy(raw)
    defaults = doc.pop("defaults", None) or {}
    templates = doc.pop("templates", None) or {}
    if not isinstance(defaults, dict):
        raise ConfigError("must be a mapping of job keys", file=file, field="defaults")
    if not isinstance(templates, dict):
        raise ConfigError("must be a mapping of template name to job keys", file=file, field="templates")
    for where, body in [("defaults", defaults)] + [(f"templates.{k}", v) for k, v in templates.items()]:
        if isinstance(body, dict):
            unknown = sorted(set(body) - set(JobConfig.model_fields) - {INHERITS, "success_key"})
            if unknown:
                allowed = sorted(JobConfig.model_fields)
                raise ConfigError(
                    f"unknown key '{unknown[0]}'; allowed keys: {', '.join(allowed)}"
                    f"{did_you_mean(unknown[0], allowed)}",
                    file=file,
                    field=f"{where}.{unknown[0]}",
                )
    jobs = doc.get("jobs")
    if not isinstance(jobs, list):
        return doc
    resolved = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise ConfigError("must be a mapping", file=file, field=f"jobs.{index}")
        chain: list[str] = []
        if job.get(INHERITS) is not None:
            at = f"jobs.{index}.{INHERITS}"
            chain = inheritance_chain(
                templates, job[INHERITS], noun="template", path="templates", file=file, referenced_at=at
            )
        merged = merge_chain(templates, chain, base=defaults)
        resolved.append(deep_merge(merged, {k: v for k, v in job.items() if k != INHERITS}))
    doc["jobs"] = resolved
    return doc


def format_validation_error(exc: ValidationError, file: str | None) -> ConfigError:
    """The first error of a pydantic ``ValidationError`` as one clear ConfigError."""
    errors = exc.errors()
    # A misspelt key is the cause of the "Field required" its right spelling then
    # raises, so the unknown key is the one error reported.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent = err["loc"][:-1]
        key = str(err["loc"][-1])
        msg = f"unknown key '{key}'"
        allowed = _allowed_keys(parent)
        if not parent:
            allowed = sorted([*allowed, "defaults", "templates"])
        if allowed:
            msg += f"; allowed keys: {', '.join(allowed)}{did_you_mean(key, allowed)}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem(s))"
    return ConfigError(msg, file=file, field=field or None)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model at ``loc`` in a RunConfig (best effort)."""
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _inner_model(field.annotation)
    return sorted(model.model_fields) if model is not None else []


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def parse_run_config(
    raw: YamlDocument, *, file: str | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Validate a raw run document (after applying ``overrides``)."""
    if not isinstance(raw, dict):
        raise ConfigError("the run file must be a YAML mapping with 'name' and 'jobs'", file=file)
    doc = expand_run_shorthands(copy.deepcopy(raw))
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(doc, key, value)
    doc = resolve_document(doc, file)
    try:
        config = RunConfig.model_validate(doc)
    except ValidationError as exc:
        raise format_validation_error(exc, file) from None
    if config.imports:
        from trialrun.envs.namespaces import import_modules  # imports gymnasium: only when needed

        import_modules(config.imports, file=file)
    return config


def load_run_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Load, merge, override and validate a run file.

    Policy file paths (``policy.path``, ``policy.kwargs.*_path`` and ``ca_file``) that are
    relative are made absolute against the run file's directory, so a run file
    works from any working directory and the manifest records which file ran.
    """
    config = parse_run_config(load_yaml(path), file=str(path), overrides=overrides)
    resolve_policy_paths(config, Path(path).resolve().parent, file=str(path))
    return config


def policy_field(key: str) -> str:
    """Where a policy setting is named in messages: ``policy.<key>`` for the keys
    written next to ``type`` (:data:`POLICY_SHORTHAND_KEYS`, as the docs show
    them), ``policy.kwargs.<key>`` for the others, so a message names the place
    the user wrote."""
    return f"policy.{key}" if key in POLICY_SHORTHAND_KEYS else f"policy.kwargs.{key}"


def is_path_kwarg(name: str) -> bool:
    """Whether a policy kwarg names a file (``path``, ``*_path``, or ``ca_file``: the CAs of a
    ``wss://`` server, named as :func:`ssl.create_default_context` and curl name them)."""
    return name == "path" or name.endswith("_path") or name == "ca_file"


def resolve_policy_paths(config: RunConfig, base_dir: Path, *, file: str | None = None) -> None:
    """Make every policy file path of ``config`` absolute against ``base_dir``
    (``~`` is expanded) and check that the file exists.

    Raises:
        ConfigError: naming ``jobs.<i>.policy.<key>`` (see :func:`policy_field`) for a missing file.
    """
    for index, job in enumerate(config.jobs):
        for key, value in list(job.policy.kwargs.items()):
            if not is_path_kwarg(key) or not isinstance(value, str) or not value:
                continue
            resolved = Path(value).expanduser()
            if not resolved.is_absolute():
                resolved = base_dir / resolved
            if not resolved.exists():
                raise ConfigError(
                    f"no such file: {resolved} (relative paths are resolved against the run file's "
                    f"directory {base_dir})",
                    file=file,
                    field=f"jobs.{index}.{policy_field(key)}",
                )
            job.policy.kwargs[key] = str(resolved)
