"""``trialrun plan-episodes``: how many episodes an interval of a given width needs."""

from __future__ import annotations

from typing import Annotated

import typer

from trialrun.cli._console import app, fail, guard, stdout


@app.command("plan-episodes")
@guard
def plan_episodes(
    rate: Annotated[float, typer.Option("--rate", help="The success rate you expect (0..1).")],
    half_width: Annotated[float, typer.Option("--half-width", help="The interval half-width you want.")],
    level: Annotated[float, typer.Option("--level", help="Confidence level.")] = 0.95,
) -> None:
    """How many episodes a Wilson interval of the given half-width needs at the given success rate."""
    from trialrun.stats import wilson_episodes_needed

    if not 0 < level < 1:
        raise fail(f"--level must be between 0 and 1, got {level}")
    try:
        n = wilson_episodes_needed(rate, half_width, level)
    except ValueError as exc:
        raise fail(f"{exc} (--rate in [0, 1], --half-width in (0, 0.5))") from None
    stdout.print(
        f"{n} episodes give a {level:.0%} Wilson interval of half-width <= {half_width:g} "
        f"at a success rate of {rate:g}",
        highlight=False,
    )
