"""Which policy to evaluate, given as text: the one parser of policy specs.

``trialrun serve-policy SPEC``, ``trialrun suite --policy SPEC`` and
``EvalManager.run(policy="...")`` all read their policy with
:func:`parse_policy_spec`, which tries, in this order:

1. a registered policy name (``trialrun list policies``), unless a policy type
   is given explicitly. A name wins over a file or folder of the same name in
   the working directory (write ``./random`` to mean the file);
2. a checkpoint: with an explicit policy type (``--policy-type``), or when the
   text names an existing file or directory. A directory stands for its newest
   checkpoint file by modification time (:func:`newest_checkpoint`). The type
   is the explicit one, else the suffix's: ``.zip`` -> ``sb3``,
   ``.pt``/``.pth``/``.ts`` -> ``torchscript``, ``.onnx`` -> ``onnx``,
   ``.npz`` -> ``npz`` (:data:`trialrun.policies.loaders.SUFFIX_TYPES`). For
   an ``sb3`` checkpoint, a ``<stem>.vecnormalize.pkl`` next to it (what
   :class:`~trialrun.integrations.sb3.EvalSuiteCallback` saves) becomes the
   policy's ``vecnormalize_path``;
3. a YAML mapping (text starting with ``{``, or holding ``": "``), validated
   as :class:`~trialrun.config.PolicyConfig`:
   ``{type: sb3, path: model.zip, kwargs: {deterministic: false}}``;
4. text that looks like a path (a ``/``, a leading ``~`` or a checkpoint
   suffix) but names nothing: an error;
5. anything else is a ``package.module:factory`` (imported now, so a typo
   fails before anything runs).

Then each ``--kwarg key=value`` (the value read as YAML) is set, and every
file keyword argument (``path`` or ``*_path``) is made absolute against the
working directory (``~`` expanded) and must exist. The policy type must be
registered or importable. Errors are :class:`~trialrun.errors.InputError` (a
:class:`~trialrun.errors.ConfigError` for a field) naming the option.

Run documents and the suites' ``EvalManager`` hold policies as plain
``{type, kwargs}`` mappings (:data:`PolicySpec`): :func:`spec_from_text`,
:func:`spec_from_mapping` and :func:`checkpoint_spec` give that form, and
:func:`spec_to_text` turns it back into text :func:`parse_policy_spec` reads.

Examples:
    >>> parse_policy_spec("cartpole-balance")
    PolicyConfig(type='cartpole-balance', kwargs={})
    >>> parse_policy_spec("{type: remote}", kwargs=["url=ws://gpu-box:8765", "timeout=30"])
    PolicyConfig(type='remote', kwargs={'url': 'ws://gpu-box:8765', 'timeout': 30})
    >>> parse_policy_spec("{type: zero}", kwargs=["scale=0.5"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    trialrun.errors.ConfigError: --policy: field 'kwargs.scale': policy 'zero' has no setting 'scale'; ...
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "ppo_100.zip").write_bytes(b"")
    >>> config = parse_policy_spec(str(folder))
    >>> config.type, config.kwargs == {"path": str((folder / "ppo_100.zip").resolve())}
    ('sb3', True)
    >>> spec_to_text({"type": "zero", "kwargs": {"scale": 0.5}})
    '{kwargs: {scale: 0.5}, type: zero}'
    >>> parse_policy_spec("no-such-policy", option="SPEC")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    trialrun.errors.ConfigError: field 'SPEC': unknown policy 'no-such-policy'; registered policies: ...
    >>> parse_policy_spec("models/missing.zip")
    Traceback (most recent call last):
        ...
    trialrun.errors.InputError: --policy: no such checkpoint file or directory: models/missing.zip
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trialrun.config import POLICY_SHORTHAND_KEYS, PolicyConfig, is_path_kwarg, parse_override
from trialrun.errors import ConfigError, InputError
from trialrun.policies.loaders import SUFFIX_TYPES
from trialrun.policies.registry import available_policies, check_policy_settings, resolve_policy_factory
from trialrun.yaml_safe import excerpt, load_yaml_text

PolicySpec = dict[str, Any]
"""A policy as a run document holds it: ``{"type": ..., "kwargs": {...}}``."""

__all__ = [
    "PolicySpec",
    "checkpoint_config",
    "checkpoint_policy_type",
    "checkpoint_spec",
    "newest_checkpoint",
    "parse_policy_spec",
    "spec_from_mapping",
    "spec_from_text",
    "spec_to_text",
    "validate_policy",
]


def newest_checkpoint(path: str | Path, any_suffix: bool = False) -> Path:
    """``path`` itself if it is a file; for a directory, its newest checkpoint
    file by modification time (ties: the last name). Hidden and temporary files
    are skipped, and unless ``any_suffix`` only known checkpoint suffixes count
    (so a ``vecnormalize.pkl`` saved next to a model is not picked)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.resolve()
    if not path.is_dir():
        raise InputError(f"no such checkpoint file or directory: {path}")
    files = [
        p
        for p in path.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith((".tmp", ".part"))
        and (any_suffix or p.suffix in SUFFIX_TYPES)
    ]
    if not files:
        kinds = "files" if any_suffix else f"checkpoint files ({', '.join(SUFFIX_TYPES)})"
        raise InputError(f"{path} holds no {kinds}")
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name)).resolve()


def checkpoint_policy_type(path: Path, explicit: str | None = None) -> str:
    """The policy type that loads checkpoint ``path`` (``explicit`` wins)."""
    if explicit:
        return explicit
    kind = SUFFIX_TYPES.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"cannot tell how to load {path.name} from its suffix (known: {', '.join(SUFFIX_TYPES)}); "
            "pass --policy-type TYPE (or checkpoint_type in the suites file)"
        )
    if kind in available_policies():
        return kind
    raise InputError(
        f"no policy loader '{kind}' is registered for {path.suffix} files; pass --policy-type TYPE "
        f"(registered policies: {', '.join(sorted(available_policies()))})"
    )


def checkpoint_config(path: str | Path, policy_type: str | None = None) -> PolicyConfig:
    """The policy that loads the checkpoint at ``path`` (a file, or a
    directory's newest checkpoint), with the sb3 ``vecnormalize_path``."""
    file = newest_checkpoint(path, any_suffix=policy_type is not None)
    kind = checkpoint_policy_type(file, policy_type)
    kwargs: dict[str, Any] = {"path": str(file)}
    stats = file.with_suffix(".vecnormalize.pkl")
    if kind == "sb3" and stats.is_file():
        kwargs["vecnormalize_path"] = str(stats)
    return PolicyConfig(type=kind, kwargs=kwargs)


def validate_policy(raw: Any, *, option: str = "--policy") -> PolicyConfig:
    """A mapping ``{type, kwargs}`` (or ``path``/``url``/``timeout`` next to
    ``type``) validated as a :class:`PolicyConfig`, its type checked and its
    file paths made absolute (see the module docstring)."""
    return _checked(_validated(raw, option), type_field=option, option=option)


def parse_policy_spec(
    text: str,
    policy_type: str | None = None,
    kwargs: Iterable[str] = (),
    *,
    option: str = "--policy",
) -> PolicyConfig:
    """The policy named by ``text``, with ``kwargs`` (``key=value`` texts) set.

    ``policy_type`` makes ``text`` a checkpoint loaded by that type; ``option``
    names the command-line option (or argument) in error messages. See the
    module docstring for the rules.

    Raises:
        InputError: naming ``option`` (a ``ConfigError`` for a field).
    """
    text = text.strip()
    if not text:
        raise InputError(f"{option} is empty")
    type_field = option
    if policy_type is None and text in available_policies():
        config = PolicyConfig(type=text)
    elif policy_type is not None or _is_existing_path(text):
        type_field = option if policy_type is None else "--policy-type"
        try:
            config = checkpoint_config(text, policy_type)
        except InputError as exc:
            raise InputError(f"{option}: {exc}") from None
    elif text.startswith("{") or ": " in text:
        try:
            raw = load_yaml_text(text)
        except ConfigError as exc:
            raise InputError(
                f"{option} '{excerpt(text)}' is not a valid YAML mapping: {exc.message}"
            ) from None
        config = _validated(raw, option)
    elif _looks_like_path(text):
        raise InputError(f"{option}: no such checkpoint file or directory: {text}")
    else:
        config = PolicyConfig(type=text)
    config.kwargs.update(_parse_kwargs(kwargs))
    return _checked(config, type_field=type_field, option=option)


def spec_from_text(text: str, policy_type: str | None = None) -> PolicySpec:
    """:func:`parse_policy_spec` as a ``{type, kwargs}`` mapping."""
    return _as_spec(parse_policy_spec(text, policy_type))


def spec_from_mapping(raw: Any) -> PolicySpec:
    """:func:`validate_policy` as a ``{type, kwargs}`` mapping."""
    return _as_spec(validate_policy(raw))


def checkpoint_spec(path: str | Path, policy_type: str | None = None) -> PolicySpec:
    """:func:`checkpoint_config` as a ``{type, kwargs}`` mapping."""
    return _as_spec(checkpoint_config(path, policy_type))


def spec_to_text(spec: PolicyConfig | Mapping[str, Any]) -> str:
    """A policy as one line of YAML flow text (what :func:`parse_policy_spec` reads)."""
    data = _as_spec(spec) if isinstance(spec, PolicyConfig) else dict(spec)
    text: str = yaml.safe_dump(data, default_flow_style=True, width=10**6)
    return text.strip()


def _as_spec(config: PolicyConfig) -> PolicySpec:
    spec: PolicySpec = config.model_dump(mode="json")
    return spec


def _is_existing_path(text: str) -> bool:
    """Whether ``text`` names an existing file or folder; a text no path can be
    (longer than the OS allows, a NUL byte: a YAML mapping, say) is not one."""
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        return False


def _looks_like_path(text: str) -> bool:
    """A path to a checkpoint, not a ``package.module:factory``."""
    last = text.replace("\\", "/").split("/")[-1]
    if ":" in last:
        return False
    return "/" in text or "\\" in text or text.startswith("~") or Path(text).suffix.lower() in SUFFIX_TYPES


def _parse_kwargs(texts: Iterable[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as exc:
            raise ConfigError(exc.message, field="--kwarg") from None
        kwargs[key] = value
    return kwargs


def _validated(raw: Any, option: str) -> PolicyConfig:
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            allowed = ", ".join(sorted(["type", "kwargs", *POLICY_SHORTHAND_KEYS]))
            where, message = "", f"unknown key '{where}'; allowed keys: {allowed}"
        raise ConfigError(message, file=option, field=where or None) from None


def _checked(config: PolicyConfig, *, type_field: str, option: str) -> PolicyConfig:
    """``config`` with its type and settings checked (as preflight checks a run
    file's) and its file paths absolute and existing."""
    resolve_policy_factory(config.type, field=type_field)
    try:
        check_policy_settings(config.type, config.kwargs)
    except ConfigError as exc:
        # Named as the user wrote it on the command line: 'path', 'kwargs.gain'.
        field = (exc.field or "").removeprefix("policy.") or None
        raise ConfigError(exc.message, file=option, field=field) from None
    for key, value in list(config.kwargs.items()):
        if not is_path_kwarg(key) or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"no such file: {path}", file=option, field=key)
        config.kwargs[key] = str(path)
    return config
