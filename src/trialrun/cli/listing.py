"""``trialrun list envs|policies|variations``: what can be evaluated."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trialrun.cli._console import guard, list_app, short, stdout


@list_app.command("envs")
@guard
def list_envs(
    pattern: Annotated[str | None, typer.Argument(help="Only ids containing this text.")] = None,
) -> None:
    """Environment ids that jobs can use (Gymnasium's registry)."""
    import gymnasium as gym

    import trialrun.envs  # noqa: F401

    table = Table("id", "entry point", "max steps")
    for env_id, spec in sorted(gym.registry.items()):
        if pattern and pattern.lower() not in env_id.lower():
            continue
        table.add_row(escape(env_id), escape(str(spec.entry_point)), str(spec.max_episode_steps or "-"))
    stdout.print(table)


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
        table = Table("variation", "target", "nominal", "units", "note", title=f"variations for {env_id}")
        for name, cls in sorted(classes.items()):
            for target in cls.targets(env):
                table.add_row(
                    name,
                    escape(target.target),
                    escape(short(target.nominal)),
                    target.units or "",
                    escape(target.note),
                )
        stdout.print(table)
    finally:
        env.close()
