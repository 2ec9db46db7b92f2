"""The report's "drop from nominal" chart: rates per one_at_a_time block with
Wilson intervals, the paired combined job, and the chart in headless Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from test_report_browser import browser, open_report  # noqa: F401  (browser is a fixture)
from test_report_data import JobSpec, record, write_run
from trialrun.report import build_report
from trialrun.report.data import load_run
from trialrun.report.nominal_drop import nominal_drops
from trialrun.runfiles.schema import FactorSpec
from trialrun.stats.intervals import wilson_interval

SPECS = [
    FactorSpec(name="std", kind="continuous", low=0.0, high=1.0, nominal=0.0),
    FactorSpec(name="lag", kind="categorical", values=[0, 2], nominal=0),
    FactorSpec(name="task", kind="categorical", values=["push"]),  # held: not a block
]
# Blocks of 4 episodes (k % 3): nominal all succeed, std half, lag none.
WINS = {
    0: True,
    1: True,
    2: False,
    3: True,
    4: True,
    5: False,
    6: True,
    7: False,
    8: False,
    9: True,
    10: False,
}


def _run(tmp_path: Path) -> Path:
    oat = [record("oat", k, WINS.get(k, False), factors={"std": 0.0}) for k in range(12)]
    combined = [record("all", k, k < 2, factors={"std": 0.5, "lag": 2, "task": "push"}) for k in range(8)]
    elsewhere = [record("other", k, True) for k in range(4)]
    config = {
        "name": "hand-run",
        "seed": 5,
        "jobs": [
            {"name": "oat", "env": {"id": "CartPole-v1"}, "design": "one_at_a_time"},
            {"name": "all", "env": {"id": "CartPole-v1"}, "design": "combined"},
            {"name": "other", "env": {"id": "Pendulum-v1"}, "design": "combined"},
        ],
    }
    return write_run(
        tmp_path / "run",
        [JobSpec("oat", oat, SPECS), JobSpec("all", combined, SPECS), JobSpec("other", elsewhere, SPECS)],
        config=config,
    )


def test_each_block_s_rate_and_interval_and_the_combined_job(tmp_path: Path) -> None:
    (drop,) = nominal_drops(load_run(_run(tmp_path)))
    assert drop.job == "oat"
    got = [(r.name, r.kind, r.n, r.successes) for r in drop.rows]
    assert got == [
        ("nominal", "nominal", 4, 4),
        ("std", "factor", 4, 2),
        ("lag", "factor", 4, 0),
        ("combined (all)", "combined", 8, 2),
    ]
    for row in drop.rows:
        assert row.rate == row.successes / row.n
        assert (row.low, row.high) == wilson_interval(row.successes, row.n)


def test_no_chart_without_a_one_at_a_time_job(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [JobSpec("j", [record("j", 0, True)], SPECS)])
    assert nominal_drops(load_run(run)) == []
    assert 'id="nominal-drop"' not in build_report(run).read_text()


def test_the_chart_shows_in_the_browser(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    page_path = build_report(_run(tmp_path))
    w = open_report(browser, page_path.as_uri(), "file://")
    page = w.page
    assert page.is_visible("#nominal-drop svg.drop-chart")
    rows = page.eval_on_selector_all(
        "#nominal-drop .drop-row", "gs => gs.map(g => [g.dataset.name, g.dataset.n, g.dataset.rate])"
    )
    assert rows == [
        ["nominal", "4", "1.0"],
        ["std", "4", "0.5"],
        ["lag", "4", "0.0"],
        ["combined (all)", "8", "0.25"],
    ]
    box = page.locator("#nominal-drop svg.drop-chart").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    line = page.locator("#nominal-drop line.nominal-rate")
    assert line.get_attribute("x1") == str(150 + 300)  # the nominal rate, 100%, at the right end
    assert w.problems == []
