"""Records made elsewhere -> a trialrun run directory (``trialrun import``).

One module per source format turns a file into
:class:`~trialrun.runfiles.schema.EpisodeRecord` s:
:mod:`~trialrun.importers.arena` (Isaac Lab Arena's JSONL, both row shapes),
:mod:`~trialrun.importers.table` (a CSV table such as PufferDrive's
``episode_metrics.csv``) and :mod:`~trialrun.importers.jsonl` (trialrun-shaped
records without run name or timestamps); :mod:`~trialrun.importers.common`
infers or reads the factor specs and writes the run directory that
``report``, ``analyze`` and ``compare`` read. See docs/importing.md.

Importers read and write run files only: they import ``runfiles``, ``stats``
and ``analysis`` (the factors YAML), never the rollout side.
"""

from trialrun.importers.arena import read_arena
from trialrun.importers.common import (
    RowError,
    choose_run_dir,
    default_run_name,
    infer_specs,
    job_specs,
    write_imported_run,
)
from trialrun.importers.jsonl import read_jsonl
from trialrun.importers.table import read_table

__all__ = [
    "RowError",
    "choose_run_dir",
    "default_run_name",
    "infer_specs",
    "job_specs",
    "read_arena",
    "read_jsonl",
    "read_table",
    "write_imported_run",
]
