"""The ``info`` keys a sub-env's :class:`~trialrun.envs.slot_wrapper.SlotWrapper`
writes, and the one way to read them back from a vector env.

Each value is JSON text, so a vector env batches it like any other info
value: ``infos[key]`` holds one entry per sub-env and ``infos["_" + key]``
says which sub-envs reported it.

Example:
    >>> import numpy as np
    >>> infos = {APPLIED_KEY: np.array(['{"mass": 2.0}', None], dtype=object),
    ...          f"_{APPLIED_KEY}": np.array([True, False])}
    >>> sub_env_json(infos, APPLIED_KEY, 0), sub_env_json(infos, APPLIED_KEY, 1)
    ({'mass': 2.0}, {})
    >>> sub_env_json(infos, VIDEO_KEY, 0)
    {}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

APPLIED_KEY = "trialrun_applied"
"""Reset info key: the factor values the pre-reset hooks applied (JSON ``{name: value}``)."""

VIDEO_KEY = "trialrun_video"
"""Terminal-step info key: the finished video files (JSON ``{camera: name}``)."""

TRAJECTORY_KEY = "trialrun_trajectory"
"""Terminal-step info key: the finished trajectory file (JSON ``{"trajectory": name}``)."""


def sub_env_json(infos: Mapping[str, Any], key: str, index: int) -> dict[str, Any]:
    """The JSON object sub-env ``index`` reported under ``key`` in a vector
    env's batched ``infos`` (``{}`` when it reported none)."""
    texts = infos.get(key)
    if texts is None:
        return {}
    present = infos.get(f"_{key}")
    if present is not None and not present[index]:
        return {}
    text = texts[index]
    if not isinstance(text, str) or not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"info[{key!r}] of sub-env {index} is not a JSON object: {text[:80]!r}")
    return value
