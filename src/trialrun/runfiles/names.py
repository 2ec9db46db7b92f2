"""The names of everything in a run directory (format version 1).

Nothing else in trialrun spells a run file's name: writers and readers ask
:class:`RunLayout` (or use these constants), so the layout in DESIGN section 3
is written down exactly once.

Example:
    >>> layout = RunLayout("runs/demo")
    >>> layout.episodes.as_posix(), layout.video_file("pick", 17, "corner").as_posix()
    ('runs/demo/episodes.jsonl', 'runs/demo/videos/pick/ep17-corner.mp4')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_FILE = "manifest.json"
EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".trialrun.lock"
VIDEO_DIR = "videos"
TRAJECTORY_DIR = "trajectories"
REPLAY_DIR = "replays"
REPORT_DIR = "report"
REPORT_INDEX = "index.html"
ANALYSIS_DIR = "analysis"
SENSITIVITY_FILE = "sensitivity.json"
SENSITIVITY_FIGURE = "sensitivity.png"
INTERACTION_FIGURE = "interaction.png"
POSTERIOR_FIGURE = "posterior.png"
COMPARE_DIR = "compare"
COMPARISON_FILE = "comparison.json"
COMPARE_HTML = "compare.html"


def video_file_name(episode: int, camera: str) -> str:
    """``ep<k>-<camera>.mp4``, the file name of one episode's video."""
    return f"ep{episode}-{camera}.mp4"


def trajectory_file_name(episode: int) -> str:
    """``ep<k>.h5``, the file name of one episode's trajectory."""
    return f"ep{episode}.h5"


def partial_file(path: Path) -> Path:
    """The hidden name a file is written under until it is complete
    (``.ep3-top.mp4.part`` for ``ep3-top.mp4``): a killed writer never leaves
    a half-written file under a final name."""
    return path.with_name(f".{path.name}.part")


_EPISODE_FILE = re.compile(r"^\.?ep(\d+)(-.+\.mp4|\.h5)(\.part)?$")


def episode_file_episode(name: str) -> int | None:
    """The episode a video or trajectory file (complete or partial) belongs to, or None.

    Example:
        >>> names = ("ep12-corner.mp4", ".ep3-top.mp4.part", "ep4.h5", ".ep5.h5.part", "x")
        >>> [episode_file_episode(n) for n in names]
        [12, 3, 4, 5, None]
    """
    match = _EPISODE_FILE.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def episodes(self) -> Path:
        return self.root / EPISODES_FILE

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def analysis_dir(self) -> Path:
        return self.root / ANALYSIS_DIR

    @property
    def compare_dir(self) -> Path:
        return self.root / COMPARE_DIR

    def video_dir(self, job: str) -> Path:
        """``videos/<job>``: where a job's episode videos go."""
        return self.root / VIDEO_DIR / job

    def trajectory_dir(self, job: str) -> Path:
        """``trajectories/<job>``: where a job's episode trajectories go."""
        return self.root / TRAJECTORY_DIR / job

    def replay_dir(self, job: str) -> Path:
        """``replays/<job>``: where ``trialrun replay --video`` writes."""
        return self.root / REPLAY_DIR / job

    def video_file(self, job: str, episode: int, camera: str) -> Path:
        return self.video_dir(job) / video_file_name(episode, camera)

    def comparison_dir(self, against: Path | str) -> Path:
        """``compare/vs-<other run's folder name>``: a paired comparison stored in this run."""
        return self.compare_dir / f"vs-{Path(against).resolve().name}"
