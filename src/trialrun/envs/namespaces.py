"""Finding the package that registers an env id, so ids work as their packages spell them.

Gymnasium knows an id only once the package registering it has been
imported, and since 1.0 it no longer loads env plugins on its own. So a run
file naming ``highway-v0`` or ``Meta-World/MT1`` would fail with "unknown
environment" although the package is installed. Before giving up on an id,
trialrun imports the package that owns it, found through

1. the ``gymnasium.envs`` entry points packages may declare (the plugin
   mechanism older Gymnasium versions loaded: the entry point's name is the
   namespace, its value the module, optionally ``module:function`` to call), and
2. :data:`KNOWN_PACKAGES`, a small table of namespaces and id prefixes of
   well-known env packages.

An id still unknown after that gets one error naming the closest registered
ids (after importing every installed known package) and the ``module:Id`` form.

Example:
    >>> spec = resolve_env_id("CartPole-v1", field="env.id")
    >>> spec.id
    'CartPole-v1'
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, parse_env_id

from trialrun.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "gymnasium.envs"
"""The entry point group env packages declared for Gymnasium's (pre-1.0) plugin loader."""


@dataclass(frozen=True)
class KnownPackage:
    """An env package and the ids it registers when imported."""

    module: str
    """Import name."""
    distribution: str
    """Name on PyPI (what ``pip install`` takes)."""
    prefixes: tuple[str, ...]
    """An unregistered id starting with one of these is looked for in this package."""
    install: str
    """The install line printed when the package is missing."""
    broken_fix: str | None = None
    """The install line that fixes a known broken dependency of the package."""


_HIGHWAY_NAMES: tuple[str, ...] = (
    "highway",
    "merge",
    "roundabout",
    "parking",
    "intersection",
    "racetrack",
    "exit",
)
_HIGHWAY_NAMES += ("u-turn", "lane-keeping", "two-way")

KNOWN_PACKAGES: tuple[KnownPackage, ...] = (
    KnownPackage("metaworld", "metaworld", ("Meta-World/",), "pip install 'trialrun[metaworld]'"),
    KnownPackage(
        "highway_env",
        "highway-env",
        _HIGHWAY_NAMES,
        "pip install highway-env",
    ),
    KnownPackage("panda_gym", "panda-gym", ("Panda",), "pip install panda-gym"),
    KnownPackage(
        "gymnasium_robotics",
        "gymnasium-robotics",
        ("Fetch", "HandManipulate", "HandReach", "AdroitHand", "AntMaze_", "PointMaze_", "FrankaKitchen"),
        "pip install gymnasium-robotics",
    ),
    KnownPackage("minigrid", "minigrid", ("MiniGrid-", "BabyAI-"), "pip install minigrid"),
    # MuJoCo Playground's envs, registered as playground/<Name> by trialrun's adapter.
    KnownPackage(
        "trialrun.envs.adapters.playground", "playground", ("playground/",), "pip install 'trialrun[mjx]'"
    ),
    KnownPackage(
        "shimmy",
        "shimmy",
        ("dm_control/",),
        "pip install shimmy dm-control==1.0.28 mujoco==3.3.0",
        # shimmy[dm-control] alone pulls the newest mujoco, which the pinned dm_control cannot import.
        broken_fix="pip install dm-control==1.0.28 mujoco==3.3.0",
    ),
)


def _plugin_modules(env_id: str) -> list[str]:
    """Modules whose ``gymnasium.envs`` entry point claims the namespace of
    ``env_id`` (``__root__`` claims ids without a namespace)."""
    namespace = parse_env_id(env_id)[0] or "__root__"
    return [ep.value for ep in metadata.entry_points(group=PLUGIN_GROUP) if ep.name == namespace]


def _known_owners(env_id: str) -> list[KnownPackage]:
    return [p for p in KNOWN_PACKAGES if env_id.startswith(p.prefixes)]


def import_env_module(target: str, *, field: str, why: str, package: KnownPackage | None = None) -> None:
    """Import ``target`` (``module`` or ``module:function``, the function is
    called: the plugin convention for a registering function).

    Raises:
        ConfigError: naming ``field``, with the install line when the module or
            one of its dependencies is missing or broken (never a raw traceback).
    """
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing is the user's environment, not ours
        raise ConfigError(_import_failure(module_name, exc, why, package), field=field) from None
    if function:
        register: Any = getattr(module, function, None)
        if not callable(register):
            raise ConfigError(f"module '{module_name}' has no function '{function}' ({why})", field=field)
        register()


def _import_failure(module_name: str, exc: Exception, why: str, package: KnownPackage | None) -> str:
    """One line saying why ``module_name`` did not import and how to fix it."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    missing = getattr(exc, "name", None)
    top = module_name.split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing in (module_name, top):
        install = f"; install it with: {package.install}" if package else ""
        return f"module '{module_name}' is not installed ({why}){install}"
    fix = ""
    if package is not None:
        fix = f"; fix it with: {package.broken_fix or package.install}"
    return f"cannot import '{module_name}' ({why}): a dependency is missing or broken: {detail}{fix}"


def _find(env_id: str) -> EnvSpec | None:
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        return None


def resolve_env_id(env_id: str, field: str) -> EnvSpec:
    """The registered spec of ``env_id``, importing the package that registers
    it first when needed: ``module`` of ``module:Id``, a ``gymnasium.envs``
    entry point, or a :data:`KNOWN_PACKAGES` entry.

    Raises:
        ConfigError: naming ``field``: the module cannot be imported (with the
            install line), or the id is unknown (with the closest registered
            ids and the ``module:Id`` form).
    """
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        import_env_module(module, field=field, why=f"named by env '{env_id}'")
    spec = _find(name)
    if spec is not None:
        return spec
    if name == env_id:
        for target in _plugin_modules(name):
            import_env_module(target, field=field, why=f"its gymnasium.envs entry point claims '{name}'")
        for package in _known_owners(name):
            import_env_module(
                package.module, field=field, why=f"{package.distribution} registers '{name}'", package=package
            )
        spec = _find(name)
        if spec is not None:
            return spec
    raise ConfigError(unknown_id_message(env_id, name), field=field)


def import_known_packages() -> list[str]:
    """Import every installed :data:`KNOWN_PACKAGES` module (a broken one is
    skipped with a debug note); return the names imported. What they print
    while importing (notices, warnings) is dropped: the user asked about
    another env, or for a listing."""
    imported = []
    for package in KNOWN_PACKAGES:
        if importlib.util.find_spec(package.module) is None:
            continue
        try:
            with _quiet():
                importlib.import_module(package.module)
        except Exception as exc:  # only for suggestions: a broken package is reported when it is used
            logger.debug("could not import %s for id suggestions: %s", package.module, exc)
            continue
        imported.append(package.module)
    return imported


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def unknown_id_message(env_id: str, name: str) -> str:
    """The "unknown environment" message, with the closest registered ids (after importing
    the installed known packages, so their ids count) and the ``module:Id`` form."""
    import_known_packages()
    hint = did_you_mean(name, gym.registry) or "."
    return (
        f"unknown environment '{env_id}'{hint} An env another package registers is named "
        f"'module:{name}' (the module is imported first) or its module listed under 'imports:' "
        "(see 'trialrun list envs')"
    )


def import_modules(modules: list[str], *, file: str | None = None) -> None:
    """Import a run file's ``imports:`` (modules registering envs, policies or
    variations) before anything is checked.

    Raises:
        ConfigError: naming ``imports.<i>`` for the first module that fails.
    """
    for index, module in enumerate(modules):
        try:
            import_env_module(module, field=f"imports.{index}", why="listed under imports")
        except ConfigError as exc:
            raise exc.located(file=file) from None
