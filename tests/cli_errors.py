"""Running ``trialrun run`` on a bad run file in a child process and reading
its error lines (shared by the tests of nested factors and PyBullet variations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from helpers import subprocess_env


def run_error_lines(tmp_path: Path, doc: dict[str, Any]) -> tuple[int, list[str]]:
    """``(exit code, stderr lines)`` of ``trialrun run`` on ``doc``; a traceback
    fails the caller's test. pybullet's own "pybullet build time" line, printed
    to stderr when it is imported, is left out."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "run", str(path), "-o", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line and not line.startswith("pybullet build time")]
    return proc.returncode, lines


def refused_lines(tmp_path: Path, doc: dict[str, Any]) -> list[str]:
    """The error lines of a run file ``trialrun run`` refuses before running
    anything: exit code 2 and no run directory are asserted here."""
    code, lines = run_error_lines(tmp_path, doc)
    assert code == 2, lines
    assert not (tmp_path / "runs").exists()
    return lines
