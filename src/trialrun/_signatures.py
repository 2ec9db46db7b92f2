"""What a callable takes by name, read from its signature: the one rule behind
"unknown setting" and "missing setting" messages for user code named in a run
file (policy factories, env constructors).

Example:
    >>> def make(context, path, *, gain=1.0): ...
    >>> taken = keywords_of(make, skip_first=True)
    >>> taken.names, taken.required, taken.defaults, taken.takes_any
    (('path', 'gain'), ('path',), {'gain': 1.0}, False)
    >>> taken.unknown({"path": "p.npz", "gian": 2})
    ['gian']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trialrun.errors import ConfigError, did_you_mean

_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Keywords:
    """The parameters a callable takes by name."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    """Names with no default."""
    defaults: dict[str, Any]
    takes_any: bool
    """It takes ``**kwargs``: any name is accepted."""

    def unknown(self, given: Iterable[str]) -> list[str]:
        """The ``given`` names it does not take, sorted (none if it takes ``**kwargs``)."""
        return [] if self.takes_any else sorted(set(given) - set(self.names))

    def check(self, given: Iterable[str], what: str, field_of: Callable[[str], str]) -> None:
        """Refuse a setting in ``given`` that is not taken (naming those that
        are, and the closest) or a required one that is missing; ``what``
        names the callable in the message, ``field_of(name)`` the setting's field.

        Raises:
            ConfigError: the first such setting.
        """
        given = set(given)
        unknown = self.unknown(given)
        if unknown:
            names = sorted(self.names)
            raise ConfigError(
                f"{what} has no setting '{unknown[0]}'; its settings: {', '.join(names) or 'none'}"
                f"{did_you_mean(unknown[0], names)}",
                field=field_of(unknown[0]),
            )
        missing = [name for name in self.required if name not in given]
        if missing:
            raise ConfigError(f"{what} needs '{missing[0]}'", field=field_of(missing[0]))


def keywords_of(fn: Callable[..., Any], *, skip_first: bool = False) -> Keywords | None:
    """What ``fn`` takes by name (a class: its constructor), without its first
    parameter when ``skip_first`` (one passed by position, as a policy's
    context); None when the signature cannot be read (a C function)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = [p for p in (params[1:] if skip_first else params) if p.kind in _BY_NAME]
    return Keywords(
        names=tuple(p.name for p in named),
        required=tuple(p.name for p in named if p.default is inspect.Parameter.empty),
        defaults={p.name: p.default for p in named if p.default is not inspect.Parameter.empty},
        takes_any=takes_any,
    )
