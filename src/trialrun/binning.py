"""Factor binning, shared by the report, the analysis and ``compare``.

One rule decides how a factor's episodes are grouped wherever trialrun shows
a rate against a factor, so the same factor shows the same bins in the
report, in ``trialrun analyze`` and in ``trialrun compare``.

Example:
    >>> level_key(1) == level_key(1.0), level_key(True) == level_key(1)
    (True, False)
"""

from __future__ import annotations

from typing import Any


def level_key(value: Any) -> str:
    """A key under which ``1``, ``1.0`` and the spec's ``1`` are one level while
    ``True`` and ``1`` (or ``"1"`` and ``1``) stay distinct."""
    if isinstance(value, bool):
        return f"b:{value}"
    if isinstance(value, int | float):
        f = float(value)
        return f"n:{int(f)}" if f.is_integer() else f"n:{f!r}"
    return f"s:{value}"
