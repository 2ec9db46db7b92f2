"""Provenance of a run: package versions, git commit, host."""

from __future__ import annotations

import functools
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trialrun.config import RunConfig

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


_SIMULATORS = {"mujoco": "mujoco", "pybullet": "pybullet", "dm_control": "dm-control"}
"""Simulator modules -> distributions, recorded when the run imported them."""

_NOT_ENV_PACKAGES = frozenset({"gymnasium", "trialrun", "functools", "builtins"})


def package_versions(config: RunConfig | None = None) -> dict[str, str]:
    """Versions of the packages that can change an evaluation's results: the
    fixed list above, the simulators the run imported (MuJoCo, PyBullet,
    dm_control), the packages owning the envs' entry points and, with
    ``config``, the packages of ``module:attr`` policies.

    Without ``config`` the env packages are those whose envs are registered
    and imported in this process (preflight imported each job's)."""
    versions = {"python": platform.python_version()}
    names = list(_PACKAGES)
    names += [dist for module, dist in _SIMULATORS.items() if module in sys.modules]
    names += config_packages(config) if config is not None else imported_env_packages()
    for name in dict.fromkeys(names):
        version = _version(name)
        if version is not None:
            versions[name] = version
    return versions


@functools.cache
def _version(name: str) -> str | None:
    """A distribution's version, looked up once per process: each lookup scans
    ``sys.path`` (~1 ms), and a run asks for ~15 of them per manifest."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def entry_point_module(entry: object) -> str | None:
    """The module of an env spec's entry point (``module:attr`` text, a class,
    a function or a ``functools.partial`` of one)."""
    while isinstance(entry, functools.partial):
        entry = entry.func
    if isinstance(entry, str):
        return entry.split(":", 1)[0] or None
    module = getattr(entry, "__module__", None)
    return module if isinstance(module, str) else None


def distributions_of(modules: list[str]) -> list[str]:
    """The installed distributions providing the top-level packages of ``modules``."""
    found: list[str] = []
    for module in modules:
        top = module.split(".")[0]
        if top not in _NOT_ENV_PACKAGES:
            # Normalized (PEP 503) so a distribution is listed once, as in _PACKAGES.
            found += [re.sub(r"[-_.]+", "-", name).lower() for name in _owners(top)]
    return list(dict.fromkeys(found))


def _owners(top: str) -> list[str]:
    """The distributions of top-level package ``top``.

    Why not always ``packages_distributions()``: it reads every installed
    distribution's file list (0.8 s with this project's dev extras), and a run
    records its versions before anything runs. Most packages are named like
    their distribution (``highway_env`` is ``highway-env``), so that name is
    tried first; a module outside any environment's site-packages (a user's
    local module) has no distribution.
    """
    try:
        return [metadata.distribution(top).metadata["Name"]]
    except metadata.PackageNotFoundError:
        pass
    loaded = sys.modules.get(top)
    location = str(getattr(loaded, "__file__", None) or "")
    if loaded is not None and "-packages" not in location:
        return []
    return _all_owners().get(top, [])


@functools.lru_cache(maxsize=1)
def _all_owners() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def imported_env_packages() -> list[str]:
    """Distributions of the imported modules that registered Gymnasium envs."""
    import gymnasium as gym

    modules = set()
    for spec in gym.registry.values():
        module = entry_point_module(spec.entry_point or spec.vector_entry_point)
        if module is not None and module.split(".")[0] in sys.modules:
            modules.add(module)
    return distributions_of(sorted(modules))


def config_packages(config: RunConfig) -> list[str]:
    """Distributions of each job's env (its entry point's module, and
    ``module`` of ``module:Id``) and of each ``module:attr`` policy."""
    import gymnasium as gym

    modules: list[str] = list(config.imports)
    for job in config.jobs:
        prefix, _, name = job.env.id.rpartition(":")
        if prefix:
            modules.append(prefix)
        spec = gym.registry.get(name)
        module = entry_point_module(spec.entry_point or spec.vector_entry_point) if spec else None
        if module is not None:
            modules.append(module)
        if ":" in job.policy.type:
            modules.append(job.policy.type.split(":", 1)[0])
    return distributions_of(modules)


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
