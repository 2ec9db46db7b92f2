"""The report in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Every page load checks that nothing failed: no console error, no uncaught
exception, no failed request and no request leaving the run (file:// pages
fetch only file:// URLs; served pages only the server's own URLs).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from helpers import subprocess_env
from test_report_builder import make_trajectory_run
from test_report_data import JobSpec, record, write_run
from trialrun.analysis.api import analyze
from trialrun.analysis.plots import DPI, MIN_FONT_KEY
from trialrun.analysis.synthetic import make_sweep
from trialrun.compare import compare_runs, write_comparison
from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.report import build_report, make_server
from trialrun.runfiles import read_episodes
from trialrun.runfiles.schema import EpisodeRecord, FactorSpec

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS_JOB = "<img src=x onerror=alert(1)>"
QUOTE_JOB = "pick place's $HOME"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watched:
    """A page plus everything that went wrong on it."""

    def __init__(self, page: Page, allowed_prefix: str) -> None:
        self.page = page
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on(
            "console",
            lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("dialog", self._dialog)

        def on_request(req: Any) -> None:
            self.requests.append(req.url)
            if not req.url.startswith(allowed_prefix):
                self.problems.append(f"request outside the run: {req.url}")

        page.on("request", on_request)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def open_report(browser: Browser, url: str, allowed_prefix: str) -> Watched:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page, allowed_prefix)
    page.goto(url)
    page.wait_for_selector("#episode-app[data-ready]", state="attached", timeout=60_000)
    return watched


def count(page: Page) -> int:
    return int(page.get_attribute("#ep-count", "data-count") or -1)


def wait_until(page: Page, predicate: str, arg: Any = None, timeout: float = 30.0) -> None:
    """Poll ``predicate`` (a JS function of ``arg``) until it is true. Playwright's
    wait_for_function evaluates strings with eval(), which the report's CSP forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate} ({arg!r})")
        time.sleep(0.05)


def wait_count(page: Page, expected: int) -> None:
    wait_until(page, "n => document.getElementById('ep-count').dataset.count === String(n)", expected)


def all_rows(page: Page) -> list[tuple[str, int]]:
    """(job, episode) of every row of the filtered table, across all pages."""
    page.select_option("#page-size", "1000")
    if page.is_enabled("#page-first"):
        page.click("#page-first")
    rows: list[tuple[str, int]] = []
    while True:
        rows += [
            (r["job"], int(r["episode"]))
            for r in page.eval_on_selector_all(
                "#episodes-table tbody tr[data-row]", "rs => rs.map(r => r.dataset)"
            )
        ]
        if page.is_disabled("#page-next"):
            return rows
        page.click("#page-next")


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fast real run: CartPole with three factors, the seed probe, and a job that fails."""
    config = parse_run_config(
        {
            "name": "browser-sweep",
            "seed": 11,
            "jobs": [
                {
                    "name": "lqr",
                    "env": "CartPole-v1",
                    "policy": "cartpole-balance",
                    "episodes": 90,
                    "num_envs": 8,
                    "max_steps": 200,
                    "success": "survived",
                    "design": "lhs",
                    "factors": {
                        "pole_length": {
                            "variation": {"type": "attr", "name": "length"},
                            "sampler": {"type": "uniform", "low": 0.05, "high": 3.0},
                        },
                        "pole_mass": {
                            "variation": {"type": "attr", "name": "masspole"},
                            "sampler": {"type": "loguniform", "low": 0.01, "high": 5.0},
                        },
                        "gravity": {
                            "variation": {"type": "attr", "name": "gravity"},
                            "sampler": {"type": "uniform", "low": 2.0, "high": 40.0},
                        },
                    },
                },
                {
                    "name": "probe",
                    "env": "trialrun/SeedProbe-v0",
                    "policy": "zero",
                    "episodes": 30,
                    "num_envs": 3,
                },
                {
                    "name": "boom",
                    "env": "trialrun/SeedProbe-v0",
                    "policy": "helpers:ExplodingPolicy",
                    "episodes": 5,
                },
            ],
        }
    )
    run_dir = tmp_path_factory.mktemp("real") / "browser-sweep"
    result = run_evaluation(config, run_dir)
    assert result.statuses == {"lqr": "completed", "probe": "completed", "boom": "failed"}
    build_report(run_dir)
    return run_dir


def _dom_summary(page: Page) -> dict[str, dict[str, str]]:
    script = """() => {
      const out = {};
      const read = (root, key) => {
        const fields = {};
        root.querySelectorAll('[data-field]').forEach(e => { fields[e.dataset.field] = e.dataset.value; });
        out[key] = fields;
      };
      document.querySelectorAll('#jobs tr.job-row').forEach(tr => read(tr, tr.dataset.job));
      read(document.getElementById('overall'), '(all)');
      return out;
    }"""
    return page.evaluate(script)  # type: ignore[no-any-return]


def test_report_from_disk_loads_cleanly_and_shows_summary_json(browser: Browser, real_run: Path) -> None:
    w = open_report(browser, (real_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    assert page.inner_text("#run-name") == "browser-sweep"
    assert page.get_attribute("#run-status", "data-status") == "failed"
    summary = json.loads((real_run / "summary.json").read_text())
    dom = _dom_summary(page)
    assert set(dom) == {"lqr", "probe", "boom", "(all)"}
    for name, fields in dom.items():
        expected = summary["overall"] if name == "(all)" else summary["jobs"][name]
        flat = {
            "success_rate": expected["success_rate"],
            "episodes": expected["episodes"],
            "planned": expected["planned"],
            "successes": expected["successes"],
            "return_mean": expected["return_mean"],
            "return_iqm": expected["return_iqm"],
            "success_ci_low": expected["success_ci"] and expected["success_ci"]["low"],
            "success_ci_high": expected["success_ci"] and expected["success_ci"]["high"],
            "return_ci_low": expected["return_ci"] and expected["return_ci"]["low"],
            "return_ci_high": expected["return_ci"] and expected["return_ci"]["high"],
            "length_mean": expected["length_mean"],
            "terminated": expected["terminated"],
            "truncated": expected["truncated"],
        }
        for key, value in fields.items():
            want = flat[key]
            assert (None if value == "" else float(value)) == want, (name, key)
        if expected["episodes"]:
            assert len(fields) == (10 if name == "(all)" else 13), (name, fields)
    # The failed job: its error on the page, the traceback collapsed until asked for.
    card = page.locator('.error-card[data-job="boom"]')
    assert "RuntimeError: policy exploded on purpose" in card.inner_text()
    assert not card.locator("details.traceback pre").is_visible()
    card.locator("details.traceback summary").click()
    assert "Traceback (most recent call last)" in card.locator("details.traceback pre").inner_text()
    # One chart per factor of the CartPole job, with the declared log scale.
    charts = page.locator('.factor-job[data-job="lqr"] figure.chart-card')
    assert charts.count() == 3
    assert "(log scale)" in (page.locator('figure[data-factor="pole_mass"] svg').text_content() or "")
    # The config is collapsible and holds the YAML.
    assert not page.locator("#config pre").is_visible()
    page.click("#config summary")
    assert "name: browser-sweep" in page.inner_text("#config pre")
    assert w.problems == [] and w.dialogs == []


def test_report_via_serve_loads_cleanly(browser: Browser, real_run: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trialrun.cli", "report", str(real_run), "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"at (http://\S+) \(Ctrl\+C", proc.stdout.readline())
        assert match
        url = match.group(1)
        origin = url[: url.index("/report/")]
        w = open_report(browser, url, origin + "/")
        assert w.page.inner_text("#run-name") == "browser-sweep"
        assert count(w.page) == len(read_episodes(real_run / "episodes.jsonl"))
        assert w.problems == [] and w.dialogs == []
        assert all(u.startswith(origin) for u in w.requests)
        w.page.close()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err


def test_filtering_to_failures_shows_exactly_the_failed_episodes(browser: Browser, real_run: Path) -> None:
    records = read_episodes(real_run / "episodes.jsonl")
    failed = sorted((r.job, r.episode) for r in records if not r.outcome["success"])
    assert 0 < len(failed) < len(records)
    w = open_report(browser, (real_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    assert count(page) == len(records)
    page.select_option("#filter-outcome", "failure")
    wait_count(page, len(failed))
    assert sorted(all_rows(page)) == failed
    # Narrow to one job and a factor range: the same episodes a direct count finds.
    page.select_option("#filter-job", label="lqr")
    page.fill('input[data-factor="pole_length"][id$="-min"]', "1")
    page.fill('input[data-factor="pole_length"][id$="-max"]', "2.5")
    expected = sorted(
        (r.job, r.episode)
        for r in records
        if r.job == "lqr" and not r.outcome["success"] and 1 <= float(r.factors["pole_length"]) <= 2.5
    )
    wait_count(page, len(expected))
    assert sorted(all_rows(page)) == expected
    page.click("#filter-reset")
    wait_count(page, len(records))
    # A click on a bin of a factor chart lists exactly that bin's episodes.
    bin_ = page.locator('.factor-job[data-job="lqr"] figure[data-factor="gravity"] g.bin.clickable').nth(1)
    low, high = (
        float(bin_.get_attribute("data-low") or "nan"),
        float(bin_.get_attribute("data-high") or "nan"),
    )
    n_bin = int(bin_.get_attribute("data-n") or -1)
    bin_.click()
    in_bin = sorted(
        (r.job, r.episode) for r in records if r.job == "lqr" and low <= float(r.factors["gravity"]) <= high
    )
    wait_count(page, len(in_bin))
    assert len(in_bin) == n_bin and sorted(all_rows(page)) == in_bin
    assert page.input_value('input[data-factor="gravity"][id$="-min"]') == repr(low).removesuffix(".0")
    assert w.problems == []


def test_sorting_by_a_column_orders_the_rows(browser: Browser, real_run: Path) -> None:
    records = read_episodes(real_run / "episodes.jsonl")
    w = open_report(browser, (real_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    page.select_option("#page-size", "1000")
    page.click('button[data-sort="o:return"]')
    assert page.get_attribute('th[data-col="o:return"]', "aria-sort") == "ascending"
    rows = page.eval_on_selector_all("#episodes-table tbody tr[data-row]", "rs => rs.map(r => r.dataset)")
    returns = {(r.job, r.episode): float(r.outcome["return"]) for r in records}
    shown = [returns[(r["job"], int(r["episode"]))] for r in rows]
    assert len(shown) == len(records) and shown == sorted(returns.values())
    page.click('button[data-sort="o:return"]')
    assert page.get_attribute('th[data-col="o:return"]', "aria-sort") == "descending"
    rows = page.eval_on_selector_all("#episodes-table tbody tr[data-row]", "rs => rs.map(r => r.dataset)")
    assert [returns[(r["job"], int(r["episode"]))] for r in rows] == sorted(returns.values(), reverse=True)
    # A factor column: rows without the factor (other jobs) go last.
    page.click('button[data-sort="f:gravity"]')
    rows = page.eval_on_selector_all("#episodes-table tbody tr[data-row]", "rs => rs.map(r => r.dataset)")
    gravity = {(r.job, r.episode): r.factors.get("gravity") for r in records}
    values = [gravity[(r["job"], int(r["episode"]))] for r in rows]
    present = [v for v in values if v is not None]
    assert values == present + [None] * (len(values) - len(present)) and present == sorted(present)
    assert w.problems == []


# --------------------------------------------------------------------------- 100,000 episodes


def test_a_run_of_100000_episodes_stays_responsive(browser: Browser, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_per_job = 50_000
    specs = [
        FactorSpec(name="mass", kind="continuous", low=0.1, high=10.0, scale="log", units="kg"),
        FactorSpec(name="friction", kind="continuous", low=0.0, high=2.0),
        FactorSpec(name="object", kind="categorical", values=["cube", "can", "mug"]),
    ]
    t = time.perf_counter()
    jobs = []
    failures = 0
    for name in ("pick", "push"):
        mass = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n_per_job))
        friction = rng.uniform(0, 2, n_per_job)
        obj = rng.choice(["cube", "can", "mug"], n_per_job)
        success = rng.random(n_per_job) < 0.9 - 0.3 * (friction < 0.3)
        failures += int((~success).sum())
        recs = [
            EpisodeRecord.model_construct(
                schema_version=1,
                run="big",
                job=name,
                episode=k,
                seed=int(k * 7919 % 2**32),
                env_index=k % 16,
                factors={"mass": float(mass[k]), "friction": float(friction[k]), "object": str(obj[k])},
                outcome={"success": bool(success[k]), "return": float(k % 500) / 3, "length": int(k % 500)},
                video={},
                started_at="2026-11-21T19:00:01.000Z",
                ended_at="2026-11-21T19:00:01.400Z",
                extra={},
            )
            for k in range(n_per_job)
        ]
        jobs.append(JobSpec(name, recs, specs))
    run = write_run(tmp_path / "big", jobs, name="big")
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    path = build_report(run)
    t_build = time.perf_counter() - t
    size_mb = path.stat().st_size / 1e6

    t = time.perf_counter()
    w = open_report(browser, path.as_uri(), "file://")
    t_load = time.perf_counter() - t
    page = w.page
    assert count(page) == 100_000
    assert page.get_attribute("#page-label", "data-pages") == "2000"
    assert page.locator("#episodes-table tbody tr[data-row]").count() == 50  # only one page in the DOM

    t = time.perf_counter()
    page.select_option("#filter-outcome", "failure")
    wait_count(page, failures)
    t_filter = time.perf_counter() - t
    filter_ms = int(page.get_attribute("#episode-app", "data-filter-ms") or -1)

    t = time.perf_counter()
    page.click('button[data-sort="f:mass"]')
    page.wait_for_selector('th[data-col="f:mass"][aria-sort="ascending"]')
    t_sort = time.perf_counter() - t
    page.click("#page-last")
    last = page.eval_on_selector_all("#episodes-table tbody tr[data-row]", "rs => rs.length")
    assert last == failures - 50 * (int(page.get_attribute("#page-label", "data-pages") or 0) - 1)
    row = page.locator("#episodes-table tbody tr[data-row]").first
    row.click()
    page.wait_for_selector("#episode-view[open]")
    assert w.problems == []
    print(
        f"\n100k episodes: write {t_write:.2f} s, build {t_build:.2f} s ({size_mb:.1f} MB), "
        f"load {t_load:.2f} s, filter to {failures} failures {t_filter:.2f} s (in-page {filter_ms} ms), "
        f"sort {t_sort:.2f} s"
    )
    # Generous bounds: this machine is shared; they catch a page that hangs, not a slow one.
    assert t_load < 60 and t_filter < 30


def _paged_run(root: Path, n: int) -> Path:
    """A run of ``n`` episodes in two jobs (``a`` gets the first half), one factor."""
    spec = FactorSpec(name="mass", kind="continuous", low=0.0, high=1.0)
    half = n // 2
    jobs = []
    for j, name in enumerate(("a", "b")):
        recs = [
            EpisodeRecord.model_construct(
                schema_version=1,
                run="paged",
                job=name,
                episode=k,
                seed=100_000 * j + k,
                env_index=k % 8,
                factors={"mass": (k % 1000) / 1000},
                outcome={"success": k % 3 != 0, "return": float(k), "length": k % 50},
                video={},
                started_at="2026-11-21T19:00:01.000Z",
                ended_at="2026-11-21T19:00:01.400Z",
                extra={"note": f"{name}-{k}"} if k % 10_000 == 7 else {},
            )
            for k in range(half)
        ]
        jobs.append(JobSpec(name, recs, [spec]))
    return write_run(root, jobs, name="paged")


def _shown(page: Page) -> list[tuple[str, int]]:
    return [
        (r["job"], int(r["episode"]))
        for r in page.eval_on_selector_all(
            "#episodes-table tbody tr[data-row]", "rs => rs.map(r => r.dataset)"
        )
    ]


def _wait_shown(page: Page, first: tuple[str, int]) -> None:
    wait_until(
        page,
        "f => { const r = document.querySelector('#episodes-table tbody tr[data-row]');"
        " return !!r && r.dataset.job === f[0] && r.dataset.episode === String(f[1]); }",
        list(first),
    )


def test_a_paged_table_loads_the_rows_it_shows_from_the_data_files(browser: Browser, tmp_path: Path) -> None:
    run = _paged_run(tmp_path / "paged", 90_000)  # 5 data files of 20,000 rows
    path = build_report(run)
    assert sorted(p.name for p in (path.parent / "episodes").iterdir()) == [
        f"rows-{i:05d}.js" for i in range(5)
    ]
    w = open_report(browser, path.as_uri(), "file://")
    page = w.page
    assert count(page) == 90_000 and page.get_attribute("#page-label", "data-pages") == "1800"
    assert _shown(page) == [("a", k) for k in range(50)]
    # Only the first file is read to open the page.
    assert [u.split("/")[-1].split("?")[0] for u in w.requests if "/episodes/" in u] == ["rows-00000.js"]

    page.click("#page-next")
    _wait_shown(page, ("a", 50))
    assert _shown(page) == [("a", k) for k in range(50, 100)]
    page.click("#page-last")  # rows 89,950..89,999: job b's last episodes, in the fifth file
    _wait_shown(page, ("b", 44_950))
    assert _shown(page) == [("b", k) for k in range(44_950, 45_000)]
    assert page.get_attribute("#page-label", "data-page") == "1800"
    loaded = sorted({u.split("/")[-1].split("?")[0] for u in w.requests if "/episodes/" in u})
    assert loaded == ["rows-00000.js", "rows-00004.js"]

    # A row of a late file opens in the episode view, and so does its neighbour.
    page.select_option("#filter-job", "1")
    wait_count(page, 45_000)
    page.click('button[data-sort="o:return"]')
    page.wait_for_selector('th[data-col="o:return"][aria-sort="ascending"]')
    page.click("#page-last")
    _wait_shown(page, ("b", 44_950))
    page.locator('#episodes-table tbody tr[data-episode="44957"]').click()
    page.wait_for_selector("#episode-view[open]")
    assert page.get_attribute("#episode-view", "data-episode") == "44957"
    page.click("#ev-next")
    wait_until(page, "() => document.getElementById('episode-view').dataset.episode === '44958'")

    # Filtering reads every file: exactly the failures (every third episode of each job).
    page.keyboard.press("Escape")
    page.select_option("#filter-job", "-1")
    page.select_option("#filter-outcome", "failure")
    wait_count(page, 2 * 15_000)
    assert sorted({u.split("/")[-1].split("?")[0] for u in w.requests if "/episodes/" in u}) == [
        f"rows-{i:05d}.js" for i in range(5)
    ]
    assert w.problems == []


def test_a_paged_report_opens_an_episode_from_its_address(browser: Browser, tmp_path: Path) -> None:
    run = _paged_run(tmp_path / "paged", 45_000)
    path = build_report(run)
    w = open_report(browser, path.as_uri() + "#episode=b/20007", "file://")
    page = w.page
    page.wait_for_selector("#episode-view[open]")
    assert page.get_attribute("#episode-view", "data-job") == "b"
    assert "b-20007" in (page.text_content("#episode-view") or "")
    assert w.problems == []


def test_a_served_paged_report_loads_its_data_files_from_the_server(browser: Browser, tmp_path: Path) -> None:
    run = _paged_run(tmp_path / "paged", 45_000)
    build_report(run)
    with served(run) as (url, origin):
        w = open_report(browser, url, origin)
        page = w.page
        assert count(page) == 45_000 and _shown(page)[:2] == [("a", 0), ("a", 1)]
        page.click("#page-last")
        _wait_shown(page, ("b", 22_450))
        assert _shown(page) == [("b", k) for k in range(22_450, 22_500)]
        assert sorted(u.split("?")[0].rsplit("/", 1)[1] for u in w.requests if "/episodes/" in u) == [
            "rows-00000.js",
            "rows-00002.js",
        ]
        assert w.problems == []


# --------------------------------------------------------------------------- videos


def make_mp4(path: Path, seconds: float = 2.0, fps: int = 25, size: tuple[int, int] = (96, 64)) -> None:
    """A small real H.264 (yuv420p) mp4 with a moving bar, moov atom first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            img = np.full((h, w, 3), 30, dtype=np.uint8)
            x = int(i * (w - 8) / (seconds * fps))
            img[:, x : x + 8] = (230, 120, 20)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("video") / "video-run"
    make_mp4(run / "videos" / "cam job" / "ep0-top.mp4")
    make_mp4(run / "videos" / "cam job" / "ep0-side view.mp4")
    with av.open(str(run / "videos" / "cam job" / "ep0-top.mp4")) as c:  # it decodes: a real mp4
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames == 50
    recs = [
        record(
            "cam job",
            0,
            True,
            video={"top": "videos/cam job/ep0-top.mp4", "side": "videos/cam job/ep0-side view.mp4"},
        ),
        record("cam job", 1, False, video={"top": "videos/cam job/ep1-top.mp4"}),  # never written
    ]
    write_run(run, [JobSpec("cam job", recs)])
    build_report(run)
    return run


def _play(page: Page, selector: str, seek: float | None = None) -> float:
    """Play a video (muted, as autoplay rules allow) and return its currentTime after it advanced."""
    wait_until(page, "sel => document.querySelector(sel).readyState >= 1", selector)
    script = """([sel, seek]) => {
        const v = document.querySelector(sel); v.muted = true;
        if (seek !== null) v.currentTime = seek;
        return v.play().then(() => true);
    }"""
    assert page.evaluate(script, [selector, seek])
    start = seek or 0.0
    wait_until(page, "([sel, t]) => document.querySelector(sel).currentTime > t", [selector, start + 0.3])
    return float(page.evaluate(f"document.querySelector({selector!r}).currentTime"))


def test_episode_view_plays_videos_from_disk(browser: Browser, video_run: Path) -> None:
    w = open_report(browser, (video_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    page.click('#episodes-table tr[data-episode="0"]')
    page.wait_for_selector("#episode-view[open]")
    cams = page.eval_on_selector_all("#episode-view video", "vs => vs.map(v => v.dataset.camera)")
    assert cams == ["top", "side"]  # all cameras, side by side
    boxes = [page.locator(f'#episode-view video[data-camera="{c}"]').bounding_box() for c in cams]
    assert boxes[0] and boxes[1] and abs(boxes[0]["y"] - boxes[1]["y"]) < 1 and boxes[0]["x"] < boxes[1]["x"]
    assert _play(page, '#episode-view video[data-camera="side"]') > 0.3
    assert page.inner_text("#replay-cmd") == f"trialrun replay {video_run.resolve()} 'cam job' 0"
    assert page.evaluate("location.hash") == "#episode=cam%20job/0"
    page.click("#ev-next")
    page.wait_for_selector('#episode-view[data-episode="1"]')
    assert page.locator("#episode-view video").count() == 0
    assert "video file missing: videos/cam job/ep1-top.mp4" in page.inner_text("#episode-view")
    page.keyboard.press("Escape")
    page.wait_for_selector("#episode-view:not([open])", state="attached")
    assert w.problems == [] and w.dialogs == []


@contextlib.contextmanager
def served(run_dir: Path) -> Iterator[tuple[str, str]]:
    """The run served on a free port in a thread: ``(report URL, origin)``."""
    server = make_server(run_dir, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = server.url("report/index.html")
        yield url, url[: url.index("/report/")]
    finally:
        server.shutdown()
        server.server_close()


def test_served_video_plays_and_seeks(browser: Browser, video_run: Path) -> None:
    with served(video_run) as (url, origin):
        w = open_report(browser, f"{url}#episode=cam%20job/0", origin + "/")
        page = w.page
        page.wait_for_selector('#episode-view[open][data-episode="0"]')  # opened from the link
        after = _play(page, '#episode-view video[data-camera="top"]', seek=1.0)
        assert after > 1.3  # seeking needs Range support
        assert w.problems == []


# --------------------------------------------------------------------------- trajectories


@pytest.fixture(scope="module")
def trajectory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trajectory_run(tmp_path_factory.mktemp("trajectories") / "trajectory-report")


def _trajectory_series(page: Page) -> list[tuple[str, str, int, float]]:
    """(chart, series, data-points, drawn width in CSS pixels) of every line in the episode view."""
    script = """() => Array.from(document.querySelectorAll('#episode-view .ev-traj path.series')).map(p =>
      [p.closest('svg').dataset.chart, p.dataset.series, Number(p.dataset.points), p.getBoundingClientRect().width])"""
    return [tuple(x) for x in page.evaluate(script)]


def _coloured_pixels(path: Path, colour: tuple[int, int, int]) -> int:
    """Pixels of a screenshot within a small distance of ``colour`` (a line's stroke, antialiased)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    return int((np.abs(pixels - np.array(colour)).sum(axis=2) < 60).sum())


def _open_episode_view(w: Watched, job: str, episode: int) -> None:
    w.page.evaluate("h => { location.hash = h; }", f"#episode={job}/{episode}")
    w.page.wait_for_selector(f'#episode-view[open][data-job="{job}"][data-episode="{episode}"]')


def test_episode_view_draws_action_and_reward_beside_the_video(
    browser: Browser, trajectory_run: Path, tmp_path: Path
) -> None:
    lengths = {
        (r.job, r.episode): r.outcome["length"] for r in read_episodes(trajectory_run / "episodes.jsonl")
    }
    w = open_report(browser, (trajectory_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    _open_episode_view(w, "cart", 0)
    # Beside the video: in the same row, to its right, as wide as a camera.
    video = page.locator("#episode-view video").bounding_box()
    charts = page.locator("#episode-view figure.ev-traj").bounding_box()
    assert (
        video and charts and abs(video["y"] - charts["y"]) < 1 and charts["x"] > video["x"] + video["width"]
    )
    assert charts["width"] > 400
    n = lengths[("cart", 0)]
    series = _trajectory_series(page)
    assert [(c, s, p) for c, s, p, _ in series] == [
        ("actions", "action", n),
        ("reward", "cumulative return", n),
        ("reward", "reward", n),
    ]
    assert all(width > 300 for *_, width in series)  # drawn across the plot, not collapsed
    text = page.inner_text("#episode-view .ev-traj")
    for label in ("step", "action value", "reward", "cumulative return", "reward per step", f"{n} steps"):
        assert label in text, label
    shot = tmp_path / "trajectory-cart-0.png"
    page.locator("#episode-view figure.ev-traj").screenshot(path=str(shot))
    assert _coloured_pixels(shot, (0x25, 0x63, 0xEB)) > 200  # the blue action and reward lines
    assert _coloured_pixels(shot, (0xD9, 0x77, 0x06)) > 100  # the orange cumulative return

    # No video (CartPole keeps 2): the charts take its place.
    _open_episode_view(w, "cart", 3)
    assert page.locator("#episode-view video").count() == 0
    assert [p for _, _, p, _ in _trajectory_series(page)] == [lengths[("cart", 3)]] * 3
    # InvertedPendulum-v5's continuous force, one line per step.
    _open_episode_view(w, "pendulum", 1)
    first = _trajectory_series(page)[0]
    assert first[1:3] == ("a[0]", lengths[("pendulum", 1)])
    # Episodes without a trajectory show no charts.
    for job, episode in (("pendulum", 2), ("plain", 0)):
        _open_episode_view(w, job, episode)
        assert page.locator("#episode-view .ev-traj").count() == 0
    assert w.problems == [] and w.dialogs == []


def test_served_report_draws_trajectory_charts(browser: Browser, trajectory_run: Path) -> None:
    with served(trajectory_run) as (url, origin):
        w = open_report(browser, f"{url}#episode=pendulum/0", origin + "/")
        w.page.wait_for_selector('#episode-view[open][data-episode="0"] .ev-traj svg[data-chart="reward"]')
        assert len(_trajectory_series(w.page)) == 3
        link = w.page.locator("#episode-view .ev-traj figcaption a").get_attribute("href")
        assert link == "../trajectories/pendulum/ep0.h5"
        assert w.problems == []


# --------------------------------------------------------------------------- escaping


def test_html_in_names_is_shown_as_text(browser: Browser, tmp_path: Path) -> None:
    spec = FactorSpec(name="obj", kind="categorical", values=["<script>alert(2)</script>", "can"])
    evil = [
        record(XSS_JOB, k, k % 2 == 0, factors={"obj": ["<script>alert(2)</script>", "can"][k % 2]})
        for k in range(4)
    ]
    quoted = [record(QUOTE_JOB, k, True) for k in range(4)]
    run = write_run(
        tmp_path / "evil run",
        [
            JobSpec(
                XSS_JOB, evil, [spec], status="failed", planned=6, error="<b onmouseover=alert(3)>bad</b>"
            ),
            JobSpec(QUOTE_JOB, quoted),
        ],
        name="<svg onload=alert(4)>",
    )
    build_report(run)
    w = open_report(browser, (run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    assert page.inner_text("#run-name") == "<svg onload=alert(4)>"
    assert page.title().startswith("<svg onload=alert(4)>")
    assert page.inner_text(".jobs tr.job-row .job-name") == XSS_JOB
    assert (
        page.locator(f'.error-card[data-job="{XSS_JOB}"] .error-text').inner_text()
        == "<b onmouseover=alert(3)>bad</b>"
    )
    assert XSS_JOB in page.eval_on_selector_all("#filter-job option", "os => os.map(o => o.textContent)")
    assert page.locator("img").count() == 0 and page.locator("main svg[onload]").count() == 0
    page.click(f'#episodes-table tr[data-episode="0"][data-job="{XSS_JOB}"]')
    page.wait_for_selector("#episode-view[open]")
    assert page.inner_text("#episode-view .ev-job") == XSS_JOB
    assert "<script>alert(2)</script>" in page.inner_text("#episode-view")
    page.keyboard.press("Escape")
    page.click(f'#episodes-table tr[data-episode="3"][data-job="{QUOTE_JOB}"]')
    page.wait_for_selector('#episode-view[open][data-episode="3"]')
    command = page.inner_text("#replay-cmd")
    assert shlex.split(command) == ["trialrun", "replay", str(run.resolve()), QUOTE_JOB, "3"]
    page.keyboard.press("Escape")
    page.wait_for_selector("#episode-view:not([open])", state="attached")
    page.locator(".error-card .error-text").hover()  # an onmouseover would fire here if it were HTML
    page.locator(".jobs tr.job-row .job-name").first.hover()
    time.sleep(0.2)
    assert w.dialogs == [] and w.problems == []


# --------------------------------------------------------------------------- layout and readability


@pytest.fixture(scope="module")
def layout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Jobs with 6, 4, 5 and 7 factors (the synthetic sweep), and the analysis' figures."""
    sweep = make_sweep(n=240, seed=0)
    wind = FactorSpec(name="wind", kind="continuous", low=0.0, high=10.0, units="m/s")
    jobs = []
    for name, specs in [
        ("six", sweep.specs),
        ("four", sweep.specs[:4]),
        ("five", sweep.specs[:5]),
        ("seven", [*sweep.specs, wind]),
    ]:
        names = [s.name for s in specs]
        recs = [
            r.model_copy(
                update={
                    "job": name,
                    "run": "layout",
                    "factors": {**{k: r.factors[k] for k in names if k in r.factors}, "wind": r.episode % 10}
                    if "wind" in names
                    else {k: r.factors[k] for k in names},
                }
            )
            for r in sweep.records
        ]
        jobs.append(JobSpec(name, recs, list(specs)))
    run = write_run(tmp_path_factory.mktemp("layout") / "layout", jobs, name="layout")
    analyze(jobs[0].records, sweep.specs, out_dir=run / "analysis", importance=False, job="six")
    build_report(run)
    return run


def _rows(page: Page, job: str) -> tuple[list[int], list[float], float]:
    """Charts per row of a job's chart grid, each row's unfilled width, and the grid's width."""
    boxes = page.eval_on_selector_all(
        f'.factor-job[data-job="{job}"] .chart-card',
        "cs => cs.map(c => { const r = c.getBoundingClientRect(); return [r.top, r.left, r.right]; })",
    )
    grid = page.eval_on_selector(
        f'.factor-job[data-job="{job}"] .chart-grid',
        "g => { const r = g.getBoundingClientRect(); return [r.left, r.right]; }",
    )
    rows: dict[int, list[tuple[float, float]]] = {}
    for top, left, right in boxes:
        rows.setdefault(round(top), []).append((left, right))
    ordered = [rows[k] for k in sorted(rows)]
    gaps = [
        (min(left for left, _ in row) - grid[0]) + (grid[1] - max(right for _, right in row))
        for row in ordered
    ]
    return [len(row) for row in ordered], gaps, grid[1] - grid[0]


def test_factor_charts_leave_no_row_mostly_empty(browser: Browser, layout_run: Path) -> None:
    w = open_report(browser, (layout_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    # Before: three to a row, so 4 charts made 3 + 1 and 7 made 3 + 3 + 1.
    expected = {"six": [3, 3], "four": [2, 2], "five": [3, 2], "seven": [3, 2, 2]}
    for job, counts in expected.items():
        rows, gaps, width = _rows(page, job)
        assert rows == counts, job
        assert max(gaps) < 2, (job, gaps)  # every row spans the grid's width
        assert width > 1100
    # The charts' 10-unit text is at least 10 CSS px tall at their displayed size.
    scales = page.eval_on_selector_all(
        ".fchart", "ss => ss.map(s => s.getBoundingClientRect().width / s.viewBox.baseVal.width)"
    )
    assert len(scales) == 6 + 4 + 5 + 7 and min(scales) * 10 >= 10
    page.screenshot(path=str(layout_run / "factors.png"), full_page=True)
    assert w.problems == []


def test_the_analysis_figure_is_readable_at_the_page_size(browser: Browser, layout_run: Path) -> None:
    w = open_report(browser, (layout_run / "report" / "index.html").as_uri(), "file://")
    page = w.page
    img = page.locator('.sens-figure img[src$="sensitivity.png"]')
    img.scroll_into_view_if_needed()
    wait_until(page, "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    natural, shown = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    png = Image.open(layout_run / "analysis" / "sensitivity.png")
    assert natural == png.size[0] == 1716 and 1000 < shown < natural  # scaled down to the column
    # Smallest text of the figure, in CSS pixels as shown: its size in points at the PNG's dpi, scaled.
    smallest_pt = float(png.text[MIN_FONT_KEY])
    text_px = smallest_pt * DPI / 72 * shown / natural
    assert text_px >= 10, text_px  # before: 7 pt bin counts came out 7.4 px
    shot = img.screenshot(path=str(layout_run / "sensitivity-shown.png"))
    assert Image.open(layout_run / "sensitivity-shown.png").size[0] == round(shown)
    assert len(shot) > 10_000  # a drawn figure, not a blank box
    assert w.problems == []


def test_compare_page_looks_like_the_report_and_loads_cleanly(browser: Browser, tmp_path: Path) -> None:
    runs = {}
    for key, policy in (("lqr", "cartpole-balance"), ("random", "random")):
        doc = {
            "name": f"cmp-{key}",
            "seed": 3,
            "jobs": [
                {
                    "name": "pole",
                    "env": "CartPole-v1",
                    "policy": policy,
                    "episodes": 40,
                    "num_envs": 4,
                    "max_steps": 150,
                    "success": "survived",
                    "factors": {
                        "length": {
                            "variation": {"type": "attr", "name": "length"},
                            "sampler": {"type": "uniform", "low": 0.2, "high": 1.5},
                        }
                    },
                }
            ],
        }
        runs[key] = tmp_path / key
        run_evaluation(parse_run_config(doc), runs[key])
    _, html_path = write_comparison(compare_runs(runs["lqr"], runs["random"]), tmp_path / "cmp")
    build_report(runs["lqr"])
    w = open_report_page(browser, html_path.as_uri())
    page = w.page
    report = open_report(browser, (runs["lqr"] / "report" / "index.html").as_uri(), "file://").page
    # The same top bar and stylesheet as the report: brand, bar height and colour, fonts.
    style = "e => { const s = getComputedStyle(e); return [s.height, s.backgroundColor, s.fontFamily]; }"
    assert page.eval_on_selector(".topbar", style) == report.eval_on_selector(".topbar", style)
    assert page.inner_text(".topbar .brand") == report.inner_text(".topbar .brand") == "trialrun"
    assert page.eval_on_selector_all(".topbar nav a", "as => as.map(a => a.textContent)") == [
        "Jobs",
        "Factors",
        "Methods",
    ]
    # Cards with each run's pooled rate and Wilson interval, and the job table's bars.
    assert page.locator("#overall .card").count() == 3
    row = page.locator('#jobs-table tr[data-job="pole"]')
    assert row.locator("svg.ibar:not(.dbar)").count() == 2 and row.locator("svg.dbar").count() == 1
    diff = float(row.locator("svg.dbar").get_attribute("data-diff") or "nan")
    shown = float(row.locator('[data-field="difference"]').get_attribute("data-value") or "nan")
    assert diff == shown < 0  # random is worse than the LQR policy
    assert page.locator("#jobs-table th.bar-col").all_inner_texts() == [
        "A success (Wilson 95% CI)",
        "B success (Wilson 95% CI)",
        "B − A (paired 95% CI)",
    ]
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert Image.open(tmp_path / "compare.png").size[0] == 1280
    assert w.problems == [] and w.dialogs == []


def open_report_page(browser: Browser, url: str) -> Watched:
    """A page with no script (compare.html): loaded, watched, nothing awaited."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page, "file://")
    page.goto(url)
    page.wait_for_load_state("load")
    return watched


def test_a_job_stopped_early_shows_its_decision_and_the_episodes_saved(
    browser: Browser, tmp_path: Path
) -> None:
    """run --stop-when: the report's job row and Episodes card, and the compare page, say how many
    episodes the stop saved (the numbers of manifest.json)."""
    from trialrun.execution.stopping import StopRule

    def doc(policy: str) -> dict[str, Any]:
        job = {"name": "pole", "env": "CartPole-v1", "policy": policy, "episodes": 60, "num_envs": 2}
        return {"name": "stop", "seed": 3, "jobs": [{**job, "max_steps": 80, "success": "survived"}]}

    base, cand = tmp_path / "base", tmp_path / "cand"
    run_evaluation(parse_run_config(doc("cartpole-balance")), base)
    rule = StopRule(when="worse", baseline=base, batch=10)
    run_evaluation(parse_run_config(doc("random")), cand, stop=rule)
    stopped = json.loads((cand / "manifest.json").read_text())["jobs"]["pole"]["stopped_early"]
    assert stopped["decision"] == "worse" and stopped["saved"] == 60 - stopped["at_episode"] > 0
    build_report(cand)
    page = open_report(browser, (cand / "report" / "index.html").as_uri(), "file://").page
    cell = page.locator('#jobs tr.job-row[data-job="pole"] .stopped-early')
    assert cell.get_attribute("data-stopped-early") == "worse"
    assert cell.get_attribute("data-saved") == str(stopped["saved"])
    assert cell.inner_text() == f"stopped early: worse · {stopped['saved']} saved"
    card = page.locator("#overall .stopped-early")
    assert card.inner_text() == f"{stopped['saved']} episodes saved: 1 job stopped early"
    assert "--stop-when worse" in (cell.get_attribute("title") or "")

    comparison = compare_runs(base, cand, sequential=True, batch=10)
    _, html_path = write_comparison(comparison, tmp_path / "cmp")
    w = open_report_page(browser, html_path.as_uri())
    note = w.page.locator('#jobs p.stopped-early[data-side="B"]')
    assert note.get_attribute("data-saved") == str(stopped["saved"])
    assert note.inner_text() == (
        f"pole: run B was stopped early by run --stop-when worse: worse than its baseline on success after "
        f"{stopped['at_episode']} of 60 episodes; {stopped['saved']} episodes saved."
    )
    assert w.page.locator('#jobs p.stopped-early[data-side="A"]').count() == 0
    # The sequential table reads the stopped run's pairs: it stops at the same look.
    sq = comparison.jobs["pole"].sequential
    assert sq is not None and (sq.decision, sq.stopped_at) == ("B worse", stopped["at_episode"])
    assert (sq.planned, sq.saved, sq.at_final_look) == (60, stopped["saved"], False)
    row = w.page.locator("#sequential tbody tr")
    assert row.locator("[data-decision]").inner_text() == "B worse"
    assert row.locator("[data-saved]").get_attribute("data-saved") == str(sq.saved)
    assert w.problems == [] and w.dialogs == []
