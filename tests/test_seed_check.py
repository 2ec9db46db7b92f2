"""The seed check before every job (issue 13, part 2): envs that ignore
``reset(seed=...)`` are seeded their own way (Meta-World) or refused, unless
``allow_unseeded: true``; replay of an official Meta-World id matches."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.envs.build import make_env
from trialrun.envs.seeding import METAWORLD_SEEDED_BY, SEED_A, check_seeding, same_observation
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_manifest

TRIALRUN = [sys.executable, "-m", "trialrun"]
UNSEEDED_ID = "TrialrunTest/IgnoresSeed-v0"


class IgnoresSeedEnv(gym.Env[np.ndarray, int]):
    """Starts somewhere new at every reset, whatever the seed (a counter, like
    an env drawing from a generator it never reseeds)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.resets = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.resets += 1
        return np.array([float(self.resets), 0.0]), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return np.zeros(2), 1.0, True, False, {}


if UNSEEDED_ID not in gym.registry:
    gym.register(UNSEEDED_ID, entry_point=IgnoresSeedEnv)


def _run(env: str | dict[str, Any], **job: Any) -> dict[str, Any]:
    job = {"name": "a", "env": env, "policy": "random", "episodes": 2, "success": "survived", **job}
    return {"name": "seeds", "jobs": [job]}


def test_same_observation_compares_arrays_dicts_and_tuples() -> None:
    a = {"image": np.zeros((2, 2)), "state": (np.array([1.0, np.nan]), 3), "mission": "go"}
    assert same_observation(
        a, {"image": np.zeros((2, 2)), "state": (np.array([1.0, np.nan]), 3), "mission": "go"}
    )
    assert not same_observation(a, {**a, "mission": "stop"})
    assert not same_observation(a, {**a, "state": (np.array([1.0, 0.0]), 3)})
    assert not same_observation(a, {"image": np.zeros((2, 2))})
    assert not same_observation((1, 2), (1, 2, 3))
    assert not same_observation(np.zeros(3), np.zeros(4))


def test_check_of_envs_that_honour_the_seed() -> None:
    cartpole = check_seeding(gym.make("CartPole-v1"), {})
    assert (cartpole.reproducible, cartpole.seed_changes_start, cartpole.seeded_by, cartpole.problem) == (
        True,
        True,
        None,
        None,
    )
    # One start whatever the seed: reproducible, the seed just does not matter.
    grid = check_seeding(make_env("MiniGrid-Empty-5x5-v0", {}), {})
    assert (grid.reproducible, grid.seed_changes_start) == (True, False)


def test_official_metaworld_ids_ignore_the_seed_and_trialrun_seeds_them() -> None:
    kwargs = {"env_name": "pick-place-v3", "seed": 0}
    import metaworld  # noqa: F401  (registers Meta-World's own ids)

    raw = gym.make("Meta-World/MT1", **kwargs)  # as Meta-World ships it
    check = check_seeding(raw, kwargs)
    assert not check.reproducible
    assert check.problem == (
        f"two resets with seed {SEED_A} gave different observations: the env ignores reset(seed=...)"
    )
    built = make_env("Meta-World/MT1", kwargs)  # as trialrun builds it
    check = check_seeding(built, kwargs)
    assert (check.reproducible, check.seed_changes_start, check.seeded_by) == (
        True,
        True,
        METAWORLD_SEEDED_BY,
    )
    # The bundled ids were seeded already and are not wrapped twice.
    bundled = make_env("metaworld/pick-place-v3", {})
    assert str(bundled).count("MetaWorldSeeding") == 1
    assert check_seeding(bundled, {}).reproducible


def test_preflight_refuses_an_env_that_ignores_the_seed() -> None:
    with pytest.raises(ConfigError) as info:
        preflight(parse_run_config(_run(UNSEEDED_ID)))
    assert str(info.value) == (
        f"field 'jobs.0.env.id': episodes would not be reproducible: two resets with seed {SEED_A} gave "
        "different observations: the env ignores reset(seed=...); set allow_unseeded: true to run it anyway"
    )


def test_allow_unseeded_runs_it_anyway_and_the_manifest_keeps_the_mark(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_run_config(_run(UNSEEDED_ID, allow_unseeded=True))
    with caplog.at_level(logging.WARNING, logger="trialrun.execution.preflight"):
        result = run_evaluation(config, tmp_path / "run")
    assert result.exit_code == 0
    assert read_manifest(tmp_path / "run").config["jobs"][0]["allow_unseeded"] is True
    assert [r.getMessage() for r in caplog.records if r.name == "trialrun.execution.preflight"] == [
        "job 'a': its episodes will not be reproducible (two resets with seed "
        f"{SEED_A} gave different observations: the env ignores reset(seed=...)); running it because "
        "allow_unseeded is set"
    ]


def test_metaworld_benchmark_without_a_seed_is_refused_with_the_fix(tmp_path: Path) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(_run({"id": "Meta-World/MT1", "kwargs": {"env_name": "reach-v3"}})))
    proc = subprocess.run(
        [*TRIALRUN, "run", str(run_file), "-o", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("trialrun: error: ")]
    assert errors == [
        f"trialrun: error: {run_file}: field 'jobs.0.env.kwargs.seed': episodes would not be reproducible: "
        "'Meta-World/MT1' "
        "draws its tasks from numpy's global random state when built without a seed, so every process and "
        "every replay would get other tasks: set env.kwargs.seed (any integer); set allow_unseeded: true "
        "to run it anyway"
    ]


def test_replay_of_an_official_metaworld_mt1_episode_matches(tmp_path: Path) -> None:
    # Run in one process, replay in another: what a user does, and where an
    # ignored seed showed (the issue: 4451.0 recorded, 4134.6 replayed).
    doc = _run(
        {"id": "Meta-World/MT1", "kwargs": {"env_name": "pick-place-v3", "seed": 0}},
        policy="metaworld-expert",
        episodes=3,
        max_steps=120,
    )
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"
    kw: dict[str, Any] = {"capture_output": True, "text": True, "env": subprocess_env(), "timeout": 600}
    proc = subprocess.run([*TRIALRUN, "run", str(run_file), "--run-dir", str(run_dir), "-q"], **kw)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert len({r["outcome"]["return"] for r in records}) == 3  # the seeds gave three different episodes
    assert all(r["outcome"]["success"] for r in records)
    for episode in (0, 2):
        replay = subprocess.run([*TRIALRUN, "replay", str(run_dir), "a", str(episode)], **kw)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "matches: the replayed episode equals its record" in replay.stdout


def test_list_envs_check(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"capture_output": True, "text": True, "env": subprocess_env(), "timeout": 300}
    proc = subprocess.run(
        [*TRIALRUN, "list", "envs", "--check", "CartPole-v1", "metaworld/reach-v3", "MiniGrid-Empty-5x5-v0"],
        **kw,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if "│" in line]
    rows = [r for r in rows if r[0]]  # drop wrapped continuation lines
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("CartPole-v1", "yes", "yes"),
        ("metaworld/reach-v3", "yes", "yes"),
        ("MiniGrid-Empty-5x5-v0", "yes", "no"),
    ]
    module = tmp_path / "seedless.py"
    module.write_text(
        "import gymnasium as gym, itertools, numpy as np\n"
        "class E(gym.Env):\n"
        "    observation_space = gym.spaces.Box(0, 1e9, (1,)); action_space = gym.spaces.Discrete(2)\n"
        "    count = itertools.count()\n"
        "    def reset(self, *, seed=None, options=None):\n"
        "        return np.array([next(self.count)], dtype=np.float32), {}\n"
        "gym.register('Seedless-v0', entry_point=E)\n"
    )
    kw["env"] = {**kw["env"], "PYTHONPATH": f"{tmp_path}:{kw['env']['PYTHONPATH']}"}
    bad = subprocess.run(
        [*TRIALRUN, "list", "envs", "--check", "seedless:Seedless-v0", "Meta-World/MT1"], **kw
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "seedless:Seedless-v0 │ NO" in bad.stdout
    # An id that cannot be built without kwargs is a row saying so, not a traceback.
    flat = " ".join(bad.stdout.replace("│", " ").split())
    assert "Meta-World/MT1 ? ? - - could not build and reset it without kwargs: TypeError:" in flat
    usage = subprocess.run([*TRIALRUN, "list", "envs", "--check"], **kw)
    assert usage.returncode == 2
    assert usage.stderr.strip() == (
        "trialrun: error: --check needs the ids to check, e.g. trialrun list envs --check CartPole-v1"
    )
