"""The ``trialrun`` command line.

One module per command group registers its commands on the shared typer
:data:`app` when imported: :mod:`~trialrun.cli.run`, :mod:`~trialrun.cli.replay`,
:mod:`~trialrun.cli.analyze`, :mod:`~trialrun.cli.report`,
:mod:`~trialrun.cli.serve` (``serve-policy``), :mod:`~trialrun.cli.compare`,
:mod:`~trialrun.cli.planning` (``plan-episodes``), :mod:`~trialrun.cli.suite`
and :mod:`~trialrun.cli.listing` (``list envs|policies|variations``). What they
share (consoles, the error guard, exit codes, the progress bar) is in
:mod:`trialrun.cli._console`.

Errors a user can cause (config, arguments, files) print one message naming
the file and field and exit with code 2, without a traceback. A run exits 0
when every job completed and 1 when any job failed or a run file could not be
written.
"""

from __future__ import annotations

from trialrun.cli._console import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, app, list_app

# Importing a command module registers its commands; this order is the order of `trialrun --help`.
# isort: off
from trialrun.cli import run, replay, analyze, report, serve, compare, planning, suite, listing  # noqa: F401
from trialrun.cli import importing  # noqa: F401

# isort: on
from trialrun.cli.run import summary_table

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "app", "list_app", "main", "summary_table"]


def main() -> None:
    """Console-script entry point."""
    app()
