"""``inherits:``: named sections that build on one another, resolved in one place.

Run files (``templates:``, which jobs and templates inherit from) and suites
files (``evaluators:``, which inherit from one another) share one rule: a
section may name a parent with ``inherits:``; its chain runs from the root
ancestor down to the section, and is deep-merged in that order (a child's keys
win, mappings merge key by key, lists are replaced, not concatenated).

:func:`inheritance_chain` follows the links (every name checked, cycles
named); :func:`merge_chain` merges a chain into a new dict; :func:`deep_merge`
merges two mappings. Every merge copies: two children of one parent never
share a mutable object, and no input is modified.

Example:
    >>> sections = {
    ...     "base": {"interval": 10, "video": {"episodes": 2}},
    ...     "heavy": {"inherits": "base", "video": {"fps": 10}, "jobs": ["j"]},
    ... }
    >>> chain = inheritance_chain(sections, "heavy", noun="evaluator", path="evaluators")
    >>> chain
    ['base', 'heavy']
    >>> merge_chain(sections, chain)
    {'interval': 10, 'video': {'episodes': 2, 'fps': 10}, 'jobs': ['j']}
    >>> loop = {"a": {"inherits": "b"}, "b": {"inherits": "a"}}
    >>> inheritance_chain(loop, "a", noun="evaluator", path="evaluators", file="suites.yaml")
    Traceback (most recent call last):
    ...
    trialrun.errors.ConfigError: suites.yaml: field 'evaluators.b.inherits': evaluator inheritance cycle: ...
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from trialrun.documents import YamlDocument
from trialrun.errors import ConfigError

__all__ = ["INHERITS", "deep_merge", "inheritance_chain", "merge_chain"]

INHERITS = "inherits"
"""The key that names a section's parent."""


def deep_merge(
    base: Mapping[str, YamlDocument], override: Mapping[str, YamlDocument]
) -> dict[str, YamlDocument]:
    """A new dict: ``override`` merged into ``base`` recursively (``override`` wins).

    Mappings present in both are merged key by key; anything else in
    ``override`` (a list included) replaces the value of ``base``. Keys keep
    ``base``'s order, then ``override``'s new ones. Neither input is modified
    and the result shares no mutable object with them.

    >>> base = {"a": {"b": [1], "c": 1}, "d": [1, 2]}
    >>> merged = deep_merge(base, {"a": {"c": 2}, "d": [3]})
    >>> merged
    {'a': {'b': [1], 'c': 2}, 'd': [3]}
    >>> merged["a"]["b"] is base["a"]["b"]
    False
    """
    result: dict[str, YamlDocument] = {}
    for key, value in base.items():
        if key not in override:
            result[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(override[key], Mapping):
            result[key] = deep_merge(value, override[key])
        else:
            result[key] = copy.deepcopy(override[key])
    for key, value in override.items():
        if key not in base:
            result[key] = copy.deepcopy(value)
    return result


def inheritance_chain(
    sections: Mapping[str, YamlDocument],
    name: YamlDocument,
    *,
    noun: str,
    path: str,
    file: str | None = None,
    referenced_at: str | None = None,
) -> list[str]:
    """The names from the root ancestor of ``name`` down to ``name``.

    Args:
        sections: every section by name (as written: each should be a mapping,
            whose ``inherits`` key names its parent).
        name: the section to resolve.
        noun: what a section is called in messages (``"template"``, ``"evaluator"``).
        path: the dotted path of ``sections`` in the file (``"templates"``,
            ``"evaluators"``): errors name ``<path>.<section>.inherits``.
        file: the file, for messages.
        referenced_at: where ``name`` was written when that is outside
            ``sections`` (a run-file job's ``jobs.0.inherits``): every error
            about a link of the chain then names this field, the value whose
            resolution failed.

    Raises:
        ConfigError: a link that is not a string, names no section (the
            message gives the chain so far and the known names), or closes a
            cycle (``a -> b -> a``); a section that is not a mapping.

    >>> templates = {"short": {"max_steps": 10}, "long": {"inherits": "nope"}}
    >>> inheritance_chain(templates, "short", noun="template", path="templates")
    ['short']
    >>> try:
    ...     inheritance_chain(templates, "long", noun="template", path="templates")
    ... except ConfigError as err:
    ...     print(err.field, "|", err.message)  # doctest: +NORMALIZE_WHITESPACE
    templates.long.inherits | template 'long' inherits from 'nope', which is not defined
    (inheritance chain: long -> nope); templates: short, long
    >>> try:
    ...     inheritance_chain(templates, "big", noun="template", path="t", referenced_at="jobs.0.inherits")
    ... except ConfigError as err:
    ...     print(err.field, "|", err.message)
    jobs.0.inherits | unknown template 'big'; templates: short, long
    """
    known = ", ".join(sections) or "(none defined)"
    chain: list[str] = []
    link = name
    while True:
        field = referenced_at or (f"{path}.{chain[-1]}.{INHERITS}" if chain else path)
        if not isinstance(link, str):
            article = "an" if noun[:1] in "aeiou" else "a"
            raise ConfigError(
                f"must be the name of {article} {noun}, not {link!r}; {noun}s: {known}",
                file=file,
                field=field,
            )
        if link not in sections:
            if not chain:
                raise ConfigError(f"unknown {noun} '{link}'; {noun}s: {known}", file=file, field=field)
            raise ConfigError(
                f"{noun} '{chain[-1]}' inherits from '{link}', which is not defined "
                f"(inheritance chain: {' -> '.join([*chain, link])}); {noun}s: {known}",
                file=file,
                field=field,
            )
        if link in chain:
            loop = " -> ".join([*chain, link])
            raise ConfigError(f"{noun} inheritance cycle: {loop}", file=file, field=field)
        chain.append(link)
        body = sections[link]
        if not isinstance(body, Mapping):
            raise ConfigError("must be a mapping", file=file, field=f"{path}.{link}")
        link = body.get(INHERITS)
        if link is None:
            return list(reversed(chain))


def merge_chain(
    sections: Mapping[str, Mapping[str, YamlDocument]],
    chain: Iterable[str],
    *,
    base: Mapping[str, YamlDocument] | None = None,
) -> dict[str, YamlDocument]:
    """``base`` (default: nothing), then each section of ``chain`` in order,
    deep-merged into a new dict without their ``inherits`` keys.

    >>> sections = {"root": {"tags": ["a"], "v": {"x": 1}}, "leaf": {"inherits": "root", "tags": ["b"]}}
    >>> merge_chain(sections, ["root", "leaf"], base={"v": {"y": 2}})
    {'v': {'y': 2, 'x': 1}, 'tags': ['b']}
    """
    merged = deep_merge(base or {}, {})
    for name in chain:
        layer = {key: value for key, value in sections[name].items() if key != INHERITS}
        merged = deep_merge(merged, layer)
    return merged
