"""Gathering a finished job's trajectories into the dataset its ``format`` names.

``format: hdf5`` needs nothing more: the per-episode files are the dataset.
``format: lerobot`` turns the kept HDF5 files (``trajectories/<job>/ep<k>.h5``,
the complete ones: a killed episode leaves only a hidden ``.part``) into a
LeRobot dataset in ``trajectories/<job>/lerobot/`` when the job completes
(:func:`trialrun.recording.lerobot.write_lerobot_dataset`).
"""

from __future__ import annotations

from pathlib import Path

from trialrun.config import JobConfig
from trialrun.recording.lerobot import LerobotDataset, LerobotEpisode, write_lerobot_dataset
from trialrun.runfiles import RunLayout
from trialrun.runfiles.names import episode_file_episode
from trialrun.variations.factors import FactorSet

LEROBOT_DIR = "lerobot"


def lerobot_dir(job: JobConfig, run_dir: Path) -> Path:
    """``trajectories/<job>/lerobot``: where a job's LeRobot dataset goes."""
    return RunLayout(run_dir).trajectory_dir(job.name) / LEROBOT_DIR


def export_trajectories(
    job: JobConfig, run_dir: Path, run_seed: int, *, again: bool = True
) -> LerobotDataset | None:
    """Write the job's LeRobot dataset when its trajectories ask for one
    (``again: False``: only when it is not there yet). Each episode's task is
    its instruction: the ``language`` factor's value, the job's
    ``instruction``, or else the env id."""
    settings = job.trajectories
    if settings is None or settings.format != "lerobot":
        return None
    out = lerobot_dir(job, run_dir)
    if not again and out.is_dir():
        return None
    directory = RunLayout(run_dir).trajectory_dir(job.name)
    kept = sorted(
        (episode, path)
        for path in (directory.iterdir() if directory.is_dir() else [])
        if path.suffix == ".h5"
        and (episode := episode_file_episode(path.name)) is not None
        and not path.name.startswith(".")
    )
    factor_set = FactorSet(job)
    language = factor_set.instruction_name
    slots = factor_set.slots(run_seed) if language else []
    episodes = []
    for episode, path in kept:
        task = str(slots[episode].factors[language]) if language else (job.instruction or job.env.id)
        episodes.append(LerobotEpisode(episode=episode, path=path, task=task))
    return write_lerobot_dataset(episodes, out, fps=settings.fps)
