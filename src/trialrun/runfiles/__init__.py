"""The run directory: file names, atomic writes and a typed reader for every file.

One package owns the layout of DESIGN section 3: :mod:`~trialrun.runfiles.names`
spells every path, :mod:`~trialrun.runfiles.schema` holds the pydantic model of
every file (records with a typed :class:`~trialrun.runfiles.schema.Outcome`, the
manifest, the summary, the sensitivity analysis and the paired comparison),
:mod:`~trialrun.runfiles.atomic` replaces JSON files atomically,
:mod:`~trialrun.runfiles.episodes` appends and reads ``episodes.jsonl`` and
:mod:`~trialrun.runfiles.readers` reads the JSON files. The report, the
analysis, ``compare``, ``replay`` and ``--resume`` read run files only through
this package.

Example:
    >>> import tempfile, pathlib
    >>> run = RunLayout(pathlib.Path(tempfile.mkdtemp()))
    >>> read_manifest(run.root)
    Traceback (most recent call last):
    ...
    trialrun.errors.RunFileError: .../manifest.json: no such file
"""

from trialrun.errors import RunDirBusy, RunFileError, RunWriteError
from trialrun.runfiles.atomic import write_json_atomic, write_text_atomic
from trialrun.runfiles.episodes import EpisodeLogWriter, iter_episode_lines, read_episodes, repair_torn_tail
from trialrun.runfiles.lock import RunDirLock
from trialrun.runfiles.names import (
    ANALYSIS_DIR,
    COMPARE_DIR,
    COMPARE_HTML,
    COMPARISON_FILE,
    EPISODES_FILE,
    INTERACTION_FIGURE,
    LOCK_FILE,
    MANIFEST_FILE,
    POSTERIOR_FIGURE,
    REPLAY_DIR,
    REPORT_DIR,
    REPORT_INDEX,
    SENSITIVITY_FIGURE,
    SENSITIVITY_FILE,
    SUMMARY_FILE,
    VIDEO_DIR,
    RunLayout,
    video_file_name,
)
from trialrun.runfiles.readers import read_manifest, read_model, read_summary

__all__ = [
    "ANALYSIS_DIR",
    "COMPARE_DIR",
    "COMPARE_HTML",
    "COMPARISON_FILE",
    "EPISODES_FILE",
    "INTERACTION_FIGURE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "POSTERIOR_FIGURE",
    "REPLAY_DIR",
    "REPORT_DIR",
    "REPORT_INDEX",
    "SENSITIVITY_FIGURE",
    "SENSITIVITY_FILE",
    "SUMMARY_FILE",
    "VIDEO_DIR",
    "EpisodeLogWriter",
    "RunDirBusy",
    "RunDirLock",
    "RunFileError",
    "RunLayout",
    "RunWriteError",
    "iter_episode_lines",
    "read_episodes",
    "read_manifest",
    "read_model",
    "read_summary",
    "repair_torn_tail",
    "video_file_name",
    "write_json_atomic",
    "write_text_atomic",
]
