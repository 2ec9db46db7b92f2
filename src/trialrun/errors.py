"""Every exception trialrun raises on purpose, in one place.

Two families sit under :class:`TrialrunError`:

- :class:`InputError` and its subclasses: the user gave something that cannot
  work (a config field, a CLI argument, a file). The CLI prints the message,
  no traceback, and exits with code 2.
- The others describe a failure while running: a run file that could not be
  written (:class:`RunWriteError`, exit 1, resumable), a worker that failed or
  died (:class:`ShardFailed`, :class:`WorkersExhausted`), the video encoder
  (:class:`EncoderError`), a remote policy server (:class:`RemotePolicyError`),
  user code caught misbehaving at the boundary (:class:`UserCodeError`: bad
  actions, a timeout, a ``sys.exit`` in a policy).
  Inside a run these fail one job; the others still run.

:class:`ConfigError` carries its parts (``file``, ``field``, ``message``) so
code that nests one config inside another (a suites file holds run-file jobs)
re-locates an error with :meth:`ConfigError.located` instead of parsing text.

Example:
    >>> err = ConfigError("must be >= 1", file="run.yaml", field="jobs.0.episodes")
    >>> str(err)
    "run.yaml: field 'jobs.0.episodes': must be >= 1"
    >>> str(err.located(prefix="evaluators.nominal", file="suites.yaml"))
    "suites.yaml: field 'evaluators.nominal.jobs.0.episodes': must be >= 1"
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable

from pydantic import ValidationError


class TrialrunError(Exception):
    """Base class of every error trialrun raises on purpose."""


# --------------------------------------------------------------------------- bad input (exit 2)


class InputError(TrialrunError):
    """A command-line argument, input file or setting is invalid (exit code 2)."""


class ConfigError(InputError):
    """A config file or override is invalid.

    The message names the file, the field (dotted path) and what is allowed;
    the three parts stay available as attributes.
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.field = field
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if self.field:
            where += f"field '{self.field}': "
        return f"{where}{self.message}"

    def located(self, *, prefix: str | None = None, file: str | None = None) -> ConfigError:
        """The same error with its field moved under ``prefix`` and its file set
        (the original file is kept when ``file`` is None)."""
        field = self.field
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        clone = copy.copy(self)
        clone.field, clone.file = field, file or self.file
        clone.args = (clone._text(),)
        return clone


class VariationError(ConfigError):
    """A variation cannot be applied to this env (unknown target, bad value)."""


class VideoError(InputError):
    """A job's video settings do not fit its environment (unknown camera,
    no MuJoCo model, no ``rgb_array`` rendering)."""


class RunFileError(InputError):
    """A run file is missing, unreadable or not in the expected format."""


class RunDirBusy(InputError):
    """Another process holds the run directory's lock."""


class ComparisonRefused(InputError):
    """The two runs cannot be compared pair by pair (the message says why)."""


class PortInUseError(InputError):
    """The port asked for is taken by another process."""


class EvaluatorError(InputError):
    """An evaluator could not run (no policy given, the child process failed...)."""


# --------------------------------------------------------------------------- failures while running


class RunWriteError(TrialrunError):
    """Writing a run file failed (disk full, permissions...). Nothing about the
    episodes' outcomes is implied: the rollout itself did not fail."""


class EncoderError(TrialrunError):
    """The video encoder process failed or went away."""


class RemotePolicyError(TrialrunError):
    """The remote policy server failed, timed out or could not be reached.

    ``remote_traceback`` is the server's own traceback when it sent one (the
    runner stores it in the manifest instead of the client-side traceback).
    """

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = remote_traceback


class UserCodeError(TrialrunError):
    """Code the user supplied (a policy, an env, a factory) misbehaved in a way
    trialrun detects at the boundary: the job fails, the run goes on."""


class ActionError(UserCodeError):
    """A policy returned actions that do not fit the env's action space
    (shape, dtype, range, NaN/inf)."""


class CallTimeout(UserCodeError):
    """A call into user code ran past its limit (``act_timeout``, ``episode_timeout``)."""


class UserCodeExit(UserCodeError):
    """User code raised ``SystemExit`` or ``KeyboardInterrupt`` (not a real
    Ctrl+C): it ends its job, not the whole run."""


class ShardFailed(TrialrunError):
    """A shard raised in its worker (an env or policy error): the job fails.

    Carries the worker's traceback so the manifest shows where it happened.
    """

    def __init__(self, message: str, remote_traceback: str) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = remote_traceback


class WorkersExhausted(TrialrunError):
    """A shard's workers died more often than ``max_retries`` allows."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.remote_traceback: str | None = None


def first_error(exc: ValidationError, default_field: str = "") -> tuple[str, str]:
    """``(dotted field, message)`` of the first error of a pydantic ValidationError,
    for one-line messages that name the field."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]) or default_field, str(err["msg"])


def did_you_mean(name: str, choices: Iterable[str], *, quote: bool = True) -> str:
    """``"; did you mean 'x', 'y'?"`` naming the choices closest to ``name``
    (difflib's ratio >= 0.6, at most three), or ``""`` when none is close.

    Why: a typo's message should name the fix, not only list every choice.

    Example:
        >>> did_you_mean("epsiodes", ["episodes", "env", "seed"])
        "; did you mean 'episodes'?"
        >>> did_you_mean("zzz", ["episodes"])
        ''
    """
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean {', '.join(repr(c) if quote else c for c in close)}?"
