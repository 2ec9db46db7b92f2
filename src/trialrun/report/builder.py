"""Build ``report/index.html``: one page per run.

The page is rendered with jinja2 (autoescape on) from the run files and
inlines its stylesheet and script, so it opens from disk and fetches nothing
from the network. A run of up to :data:`~trialrun.report.payload.INLINE_ROWS`
episodes is one self-contained file; a larger one pages its episode table
from data files beside the page (``report/episodes/rows-00000.js``, loaded by
``<script>`` elements, which work from ``file://``), so a run of a million
episodes opens as fast as one of a thousand. Videos and analysis figures are linked by relative paths
(``../videos/<job>/ep17-corner.mp4`` from ``RUN_DIR/report/``), so the whole
run directory can be copied, zipped or served as it is. The action and reward
charts of episodes with a trajectory are drawn here, from the HDF5 files
(:mod:`~trialrun.report.trajectories`), as inline SVG in one inert
``<template id="traj-<row>">`` per episode that the script clones into the
episode view: the page's data stays plain JSON and nothing is drawn by script.

Defence in depth against a run whose names or values hold HTML: jinja2 escapes
every value, the episode data sits in a ``<script type="application/json">``
with ``<``, ``>`` and ``&`` escaped and is rendered with ``textContent``, and a
Content-Security-Policy allows only the page's own inline script and style (by
hash) and no network connections.

Example:
    >>> import tempfile, pathlib
    >>> from trialrun.report.data import load_run
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> build_report(d)
    Traceback (most recent call last):
    ...
    trialrun.errors.InputError: ... is not a run directory: it has no manifest.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import shlex
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import trialrun
from trialrun.errors import InputError
from trialrun.report.charts import HATCH_DEFS, factor_chart, interval_bar, pct, short_number
from trialrun.report.data import ANALYSIS_DIR, RunView, episodes_payload, load_run, parse_time, relative_url
from trialrun.report.linechart import action_chart, reward_chart
from trialrun.report.nominal_drop import nominal_drops
from trialrun.report.payload import CHUNK_ROWS, INLINE_ROWS, episode_chunks
from trialrun.report.trajectories import MAX_EPISODES, MAX_POINTS, episode_trajectories
from trialrun.runfiles import (
    EPISODES_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    RunWriteError,
    write_text_atomic,
)
from trialrun.stats import SUCCESS_FIX

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
INDEX_FILE = "index.html"
#: The folder beside ``index.html`` that holds a paged table's data files.
DATA_DIR = "episodes"
_PACKAGE = "trialrun.report"
_STATE_ORDER = {"completed": 0, "failed": 1, "interrupted": 2, "running": 3, "pending": 4}


# --------------------------------------------------------------------------- formatting filters


def fmt_number(value: Any) -> str:
    """A number for reading: integers as they are, others with 4 significant
    digits (``-`` for None)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"


def fmt_duration(seconds: float | None) -> str:
    """``3725.0`` -> ``'1 h 02 min'``; ``75.2`` -> ``'1 min 15 s'``; ``4.25`` -> ``'4.2 s'``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_when(text: str | None) -> str:
    """A run-file time as ``2026-11-21 19:00:01 UTC``."""
    parsed = parse_time(text) if isinstance(text, str) else None
    if parsed is None:
        return text or "-"
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_raw(value: Any) -> str:
    """The exact value for a ``data-value`` attribute (``repr`` of a float
    round-trips; empty for None), so tests and scripts can read the numbers."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def fmt_pvalue(value: Any) -> str:
    """A p-value: ``< 0.001`` below a thousandth, 3 significant digits above."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if value < 1e-3:
        return "< 0.001"
    return f"{value:.3g}"


def fmt_effect(value: Any, binary: bool) -> str:
    """An effect size: percentage points for a binary outcome, else a number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{100 * value:.1f} pp" if binary else fmt_number(value)


def fmt_pct(value: Any) -> str:
    """A rate as a percentage (``-`` for anything that is not a number)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return pct(float(value))


def fmt_int(value: Any) -> str:
    """``12345`` -> ``'12,345'``."""
    return f"{int(value):,}" if isinstance(value, int | float) else "-"


def fmt_short(value: Any) -> str:
    """A bound or tick: 3 significant digits (``-`` for None)."""
    return short_number(float(value)) if isinstance(value, int | float) else "-"


# --------------------------------------------------------------------------- assets


def _static(name: str) -> str:
    return resources.files(_PACKAGE).joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _templates_dir() -> Path:
    return Path(str(resources.files(_PACKAGE).joinpath("templates")))


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def content_security_policy(script: str, style: str, data_files: bool = False) -> str:
    """The page's CSP: its own inline script and stylesheet (by hash), images
    and media from the run directory, nothing else: no network connections,
    no other scripts even if an injected one slipped through escaping. A paged
    report (``data_files``) also runs scripts of its own origin: its data files
    (``'self'``; for a page opened from disk, Chromium's file origin)."""
    scripts = f"'{_sha256(script)}'" + (" 'self'" if data_files else "")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src '{_sha256(style)}'",
            "img-src 'self' data: file:",
            "media-src 'self' file: blob:",
            "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def script_json(data: Any) -> Markup:
    """JSON that is safe inside ``<script type="application/json">``: ``<``,
    ``>`` and ``&`` are written as ``\\u003c`` etc., so no value can close the
    script element (``</script>``) or open a comment.

    Example:
        >>> str(script_json({"job": "</script><b>"}))
        '{"job":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_templates_dir())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=fmt_pct,
        num=fmt_number,
        dur=fmt_duration,
        when=fmt_when,
        raw=fmt_raw,
        pval=fmt_pvalue,
        effect=fmt_effect,
        int_sep=fmt_int,
        g=fmt_short,
    )
    return env


# --------------------------------------------------------------------------- build


def default_out_dir(run_dir: Path) -> Path:
    """Where the report of ``run_dir`` goes by default: ``RUN_DIR/report``."""
    return Path(run_dir) / REPORT_DIR


def _target(summary: Any) -> dict[str, Any] | None:
    """The precision target of a job's summary (``target_half_width``), if the
    run set one: the half-width reached and whether it meets the target."""
    target = getattr(summary, "target_half_width", None)
    if target is None:
        return None
    return {
        "target": target,
        "half_width": getattr(summary, "half_width", None),
        "met": bool(getattr(summary, "meets_target", False)),
    }


def wide_charts(n: int) -> list[bool]:
    """Which of a job's ``n`` factor charts take half a row instead of a third.

    The chart grid has six tracks: a chart spans two (three to a row) or, when
    wide, three (two to a row). The last charts are made wide so that no row is
    left mostly empty: 4 charts make 2 + 2, 5 make 3 + 2, 7 make 3 + 2 + 2
    (with three to a row, the fourth chart used to sit alone in its row).

    Example:
        >>> [sum(wide_charts(n)) for n in range(1, 9)]
        [0, 2, 0, 4, 2, 0, 4, 2]
    """
    if n < 2:
        return [False] * n
    last = {0: 0, 1: 4, 2: 2}[n % 3]
    return [i >= n - last for i in range(n)]


def render_report(view: RunView, out_dir: Path) -> str:
    """The HTML of the report of ``view``, for a page living in ``out_dir``
    (links to videos and figures are relative to it). A run of more than
    :data:`INLINE_ROWS` episodes pages its table from data files that
    :func:`build_report` writes beside the page."""
    return _render(view, out_dir)[0]


def _chunk_name(index: int) -> str:
    return f"rows-{index:05d}.js"


def _render(view: RunView, out_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """The page's HTML and, for a paged table, the description of its columns
    (what :func:`_write_chunks` needs), else None."""
    run_dir = view.run_dir
    base = relative_url(run_dir, out_dir)
    base = "" if base == "." else base
    m = view.manifest
    generated_at = datetime.now(timezone.utc).isoformat()
    paged = len(view.records) > INLINE_ROWS
    payload = episodes_payload(view, inline=not paged)
    if paged:
        # The build's token in each URL: a browser that cached an older build's
        # files (a served report) fetches this build's.
        token = hashlib.sha256(f"{run_dir.resolve()} {generated_at}".encode()).hexdigest()[:12]
        count = math.ceil(len(view.records) / CHUNK_ROWS)
        payload["chunks"] = {
            "rows": CHUNK_ROWS,
            "files": [f"{DATA_DIR}/{_chunk_name(i)}?v={token}" for i in range(count)],
        }
    payload["base"] = base
    payload["runDir"] = str(run_dir.resolve())
    trajectories = episode_trajectories(run_dir, view.records)
    # [row, path, state]: the script shows the charts (a <template> per charted row) or says why not.
    payload["trajectories"] = [[t.row, t.path, t.state] for t in trajectories if t.state != "outside"]
    payload["trajectoryLimit"] = MAX_EPISODES

    states: dict[str, int] = {}
    for job in view.jobs:
        states[job.status] = states.get(job.status, 0) + 1
    job_states = sorted(states.items(), key=lambda kv: _STATE_ORDER.get(kv[0], len(_STATE_ORDER)))
    overall = view.summary.overall
    oci = overall.success_ci
    css = _static("report.css")
    js = _static("report.js")
    context = {
        "run": view,
        "m": m,
        "version": trialrun.__version__,
        "generated_at": generated_at,
        "css": Markup(css),
        "js": Markup(js),
        "csp": content_security_policy(js, css, data_files=paged),
        "hatch_defs": HATCH_DEFS,
        "data_json": script_json(payload),
        "base_url": f"{base}/" if base else "",
        "run_dir_abs": str(run_dir.resolve()),
        "command": shlex.join(m.command) if m.command else "",
        "config_yaml": yaml.safe_dump(m.config, sort_keys=False, allow_unicode=True, width=100),
        "job_states": job_states,
        "overall_bar": interval_bar(
            overall.success_rate,
            oci.low if oci else None,
            oci.high if oci else None,
            label="all jobs",
            width=240,
        ),
        "success_fix": SUCCESS_FIX,
        "job_bars": [
            Markup("")
            if j.summary.success_status == "absent"
            else interval_bar(
                j.summary.success_rate,
                j.summary.success_ci.low if j.summary.success_ci else None,
                j.summary.success_ci.high if j.summary.success_ci else None,
                label=j.name,
            )
            for j in view.jobs
        ],
        "targets": [_target(j.summary) for j in view.jobs],
        "charts": [
            [
                factor_chart(fb, None if j.summary.success_status == "absent" else j.summary.success_rate)
                for fb in j.factor_bins
            ]
            for j in view.jobs
        ],
        "wide": [wide_charts(len(j.factor_bins)) for j in view.jobs],
        "trajectory_charts": [
            {
                "row": t.row,
                "length": t.data.length,
                "thinned": t.data.length > MAX_POINTS,
                "max_points": MAX_POINTS,
                "actions": action_chart(t.data),
                "reward": reward_chart(t.data),
                "notes": t.data.notes,
            }
            for t in trajectories
            if t.data is not None
        ],
        "any_factors": any(j.factor_bins for j in view.jobs),
        "nominal_drops": nominal_drops(view),
        "any_log": any(fb.spec.scale == "log" for j in view.jobs for fb in j.factor_bins),
    }
    html = _environment().get_template("index.html.j2").render(**context)
    return html, payload if paged else None


def _write_chunks(view: RunView, meta: dict[str, Any] | None, out: Path) -> None:
    """Write the data files of a paged table to ``out/episodes/`` (and remove
    those of an earlier, larger build); for an inline table, remove them all."""
    folder = out / DATA_DIR
    kept: set[str] = set()
    if meta is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for chunk in episode_chunks(view, meta, meta["chunks"]["rows"]):
            name = _chunk_name(chunk["index"])
            write_text_atomic(folder / name, f"trialrunRows({script_json(chunk)});\n")
            kept.add(name)
    if folder.is_dir():
        for stale in folder.glob("rows-*.js"):
            if stale.name not in kept:
                stale.unlink()


def build_report(run_dir: Path | str, out_dir: Path | str | None = None, *, bins: int | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out_dir/index.html`` (default
    ``RUN_DIR/report/index.html``) and return its path.

    The file is written atomically (temp file + rename): a browser reloading
    the page never sees half of it. ``bins`` fixes the number of bins of the
    continuous factor charts (default: about 20 episodes per bin, 2 to 10).

    Raises:
        InputError: ``run_dir`` is not a readable run, or ``out_dir`` cannot be
            written (the message names the file).
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    view = load_run(run_dir, bins=bins)
    html, meta = _render(view, out)
    target = out / INDEX_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_chunks(view, meta, out)  # before the page that loads them
        write_text_atomic(target, html)
    except (OSError, RunWriteError) as exc:
        cause = exc.__cause__ if isinstance(exc, RunWriteError) and exc.__cause__ else exc
        raise InputError(f"cannot write the report to {target}: {cause}") from None
    logger.info("report of %s written to %s (%d episodes)", run_dir, target, len(view.records))
    return target


def _input_files(run_dir: Path) -> list[Path]:
    files = [run_dir / MANIFEST_FILE, run_dir / EPISODES_FILE, run_dir / SUMMARY_FILE]
    analysis = run_dir / ANALYSIS_DIR
    if analysis.is_dir():
        files += [p for p in analysis.rglob("*") if p.is_file()]
    package = Path(str(resources.files(_PACKAGE)))
    files += [p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".j2", ".css", ".js")]
    return [p for p in files if p.exists()]


def report_is_stale(run_dir: Path | str, out_dir: Path | str | None = None) -> bool:
    """True when the report is missing or older than any file it is built from
    (the run files, the analysis outputs, or the report code itself)."""
    run_dir = Path(run_dir)
    target = (Path(out_dir) if out_dir is not None else default_out_dir(run_dir)) / INDEX_FILE
    if not target.is_file():
        return True
    built = target.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _input_files(run_dir))
