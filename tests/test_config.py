from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from trialrun.config import load_run_config, parse_override, parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.inherits import deep_merge

BASE: dict[str, Any] = {
    "name": "r",
    "seed": 3,
    "jobs": [{"name": "a", "env": "CartPole-v1", "policy": "random", "episodes": 3}],
}


def _error(doc: dict[str, Any], overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_run_config(doc, file="run.yaml", overrides=overrides)
    return str(info.value)


def _with(**job_keys: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["jobs"][0].update(job_keys)
    return doc


def test_shorthands_and_defaults() -> None:
    doc = copy.deepcopy(BASE)
    doc["defaults"] = {"num_envs": 4, "max_steps": 100, "episodes": 9}
    doc["jobs"].append(
        {
            "name": "b",
            "env": {"id": "Pendulum-v1", "kwargs": {"g": 9.0}},
            "policy": {"type": "zero"},
            "num_envs": 2,
            "success": "survived",
        }
    )
    cfg = parse_run_config(doc)
    a, b = cfg.jobs
    assert (a.env.id, a.policy.type, a.num_envs, a.max_steps, a.episodes) == (
        "CartPole-v1",
        "random",
        4,
        100,
        3,
    )
    assert (b.env.kwargs, b.num_envs, b.episodes, b.success.survived) == ({"g": 9.0}, 2, 9, True)
    assert a.success.key is None and a.vectorization == "sync"


def test_success_key_shorthand() -> None:
    cfg = parse_run_config(_with(success_key="is_success"))
    assert cfg.jobs[0].success.key == "is_success"
    assert "set either 'success_key' or 'success'" in _error(_with(success_key="x", success={"key": "y"}))


def test_templates_merge_deeply_and_detect_cycles() -> None:
    doc = copy.deepcopy(BASE)
    doc["templates"] = {
        "base": {"num_envs": 2, "env": {"id": "CartPole-v1", "kwargs": {"render_mode": None}}},
        "long": {"inherits": "base", "max_steps": 50},
    }
    doc["jobs"][0]["inherits"] = "long"
    doc["jobs"][0]["env"] = {"id": "CartPole-v1"}
    job = parse_run_config(doc).jobs[0]
    assert (job.num_envs, job.max_steps, job.env.kwargs) == (2, 50, {"render_mode": None})
    doc["templates"]["base"]["inherits"] = "long"
    assert (
        _error(doc) == "run.yaml: field 'jobs.0.inherits': template inheritance cycle: long -> base -> long"
    )
    doc["jobs"][0]["inherits"] = "nope"
    assert "unknown template 'nope'; templates: base, long" in _error(doc)


def test_overrides_apply_before_validation() -> None:
    cfg = parse_run_config(
        copy.deepcopy(BASE),
        overrides=["jobs.0.episodes=50", "seed=9", "jobs.0.env.kwargs.sutton_barto_reward=true"],
    )
    assert (cfg.seed, cfg.jobs[0].episodes) == (9, 50)
    assert cfg.jobs[0].env.kwargs == {"sutton_barto_reward": True}
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("x=") == ("x", "")
    assert "cannot set a key inside a str" in _error(copy.deepcopy(BASE), ["name.x=1"])


@pytest.mark.parametrize(
    "doc,overrides,message",
    [
        (
            _with(episods=3),
            None,
            "run.yaml: field 'jobs.0.episods': unknown key 'episods'; allowed keys: act_timeout, allow_unseeded, design, env, episode_timeout, episodes, "
            "factors, instruction, max_steps, name, native_mode, num_envs, on_nonfinite, on_out_of_bounds, "
            "outcomes, policy, success, trajectories, vectorization, video; did you mean 'episodes'?",
        ),
        (
            _with(episodes="many"),
            None,
            "run.yaml: field 'jobs.0.episodes': Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            _with(episodes=0),
            None,
            "run.yaml: field 'jobs.0.episodes': Input should be greater than or equal to 1",
        ),
        (
            _with(vectorization="threads"),
            None,
            "run.yaml: field 'jobs.0.vectorization': Input should be 'sync', 'async' or 'native'",
        ),
        (
            _with(env={"id": "X", "kwags": {}}),
            None,
            "run.yaml: field 'jobs.0.env.kwags': unknown key 'kwags'; allowed keys: id, kwargs; did you mean 'kwargs'?",
        ),
        (
            _with(success={"key": "s", "survived": True}),
            None,
            "run.yaml: field 'jobs.0.success': set only one of 'key', 'survived' and 'min_return'",
        ),
        (
            _with(name="a/b"),
            None,
            "run.yaml: field 'jobs.0.name': a job name may not contain '/', '\\' or NUL, be '.' or '..', "
            "or start or end with spaces (it names a folder of the run)",
        ),
        (
            {**BASE, "colour": 1},
            None,
            "run.yaml: field 'colour': unknown key 'colour'; allowed keys: defaults, imports, jobs, name, seed, target_half_width, templates",
        ),
        (
            {**BASE, "jobs": []},
            None,
            "run.yaml: field 'jobs': List should have at least 1 item after validation, not 0",
        ),
        (
            {**BASE, "jobs": BASE["jobs"] * 2},
            None,
            "run.yaml: job name 'a' is used twice; job names must be unique",
        ),
        (
            {**BASE, "defaults": {"num_env": 2}},
            None,
            "run.yaml: field 'defaults.num_env': unknown key 'num_env'; allowed keys: act_timeout, allow_unseeded, design, env, episode_timeout, episodes, "
            "factors, instruction, max_steps, name, native_mode, num_envs, on_nonfinite, on_out_of_bounds, "
            "outcomes, policy, success, trajectories, vectorization, video; did you mean 'num_envs', 'env'?",
        ),
        (BASE, ["jobs.3.episodes=4"], "field '--set': 'jobs.3': index must be 0..0 (the list has 1 items)"),
        (BASE, ["jobs.0.episodes"], "field '--set': override 'jobs.0.episodes' is not of the form key=value"),
        (
            BASE,
            ["jobs.0.episodes=-2"],
            "run.yaml: field 'jobs.0.episodes': Input should be greater than or equal to 1",
        ),
    ],
)
def test_errors_name_file_field_and_what_is_allowed(
    doc: dict[str, Any], overrides: list[str] | None, message: str
) -> None:
    assert _error(copy.deepcopy(doc), overrides) == message


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"run\.yaml: the run file must be a YAML mapping"):
        parse_run_config(["a"], file="run.yaml")


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml: no such file"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\njobs: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line 3, column 1"):
        load_run_config(bad)


def test_preflight_unknown_env_and_policy() -> None:
    with pytest.raises(ConfigError) as info:
        preflight(parse_run_config(_with(env="CartPole-v7")))
    assert str(info.value).startswith(
        "field 'jobs.0.env.id': unknown environment 'CartPole-v7'; did you mean 'CartPole-v1', 'CartPole-v0'"
    )
    with pytest.raises(
        ConfigError, match=r"field 'jobs.0.policy.type': unknown policy 'randm'; registered policies: "
    ):
        preflight(parse_run_config(_with(policy="randm")))
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_module'"):
        preflight(parse_run_config(_with(policy="no_such_module:make")))
    with pytest.raises(ConfigError, match=r"module 'helpers' has no attribute 'nothing'"):
        preflight(parse_run_config(_with(policy="helpers:nothing")))


def test_deep_merge_shares_no_state() -> None:
    base = {"a": {"b": [1]}}
    merged = deep_merge(base, {"a": {"c": 2}})
    merged["a"]["b"].append(9)
    assert base == {"a": {"b": [1]}}
    assert merged == {"a": {"b": [1, 9], "c": 2}}


def test_a_relative_ca_file_is_resolved_against_the_run_file_and_a_missing_one_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    run_file = tmp_path / "run.yaml"
    policy = "{type: openpi, url: 'wss://gpu-box:443', ca_file: certs/ca.pem}"
    run_file.write_text(f"name: t\njobs:\n  - {{name: j, env: Pendulum-v1, episodes: 1, policy: {policy}}}\n")
    config = load_run_config(run_file)
    assert config.jobs[0].policy.kwargs == {
        "url": "wss://gpu-box:443",
        "ca_file": str(tmp_path / "certs" / "ca.pem"),
    }
    run_file.write_text(run_file.read_text().replace("certs/ca.pem", "missing.pem"))
    with pytest.raises(ConfigError) as info:
        load_run_config(run_file)
    assert f"no such file: {tmp_path / 'missing.pem'} (relative paths are resolved against" in str(info.value)
    assert "jobs.0.policy.ca_file" in str(info.value)  # where the run file wrote it
