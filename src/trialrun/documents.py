"""Raw YAML documents before validation: reading, ``--set`` overrides, shorthands.

Run files and suites files are plain YAML until pydantic validates them. This
module holds what works on them before that: reading a file with clear errors
(:func:`load_yaml`), dotted overrides (:func:`parse_override`,
:func:`set_dotted`) and the ``env: X`` / ``policy: X`` shorthands, expanded
early so that an override like ``jobs.0.env.kwargs.g=9`` finds a mapping.

Example:
    >>> doc = expand_run_shorthands({"name": "r", "jobs": [{"name": "a", "env": "CartPole-v1"}]})
    >>> key, value = parse_override("jobs.0.env.kwargs.g=9.5")
    >>> set_dotted(doc, key, value)
    >>> doc["jobs"][0]["env"]
    {'id': 'CartPole-v1', 'kwargs': {'g': 9.5}}
    >>> set_dotted(doc, "jobs.2.episodes", 4)
    Traceback (most recent call last):
    ...
    trialrun.errors.ConfigError: field '--set': 'jobs.2': index must be 0..0 (the list has 1 items)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

from trialrun.errors import ConfigError
from trialrun.yaml_safe import excerpt, load_yaml_file, load_yaml_text

__all__ = [
    "YamlDocument",
    "expand_job_shorthands",
    "expand_run_shorthands",
    "load_yaml",
    "parse_override",
    "set_dotted",
]

YamlDocument: TypeAlias = Any
"""A value as ``yaml.safe_load`` returns it (read through :mod:`trialrun.yaml_safe`):
a mapping, list, string, number, bool or None, nested (up to a bound). It is
``Any`` rather than a recursive union because it really is arbitrary user
input: code narrows it with ``isinstance`` where it looks inside, and pydantic
validates it in the end."""

# ``key: text`` shorthands of a job: ``env: X`` is ``env: {id: X}``, ``policy: X`` is ``policy: {type: X}``.
_JOB_SHORTHANDS = (("env", "id"), ("policy", "type"))


def load_yaml(path: Path) -> YamlDocument:
    """Read a YAML file within the bounds of :mod:`trialrun.yaml_safe` (size,
    nesting, aliases, no repeated keys), turning every problem into a
    ConfigError that names the file (and the line)."""
    return load_yaml_file(Path(path))


def parse_override(text: str) -> tuple[str, YamlDocument]:
    """``a.b=3`` -> ``("a.b", 3)``; the value is parsed as YAML (so ``true``,
    ``[1, 2]`` and ``{x: 1}`` work).

    >>> parse_override("a.b=[1, 2]"), parse_override("x=")
    (('a.b', [1, 2]), ('x', ''))
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value", field="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key part", field="--set")
    if not raw.strip():
        return key, ""
    try:
        value = load_yaml_text(raw, field="--set")
    except ConfigError as exc:
        raise ConfigError(f"override '{excerpt(text)}': the value is {exc.message}", field="--set") from None
    return key, value


def set_dotted(document: YamlDocument, key: str, value: YamlDocument, *, source: str = "--set") -> None:
    """Set ``document[a][b]...`` for ``key="a.b..."``; integer parts index lists.

    Missing dict levels are created; a list index out of range is an error
    (a ConfigError whose field is ``source``).
    """
    parts = key.split(".")
    node = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"'{where}': index must be 0..{len(node) - 1} (the list has {len(node)} items)",
                    field=source,
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"'{where}': cannot set a key inside a {type(node).__name__}", field=source)


def expand_job_shorthands(job: YamlDocument) -> YamlDocument:
    """``env: X`` -> ``env: {id: X}`` and ``policy: X`` -> ``policy: {type: X}``
    in one job body, in place; returns ``job`` (anything but a mapping unchanged).

    >>> expand_job_shorthands({"env": "CartPole-v1", "policy": "random"})
    {'env': {'id': 'CartPole-v1'}, 'policy': {'type': 'random'}}
    """
    if isinstance(job, dict):
        for key, inner in _JOB_SHORTHANDS:
            if isinstance(job.get(key), str):
                job[key] = {inner: job[key]}
    return job


def expand_run_shorthands(doc: dict[str, YamlDocument]) -> dict[str, YamlDocument]:
    """:func:`expand_job_shorthands` on every job body of a run document (its
    ``jobs``, ``defaults`` and ``templates``), in place; returns ``doc``."""
    jobs = doc.get("jobs")
    bodies: list[YamlDocument] = list(jobs) if isinstance(jobs, list) else []
    bodies.append(doc.get("defaults"))
    templates = doc.get("templates")
    if isinstance(templates, dict):
        bodies.extend(templates.values())
    for body in bodies:
        expand_job_shorthands(body)
    return doc
