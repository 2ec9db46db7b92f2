"""Which episodes are recorded and which of their videos are kept.

:class:`VideoSelection` runs where the rollout loop runs and knows the
outcomes: it tells each sub-env whether to record an episode (the settings it
returns travel to the sub-env's :class:`~trialrun.recording.capture.EpisodeRecorder`)
and, for ``select: failures | successes``, keeps at most ``episodes`` videos
per job (claims are files, so the quota holds across worker processes).

For ``failures | successes`` the episodes are not filmed while they run: the
rollout keeps their actions, and an episode that turns out to be wanted is
re-simulated from them with its cameras on (a :class:`Replayer`, see
:mod:`trialrun.execution.rerender`), so only the kept videos are rendered.
If a re-simulation does not reproduce its episode, the selection films the
rest of the job live: every episode while places are free, deleting the
unwanted videos as soon as their outcome is known.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trialrun.errors import RunWriteError
from trialrun.runfiles import RunLayout
from trialrun.runfiles.names import episode_file_episode

if TYPE_CHECKING:
    from trialrun.config import TrajectoryConfig, VideoConfig
    from trialrun.plan import Slot

logger = logging.getLogger(__name__)


class Replayed(Protocol):
    """A re-simulated episode (:class:`trialrun.execution.rerender.Rerendered` is one)."""

    @property
    def files(self) -> dict[str, str]: ...

    @property
    def differences(self) -> list[str]: ...

    @property
    def outcome(self) -> dict[str, Any]: ...


class Replayer(Protocol):
    """Re-simulates ``slot`` with its recorded ``actions`` and films it with
    ``settings`` (:class:`trialrun.execution.rerender.Rerender` is one)."""

    def __call__(
        self, slot: Slot, actions: Sequence[Any], recorded: dict[str, Any], settings: dict[str, Any] | None
    ) -> Replayed: ...


class EpisodeSelection:
    """Decides which episodes of a job are recorded and which files are kept
    (:class:`VideoSelection` for videos, :class:`TrajectorySelection` for
    trajectories; they differ only in what the recorder is told).

    ``directory`` is where the files go (``<run>/videos/<job>``); names in
    records are relative to ``root`` (the run directory) when the directory is
    inside it. ``select: first`` records slot ``k`` when ``k < episodes`` (a
    pure function of the slot, whatever ``num_envs``); ``all`` records every
    slot; ``failures``/``successes`` record every episode while fewer than
    ``episodes`` videos of that kind are kept, and delete a finished video
    that is of the other kind or over the quota. Quota places are claimed as
    files in ``<directory>/.claims``, so shards in other processes share them.

    Example:
        >>> import tempfile, pathlib
        >>> from trialrun.config import VideoConfig
        >>> from trialrun.plan import slot_for
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> sel = VideoSelection(VideoConfig(episodes=2), run / "videos" / "j", run)
        >>> [sel.settings(slot_for(0, "j", k)) is not None for k in range(3)]
        [True, True, False]
    """

    kind = "episode files"
    """What the files are, in messages."""

    def __init__(self, config: VideoConfig | TrajectoryConfig, directory: Path, root: Path) -> None:
        self.config = config
        self.directory = Path(directory).absolute()
        self.root = Path(root).absolute()
        try:
            relative = self.directory.relative_to(self.root).as_posix()
            self.prefix = f"{relative}/"
        except ValueError:
            self.prefix = f"{self.directory.as_posix()}/"
        self.claims = self.directory / ".claims"
        self.job = self.directory.name
        self.replayer: Replayer | None = None
        """Re-simulates wanted episodes of the env group running now (None: film live)."""
        self.live = False
        """Set once a re-simulation did not reproduce its episode: film the rest live."""

    @property
    def quota(self) -> bool:
        return self.config.select in ("failures", "successes")

    def prepare(self, episodes: Iterable[int]) -> None:
        """Remove what a killed run may have left for these (unrecorded)
        episodes: partial and complete files, and quota claims. Call it
        before running them, with the episodes the shard will run."""
        wanted = {int(k) for k in episodes}
        if not wanted or not self.directory.is_dir():
            return
        removed = 0
        for entry in os.scandir(self.directory):
            if episode_file_episode(entry.name) in wanted:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        if self.claims.is_dir():
            for entry in os.scandir(self.claims):
                if entry.name.startswith("."):
                    continue
                if _read_claim(Path(entry.path)) in wanted:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        if removed:
            logger.info(
                "%s: removed %d leftover video file(s) of episodes to re-run", self.directory, removed
            )

    def keeps_actions(self) -> bool:
        """Whether episodes starting now are filmed by re-simulation, afterwards."""
        return self.quota and self.replayer is not None and not self.live

    def settings(self, slot: Slot) -> dict[str, Any] | None:
        """What the sub-env needs to record ``slot`` live (None: do not record)."""
        cfg = self.config
        if cfg.select == "first" and slot.episode >= cfg.episodes:
            return None
        if self.quota and (self.keeps_actions() or self._claimed() >= cfg.episodes):
            return None
        return self.recording(slot)

    def recording(self, slot: Slot) -> dict[str, Any]:
        """The recorder's settings for ``slot``."""
        raise NotImplementedError

    def settle(
        self,
        slot: Slot,
        outcome: dict[str, Any],
        files: dict[str, str],
        actions: Sequence[Any] | None = None,
    ) -> dict[str, str]:
        """The videos the record names: ``files`` (filmed live), the videos of
        a re-simulation from ``actions``, or ``{}`` (deleting ``files``) when
        the episode's outcome is not wanted or the quota is full."""
        if not self.quota:
            return dict(files)
        success = bool(outcome.get("success"))
        wanted = success if self.config.select == "successes" else not success
        if files:
            if wanted and self._claim(slot.episode):
                return dict(files)
            self._delete(files)
            return {}
        if actions is None or not wanted or self.replayer is None or not self._claim(slot.episode):
            return {}
        replayed = self.replayer(slot, actions, outcome, self.recording(slot))
        if not replayed.differences:
            return dict(replayed.files)
        self._delete(replayed.files)
        self._release(slot.episode)
        if not self.live:
            self.live = True
            differ = ", ".join(
                f"{key} {outcome.get(key)!r} recorded, {replayed.outcome[key]!r} replayed"
                if key in replayed.outcome
                else f"{key} {outcome.get(key)!r} recorded, longer replayed"
                for key in replayed.differences[:3]
            )
            logger.warning(
                "job '%s': episode %d, re-simulated from its actions to record it, did not reproduce "
                "its record (%s): the env does not follow its seed exactly, so the rest of the job's "
                "%s %s are recorded live (every episode is recorded until %d are kept); "
                "episode %d keeps none",
                self.job,
                slot.episode,
                differ,
                self.config.select,
                self.kind,
                self.config.episodes,
                slot.episode,
            )
        return {}

    def _delete(self, files: dict[str, str]) -> None:
        for name in files.values():
            (self.root / name).unlink(missing_ok=True)

    def _release(self, episode: int) -> None:
        """Give back ``episode``'s quota place (its video was not kept)."""
        if not self.claims.is_dir():
            return
        for place in range(self.config.episodes):
            target = self.claims / str(place)
            if _read_claim(target) == episode:
                target.unlink(missing_ok=True)

    def _claimed(self) -> int:
        if not self.claims.is_dir():
            return 0
        places = {str(i) for i in range(self.config.episodes)}
        return sum(1 for name in os.listdir(self.claims) if name in places)

    def _claim(self, episode: int) -> bool:
        """Take a free quota place for ``episode`` (atomic across processes)."""
        try:
            self.claims.mkdir(parents=True, exist_ok=True)
            tmp = self.claims / f".{os.getpid()}-{threading.get_ident()}-{episode}"
            tmp.write_text(str(episode), encoding="utf-8")
        except OSError as exc:
            raise RunWriteError(f"cannot write in {self.claims}: {exc}") from exc
        try:
            for place in range(self.config.episodes):
                target = self.claims / str(place)
                if _read_claim(target) == episode:
                    return True
                try:
                    os.link(tmp, target)
                    return True
                except FileExistsError:
                    continue
                except OSError:  # no hard links on this filesystem: exclusive create
                    try:
                        with open(target, "x", encoding="utf-8") as f:
                            f.write(str(episode))
                        return True
                    except FileExistsError:
                        continue
            return False
        finally:
            tmp.unlink(missing_ok=True)


class VideoSelection(EpisodeSelection):
    """Which episodes of a job are filmed and which videos are kept."""

    kind = "videos"
    config: VideoConfig

    @classmethod
    def for_job(cls, config: VideoConfig, job: str, run_dir: Path) -> VideoSelection:
        """The selection writing to ``<run_dir>/videos/<job>``."""
        return cls(config, RunLayout(run_dir).video_dir(job), run_dir)

    def recording(self, slot: Slot) -> dict[str, Any]:
        """The video recorder's settings for ``slot`` (where, which cameras, how)."""
        cfg = self.config
        return {
            "dir": str(self.directory),
            "prefix": self.prefix,
            "episode": slot.episode,
            "cameras": list(cfg.cameras),
            "size": None if cfg.size is None else [int(cfg.size[0]), int(cfg.size[1])],
            "fps": float(cfg.fps),
        }


class TrajectorySelection(EpisodeSelection):
    """Which episodes of a job keep a trajectory (``trajectories:``).

    Example:
        >>> import tempfile, pathlib
        >>> from trialrun.config import TrajectoryConfig
        >>> from trialrun.plan import slot_for
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> sel = TrajectorySelection.for_job(TrajectoryConfig(episodes=1), "j", run, env_id="CartPole-v1")
        >>> sel.settings(slot_for(0, "j", 0))["prefix"], sel.settings(slot_for(0, "j", 1))
        ('trajectories/j/', None)
    """

    kind = "trajectories"
    config: TrajectoryConfig

    def __init__(self, config: TrajectoryConfig, directory: Path, root: Path, env_id: str = "") -> None:
        super().__init__(config, directory, root)
        self.env_id = env_id

    @classmethod
    def for_job(
        cls, config: TrajectoryConfig, job: str, run_dir: Path, env_id: str = ""
    ) -> TrajectorySelection:
        """The selection writing to ``<run_dir>/trajectories/<job>``."""
        return cls(config, RunLayout(run_dir).trajectory_dir(job), run_dir, env_id)

    def recording(self, slot: Slot) -> dict[str, Any]:
        """The trajectory recorder's settings for ``slot``."""
        cfg = self.config
        return {
            "dir": str(self.directory),
            "prefix": self.prefix,
            "episode": slot.episode,
            "seed": slot.seed,
            "job": self.job,
            "env_id": self.env_id,
            "factors": dict(slot.factors),
            "info_keys": list(cfg.info_keys),
            "cameras": list(cfg.cameras),
            "size": [int(cfg.size[0]), int(cfg.size[1])],
        }


def _read_claim(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
