"""Names a package exports but imports only on first use.

Why: ``import trialrun`` must stay fast (no simulators, torch or statistics
stack until a name is used), and ``python -m trialrun.recording.encoder``
(the video encoder process) imports ``trialrun.recording`` first, which must
stay light.

Example:
    >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, {})
    >>> getattr_("sqrt")(9.0), "sqrt" in dir_()
    (3.0, True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``exports`` (``{name: module}``).

    The first access imports the module and caches the name in ``namespace``
    (the package's ``globals()``), so later accesses are plain lookups.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
