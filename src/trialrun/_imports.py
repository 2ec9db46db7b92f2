"""Loading user code named as ``package.module:attribute``."""

from __future__ import annotations

import importlib
from typing import Any

from trialrun.errors import ConfigError


def load_object(spec: str, *, field: str) -> Any:
    """Import ``package.module:attr.path`` and return the object.

    Raises:
        ConfigError: naming ``field`` when the module or attribute is missing.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"'{spec}' is not of the form 'package.module:name'", field=field)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module '{module_name}': {exc}", field=field) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module '{module_name}' has no attribute '{attr_path}'", field=field) from None
    return obj
