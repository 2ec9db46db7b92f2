"""``trialrun list envs|policies|variations``: what can be evaluated."""

from __future__ import annotations

import dis
import functools
import inspect
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import EXIT_FAILED, guard, list_app, short, stdout
from trialrun.errors import InputError

if TYPE_CHECKING:
    import gymnasium as gym
    from gymnasium.envs.registration import EnvSpec

    from trialrun.variations.base import TargetInfo


@list_app.command("envs")
@guard
def list_envs(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="Only ids containing one of these texts; with --check, the ids to check."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Build each ID; check that reset(seed=...) decides its episodes (exit 1 if not).",
        ),
    ] = False,
) -> None:
    """Environment ids that jobs can use: Gymnasium's registry after importing
    the installed env packages trialrun knows (entries that can only raise are
    hidden)."""
    import gymnasium as gym

    import trialrun.envs  # noqa: F401
    from trialrun.envs.namespaces import import_known_packages

    if check:
        if not ids:
            raise InputError("--check needs the ids to check, e.g. trialrun list envs --check CartPole-v1")
        check_envs(ids)
        return
    import_known_packages()
    table = Table("id", "entry point", "max steps")
    for env_id, spec in sorted(gym.registry.items()):
        if ids and not any(text.lower() in env_id.lower() for text in ids):
            continue
        if only_raises(spec.entry_point):
            continue
        table.add_row(escape(env_id), escape(entry_point_name(spec)), str(spec.max_episode_steps or "-"))
    stdout.print(table)


def entry_point_name(spec: EnvSpec) -> str:
    """``module:attr`` of a spec's entry point (``vector: ...`` when it has only
    a vector one), never a function's repr."""
    if spec.entry_point is None and spec.vector_entry_point is not None:
        return f"vector: {_callable_name(spec.vector_entry_point)}"
    return _callable_name(spec.entry_point)


def _callable_name(entry: object) -> str:
    if entry is None or isinstance(entry, str):
        return str(entry or "-")
    while isinstance(entry, functools.partial):
        entry = entry.func
    module = getattr(entry, "__module__", None) or "?"
    qualname = getattr(entry, "__qualname__", None) or type(entry).__name__
    return f"{module}:{qualname.rsplit('<locals>.', 1)[-1]}"


def only_raises(entry: object) -> bool:
    """Whether an entry point is a function whose body only raises (Gymnasium
    keeps ids of removed envs registered to such a function). String entry
    points are not imported to find out."""
    while isinstance(entry, functools.partial):
        entry = entry.func
    if not inspect.isfunction(entry):
        return False
    ops = {instruction.opname for instruction in dis.get_instructions(entry)}
    returns = any(op.startswith("RETURN") or op == "YIELD_VALUE" for op in ops)
    return "RAISE_VARARGS" in ops and not returns


def check_envs(ids: list[str]) -> None:
    """``list envs --check``: build each id, reset it with seeds a, b, a and
    print whether its episodes follow from their seeds."""
    from trialrun.envs.build import check_env_id, make_env
    from trialrun.envs.seeding import check_seeding

    table = Table("id", "reproducible", "seed changes start", "seeded by trialrun", "check ms", "problem")
    failed = 0
    for index, env_id in enumerate(ids):
        check_env_id(env_id, field=f"ID[{index}]")
        try:
            env = make_env(env_id, {})
            try:
                result = check_seeding(env, {})
            finally:
                env.close()
        except Exception as exc:  # an env that needs kwargs, or is broken: one row, not a traceback
            failed += 1
            problem = f"could not build and reset it without kwargs: {type(exc).__name__}: {exc}"
            table.add_row(escape(env_id), "?", "?", "-", "-", escape(problem.splitlines()[0]))
            continue
        failed += not result.reproducible
        table.add_row(
            escape(env_id),
            "yes" if result.reproducible else "NO",
            "yes" if result.seed_changes_start else "no",
            escape(result.seeded_by or "-"),
            f"{result.milliseconds:.1f}",
            escape(result.problem or ""),
        )
    stdout.print(table)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@list_app.command("policies")
@guard
def list_policies() -> None:
    """Registered policy names (any 'package.module:factory' works too)."""
    from trialrun.policies.registry import available_policies

    table = Table("name", "description")
    for name, entry in sorted(available_policies().items()):
        table.add_row(escape(name), escape(entry.description))
    stdout.print(table)


@list_app.command("variations")
@guard
def list_variations(
    env_id: Annotated[
        str | None, typer.Argument(help="An env id: show what each variation can change in it.")
    ] = None,
) -> None:
    """Variation types, and for ENV the bodies/geoms/lights/cameras they can target."""
    from trialrun.envs.build import check_env_id, make_env
    from trialrun.variations.registry import available_variations

    classes = available_variations()
    if env_id is None:
        table = Table("type", "applies at", "parameters", "what it does")
        for name, cls in sorted(classes.items()):
            params = ", ".join(cls.Params.model_fields) or "-"
            doc = (cls.__doc__ or "").strip().split("\n")[0]
            table.add_row(name, cls.applies_at, params, escape(doc))
        stdout.print(table)
        return
    check_env_id(env_id, field="ENV")
    env = make_env(env_id, {})
    try:
        listed = {name: cls.targets(env) for name, cls in sorted(classes.items())}
        state = changing_targets(env, classes, listed)
        table = Table("variation", "target", "nominal", "units", "note", title=f"variations for {env_id}")
        omitted = 0
        for name, targets in listed.items():
            for target in targets:
                if (name, target.target) in state or is_private_or_counter(target.target, name):
                    omitted += 1
                    continue
                table.add_row(
                    name,
                    escape(target.target),
                    escape(short(target.nominal)),
                    target.units or "",
                    escape(target.note),
                )
        if omitted:
            table.caption = f"{omitted} counter(s) and private attribute(s) omitted"
        stdout.print(table)
    finally:
        env.close()


_COUNTER_NAME = re.compile(r"^(num|curr|current)_|_(count|counter)$")


def is_private_or_counter(target: str, variation: str = "attr") -> bool:
    """Whether a target names private state (a part starting with ``_``) or,
    by its name, a counter (``num_resets``, ``curr_path_length``, ``*_count``):
    nothing a factor should set, even when it did not change while we looked.
    The name rule is for attributes only: a key of a constructor's settings
    dict is a setting whatever its name (highway-env's ``config.vehicles_count``)."""
    parts = target.split(".")
    if any(part.startswith("_") for part in parts):
        return True
    return variation != "env_kwarg" and bool(_COUNTER_NAME.search(parts[-1]))


def changing_targets(
    env: gym.Env[Any, Any], classes: dict[str, Any], listed: dict[str, list[TargetInfo]]
) -> set[tuple[str, str]]:
    """Targets whose value changes over one reset and one step: episode state
    and counters (Meta-World's ``curr_path_length``, ``num_resets``), not
    settings a factor could vary. Empty when the env cannot be stepped here."""
    try:
        env.action_space.seed(0)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        after = {name: cls.targets(env) for name, cls in classes.items()}
    except Exception:  # listing only: an env that cannot step here keeps every target
        return set()
    before = {(name, t.target): short(t.nominal) for name, targets in listed.items() for t in targets}
    return {
        (name, t.target)
        for name, targets in after.items()
        for t in targets
        if (name, t.target) in before and before[(name, t.target)] != short(t.nominal)
    }
