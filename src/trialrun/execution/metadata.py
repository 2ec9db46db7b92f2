"""Provenance of a run: package versions, git commit, host."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

_PACKAGES = (
    "trialrun",
    "gymnasium",
    "mujoco",
    "metaworld",
    "numpy",
    "scipy",
    "torch",
    "stable-baselines3",
    "ray",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages that can change an evaluation's results."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(directory: Path) -> str | None:
    """``HEAD`` of the git checkout holding ``directory`` (``+dirty`` when it
    has uncommitted changes), or None outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if status.stdout.strip() else "")


def host_info() -> dict[str, str]:
    return {"host": socket.gethostname(), "python": sys.version.split()[0], "platform": platform.platform()}
