"""trialrun.report.builder and ``trialrun report`` / the report at the end of ``trialrun run``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure

from helpers import subprocess_env
from test_report_data import JobSpec, record, write_run
from trialrun.errors import InputError
from trialrun.report.builder import (
    build_report,
    content_security_policy,
    fmt_duration,
    fmt_number,
    report_is_stale,
    script_json,
)
from trialrun.runfiles.schema import FactorSpec

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]
XSS = "<img src=x onerror=alert(1)>"


class _Collect(HTMLParser):
    """Every tag with its attributes, and the text of each <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag
            self.raw[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in][-1] += data


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _data(path: Path) -> dict:  # type: ignore[type-arg]
    html = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _trialrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRIALRUN, *args], capture_output=True, text=True, env=subprocess_env(), timeout=timeout
    )


def _sweep_run(tmp_path: Path, **kw: object) -> Path:
    spec = FactorSpec(name="g", kind="continuous", low=0.0, high=1.0, units="m", nominal=0.5)
    recs = [record("a", k, k % 4 != 0, ret=float(k), factors={"g": k / 40}) for k in range(40)]
    return write_run(tmp_path / "run", [JobSpec("a", recs, [spec])], **kw)  # type: ignore[arg-type]


def test_report_is_one_self_contained_file(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    path = build_report(run)
    assert path == run / "report" / "index.html"
    html = path.read_text(encoding="utf-8")
    parsed = _parse(path)
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert not re.match(r"^(https?:)?//", value), f"<{tag} {name}={value}> reaches the network"
        if tag == "link":  # only the empty favicon (so the browser asks for none); the CSS is inlined
            assert attrs == {"rel": "icon", "href": "data:,"}
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    # The inline script and style are the only ones the CSP allows, by hash.
    (code,) = [s for s in parsed.raw["script"] if "use strict" in s]
    (style,) = parsed.raw["style"]
    (csp,) = [
        a["content"]
        for t, a in parsed.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp == content_security_policy(code, style)
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in (csp or "")
    assert "default-src 'none'" in (csp or "") and "connect-src 'none'" in (csp or "")


def test_page_holds_the_run_and_its_numbers(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    path = build_report(run)
    parsed = _parse(path)
    summary = json.loads((run / "summary.json").read_text())
    job_cells = {
        a["data-field"]: a["data-value"]
        for t, a in parsed.tags
        if a.get("data-field") and a.get("data-value") is not None
    }
    assert float(job_cells["success_rate"]) == summary["overall"]["success_rate"] == 0.75
    data = _data(path)
    assert data["n"] == 40 and data["runDir"] == str(run.resolve()) and data["base"] == ".."
    html = path.read_text()
    assert "0123456789ab" in html and "testhost" in html and "2 min 06 s" in html
    assert 'id="config"' in html and "name: hand-run" in html  # config as YAML, in a <details>
    assert 'id="versions"' in html and "numpy" in html
    assert 'data-factor="g"' in html and html.count('class="bin"') == 3  # 40 episodes: 3 bins


def test_a_precision_target_is_shown_when_the_run_set_one(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    assert "target ±" not in build_report(run).read_text()
    summary = json.loads((run / "summary.json").read_text())
    job = summary["jobs"]["a"]
    job["half_width"] = (job["success_ci"]["high"] - job["success_ci"]["low"]) / 2
    job["target_half_width"] = 0.05
    job["meets_target"] = False
    (run / "summary.json").write_text(json.dumps(summary))
    html = build_report(run).read_text()
    assert f"±{100 * job['half_width']:.1f}% (target ±5.0%: not met)" in html


def test_success_that_was_never_reported_shows_as_not_reported(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    assert "not reported" not in build_report(run).read_text()
    summary = json.loads((run / "summary.json").read_text())
    for entry in [*summary["jobs"].values(), summary["overall"]]:
        entry["success_status"] = "absent"
    (run / "summary.json").write_text(json.dumps(summary))
    path = build_report(run)
    html = path.read_text()
    absent = [a for _, a in _parse(path).tags if a.get("data-success-status") == "absent"]
    assert len(absent) == 2  # the overall card and the job's row
    assert all(a["data-value"] == "" for a in absent)
    assert html.count(">not reported<") == 2 and "75.0%" not in html
    assert "set success: survived / {min_return: X} / {key: NAME}" in html


def test_user_text_is_escaped_everywhere(tmp_path: Path) -> None:
    job = XSS + "</script><script>alert(2)</script>"
    spec = FactorSpec(name="obj<b>", kind="categorical", values=["<i>cube</i>", "a&b"])
    recs = [record(job, k, k % 2 == 0, factors={"obj<b>": ["<i>cube</i>", "a&b"][k % 2]}) for k in range(6)]
    run = write_run(
        tmp_path / "run",
        [
            JobSpec(
                job,
                recs,
                [spec],
                status="failed",
                planned=9,
                error="Boom <script>x</script>",
                traceback="tb <b>",
            )
        ],
        config={"name": "<svg onload=alert(3)>"},
    )
    path = build_report(run)
    html = path.read_text()
    for raw in (
        "<img src=x",
        "<script>alert",
        "<svg onload",
        "<i>cube",
        "obj<b>",
        "tb <b>",
        "</script><script>",
    ):
        assert raw not in html, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Boom &lt;script&gt;x&lt;/script&gt;" in html and "tb &lt;b&gt;" in html
    data = _data(path)
    assert data["jobs"] == [job]
    assert [f["name"] for f in data["factors"]] == ["obj<b>"]
    assert data["factors"][0]["levels"] == ["<i>cube</i>", "a&b"]


def test_script_json_cannot_close_its_element() -> None:
    text = str(script_json({"a": "</script><!-- &"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- &"}


def test_out_dir_elsewhere_links_back_to_the_run(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    out = tmp_path / "site" / "reports"
    path = build_report(run, out)
    assert path == out / "index.html"
    assert _data(path)["base"] == "../../run"
    assert not (run / "report").exists()


def test_staleness_follows_the_run_files(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    assert report_is_stale(run)
    build_report(run)
    assert not report_is_stale(run)
    later = time.time() + 5
    os.utime(run / "episodes.jsonl", (later, later))
    assert report_is_stale(run)


def test_sensitivity_section_only_when_the_analysis_exists(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    html = build_report(run).read_text()
    assert 'id="sensitivity"' not in html
    (run / "analysis").mkdir()
    doc = {
        "outcome": "success",
        "outcome_kind": "binary",
        "n": 40,
        "base_rate": 0.75,
        "alpha": 0.05,
        "notes": ["length analysed among successes"],
        "some_future_field": [1, 2, 3],
        "factors": [
            {
                "name": "g",
                "kind": "continuous",
                "p_value": 0.0004,
                "p_adjusted": 0.0008,
                "significant": True,
                "effect": 0.42,
                "effect_ci": [0.3, 0.55],
                "rank": 1,
                "bins": [
                    {
                        "low": 0,
                        "high": 0.5,
                        "n": 20,
                        "successes": 15,
                        "rate": 0.75,
                        "ci_low": 0.5,
                        "ci_high": 0.9,
                    }
                ],
            }
        ],
        "interactions": [],
    }
    (run / "analysis" / "sensitivity.json").write_text(json.dumps(doc))
    Figure(figsize=(2, 1)).savefig(run / "analysis" / "sensitivity.png")
    path = build_report(run)
    parsed = _parse(path)
    html = path.read_text()
    assert 'id="sensitivity"' in html and "length analysed among successes" in html
    row = html[html.index('<tr data-factor="g"') :]
    row = row[: row.index("</tr>")]
    assert "42.0 pp" in row and "[30.0 pp, 55.0 pp]" in row and "&lt; 0.001" in row and ">yes<" in row
    imgs = [a["src"] for t, a in parsed.tags if t == "img"]
    assert imgs == ["../analysis/sensitivity.png"]


def _figure(html: str, factor: str) -> str:
    """The markup of the factor chart card of ``factor``."""
    match = re.search(rf'<figure class="chart-card( wide)?" data-factor="{re.escape(factor)}"', html)
    assert match is not None, factor
    start = match.start()
    return html[start : html.index("</figure>", start)]


def _svg_texts(markup: str) -> list[str]:
    """The visible text pieces of the SVG charts in ``markup`` (not their tooltips)."""
    return [
        re.sub(r"<title>.*?</title>", "", t) for t in re.findall(r"<text[^>]*>(.*?)</text>", markup, re.S)
    ]


def test_a_dimensionless_factor_shows_no_unit(tmp_path: Path) -> None:
    specs = [
        FactorSpec(name="object_friction", kind="continuous", low=0.02, high=1.0, units="1", nominal=1.0),
        FactorSpec(name="mass", kind="continuous", low=0.5, high=2.0, units="kg"),
    ]
    recs = [
        record("a", k, k % 3 != 0, factors={"object_friction": 0.02 + k * 0.0049, "mass": 0.5 + k * 0.0075})
        for k in range(200)
    ]
    run = write_run(tmp_path / "run", [JobSpec("a", recs, specs)])
    (run / "analysis").mkdir()
    doc = {"outcome": "success", "factors": [{"name": "object_friction", "units": "1", "rank": 1}]}
    (run / "analysis" / "sensitivity.json").write_text(json.dumps(doc))
    html = build_report(run).read_text()
    friction = _figure(html, "object_friction")
    caption = re.sub(r"<[^>]+>", "", friction[: friction.index("</figcaption>")])
    assert " ".join(caption.split()) == "object_friction 0.02 – 1 · n=200"  # was "0.02 – 1 1 · n=200"
    assert _svg_texts(friction) == [
        "0%",
        "25%",
        "50%",
        "75%",
        "100%",
        "0.02",
        "0.51",
        "1",
    ]  # no axis label "1"
    assert "object_friction in [0.02, 0.142]: " in friction  # a bin's tooltip: no unit after it
    assert "mass in [0.5, 0.688] kg: " in html
    mass = _figure(html, "mass")
    caption = re.sub(r"<[^>]+>", "", mass[: mass.index("</figcaption>")])
    assert " ".join(caption.split()) == "mass 0.5 – 2 kg · n=200"
    assert _svg_texts(mass)[-1] == "kg"
    row = html[html.index('<tr data-factor="object_friction"') :]
    row = row[: row.index("</tr>")]
    assert "(1)" not in row and "object_friction</td>" in row  # was "object_friction (1)"
    assert _data(build_report(run))["factors"][0]["units"] is None


def test_every_line_of_a_factor_chart_is_an_axis_part_or_in_the_legend(tmp_path: Path) -> None:
    specs = [
        FactorSpec(name="g", kind="continuous", low=0.0, high=1.0, nominal=0.5),
        FactorSpec(name="obj", kind="categorical", values=["cube", "can"], nominal="can"),
    ]
    recs = [
        record("a", k, k % 4 != 0, factors={"g": k / 40, "obj": ["cube", "can"][k % 2]}) for k in range(40)
    ]
    html = build_report(write_run(tmp_path / "run", [JobSpec("a", recs, specs)])).read_text()
    section = html[
        html.index('<section id="factors">') : html.index("</section>", html.index('id="factors"'))
    ]
    legend = section[section.index('<p class="legend">') : section.index("</p>")]
    keys = set(re.findall(r'class="key key-([a-z]+)"', legend))
    assert keys == {"bar", "whisker", "nominal", "overall", "light", "hatch"}
    assert "</span> job's success rate\n" in legend
    lines = re.findall(r"<line\b[^>]*>", section)
    kinds = [(m.group(1) if (m := re.search(r'class="([a-z]+)"', ln)) else None, ln) for ln in lines]
    assert not [ln for kind, ln in kinds if kind is None]
    axis_parts = {"grid", "tick", "axis"}
    assert {kind for kind, _ in kinds} <= axis_parts | keys
    # The axis parts are solid and every gridline has its percentage next to it.
    assert not [ln for kind, ln in kinds if kind in axis_parts and "dasharray" in ln]
    assert _svg_texts(_figure(section, "g"))[:5] == ["0%", "25%", "50%", "75%", "100%"]
    # The job's success rate (30/40) is the dotted line, once per chart.
    overall = [ln for kind, ln in kinds if kind == "overall"]
    assert len(overall) == 2 and all('y1="41.5"' in ln for ln in overall)  # 12 + (1 - 0.75) * 118


def test_a_sensitivity_file_of_another_shape_still_renders(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    (run / "analysis" / "a").mkdir(parents=True)
    odd = {
        "outcome": ["not", "a", "string"],
        "base_rate": "high",
        "notes": "one note, not a list",
        "factors": [{"name": "g", "effect": "big", "effect_ci": 0.3, "p_value": None, "rank": "first"}, 7],
        "interactions": [{"factors": "g", "p_value": "?"}],
    }
    (run / "analysis" / "a" / "sensitivity.json").write_text(json.dumps(odd))
    (run / "analysis" / "b").mkdir()
    (run / "analysis" / "b" / "sensitivity.json").write_text("[1, 2]")
    html = build_report(run).read_text()
    block = html[html.index('id="sensitivity"') : html.index('id="episodes"')]
    assert "one note, not a list" in block and ">g<" in block
    assert "could not read analysis/b/sensitivity.json: the file does not hold a JSON object" in block


def test_the_report_never_imports_the_rollout_side(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    code = (
        "import sys\n"
        "from trialrun.report import build_report, make_server\n"
        f"build_report({str(run)!r})\n"
        "forbidden = ('trialrun.rollout', 'trialrun.envs', 'trialrun.policies', 'trialrun.execution',\n"
        "             'trialrun.variations', 'gymnasium', 'mujoco')\n"
        "print(sorted(m for m in sys.modules if m.startswith(forbidden)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_formats() -> None:
    assert [fmt_duration(s) for s in (None, 4.25, 75.2, 3725.0)] == ["-", "4.2 s", "1 min 15 s", "1 h 02 min"]
    assert [fmt_number(v) for v in (None, 3, 2.0, 387.58333, 1234.56, 1e-5, True)] == [
        "-",
        "3",
        "2",
        "387.6",
        "1234.6",
        "1.000e-05",
        "true",
    ]


def test_build_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run directory"):
        build_report(tmp_path / "nope")
    run = _sweep_run(tmp_path)
    (run / "blocked").write_text("a file, not a folder")
    with pytest.raises(InputError, match=r"cannot write the report to .*blocked/index.html"):
        build_report(run, run / "blocked")


# --------------------------------------------------------------------------- command line


def test_trialrun_report_command(tmp_path: Path) -> None:
    run = _sweep_run(tmp_path)
    done = _trialrun("report", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report in {run / 'report' / 'index.html'}"
    out = tmp_path / "elsewhere"
    done = _trialrun("report", str(run), "--out", str(out))
    assert done.returncode == 0 and (out / "index.html").is_file()

    bad = _trialrun("report", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"trialrun: error: {tmp_path / 'missing'}: no such run directory"
    (run / "summary.json").write_text('{"run": 3}')
    bad = _trialrun("report", str(run))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "summary.json: field 'run'" in bad.stderr


PROBE = {
    "name": "probe-report",
    "seed": 3,
    "jobs": [
        {"name": "probe", "env": "trialrun/SeedProbe-v0", "policy": "zero", "episodes": 6, "num_envs": 2}
    ],
}


def test_run_builds_the_report_unless_told_not_to(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(PROBE))
    done = _trialrun("run", str(cfg), "--run-dir", str(tmp_path / "r1"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r1" / "report" / "index.html").is_file()
    assert f"report in {tmp_path / 'r1' / 'report' / 'index.html'}" in done.stdout
    assert _data(tmp_path / "r1" / "report" / "index.html")["n"] == 6

    done = _trialrun("run", str(cfg), "--run-dir", str(tmp_path / "r2"), "--no-report", "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r2" / "summary.json").is_file() and not (tmp_path / "r2" / "report").exists()


def test_a_report_failure_does_not_change_the_exit_code(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    doc = json.loads(json.dumps(PROBE))
    doc["jobs"].append(
        {"name": "boom", "env": "trialrun/SeedProbe-v0", "policy": "helpers:ExplodingPolicy", "episodes": 4}
    )
    cfg.write_text(yaml.safe_dump(doc))
    for name, expected in (("ok", 0), ("failing", 1)):
        if name == "ok":
            cfg.write_text(yaml.safe_dump(PROBE))
        else:
            cfg.write_text(yaml.safe_dump(doc))
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "report").write_text("in the way")  # building report/index.html must fail
        done = _trialrun("run", str(cfg), "--run-dir", str(run_dir), "-q")
        assert done.returncode == expected, done.stderr
        assert "warning: could not build the report: cannot write the report to" in done.stderr
        assert f"try again with: trialrun report {run_dir}" in done.stderr
        assert "Traceback" not in done.stderr
        assert (run_dir / "summary.json").is_file()


# --------------------------------------------------------------------------- trajectories

TRAJECTORY_RUN = {
    "name": "trajectory-report",
    "seed": 3,
    "jobs": [
        {
            "name": "cart",
            "env": "CartPole-v1",
            "policy": "random",
            "episodes": 4,
            "num_envs": 2,
            "trajectories": {"select": "all"},
            "video": {"select": "first", "episodes": 2},
        },
        {
            "name": "pendulum",
            "env": "InvertedPendulum-v5",
            "policy": "random",
            "episodes": 3,
            "trajectories": {"select": "first", "episodes": 2},
        },
        {"name": "plain", "env": "CartPole-v1", "policy": "random", "episodes": 2},
    ],
}


def make_trajectory_run(run_dir: Path) -> Path:
    """A real run: CartPole keeping every trajectory (and two videos), InvertedPendulum-v5
    keeping two trajectories, and a job keeping none; its report built."""
    from trialrun.config import parse_run_config
    from trialrun.execution.runner import run_evaluation

    result = run_evaluation(parse_run_config(TRAJECTORY_RUN), run_dir)
    assert set(result.statuses.values()) == {"completed"}
    build_report(run_dir)
    return run_dir


def trajectory_templates(html: str) -> dict[int, tuple[int, str]]:
    """row -> (data-length, markup) of every <template> holding an episode's charts."""
    found = re.findall(r'<template id="traj-(\d+)" data-length="(\d+)">(.*?)</template>', html, re.S)
    return {int(row): (int(length), body) for row, length, body in found}


def chart_series(markup: str) -> dict[str, list[tuple[str, int, int]]]:
    """chart (actions, reward) -> [(series, data-points, points drawn in its path)]. A path
    draws one point per M, L (a line) or V (a step of a discrete action)."""
    charts: dict[str, list[tuple[str, int, int]]] = {}
    for kind, svg in re.findall(r'<svg class="tchart"[^>]*data-chart="(\w+)"[^>]*>(.*?)</svg>', markup, re.S):
        charts[kind] = [
            (name, int(points), len(re.findall(r"[MLV]", d)))
            for name, points, d in re.findall(
                r'<path class="series" data-series="([^"]*)" data-points="(\d+)" d="([^"]*)"', svg
            )
        ]
    return charts


@pytest.fixture(scope="module")
def trajectory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trajectory_run(tmp_path_factory.mktemp("traj") / "run")


def test_an_episode_with_a_trajectory_gets_action_and_reward_charts(trajectory_run: Path) -> None:
    path = trajectory_run / "report" / "index.html"
    html = path.read_text(encoding="utf-8")
    data = _data(path)
    templates = trajectory_templates(html)
    records = [json.loads(line) for line in (trajectory_run / "episodes.jsonl").read_text().splitlines()]
    by_key = {(r["job"], r["episode"]): r for r in records}
    with_trajectory = []
    for row in range(data["n"]):
        rec = by_key[(data["jobs"][data["job"][row]], data["episode"][row])]
        if "trajectory" not in rec:
            assert row not in templates, rec  # an episode without a trajectory shows none
            continue
        with_trajectory.append((rec["job"], rec["episode"]))
        length = rec["outcome"]["length"]
        assert templates[row][0] == length
        charts = chart_series(templates[row][1])
        assert set(charts) == {"actions", "reward"}
        # One action dimension each (CartPole's discrete action, the pendulum's force), every step drawn.
        assert [(n, p, d) for n, p, d in charts["actions"]] == [
            ("action" if rec["job"] == "cart" else "a[0]", length, length)
        ]
        assert charts["reward"] == [("cumulative return", length, length), ("reward", length, length)]
        assert [row, rec["trajectory"], "charted"] in data["trajectories"]
    assert sorted(with_trajectory) == [("cart", k) for k in range(4)] + [("pendulum", 0), ("pendulum", 1)]
    assert len(templates) == len(data["trajectories"]) == 6
    # Axis labels and the legend of the two lines of the reward chart.
    body = templates[0][1]
    for label in (">step<", ">action value<", ">reward<", ">cumulative return<", ">reward per step<"):
        assert label in body, label


def test_long_and_wide_trajectories_are_thinned_and_an_unreadable_one_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import numpy as np

    from test_report_data import write_trajectory

    run = tmp_path / "run"
    steps = 1234
    write_trajectory(
        run / "trajectories/a/ep0.h5", np.sin(np.arange(steps * 12.0)).reshape(steps, 12), np.ones(steps)
    )
    write_trajectory(run / "trajectories/a/ep1.h5", np.zeros(37, dtype=np.int64), np.ones(37))
    (run / "trajectories/a/ep2.h5").write_bytes(b"\x89HDF broken")
    recs = [
        record("a", 0, True, length=steps).model_copy(update={"trajectory": "trajectories/a/ep0.h5"}),
        record("a", 1, False, length=37).model_copy(update={"trajectory": "trajectories/a/ep1.h5"}),
        record("a", 2, False).model_copy(update={"trajectory": "trajectories/a/ep2.h5"}),
        record("a", 3, False).model_copy(update={"trajectory": "../outside.h5"}),
        record("a", 4, True),
    ]
    write_run(run, [JobSpec("a", recs)])
    with caplog.at_level("WARNING", logger="trialrun.report"):
        path = build_report(run)
    assert "ep2.h5: cannot read the trajectory, the report shows no charts for it" in caplog.text
    assert "ignoring trajectory path '../outside.h5'" in caplog.text
    html = path.read_text(encoding="utf-8")
    templates = trajectory_templates(html)
    assert set(templates) == {0, 1}
    charts = chart_series(templates[0][1])
    assert [n for n, _, _ in charts["actions"]] == [f"a[{j}]" for j in range(8)]  # 8 of 12 drawn
    assert all(p == d == 500 for _, p, d in charts["actions"] + charts["reward"])
    assert "4 more action dimensions not drawn (first 8 of 12 shown)" in templates[0][1]
    assert templates[0][1].count('class="key"') == 8 + 2  # a legend for the 8 lines, and for the reward chart
    assert "each line thinned to 500 points" in templates[0][1]
    assert chart_series(templates[1][1])["actions"] == [("action", 37, 37)]
    assert _data(path)["trajectories"] == [
        [0, "trajectories/a/ep0.h5", "charted"],
        [1, "trajectories/a/ep1.h5", "charted"],
        [2, "trajectories/a/ep2.h5", "unreadable"],
    ]


def test_trialrun_report_draws_the_trajectories(trajectory_run: Path) -> None:
    (trajectory_run / "report" / "index.html").unlink()
    done = _trialrun("report", str(trajectory_run))
    assert done.returncode == 0, done.stderr
    html = (trajectory_run / "report" / "index.html").read_text(encoding="utf-8")
    assert len(trajectory_templates(html)) == 6


def test_a_large_run_pages_its_table_from_data_files_beside_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above INLINE_ROWS the page holds only the columns' description; the rows
    are in episodes/rows-*.js (CHUNK_ROWS each), which the CSP lets it load."""
    monkeypatch.setattr("trialrun.report.builder.INLINE_ROWS", 30)
    monkeypatch.setattr("trialrun.report.builder.CHUNK_ROWS", 16)
    run = _sweep_run(tmp_path)  # 40 episodes: 3 files of 16, 16 and 8 rows
    path = build_report(run)
    data = _data(path)
    assert data["n"] == 40 and data["job"] == data["episode"] == [] and data["hasVideo"] is False
    assert [o["values"] for o in data["outcomes"]] == [[]] * len(data["outcomes"])
    token = data["chunks"]["files"][0].split("?v=")[1]
    assert data["chunks"] == {
        "rows": 16,
        "files": [f"episodes/rows-{i:05d}.js?v={token}" for i in range(3)],
    }
    parts = []
    for i in range(3):
        text = (path.parent / "episodes" / f"rows-{i:05d}.js").read_text(encoding="utf-8")
        assert text.startswith("trialrunRows(") and text.endswith(");\n")
        parts.append(json.loads(text[len("trialrunRows(") : -len(");\n")]))
    assert [(p["index"], p["start"], len(p["episode"])) for p in parts] == [
        (0, 0, 16),
        (1, 16, 16),
        (2, 32, 8),
    ]
    assert [e for p in parts for e in p["episode"]] == list(range(40))
    success = next(n for n, o in enumerate(data["outcomes"]) if o["name"] == "success")
    assert [v for p in parts for v in p["outcomes"][success]] == [int(k % 4 != 0) for k in range(40)]
    assert [v for p in parts for v in p["factors"][0]] == [k / 40 for k in range(40)]
    csp = next(a["content"] for t, a in _parse(path).tags if a.get("http-equiv") == "Content-Security-Policy")
    assert "script-src 'sha256-" in csp and csp.split("script-src ")[1].split(";")[0].endswith(" 'self'")

    # A rebuild of a smaller run drops the files it no longer needs; an inline table, all of them.
    monkeypatch.setattr("trialrun.report.builder.CHUNK_ROWS", 20)
    build_report(run)
    assert sorted(p.name for p in (path.parent / "episodes").iterdir()) == ["rows-00000.js", "rows-00001.js"]
    monkeypatch.setattr("trialrun.report.builder.INLINE_ROWS", 100)
    build_report(run)
    assert list((path.parent / "episodes").iterdir()) == []
    assert (
        len(_data(path)["episode"]) == 40
        and "'self'" not in path.read_text(encoding="utf-8").split("script-src")[1][:80]
    )
