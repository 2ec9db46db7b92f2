"""The one YAML loader of trialrun: ``yaml.safe_load`` with bounds.

Every YAML trialrun reads (run files, suites files, factors files, ``--set``
values, policy specs given as YAML text) goes through :func:`load_yaml_text`
or :func:`load_yaml_file`. Why bounds: a YAML file is small, but what it
describes need not be. Ten lines of nested aliases ("billion laughs") expand
to millions of nodes once something walks or serializes the document (the
run's manifest stores the resolved config), a few kilobytes of ``[[[[`` blow
Python's recursion limit, and ``/dev/zero`` given as a run file never ends.
The loader refuses each of these with one clear error instead:

- a file larger than :data:`MAX_YAML_BYTES` (at most that many bytes plus one
  are ever read), a directory or a device;
- more than :data:`MAX_YAML_NODES` nodes written out, or more than
  :data:`MAX_YAML_ALIAS_NODES` nodes brought in through aliases (``*name``),
  each alias counted with everything it brings along;
- nesting deeper than :data:`MAX_YAML_DEPTH` levels;
- an alias inside the node it names (a recursive structure);
- a mapping that repeats a key (YAML says keys are unique; PyYAML silently
  keeps the last one, so ``seed: 1`` ... ``seed: 2`` would run with 2);
- a scalar Python cannot build (an ``int`` of 5,000 digits, a date
  ``2026-13-45``).

Everything else is exactly ``yaml.safe_load``: the same tags, the same
resolution of scalars, merge keys (``<<: *base``) included. The scanner and
parser are libyaml's when PyYAML was built with it (``yaml.CSafeLoader``),
else PyYAML's own; the composing, where the bounds are counted, is the same
Python code either way, so both behave identically.

Example:
    >>> load_yaml_text("a: [1, 2]\\nb: {c: true}")
    {'a': [1, 2], 'b': {'c': True}}
    >>> load_yaml_text("seed: 1\\nseed: 2", source="run.yaml")
    Traceback (most recent call last):
    ...
    trialrun.errors.ConfigError: run.yaml: invalid YAML at line 2, column 1: duplicate key 'seed' ...
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from trialrun.errors import ConfigError

__all__ = [
    "MAX_YAML_ALIAS_NODES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "YamlLimitError",
    "describe_yaml_error",
    "excerpt",
    "load_yaml_file",
    "load_yaml_text",
    "read_bounded_text",
]

MAX_YAML_BYTES = 10 * 1024 * 1024
"""Largest YAML file read (10 MiB); a run file is a few kilobytes."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists; a run file nests about 8 levels."""

MAX_YAML_NODES = 200_000
"""Most nodes (mappings, lists, scalars) a document may write out. Building a
node costs about 15 us and 400 bytes, so this bounds a load to a few seconds
and under 100 MB whatever the file holds; a run file has a few hundred."""

MAX_YAML_ALIAS_NODES = 100_000
"""Most nodes a document may bring in through aliases, each alias counted
with every node below the anchor it names. Templates reused a few times add
hundreds; an alias bomb adds millions."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_LIBYAML_DEPTH = "exceeded maximum nesting depth"

_Loader: type[Any]
_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLimitError(MarkedYAMLError):  # type: ignore[misc]  # PyYAML ships no types
    """A YAML document broke one of the bounds above (or repeated a key)."""

    def __init__(self, problem: str, mark: Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedComposer(Composer):  # type: ignore[misc]
    """PyYAML's composer, counting depth and alias expansion as it builds nodes.

    It runs on top of either parser (PyYAML's or libyaml's ``CParser``): both
    provide ``check_event``/``peek_event``/``get_event``, and listing this
    class before the parser in the loader's bases replaces libyaml's own
    (recursive, unbounded) composer.
    """

    def __init__(self) -> None:
        Composer.__init__(self)
        self._depth = 0
        self._alias_nodes = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            return self._compose_alias(event)
        self._depth += 1
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise YamlLimitError(
                f"more than {MAX_YAML_NODES} nodes (mappings, lists and values)", event.start_mark
            )
        if self._depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"nesting deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        anchor = event.anchor if isinstance(event, (MappingStartEvent, SequenceStartEvent)) else None
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        self._sizes[id(node)] = self._size_of(node)
        return node

    def _size_of(self, node: Node) -> int:
        if isinstance(node, SequenceNode):
            return 1 + sum(self._sizes.get(id(child), 1) for child in node.value)
        if isinstance(node, MappingNode):
            return 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        return 1

    def _compose_alias(self, event: AliasEvent) -> Node:
        if event.anchor in self._open_anchors:
            raise YamlLimitError(f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
        node: Node = super().compose_node(None, None)  # the anchored node (or "undefined alias")
        self._alias_nodes += self._sizes.get(id(node), 1)
        if self._alias_nodes > MAX_YAML_ALIAS_NODES:
            raise YamlLimitError(
                f"alias expansion limit ({MAX_YAML_ALIAS_NODES}) exceeded: "
                f"the aliases bring in more than {MAX_YAML_ALIAS_NODES} nodes",
                event.start_mark,
            )
        return node


class _StrictConstructor(SafeConstructor):  # type: ignore[misc]
    """``SafeConstructor`` that refuses repeated keys and words a scalar Python
    cannot build (``ValueError``) as a marked YAML error."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise YamlLimitError(f"invalid value: {exc}", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue  # merged keys may be overridden; complex keys fail later if unhashable
                key = self.construct_object(key_node)
                if key in first:
                    line = first[key].start_mark.line + 1
                    raise YamlLimitError(f"duplicate key {key!r} (first at line {line})", key_node.start_mark)
                first[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


class _SafeBoundedLoader(_BoundedComposer, _StrictConstructor, _BaseLoader):  # type: ignore[misc]
    """The bounded safe loader (libyaml's scanner and parser when available)."""

    def __init__(self, stream: str) -> None:
        _BaseLoader.__init__(self, stream)
        _BoundedComposer.__init__(self)


_Loader = _SafeBoundedLoader


def describe_yaml_error(exc: yaml.YAMLError, text: str = "") -> str:
    """One line for a YAML error: ``invalid YAML at line L, column C: problem``
    (``text``, the document, locates a character the reader refused)."""
    if isinstance(exc, ReaderError):
        position = int(exc.position)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problem = f"character #x{code:04x} is not allowed ({exc.reason})"
        return f"invalid YAML at line {line}, column {column}: {problem}"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    if problem == _LIBYAML_DEPTH:  # libyaml's own bound (1000) met while it scans ahead
        problem = f"nesting deeper than {MAX_YAML_DEPTH} levels"
    return f"invalid YAML{where}: {problem}"


def excerpt(text: str, limit: int = 60) -> str:
    """``text`` for a one-line message: newlines shown as ``\\n``, cut to ``limit`` characters.

    >>> excerpt("a: 1\\nb: 2"), excerpt("x" * 70)
    ('a: 1\\\\nb: 2', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')
    """
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def load_yaml_text(text: str, *, source: str | None = None, field: str | None = None) -> Any:
    """``text`` parsed like ``yaml.safe_load``, within the bounds of this module.

    Raises:
        ConfigError: naming ``source`` (a file) and ``field``, with the line
            and column of the problem.
    """
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(describe_yaml_error(exc, text), file=source, field=field) from None
    except RecursionError:  # defence in depth: the depth bound should stop it first
        raise ConfigError(f"nesting deeper than {MAX_YAML_DEPTH} levels", file=source, field=field) from None
    finally:
        loader.dispose()


def read_bounded_text(path: Path, *, limit: int = MAX_YAML_BYTES, what: str = "file") -> str:
    """The UTF-8 text of ``path``, refusing directories, devices and files over ``limit`` bytes.

    At most ``limit + 1`` bytes are read, so ``/dev/zero`` or a huge file
    never fills memory; pipes (``<(...)``) are allowed, bounded the same way.

    Raises:
        ConfigError: naming the file: missing, not a regular file, too large,
            unreadable or not UTF-8.
    """
    name = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"no such {what}", file=name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=name) from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError("is a directory, not a file", file=name)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        raise ConfigError("is not a regular file (a device or socket)", file=name)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=name) from None
    if len(data) > limit:
        raise ConfigError(f"larger than the limit of {limit} bytes", file=name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", file=name
        ) from None


def load_yaml_file(path: Path | str, *, what: str = "file") -> Any:
    """A YAML file read with :func:`read_bounded_text` and :func:`load_yaml_text`.

    Raises:
        ConfigError: naming the file (and the line for a YAML problem).
    """
    path = Path(path)
    return load_yaml_text(read_bounded_text(path, what=what), source=str(path))
