"""Exceptions a user can cause. The CLI prints their message (no traceback) and
exits with code 2; library callers can catch :class:`TrialrunError`."""

from __future__ import annotations

from pydantic import ValidationError


class TrialrunError(Exception):
    """Base class for errors caused by user input (config, CLI arguments, files)."""


class ConfigError(TrialrunError):
    """A config file or override is invalid.

    The message names the file, the field (dotted path) and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file = file
        self.field = field
        where = ""
        if file:
            where += f"{file}: "
        if field:
            where += f"field '{field}': "
        super().__init__(f"{where}{message}")


class InputError(TrialrunError):
    """A command-line argument or input file is invalid."""


def first_error(exc: ValidationError, default_field: str = "") -> tuple[str, str]:
    """``(dotted field, message)`` of the first error of a pydantic ValidationError,
    for one-line messages that name the field."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]) or default_field, str(err["msg"])
