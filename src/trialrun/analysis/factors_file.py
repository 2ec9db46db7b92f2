"""The factors YAML of ``trialrun analyze --factors``: read, validate, and turn
pydantic's errors into messages that name the file, the field and what is allowed.

The file's schema is :class:`~trialrun.analysis.models.FactorsFile`; this module
only reads it (:func:`load_factors_yaml`) and words its errors (:func:`_describe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trialrun.analysis.models import FactorsFile
from trialrun.errors import InputError
from trialrun.runfiles.schema import FactorSpec
from trialrun.yaml_safe import load_yaml_file


def load_factors_yaml(path: Path | str) -> list[FactorSpec]:
    """Read and validate a factors YAML (see :class:`FactorsFile`).

    Raises:
        InputError: missing or unreadable file, bad YAML (a ConfigError), or a field that is not allowed,
            naming the file and the field.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.yaml"
        >>> _ = p.write_text("factors:\\n  m: {type: continuous, range: [0, 1]}\\n")
        >>> [s.name for s in load_factors_yaml(p)]
        ['m']
    """
    path = Path(path)
    data = load_yaml_file(path, what="factors file")  # bounded: size, nesting, aliases, no repeated keys
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a mapping with a 'factors' key, e.g. "
            "'factors: {light: {type: continuous, range: [0, 2000]}}'"
        )
    try:
        return FactorsFile.model_validate(data).to_specs()
    except ValidationError as exc:
        raise InputError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors()[:3])) from None


_ALLOWED_KEYS = {
    "continuous": "type, range, scale, nominal, units",
    "categorical": "type, choices, nominal, units",
}


def _describe(err: Any) -> str:
    """One pydantic error as "field 'a.b': what is wrong; what is allowed"."""
    loc = [str(p) for p in err["loc"]]
    tag = next((p for p in loc if p in _ALLOWED_KEYS), None)
    field = ".".join(p for p in loc if p not in _ALLOWED_KEYS) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = f"allowed keys for a {tag} factor: {_ALLOWED_KEYS[tag]}" if tag else "allowed: factors"
        return f"field '{field}': unknown key; {allowed}"
    if kind == "union_tag_not_found":
        return f"field '{field}': missing 'type'; allowed: continuous, categorical"
    if kind == "union_tag_invalid":
        return (
            f"field '{field}.type': {err['input'].get('type')!r} is not allowed; "
            "allowed: continuous, categorical"
        )
    if kind == "missing":
        return f"field '{field}': required" + (f" for a {tag} factor" if tag else "")
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"field '{field}': {msg}"
