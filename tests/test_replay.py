"""``trialrun replay``: re-run one recorded episode and compare it with its record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers import subprocess_env
from trialrun.cli import app
from trialrun.config import parse_run_config
from trialrun.errors import InputError
from trialrun.execution.runner import run_evaluation
from trialrun.outcomes import values_match
from trialrun.recording.writer import probe_video
from trialrun.replay import compare_records, replay_episode
from trialrun.runfiles import read_episodes

CARTPOLE_RUN = {
    "name": "replayable",
    "seed": 11,
    "jobs": [
        {
            "name": "cp",
            "env": "CartPole-v1",
            "policy": "random",
            "episodes": 6,
            "num_envs": 3,
            "max_steps": 60,
            "success": "survived",
            "factors": {
                "pole_length": {
                    "variation": {"type": "attr", "name": "length"},
                    "sampler": {"type": "uniform", "low": 0.3, "high": 0.8},
                }
            },
        },
        {"name": "other", "env": "CartPole-v1", "policy": "zero", "episodes": 2},
    ],
}

METAWORLD_RUN = {
    "name": "mw-replay",
    "seed": 3,
    "jobs": [
        {
            "name": "pick",
            "env": "metaworld/pick-place-v3",
            "policy": "metaworld-expert",
            "episodes": 3,
            "num_envs": 3,
            "max_steps": 40,
            "factors": {
                "object_mass": {
                    "variation": {"type": "mujoco.body_mass", "body": "obj", "mode": "scale"},
                    "sampler": {"type": "loguniform", "low": 0.5, "high": 20},
                },
                "object_friction": {
                    "variation": {"type": "mujoco.geom_friction", "geom": "objGeom", "priority": True},
                    "sampler": {"type": "uniform", "low": 0.05, "high": 1.0},
                },
            },
            "video": {"cameras": ["corner"], "episodes": 1, "size": [64, 64]},
        }
    ],
}


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("replay") / "cartpole"
    result = run_evaluation(parse_run_config(CARTPOLE_RUN), run_dir)
    assert result.exit_code == 0
    return run_dir


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["replay", *args])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_cartpole_episode_replays_to_its_record_in_a_real_process(cartpole_run: Path) -> None:
    # an episode that ran on another sub-env than the replay's (sub-env 0)
    record = next(r for r in read_episodes(cartpole_run / "episodes.jsonl") if r.job == "cp" and r.env_index)
    proc = subprocess.run(
        [sys.executable, "-m", "trialrun.cli", "replay", str(cartpole_run), "cp", str(record.episode)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [" ".join(line.replace("│", " ").split()) for line in proc.stdout.splitlines()]
    assert f"seed {record.seed} {record.seed} same" in lines
    length = record.outcome["length"]
    assert f"outcome.length {length} {length} same" in lines
    pole = json.dumps(record.factors["pole_length"])
    assert f"factors.pole_length {pole} {pole} same" in lines
    assert "matches: the replayed episode equals its record" in _one_line(proc.stdout)
    assert not (cartpole_run / "replays").exists()  # no video unless asked


def test_replay_api_compares_every_value(cartpole_run: Path) -> None:
    result = replay_episode(cartpole_run, "cp", 1)
    assert result.matches and result.mismatches == []
    names = [c.name for c in result.comparisons]
    assert names == [
        "seed",
        "factors.pole_length",
        "outcome.success",
        "outcome.success_at_end",
        "outcome.return",
        "outcome.length",
        "outcome.terminated",
        "outcome.truncated",
        "outcome.time_to_success",
    ]
    assert result.replayed.outcome == result.recorded.outcome
    assert result.replayed.factors == result.recorded.factors
    changed = result.recorded.model_copy(update={"outcome": {**result.recorded.outcome, "length": 999}})
    rows = {c.name: c for c in compare_records(changed, result.replayed)}
    assert not rows["outcome.length"].matches and rows["outcome.return"].matches
    assert values_match(1.0, 1.0 + 1e-12) and not values_match(1.0, 1.0001)
    assert not values_match(True, 1) and not values_match(None, 0.0) and values_match(None, None)


def test_a_tampered_record_does_not_match(cartpole_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "tampered"
    shutil.copytree(cartpole_run, run_dir)
    path = run_dir / "episodes.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record["job"] == "cp" and record["episode"] == 2:
            true_return = record["outcome"]["return"]
            record["outcome"]["return"] = true_return + 5
            lines[index] = json.dumps(record) + "\n"
    path.write_text("".join(lines))
    result = _cli(str(run_dir), "cp", "2")
    assert result.exit_code == 1, result.output
    rows = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert f"outcome.return {json.dumps(true_return + 5)} {json.dumps(true_return)} DIFFERS" in rows
    assert "does not match: outcome.return differ from the record" in _one_line(result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cp", "9"], "job 'cp' has episodes 0..5; episode 9 is out of range"),
        (["cp", "--", "-1"], "EPISODE must be 0 or more, got -1"),
        (["nope", "0"], "run 'replayable' has no job 'nope'; its jobs: cp, other"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(cartpole_run: Path, args: list[str], message: str) -> None:
    result = _cli(str(cartpole_run), *args)
    assert result.exit_code == 2
    assert message in _one_line(result.stderr)
    assert "Traceback" not in result.output


def test_bad_run_dirs_and_missing_records_exit_2(cartpole_run: Path, tmp_path: Path) -> None:
    missing = _cli(str(tmp_path / "nowhere"), "cp", "0")
    assert missing.exit_code == 2 and "no such run directory" in missing.stderr
    not_a_run = _cli(str(tmp_path), "cp", "0")
    assert not_a_run.exit_code == 2
    assert f"{tmp_path} is not a trialrun run directory" in _one_line(not_a_run.stderr)
    not_int = _cli(str(cartpole_run), "cp", "two")
    assert not_int.exit_code == 2 and "Invalid value for 'EPISODE'" in not_int.output
    # a run killed before episode 3 finished
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(cartpole_run, partial)
    kept = [
        line
        for line in (partial / "episodes.jsonl").read_text().splitlines(keepends=True)
        if json.loads(line)["episode"] != 3
    ]
    (partial / "episodes.jsonl").write_text("".join(kept))
    with pytest.raises(InputError, match="episode 3 of job 'cp' has no record"):
        replay_episode(partial, "cp", 3)
    result = _cli(str(partial), "cp", "3")
    assert result.exit_code == 2 and "trialrun run --resume" in _one_line(result.stderr)


def test_a_metaworld_episode_with_mass_and_friction_replays_with_video(tmp_path: Path) -> None:
    run_dir = tmp_path / "mw"
    assert run_evaluation(parse_run_config(METAWORLD_RUN), run_dir).exit_code == 0
    records = {r.episode: r for r in read_episodes(run_dir / "episodes.jsonl")}
    record = records[2]
    assert set(record.factors) == {"object_mass", "object_friction"} and record.video == {}
    result = _cli(str(run_dir), "pick", "2", "--video")
    assert result.exit_code == 0, result.output
    assert "matches: the replayed episode equals its record" in _one_line(result.stdout)
    video = run_dir / "replays" / "pick" / "ep2-corner.mp4"
    assert f"video corner: {video}" in _one_line(result.stdout)
    info = probe_video(video)
    assert (info.frames, info.width, info.height, info.codec, info.faststart) == (
        record.outcome["length"] + 1,
        64,
        64,
        "h264",
        True,
    )
    # --out puts the videos elsewhere, and the run's own videos are untouched
    out = tmp_path / "elsewhere"
    api = replay_episode(run_dir, "pick", 0, video=True, out=out, cameras=["topview", "corner"])
    assert api.matches
    assert api.videos == {"topview": out / "ep0-topview.mp4", "corner": out / "ep0-corner.mp4"}
    assert probe_video(out / "ep0-topview.mp4").frames == records[0].outcome["length"] + 1
    assert sorted(p.name for p in (run_dir / "videos" / "pick").iterdir() if p.suffix == ".mp4") == [
        "ep0-corner.mp4"
    ]
