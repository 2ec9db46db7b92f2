"""A resumed native job keeps the ``lanes`` its run started with.

Why: MuJoCo Playground computes ``lanes`` worlds side by side in one compiled
step, and XLA's vectorized arithmetic rounds differently at another width, so
a slot's episode is identical for any ``num_envs`` only at one ``lanes``. The
default changed (8 up to 0.1.0, then 128, 256 since): a run started with one default and
resumed after an upgrade would mix records computed at two widths, with
nothing in them to tell which. The manifest records each native job's
``lanes`` (:class:`~trialrun.runfiles.schema.NativeRun`); a resume whose job
does not set ``lanes`` itself runs at the recorded one (at 8 for a run that
recorded none: those were started before the default changed), and says so.

Example:
    >>> from trialrun.config import parse_run_config
    >>> from trialrun.runfiles.schema import NativeRun
    >>> config = parse_run_config({"name": "r", "seed": 0, "jobs": [
    ...     {"name": "pd", "env": "playground/CartpoleBalance", "policy": "zero",
    ...      "episodes": 8, "vectorization": "native"}]})
    >>> recorded = {"pd": NativeRun(mode="exact", num_envs=8, depends_on_num_envs=False)}
    >>> current = {"pd": NativeRun(mode="exact", num_envs=8, depends_on_num_envs=False, lanes=128)}
    >>> pin_recorded_lanes(config, recorded, current).jobs[0].env.kwargs
    {'lanes': 8}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from trialrun.config import JobConfig, RunConfig
from trialrun.runfiles.schema import NativeRun

logger = logging.getLogger(__name__)

LANES_BEFORE_RECORDED = 8
"""Playground's default ``lanes`` in the versions that did not record it."""


def pin_recorded_lanes(
    config: RunConfig, recorded: Mapping[str, NativeRun | None], current: Mapping[str, NativeRun]
) -> RunConfig:
    """``config`` with ``env.kwargs.lanes`` set, for each native job whose
    recorded ``lanes`` (``recorded``: the stored manifest's, per job) differs
    from what this version would use (``current``: the preflight's); the
    same object when nothing changes.

    A job that sets ``lanes`` in its kwargs is left alone (the stored config
    already fixes it), and so is one whose simulator has no lanes.
    """
    jobs: list[JobConfig] = []
    for job in config.jobs:
        stored, now = recorded.get(job.name), current.get(job.name)
        if stored is None or now is None or now.lanes is None or "lanes" in job.env.kwargs:
            jobs.append(job)
            continue
        lanes = stored.lanes if stored.lanes is not None else LANES_BEFORE_RECORDED
        if lanes == now.lanes:
            jobs.append(job)
            continue
        logger.warning(
            "job '%s': resuming with lanes %d, the width its run started with (this version's default "
            "is %d), so that its records stay computed one way",
            job.name,
            lanes,
            now.lanes,
        )
        env = job.env.model_copy(update={"kwargs": {**job.env.kwargs, "lanes": lanes}})
        jobs.append(job.model_copy(update={"env": env}))
    if all(new is old for new, old in zip(jobs, config.jobs, strict=True)):
        return config
    return config.model_copy(update={"jobs": jobs})
