"""Env ids as their packages register them (issue 13, part 1): no ``module:`` prefix
needed for known packages, ``imports:`` for others, one clear line for a bad id,
a bad import or a broken dependency. Real packages, real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import subprocess_env
from trialrun.envs.namespaces import KNOWN_PACKAGES, resolve_env_id
from trialrun.errors import ConfigError
from trialrun.runfiles import read_episodes

TRIALRUN = [sys.executable, "-m", "trialrun"]

OFFICIAL_IDS = {
    "Meta-World/MT1": ({"env_name": "pick-place-v3", "seed": 0}, "metaworld"),
    "highway-v0": ({}, "highway_env"),
    "PandaPush-v3": ({}, "panda_gym"),
    "FetchPush-v4": ({}, "gymnasium_robotics"),
    "MiniGrid-Empty-5x5-v0": ({}, "minigrid"),
    "dm_control/cartpole-balance-v0": ({}, "shimmy"),
}


def _run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=timeout
    )


def _trialrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRIALRUN, *args], capture_output=True, text=True, env=env or subprocess_env(), timeout=300
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error message (packages print their own import-time notes first)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trialrun: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_official_ids_are_built_in_a_fresh_process_without_a_module_prefix() -> None:
    # A fresh interpreter: none of the packages is imported before trialrun looks for the id.
    code = textwrap.dedent(
        f"""
        import json, sys
        from trialrun.envs.build import make_env
        ids = {json.dumps({k: v[0] for k, v in OFFICIAL_IDS.items()})}
        before = set(sys.modules)
        found = {{}}
        for env_id, kwargs in ids.items():
            env = make_env(env_id, kwargs)
            found[env_id] = env.spec.id
            env.close()
        imported = sorted(m for m in {sorted({v[1] for v in OFFICIAL_IDS.values()})} if m not in before)
        print(json.dumps({{"found": found, "imported": imported}}))
        """
    )
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    # pybullet prints its arguments to stdout from C, in whatever order the buffers flush.
    result = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith("{")))
    assert result["found"] == {env_id: env_id for env_id in OFFICIAL_IDS}
    assert result["imported"] == sorted({module for _, module in OFFICIAL_IDS.values()})


def test_every_known_package_owns_the_ids_it_claims() -> None:
    import gymnasium as gym

    for package in KNOWN_PACKAGES:
        __import__(package.module)
    owners = {
        env_id: [p.module for p in KNOWN_PACKAGES if env_id.startswith(p.prefixes)] for env_id in gym.registry
    }
    for env_id, (_, module) in OFFICIAL_IDS.items():
        assert owners[env_id] == [module]
    # Gymnasium's own ids never send trialrun importing another package.
    for env_id in ("CartPole-v1", "Ant-v5", "HalfCheetah-v5", "Pendulum-v1", "FrozenLake-v1"):
        assert owners[env_id] == []


def test_a_run_file_with_official_ids_runs(tmp_path: Path) -> None:
    doc = {
        "name": "official",
        "jobs": [
            {"name": "highway", "env": "highway-v0", "policy": "random", "episodes": 1, "max_steps": 3},
            {
                "name": "grid",
                "env": "MiniGrid-Empty-5x5-v0",
                "policy": "random",
                "episodes": 2,
                "max_steps": 4,
            },
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    proc = _trialrun("run", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"), "-q")
    assert proc.returncode == 0, proc.stderr
    records = read_episodes(tmp_path / "run" / "episodes.jsonl")
    assert sorted((r.job, r.episode, r.outcome["length"]) for r in records) == [
        ("grid", 0, 4),
        ("grid", 1, 4),
        ("highway", 0, 3),
    ]


def test_worker_processes_find_official_ids_by_themselves(tmp_path: Path) -> None:
    # A spawned worker builds its env from the job alone: the id must resolve there too.
    doc = {
        "name": "workers",
        "jobs": [
            {
                "name": "grid",
                "env": "MiniGrid-Empty-5x5-v0",
                "policy": "random",
                "episodes": 2,
                "max_steps": 4,
            }
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    proc = _trialrun(
        "run", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"), "-q", "--executor", "process",
        "--workers", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read_episodes(tmp_path / "run" / "episodes.jsonl")) == 2


def test_unknown_id_names_the_closest_ids_and_the_module_form(tmp_path: Path) -> None:
    doc = {"name": "bad", "jobs": [{"name": "a", "env": "highway-v9", "policy": "random", "episodes": 1}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    proc = _trialrun("run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_line(proc) == (
        f"trialrun: error: {tmp_path / 'run.yaml'}: field 'jobs.0.env.id': unknown environment 'highway-v9'; "
        "did you mean "
        "'highway-v0', 'highway-fast-v0'? An env another package registers is named 'module:highway-v9' "
        "(the module is imported first) or its module listed under 'imports:' (see 'trialrun list envs')"
    )
    assert not (tmp_path / "runs").exists()


def test_unknown_id_without_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_env_id("Qqqqqqqqq-v0", field="env.id")
    assert str(info.value) == (
        "field 'env.id': unknown environment 'Qqqqqqqqq-v0'. An env another package registers is named "
        "'module:Qqqqqqqqq-v0' (the module is imported first) or its module listed under 'imports:' "
        "(see 'trialrun list envs')"
    )


def test_a_bad_imports_entry_is_one_line_and_exit_2(tmp_path: Path) -> None:
    doc = {
        "name": "bad",
        "imports": ["json", "no_such_module_xyz"],
        "jobs": [{"name": "a", "env": "CartPole-v1", "policy": "random", "episodes": 1}],
    }
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(doc))
    proc = _trialrun("run", str(run_file), "-o", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_line(proc) == (
        f"trialrun: error: {run_file}: field 'imports.1': module 'no_such_module_xyz' is not installed "
        "(listed under imports)"
    )
    doc["imports"] = ["not-a-module"]
    run_file.write_text(yaml.safe_dump(doc))
    proc = _trialrun("run", str(run_file), "-o", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert _error_line(proc) == (
        f"trialrun: error: {run_file}: field 'imports': 'not-a-module' is not a module name (like 'package.module')"
    )


def test_imports_register_an_env_of_the_users_own_package(tmp_path: Path) -> None:
    (tmp_path / "mycorp_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register(id='MyCorp/Line-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n"
    )
    doc = {
        "name": "own",
        "imports": ["mycorp_envs"],
        "jobs": [
            {"name": "line", "env": "MyCorp/Line-v0", "policy": "random", "episodes": 2, "max_steps": 5}
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    proc = _trialrun("run", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"), "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(read_episodes(tmp_path / "run" / "episodes.jsonl")) == 2


def test_a_broken_dependency_gives_the_install_fix_not_a_traceback(tmp_path: Path) -> None:
    # What shimmy[dm-control] with a mujoco that dm_control cannot use does: shimmy's
    # import of dm_control.suite fails. Simulated by blocking that module.
    doc = {
        "name": "dmc",
        "jobs": [{"name": "a", "env": "dm_control/cartpole-balance-v0", "policy": "random", "episodes": 1}],
    }
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump(doc))
    code = (
        "import runpy, sys\n"
        "sys.modules['dm_control.suite'] = None\n"
        f"sys.argv = ['trialrun', 'run', {str(run_file)!r}, '-o', {str(tmp_path / 'runs')!r}]\n"
        "runpy.run_module('trialrun', run_name='__main__')\n"
    )
    proc = _run_python(code)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_line(proc) == (
        f"trialrun: error: {run_file}: field 'jobs.0.env.id': cannot import 'shimmy' (shimmy registers "
        "'dm_control/cartpole-balance-v0'): a dependency is missing or broken: import of dm_control.suite "
        "halted; None in sys.modules; fix it with: pip install dm-control==1.0.28 mujoco==3.3.0"
    )


def test_a_missing_package_names_its_install_line() -> None:
    code = (
        "import sys\n"
        "sys.modules['panda_gym'] = None\n"
        "from trialrun.envs.namespaces import resolve_env_id\n"
        "try:\n"
        "    resolve_env_id('PandaPush-v3', field='env.id')\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    proc = _run_python(code)
    assert proc.stdout.strip() == (
        "field 'env.id': module 'panda_gym' is not installed (panda-gym registers 'PandaPush-v3'); "
        "install it with: pip install panda-gym"
    )
