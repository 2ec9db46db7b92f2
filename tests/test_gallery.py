"""The environment gallery (issue 13): each run file of ``examples/envs/`` runs
through the real command line on the real package, and the ``envs`` extra pins
versions that work together.

Each example runs as a user would run it (``python -m trialrun run FILE``), with
its episode count lowered by ``--set``; the test reads the run directory back:
exactly the planned episodes, once each, every factor value (the one read back
from the simulator) inside what its sampler draws from, and the success rule the
example documents. docs/environments.md states what each example shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "envs"

EPISODES = {
    "highway.yaml": 6,
    "fetch_push.yaml": 4,
    "panda_push.yaml": 4,
    "minigrid.yaml": 6,
    "dm_control_cartpole.yaml": 4,
}
"""Episodes per job in this test (the examples' own counts are a little larger)."""

PACKAGES = {
    "highway.yaml": ("highway-env",),
    "fetch_push.yaml": ("gymnasium-robotics", "mujoco"),
    "panda_push.yaml": ("panda-gym", "pybullet"),
    "minigrid.yaml": ("minigrid",),
    "dm_control_cartpole.yaml": ("shimmy", "dm-control", "mujoco"),
}
"""The distributions each example's env comes from, which its manifest records with their versions."""

REL_TOL = 1e-9
"""Read-back values are the simulator's doubles: only rounding may leave the sampled range."""


def _run(run_file: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "SDL_VIDEODRIVER": os.environ.get("SDL_VIDEODRIVER", "dummy"),
        "COLUMNS": "160",
    }
    argv = [sys.executable, "-m", "trialrun", "run", str(run_file), "--run-dir", str(run_dir), "--no-report"]
    for override in overrides:
        argv += ["--set", override]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _inside(value: Any, sampler: dict[str, Any]) -> bool:
    """Whether ``value`` is one the sampler can draw (bounds with a rounding tolerance)."""
    kind = sampler["type"]
    if kind == "choice":
        return value in sampler["values"]
    if kind == "constant":
        return bool(value == sampler["value"])
    if kind in ("uniform", "loguniform"):
        low, high = float(sampler["low"]), float(sampler["high"])
        slack = REL_TOL * max(abs(low), abs(high))
        return isinstance(value, float) and low - slack <= value <= high + slack
    raise AssertionError(f"the test does not know sampler {kind!r}: add it to _inside")


def test_the_gallery_has_one_run_file_per_env() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EPISODES) == sorted(PACKAGES)


@pytest.mark.parametrize("name", sorted(EPISODES))
def test_example_runs_through_the_cli(name: str, tmp_path: Path) -> None:
    run_file = EXAMPLES / name
    text = run_file.read_text()
    assert 'pip install -e ".[envs]"' in text, "the header names the install line"
    assert f"trialrun run examples/envs/{name}" in text, "the header names the command"
    config = yaml.safe_load(text)
    jobs = config["jobs"]
    episodes = EPISODES[name]
    run_dir = tmp_path / "run"

    done = _run(run_file, run_dir, *(f"jobs.{i}.episodes={episodes}" for i in range(len(jobs))))

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    records = _records(run_dir)
    assert len(records) == episodes * len(jobs)
    for job in jobs:
        mine = [r for r in records if r["job"] == job["name"]]
        assert sorted(r["episode"] for r in mine) == list(range(episodes))
        assert len({r["seed"] for r in mine}) == episodes
        for record in mine:
            assert set(record["factors"]) == set(job["factors"])
            for factor, value in record["factors"].items():
                sampler = job["factors"][factor]["sampler"]
                assert _inside(value, sampler), f"episode {record['episode']}: {factor}={value!r}, {sampler}"
            _check_success_rule(job, record["outcome"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {n: j["status"] for n, j in manifest["jobs"].items()} == {j["name"]: "completed" for j in jobs}
    for package in PACKAGES[name]:
        assert manifest["versions"].get(package) == metadata.version(package), package


def _check_success_rule(job: dict[str, Any], outcome: dict[str, Any]) -> None:
    """The record's success follows the rule the example documents."""
    rule = job.get("success")
    if rule == "survived":  # highway-env: a crash terminates the episode
        assert outcome["success"] == (outcome["truncated"] and not outcome["terminated"])
    elif isinstance(rule, dict) and "min_return" in rule:
        assert outcome["success"] == (outcome["return"] >= rule["min_return"])
    else:  # the env's own info["is_success"], recorded as "ever succeeded"
        assert rule is None
        assert outcome["success"] == (outcome["time_to_success"] is not None)


# ------------------------------------------------------------------------------ the envs extra


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _envs_extra() -> dict[str, Requirement]:
    extra = _pyproject()["project"]["optional-dependencies"]["envs"]
    return {Requirement(line).name: Requirement(line) for line in extra}


def test_the_envs_extra_keeps_mujoco_at_3_3() -> None:
    """dm-control 1.0.28 and gymnasium-robotics break on mujoco 4, which
    ``shimmy[dm-control]`` would pull: the extra names dm-control itself, and
    every mujoco requirement the extra meets allows only 3.3.x."""
    project = _pyproject()["project"]
    envs = _envs_extra()
    assert set(envs) == {
        "highway-env",
        "panda-gym",
        "pybullet",
        "gymnasium-robotics",
        "minigrid",
        "shimmy",
        "dm-control",
    }
    assert all(str(r.specifier).startswith("==") for r in envs.values()), envs
    assert str(envs["dm-control"].specifier) == "==1.0.28"
    assert not envs["shimmy"].extras, "shimmy[dm-control] pulls mujoco 4"
    mujoco = SpecifierSet()
    for line in [*project["dependencies"], *project["optional-dependencies"]["envs"]]:
        requirement = Requirement(line)
        if requirement.name == "mujoco":
            mujoco &= requirement.specifier
    assert "3.3.0" in mujoco
    assert not any(v in mujoco for v in ("3.2.7", "3.4.0", "4.0.0", "4.1.0"))
    # CI installs the dev extra, so the gallery's tests run on these pins
    dev = [Requirement(line) for line in project["optional-dependencies"]["dev"]]
    assert any(r.name == "trialrun" and "envs" in r.extras for r in dev)


def test_the_installed_env_packages_are_the_pinned_ones() -> None:
    """The versions this suite ran the gallery on are the versions the extra installs."""
    installed = {name: metadata.version(name) for name in _envs_extra()}
    assert {name: f"=={version}" for name, version in installed.items()} == {
        name: str(r.specifier) for name, r in _envs_extra().items()
    }
    assert metadata.version("mujoco").startswith("3.3.")


def test_highway_ends_early_exactly_on_a_crash() -> None:
    """What the highway example's ``success: survived`` relies on: highway-fast-v0
    terminates exactly when ``info["crashed"]`` and truncates itself after
    ``config.duration`` decisions, so "survived" is "did not crash"."""
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers the ids)

    endings = []
    for seed, density in [(0, 2.0), (1, 2.0), (2, 0.5), (3, 0.5)]:
        env = gym.make("highway-fast-v0", config={"vehicles_density": density, "vehicles_count": 10})
        env.reset(seed=seed)
        env.action_space.seed(seed)
        for step in range(1, 100):
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            assert terminated == bool(info["crashed"]), step
            if terminated or truncated:
                break
        duration = env.unwrapped.config["duration"]
        env.close()
        if not terminated:  # no crash: the env's own time limit ended it
            assert truncated and step == duration == 30
        endings.append("crash" if terminated else "time")
    assert set(endings) == {"crash", "time"}  # both endings occur in these four episodes
