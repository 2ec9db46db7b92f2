"""trialrun.report.charts: inline SVG charts, parsed back as XML to check them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from trialrun.report.charts import factor_chart, interval_bar, pct, short_number
from trialrun.report.data import bin_factor
from trialrun.report.linechart import action_chart, reward_chart
from trialrun.report.trajectories import Series, TrajectoryData
from trialrun.runfiles.schema import FactorSpec

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_interval_bar_draws_rate_and_whiskers_on_a_0_1_track() -> None:
    root = _parse(interval_bar(0.5, 0.25, 0.75, label="job <a>", width=108, height=20))
    assert (
        root.get("data-rate") == "0.5" and root.get("data-low") == "0.25" and root.get("data-high") == "0.75"
    )
    assert root.findtext(f"{SVG}title") == "job <a>: 50.0% (95% CI 25.0% to 75.0%)"
    rects = root.findall(f"{SVG}rect")
    assert [r.get("width") for r in rects] == ["100", "50"]  # track, then the bar to 50%
    whisker = [ln for ln in root.findall(f"{SVG}line") if ln.get("y1") == ln.get("y2")]
    assert [(ln.get("x1"), ln.get("x2")) for ln in whisker] == [("29", "79")]  # 4 + 0.25*100 .. 4 + 0.75*100


def test_interval_bar_without_episodes_is_an_empty_track() -> None:
    root = _parse(interval_bar(None, None, None, label="x"))
    assert root.get("data-rate") is None and len(root.findall(f"{SVG}rect")) == 1
    assert root.get("aria-label") == "x: no episodes"


def test_factor_chart_has_one_group_per_bin_with_counts_and_a_nominal_line() -> None:
    spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=4.0, nominal=1.0, units="kg")
    fb = bin_factor(spec, [0.5, 0.6, 1.5, 3.9], [True, False, True, False], bins=4)
    root = _parse(factor_chart(fb))
    groups = root.findall(f"{SVG}g")
    assert [(g.get("data-n"), g.get("data-successes")) for g in groups] == [
        ("2", "1"),
        ("1", "1"),
        ("0", "0"),
        ("1", "0"),
    ]
    titles = [g.findtext(f"{SVG}title") for g in groups]
    assert titles[0] == (
        "mass in [0, 1] kg: 1/2 succeeded = 50.0% (95% CI 9.5% to 90.5%) (click to list these episodes)"
    )
    assert titles[2] == "mass in [2, 3] kg: no episodes"
    assert [(g.get("data-low"), g.get("data-high")) for g in groups] == [
        ("0.0", "1.0"),
        ("1.0", "2.0"),
        ("2.0", "3.0"),
        ("3.0", "4.0"),
    ]
    assert groups[2].find(f"{SVG}rect").get("fill") == "url(#hatch)"  # type: ignore[union-attr]
    nominal = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "nominal"]
    assert len(nominal) == 1 and nominal[0].get("x1") == nominal[0].get("x2")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "0" in texts and "4" in texts and "kg" in texts
    assert not [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "overall"]  # no rate given


def test_factor_chart_draws_the_job_rate_and_labels_every_gridline() -> None:
    spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=4.0)
    fb = bin_factor(spec, [0.5, 0.6, 1.5, 3.9], [True, False, True, False], bins=4)
    root = _parse(factor_chart(fb, overall=0.5))
    lines = list(root.iter(f"{SVG}line"))
    (overall,) = [ln for ln in lines if ln.get("class") == "overall"]
    assert overall.get("y1") == overall.get("y2") == "71"  # 12 + 0.5 * 118
    assert overall.findtext(f"{SVG}title") == "job's success rate 50.0%"
    grid = [ln for ln in lines if ln.get("class") == "grid"]
    assert [ln.get("y1") for ln in grid] == ["130", "100.5", "71", "41.5", "12"]
    assert all(ln.get("stroke-dasharray") is None for ln in grid)
    labels = {t.get("y"): t.text for t in root.iter(f"{SVG}text") if (t.text or "").endswith("%")}
    assert labels == {"133.5": "0%", "104": "25%", "74.5": "50%", "45": "75%", "15.5": "100%"}
    assert {ln.get("class") for ln in lines} == {"grid", "whisker", "tick", "overall", "axis"}


def test_log_factor_chart_places_bins_evenly_on_a_log_axis() -> None:
    spec = FactorSpec(name="f", kind="continuous", low=0.01, high=100.0, scale="log")
    fb = bin_factor(spec, [0.05, 0.5, 5, 50], [True, True, False, False], bins=4)
    root = _parse(factor_chart(fb))
    widths = {round(float(g.find(f"{SVG}rect").get("width")), 1) for g in root.findall(f"{SVG}g")}  # type: ignore[union-attr]
    assert len(widths) == 1  # equal widths: the edges are log-spaced and the axis is log
    assert "(log scale)" in [t.text for t in root.iter(f"{SVG}text")]


def test_categorical_chart_escapes_levels() -> None:
    spec = FactorSpec(
        name="obj", kind="categorical", values=["<script>alert(1)</script>", "can"], nominal="can"
    )
    fb = bin_factor(spec, ["<script>alert(1)</script>", "can"], [True, False])
    markup = str(factor_chart(fb))
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    root = _parse(markup)
    labels = [t for t in root.iter(f"{SVG}text")]
    assert any(t.findtext(f"{SVG}title") == "<script>alert(1)</script>" for t in labels)
    assert any(p.findtext(f"{SVG}title") == "nominal" for p in root.iter(f"{SVG}path"))
    assert [g.get("data-level") for g in root.findall(f"{SVG}g")] == ['"<script>alert(1)</script>"', '"can"']


def test_chart_of_a_factor_without_episodes() -> None:
    fb = bin_factor(FactorSpec(name="x", kind="continuous"), [], [])
    assert "no episodes" in str(factor_chart(fb))


def test_number_formats() -> None:
    assert [short_number(v) for v in (0, 0.05, 2.0, 27.33, 1234.5, 1e-5, 2e7)] == [
        "0",
        "0.05",
        "2",
        "27.3",
        "1234",
        "1e-05",
        "2e+07",
    ]
    assert pct(0.7166) == "71.7%" and pct(None) == "-"


# --------------------------------------------------------------------------- trajectory charts


def test_trajectory_charts_are_valid_svg_with_escaped_names_and_gaps_at_non_finite_values() -> None:
    steps = np.arange(6)
    data = TrajectoryData(
        length=6,
        action_dims=3,
        actions=[
            Series("<img src=x onerror=alert(1)>", steps, np.array([0.0, 1.0, np.nan, 3.0, 4.0, 5.0])),
            Series("grip", steps, np.array([0, 1, 1, 0, 0, 1]), discrete=True),
        ],
        reward=Series("reward", steps, np.ones(6)),
        ret=Series("cumulative return", steps, np.cumsum(np.ones(6))),
    )
    actions = _parse(action_chart(data))
    paths = actions.findall(f"{SVG}path")
    assert [p.get("data-series") for p in paths] == ["<img src=x onerror=alert(1)>", "grip"]
    assert [p.get("data-points") for p in paths] == ["5", "6"]  # the NaN is left out...
    assert paths[0].get("d", "").count("M") == 2  # ...and the line broken there
    assert "V" in paths[1].get("d", "") and "L" not in paths[1].get("d", "")  # a discrete action steps
    texts = ["".join(t.itertext()) for t in actions.iter(f"{SVG}text")]
    assert "<img src=x onerror=alert(1)>" in texts and "action value" in texts and "step" in texts
    assert "1 more action dimension not drawn (first 2 of 3 shown)" in texts
    reward = _parse(reward_chart(data))
    assert reward.get("data-length") == "6"
    assert {"reward", "cumulative return", "reward per step", "cumulative return (right axis)"} <= {
        "".join(t.itertext()) for t in reward.iter(f"{SVG}text")
    }
