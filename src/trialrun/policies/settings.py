"""The checks of policy settings a user writes in a run file, in one place.

Each check takes the value as written and the setting's name, and returns the
value in the type the policy uses or raises a :class:`~trialrun.errors.ConfigError`
naming ``policy.<name>`` (see :func:`~trialrun.config.policy_field`) and what is
allowed. The server policies (``remote``, ``openpi``, ``gr00t``) run them twice:
in preflight, on the settings alone (no connection, no wire library imported),
so a typo fails the run in a second with exit code 2; and when a job builds the
client, for code that builds one directly.

Example:
    >>> seconds(2, "timeout")
    2.0
    >>> ws_url("ws://gpu-box:8000")
    'ws://gpu-box:8000'
    >>> ws_url("http://gpu-box:8000")
    Traceback (most recent call last):
    ...
    trialrun.errors.ConfigError: field 'policy.url': url must be ws://HOST:PORT or wss://HOST:PORT, got 'http://gpu-box:8000'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from trialrun.config import policy_field
from trialrun.errors import ConfigError


def seconds(value: Any, name: str) -> float:
    """A finite number of seconds > 0 (a bool is not a number here)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}", field=policy_field(name))
    return float(value)


def integer_in(value: Any, name: str, low: int, high: int) -> int:
    """An integer in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be an integer in {low}..{high}, got {value!r}", field=policy_field(name)
        )
    return value


def text_line(value: Any, name: str) -> str:
    """Non-blank text on one line (a key or token sent in a header)."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be a non-empty line of text", field=policy_field(name))
    return value


def host_name(value: Any, name: str = "host") -> str:
    """A host name or address (no spaces)."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(f"{name} must be a host name or address, got {value!r}", field=policy_field(name))
    return value


def ws_url(value: Any, name: str = "url") -> str:
    """A websocket URL with a host: ``ws://HOST:PORT`` or ``wss://HOST:PORT``
    (a path is allowed; a port out of 1..65535 is not)."""
    shape = f"{name} must be ws://HOST:PORT or wss://HOST:PORT, got {value!r}"
    if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
        raise ConfigError(shape, field=policy_field(name))
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ConfigError(f"{shape} ({exc})", field=policy_field(name)) from None
    if not parts.hostname or any(c.isspace() for c in value):
        raise ConfigError(shape, field=policy_field(name))
    if port == 0:
        raise ConfigError(f"{shape} (port 0 is not a server's port)", field=policy_field(name))
    return value


def one_of(value: Any, name: str, allowed: Sequence[str]) -> str:
    """One of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{name} must be one of {', '.join(allowed)}, got {value!r}", field=policy_field(name)
        )
    return str(value)


def names(value: Any, name: str) -> list[str]:
    """A non-empty list of non-empty names."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(k, str) and k for k in value)
    ):
        raise ConfigError(
            f"{name} must be a non-empty list of names, got {value!r}", field=policy_field(name)
        )
    return list(value)
