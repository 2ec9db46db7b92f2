"""The analysis reads at most MAX_ROWS episodes of a job: a seeded sample that
does not depend on the file's order, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import subprocess_env
from trialrun.analysis.sampling import MAX_ROWS, sample_job_records, sample_key, subsample_note
from trialrun.analysis.synthetic import make_sweep
from trialrun.errors import RunFileError


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sweep_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    episodes, factors = make_sweep(n=300, seed=4).write(tmp_path_factory.mktemp("sweep"))
    return episodes.read_text(encoding="utf-8").splitlines(keepends=True), factors


def test_below_the_cap_every_record_is_kept_in_file_order(
    sweep_lines: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, _ = sweep_lines
    path = _write(tmp_path / "episodes.jsonl", lines[::-1])
    samples = sample_job_records(path, max_rows=300)
    assert list(samples) == ["synthetic"] and samples["synthetic"].offered == 300
    assert [r.episode for r in samples["synthetic"].records()] == list(range(299, -1, -1))


def test_the_sample_is_the_smallest_keys_whatever_the_order(
    sweep_lines: tuple[list[str], Path], tmp_path: Path
) -> None:
    lines, _ = sweep_lines
    forward = _write(tmp_path / "forward.jsonl", lines)
    backward = _write(tmp_path / "backward.jsonl", lines[::-1])
    a = sample_job_records(forward, {"synthetic"}, {"synthetic"}, seed=3, max_rows=40)["synthetic"]
    b = sample_job_records(backward, {"synthetic"}, {"synthetic"}, seed=3, max_rows=40)["synthetic"]
    expected = sorted(range(300), key=lambda k: sample_key(3, k))[:40]
    assert (a.offered, len(a), b.offered, len(b)) == (300, 40, 300, 40)
    assert [r.episode for r in a.records()] == sorted(expected)  # forward file: ascending
    assert [r.episode for r in b.records()] == sorted(expected, reverse=True)
    other = sample_job_records(forward, seed=4, max_rows=40)["synthetic"]
    assert {r.episode for r in other.records()} != set(expected)  # another seed, another sample
    assert subsample_note("synthetic", 40, 300) == (
        f"job 'synthetic' has 300 episodes: the analysis used a seeded random 40 of them "
        f"(at most {MAX_ROWS} per job are read, to keep memory bounded)"
    )
    assert subsample_note("synthetic", 300, 300) is None


def test_a_record_of_an_unknown_job_is_refused(sweep_lines: tuple[list[str], Path], tmp_path: Path) -> None:
    lines, _ = sweep_lines
    path = _write(tmp_path / "episodes.jsonl", lines[:3])
    with pytest.raises(
        RunFileError, match="a record of job 'synthetic' \\(episode 0\\), which the run's config"
    ):
        sample_job_records(path, {"other"}, {"other"})


_CHILD = """
import json, sys
import trialrun.analysis.sampling as sampling
sampling.MAX_ROWS = 5_000
from trialrun.analysis.api import analyze_records
res = analyze_records(sys.argv[1], sys.argv[2], out_dir=sys.argv[3])
# VmHWM, not ru_maxrss: pytest's own process can be far larger than the bound (trialrun._memory).
from trialrun._memory import peak_rss_mb
print(json.dumps({"rss_mb": peak_rss_mb(), "notes": res.notes,
                  "n": res.n}))
"""


def test_analysis_of_200000_episodes_reads_a_bounded_sample(
    sweep_lines: tuple[list[str], Path], tmp_path: Path
) -> None:
    """200,000 episodes (the sweep's 300 repeated, renumbered); with a cap of
    5,000 the analysis stays far below what 200,000 parsed records take
    (about 3 kB each: 600 MB)."""
    lines, factors = sweep_lines
    path = tmp_path / "episodes.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for k in range(200_000):
            record = json.loads(lines[k % 300])
            record["episode"] = k
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(factors), str(tmp_path / "analysis")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 5_000
    assert any(
        "job 'synthetic' has 200000 episodes: the analysis used a seeded random 5000" in n
        for n in result["notes"]
    )
    written = json.loads((tmp_path / "analysis" / "sensitivity.json").read_text())
    assert any("seeded random 5000" in n for n in written["notes"])
    print(f"\nanalysis of 200,000 episodes (5,000 read): peak RSS {result['rss_mb']:.0f} MB")
    assert result["rss_mb"] < 400, result
