"""Which MuJoCo Playground envs can be loaded here, without a network.

Importing ``mujoco_playground`` imports its locomotion and manipulation
packages, which clone the MuJoCo Menagerie from GitHub (about 500 MB) into
the installed package the first time. The DeepMind Control Suite envs
(``CartpoleBalance``, ``CheetahRun``, ``WalkerWalk``, ...) ship their own
XML and need none of it. So when the Menagerie is not there, only the suite
is imported: its subpackage is loaded under a bare ``mujoco_playground``
package object whose ``__init__`` (the import that would clone) is not run.
With the Menagerie present, Playground's full registry is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trialrun.errors import ConfigError

INSTALL = "pip install 'trialrun[mjx]'"


@dataclass(frozen=True)
class Catalog:
    """The loadable Playground env names and how to load one."""

    names: tuple[str, ...]
    load: Callable[..., Any]
    """``load(name, config_overrides=...)``: Playground's ``registry.load`` or the suite's ``load``."""
    menagerie: bool
    """Whether the Menagerie is installed (locomotion and manipulation envs)."""


def _package_root() -> Path:
    spec = importlib.util.find_spec("mujoco_playground")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"env ids 'playground/<Name>' need MuJoCo Playground (with mujoco-mjx and jax): {INSTALL}",
            field="env.id",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def catalog() -> Catalog:
    """The envs this machine can load (see the module docstring)."""
    root = _package_root()
    if (root / "external_deps" / "mujoco_menagerie").is_dir() or "mujoco_playground.registry" in sys.modules:
        registry: Any = importlib.import_module("mujoco_playground").registry
        return Catalog(tuple(registry.ALL_ENVS), registry.load, True)
    if "mujoco_playground" not in sys.modules:
        bare = types.ModuleType("mujoco_playground")
        bare.__path__ = [str(root)]
        bare.__spec__ = importlib.util.find_spec("mujoco_playground")
        sys.modules["mujoco_playground"] = bare
    suite: Any = importlib.import_module("mujoco_playground._src.dm_control_suite")
    return Catalog(tuple(suite.ALL_ENVS), suite.load, False)


def unknown_env(name: str, known: Catalog) -> ConfigError:
    """The error for a Playground env name this machine cannot load."""
    hint = (
        ""
        if known.menagerie
        else "; Playground's locomotion and manipulation envs (Go1, PandaPickCube, ...) need the MuJoCo "
        "Menagerie, which Playground clones from GitHub on its first full import (run "
        "`python -c 'import mujoco_playground'` once with network access)"
    )
    return ConfigError(
        f"unknown MuJoCo Playground env '{name}'; available: {', '.join(sorted(known.names))}{hint}",
        field="env.id",
    )
