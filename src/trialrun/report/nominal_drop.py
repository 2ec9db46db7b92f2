"""The "drop from nominal" chart of a ``one_at_a_time`` job (Colosseum's view).

A ``one_at_a_time`` job (:mod:`trialrun.variations.designs`) splits its slots
into a nominal block and one block per varied factor: slot ``k`` is in block
``k % (F + 1)``, where ``F`` counts the factors whose declared spec has more
than one value (a ``constant`` or one-value ``choice`` is held, not varied),
in config order. The chart shows, per block, the success rate with its
Wilson 95% interval: the nominal block first, then each factor varied alone,
with a dashed line at the nominal rate so each drop reads at a glance.

The combined rate comes from the run's ``combined`` jobs with the same env
and the same factor names (the design that varies them all at once): one
more row per such job, from its summary.

Only files of the run are read (the manifest's resolved config for the
design, the records, the summary), like the rest of the report.

Example:
    >>> from trialrun.runfiles.schema import FactorSpec
    >>> specs = [FactorSpec(name="std", kind="continuous", low=0, high=1),
    ...          FactorSpec(name="task", kind="categorical", values=["push"])]
    >>> varied_factors(specs)
    ['std']
    >>> rows = block_rows(["std"], [(0, True), (1, False), (2, True), (3, True)])
    >>> [(r.name, r.n, r.successes) for r in rows]
    [('nominal', 2, 2), ('std', 2, 1)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from trialrun.report.charts import GRID, INK, MUTED, NOMINAL, TRACK, _f, _rate_color, _whiskers, pct
from trialrun.report.view import RunView
from trialrun.runfiles.schema import FactorSpec
from trialrun.stats.intervals import wilson_interval

__all__ = ["DropRow", "NominalDrop", "block_rows", "drop_chart", "nominal_drops", "varied_factors"]

ONE_AT_A_TIME = "one_at_a_time"
COMBINED = "combined"


@dataclass(frozen=True)
class DropRow:
    """One bar of the chart: a block (or a combined job) and its success rate."""

    name: str
    kind: str
    """``nominal``, ``factor`` or ``combined``."""
    n: int
    successes: int
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class NominalDrop:
    """The chart of one ``one_at_a_time`` job."""

    job: str
    rows: list[DropRow]

    @property
    def chart(self) -> Markup:
        return drop_chart(self.rows, label=self.job)


def varied_factors(specs: Sequence[FactorSpec]) -> list[str]:
    """Names of the factors a ``one_at_a_time`` design varies, in config order."""
    return [s.name for s in specs if not _held(s)]


def _held(spec: FactorSpec) -> bool:
    if spec.values is not None:
        return len(spec.values) == 1
    return spec.low is not None and spec.low == spec.high


def _row(name: str, kind: str, n: int, successes: int) -> DropRow:
    if n == 0:
        return DropRow(name, kind, 0, 0, None, None, None)
    low, high = wilson_interval(successes, n)
    return DropRow(name, kind, n, successes, successes / n, low, high)


def block_rows(varied: Sequence[str], outcomes: Iterable[tuple[int, bool]]) -> list[DropRow]:
    """The nominal block's row and one row per varied factor, from
    ``(episode, success)`` pairs."""
    blocks = len(varied) + 1
    n = [0] * blocks
    wins = [0] * blocks
    for episode, success in outcomes:
        block = episode % blocks
        n[block] += 1
        wins[block] += int(success)
    rows = [_row("nominal", "nominal", n[0], wins[0])]
    rows += [_row(name, "factor", n[i + 1], wins[i + 1]) for i, name in enumerate(varied)]
    return rows


def _job_configs(view: RunView) -> dict[str, dict[str, Any]]:
    jobs = view.manifest.config.get("jobs") if isinstance(view.manifest.config, dict) else None
    if not isinstance(jobs, list):
        return {}
    return {str(j.get("name")): j for j in jobs if isinstance(j, dict)}


def nominal_drops(view: RunView) -> list[NominalDrop]:
    """One chart per ``one_at_a_time`` job that reports success."""
    configs = _job_configs(view)
    drops = []
    for job in view.jobs:
        config = configs.get(job.name, {})
        if config.get("design") != ONE_AT_A_TIME or job.summary.success_status == "absent":
            continue
        outcomes = [
            (r.episode, bool(r.outcome["success"]))
            for r in view.records
            if r.job == job.name and r.outcome.get("success") is not None
        ]
        if not outcomes:
            continue
        rows = block_rows(varied_factors(job.factors), outcomes)
        names = sorted(s.name for s in job.factors)
        env = json.dumps(config.get("env"), sort_keys=True, default=str)
        for other in view.jobs:
            other_config = configs.get(other.name, {})
            if (
                other_config.get("design") == COMBINED
                and sorted(s.name for s in other.factors) == names
                and json.dumps(other_config.get("env"), sort_keys=True, default=str) == env
                and other.summary.success_rate is not None
            ):
                s = other.summary
                ci = s.success_ci
                rows.append(
                    DropRow(
                        f"combined ({other.name})",
                        "combined",
                        s.episodes,
                        s.successes,
                        s.success_rate,
                        ci.low if ci else None,
                        ci.high if ci else None,
                    )
                )
        drops.append(NominalDrop(job.name, rows))
    return drops


def drop_chart(rows: Sequence[DropRow], *, label: str = "", width: int = 560) -> Markup:
    """Horizontal rate bars with Wilson whiskers, one row per block, and a
    dashed line at the nominal block's rate."""
    left, right, top, row_h = 150, 110, 8, 26
    inner = width - left - right
    height = top * 2 + row_h * len(rows) + 16
    parts = [
        f'<svg class="drop-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}: success rate by block">'
    ]
    base = top + row_h * len(rows)
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + q * inner
        parts.append(
            f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{top}" y2="{base}" stroke="{GRID}"/>'
            f'<text x="{_f(x)}" y="{base + 12}" font-size="10" fill="{MUTED}" text-anchor="middle">'
            f"{int(q * 100)}%</text>"
        )
    nominal = rows[0].rate if rows and rows[0].kind == "nominal" else None
    for i, row in enumerate(rows):
        mid = top + row_h * i + row_h / 2
        attrs = (
            f'class="drop-row" data-name="{escape(row.name)}" data-kind="{row.kind}" data-n="{row.n}" '
            f'data-successes="{row.successes}" data-rate="{"" if row.rate is None else repr(row.rate)}" '
            f'data-low="{"" if row.low is None else repr(row.low)}" '
            f'data-high="{"" if row.high is None else repr(row.high)}"'
        )
        text = f"{row.name}: {pct(row.rate)}" + (
            "" if row.rate is None else f" (95% CI {pct(row.low)} to {pct(row.high)}, n={row.n})"
        )
        parts.append(f"<g {attrs}><title>{escape(text)}</title>")
        weight = ' font-weight="600"' if row.kind != "factor" else ""
        parts.append(
            f'<text x="{left - 8}" y="{_f(mid + 4)}" font-size="12" fill="{INK}" text-anchor="end"{weight}>'
            f"{escape(row.name)}</text>"
        )
        parts.append(
            f'<rect x="{left}" y="{_f(mid - 6)}" width="{inner}" height="12" rx="2" fill="{TRACK}"/>'
        )
        if row.rate is not None:
            fill = NOMINAL if row.kind == "nominal" else _rate_color(row.rate)
            parts.append(
                f'<rect x="{left}" y="{_f(mid - 6)}" width="{_f(row.rate * inner)}" height="12" rx="2" '
                f'fill="{fill}" fill-opacity="0.75"/>'
            )
            lo = row.low if row.low is not None else row.rate
            hi = row.high if row.high is not None else row.rate
            parts.append(_whiskers(left + lo * inner, left + hi * inner, left + row.rate * inner, mid))
            drop = (
                "" if nominal is None or row.kind == "nominal" else f" ({100 * (row.rate - nominal):+.0f} pp)"
            )
            parts.append(
                f'<text x="{width - right + 8}" y="{_f(mid + 4)}" font-size="11" fill="{INK}">'
                f"{pct(row.rate, 0)}{drop}</text>"
            )
        else:
            parts.append(
                f'<text x="{width - right + 8}" y="{_f(mid + 4)}" font-size="11" fill="{MUTED}">'
                "no episodes</text>"
            )
        parts.append("</g>")
    if nominal is not None:
        x = left + nominal * inner
        parts.append(
            f'<line class="nominal-rate" x1="{_f(x)}" x2="{_f(x)}" y1="{top}" y2="{base}" stroke="{NOMINAL}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"><title>nominal rate {pct(nominal)}</title></line>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
