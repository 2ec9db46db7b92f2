from __future__ import annotations

import logging
from typing import Any

import pytest

from trialrun.config import RunConfig, parse_run_config
from trialrun.execution.native_resume import LANES_BEFORE_RECORDED, pin_recorded_lanes
from trialrun.runfiles.schema import NativeRun


def _config(**env: Any) -> RunConfig:
    job = {"name": "pd", "env": {"id": "playground/CartpoleBalance", **env}, "policy": "zero", "episodes": 4}
    return parse_run_config({"name": "r", "seed": 0, "jobs": [{**job, "vectorization": "native"}]})


def _native(lanes: int | None) -> NativeRun:
    return NativeRun(mode="exact", num_envs=4, depends_on_num_envs=False, lanes=lanes)


def test_a_run_that_recorded_no_lanes_resumes_at_the_old_default(caplog: pytest.LogCaptureFixture) -> None:
    config = _config()
    with caplog.at_level(logging.WARNING, logger="trialrun.execution.native_resume"):
        pinned = pin_recorded_lanes(config, {"pd": _native(None)}, {"pd": _native(128)})
    assert pinned.jobs[0].env.kwargs == {"lanes": LANES_BEFORE_RECORDED} == {"lanes": 8}
    assert config.jobs[0].env.kwargs == {}  # the caller's config is not changed
    assert caplog.messages == [
        "job 'pd': resuming with lanes 8, the width its run started with (this version's default is 128), "
        "so that its records stay computed one way"
    ]


def test_a_recorded_width_other_than_todays_is_kept_and_other_kwargs_stay() -> None:
    config = _config(kwargs={"config_overrides": {"ctrl_dt": 0.02}})
    pinned = pin_recorded_lanes(config, {"pd": _native(32)}, {"pd": _native(128)})
    assert pinned.jobs[0].env.kwargs == {"config_overrides": {"ctrl_dt": 0.02}, "lanes": 32}


@pytest.mark.parametrize(
    ("kwargs", "recorded", "current"),
    [
        ({}, _native(128), _native(128)),  # the same width: nothing to pin
        ({"lanes": 16}, _native(None), _native(16)),  # the stored config sets it
        ({}, None, _native(128)),  # the job never started
        ({}, _native(None), _native(None)),  # a simulator without lanes
    ],
)
def test_nothing_is_pinned_when_the_width_is_already_fixed_or_meaningless(
    kwargs: dict[str, Any], recorded: NativeRun | None, current: NativeRun
) -> None:
    config = _config(kwargs=kwargs)
    assert pin_recorded_lanes(config, {"pd": recorded}, {"pd": current}) is config
