"""Which policy to evaluate: checkpoint files and policy specs given as text.

``--policy`` (and ``EvalManager.run(policy="...")``) accepts:

- a checkpoint file, or a directory (its newest checkpoint file by
  modification time is used). The policy type that loads it is
  ``--policy-type``, else inferred from the suffix: ``.zip`` -> ``sb3``,
  ``.pt``/``.pth``/``.ts`` -> ``torchscript``, ``.onnx`` -> ``onnx``, ``.npz`` ->
  ``npz`` (:data:`trialrun.policies.loaders.SUFFIX_TYPES`). For an ``sb3``
  checkpoint, a ``<stem>.vecnormalize.pkl`` next to it (what
  :class:`~trialrun.integrations.sb3.EvalSuiteCallback` saves) becomes the
  policy's ``vecnormalize_path``;
- a registered policy name (``cartpole-balance``) or ``package.module:factory``;
- a YAML mapping: ``{type: sb3, path: model.zip, kwargs: {algo: PPO}}``.

Example:
    >>> parse_policy_spec("cartpole-balance")
    {'type': 'cartpole-balance', 'kwargs': {}}
    >>> parse_policy_spec("{type: zero}")
    {'type': 'zero', 'kwargs': {}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trialrun.config import PolicyConfig
from trialrun.errors import InputError, first_error
from trialrun.policies.loaders import SUFFIX_TYPES
from trialrun.policies.registry import available_policies


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


def checkpoint_spec(path: str | Path, policy_type: str | None = None) -> dict[str, Any]:
    """The policy config that loads the checkpoint at ``path`` (a file or a directory)."""
    file = newest_checkpoint(path, any_suffix=policy_type is not None)
    kind = checkpoint_policy_type(file, policy_type)
    kwargs: dict[str, Any] = {"path": str(file)}
    stats = file.with_suffix(".vecnormalize.pkl")
    if kind == "sb3" and stats.is_file():
        kwargs["vecnormalize_path"] = str(stats)
    return {"type": kind, "kwargs": kwargs}


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or Path(text).suffix.lower() in SUFFIX_TYPES or text.startswith("~")


def parse_policy_spec(text: str, policy_type: str | None = None) -> dict[str, Any]:
    """A policy config from command-line text (see the module docstring)."""
    text = text.strip()
    if not text:
        raise InputError("--policy is empty")
    if policy_type is not None or Path(text).expanduser().exists():
        return checkpoint_spec(text, policy_type)
    if text.startswith("{"):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"--policy '{text}' is not a valid YAML mapping: {exc}") from None
        return policy_config(raw)
    if _looks_like_path(text) and ":" not in text.replace("\\", "/").split("/")[-1]:
        raise InputError(f"no such checkpoint file or directory: {text}")
    return {"type": text, "kwargs": {}}


def policy_config(raw: Any) -> dict[str, Any]:
    """A validated policy config (``{type, kwargs}``) from a mapping."""
    try:
        config: dict[str, Any] = PolicyConfig.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        where, message = first_error(exc)
        raise InputError(f"--policy: {where + ': ' if where else ''}{message}") from None
    return config


def spec_to_text(spec: dict[str, Any]) -> str:
    """A policy config as one line of YAML flow text (what ``--policy`` parses)."""
    text: str = yaml.safe_dump(spec, default_flow_style=True, width=10**6)
    return text.strip()
