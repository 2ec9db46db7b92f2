"""Shared test setup: headless rendering and the helpers module on the path."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# A shell that starts pytest in the background (`cmd &` without job control) ignores
# SIGINT, and an ignored signal stays ignored in every child it execs: the Ctrl+C tests
# would see no KeyboardInterrupt. A handled signal is reset to the default at exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


# --------------------------------------------------------------------------- markers
# Groups a developer may deselect locally (pytest -m "not slow"); CI runs all.
# Assigned here, from what a test uses, so a new test is grouped without
# remembering a decorator.

_MODULE_MARKERS = {
    "test_report_browser.py": ("browser", "slow"),
    "test_execution_ray.py": ("ray", "slow"),
    "test_execution_process.py": ("slow",),
    "test_integrations_sb3.py": ("slow",),
    "test_policies_sb3.py": ("slow",),
    "test_suites_manager.py": ("slow",),
    "test_suites_cli.py": ("slow",),
    "test_recording_encoder.py": ("slow",),
    "test_execution_signals.py": ("slow",),
    "test_policy_faults.py": ("slow",),
    "test_hostile_inputs.py": ("slow",),
    "test_gallery.py": ("slow",),
    "test_recording_trajectory.py": ("slow",),
    "test_recording_lerobot.py": ("slow",),
    "test_execution_rerender.py": ("slow",),
}
_METAWORLD_WORDS = ("metaworld", "Meta-World", "pick_place", "pick-place")


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    import inspect

    import pytest

    for item in items:
        path = getattr(item, "path", None)
        for name in _MODULE_MARKERS.get(getattr(path, "name", ""), ()):
            item.add_marker(getattr(pytest.mark, name))  # type: ignore[attr-defined]
        function = getattr(item, "function", None)
        if function is None:
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        if any(word in source for word in _METAWORLD_WORDS):
            item.add_marker(pytest.mark.metaworld)  # type: ignore[attr-defined]
