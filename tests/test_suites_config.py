from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from trialrun.errors import ConfigError
from trialrun.suites.config import (
    TRAINER_POLICY,
    EvaluatorConfig,
    load_suites,
    parse_suites,
    pinned_factors,
    resolve_jobs,
)


def _probe_job(name: str = "probe", **extra: Any) -> dict[str, Any]:
    return {"name": name, "env": "trialrun/SeedProbe-v0", "episodes": 4, **extra}


def _cart_job(name: str = "cart") -> dict[str, Any]:
    return {
        "name": name,
        "env": "CartPole-v1",
        "episodes": 4,
        "max_steps": 50,
        "success": "survived",
        "factors": {
            "length": {
                "variation": {"type": "attr", "name": "length"},
                "sampler": {"type": "uniform", "low": 0.3, "high": 2.0},
            },
            "mass": {
                "variation": {"type": "attr", "name": "masscart"},
                "sampler": {"type": "uniform", "low": 0.5, "high": 3.0},
            },
            "pole": {
                "variation": {"type": "attr", "name": "masspole"},
                "sampler": {"type": "constant", "value": 0.3},
            },
        },
    }


def _errors(raw: Any, file: str = "suites.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_suites(raw, file=file)
    return str(info.value)


# --------------------------------------------------------------------------- inheritance


def test_siblings_get_their_own_values_and_the_parent_is_untouched() -> None:
    raw = {
        "evaluators": {
            "base": {
                "interval": 10,
                "video": {"episodes": 2, "cameras": ["default"]},
                "job_overrides": {"num_envs": 2},
            },
            "a": {"inherits": "base", "interval": 3, "jobs": [_probe_job()], "video": {"episodes": 5}},
            "b": {"inherits": "base", "jobs": [_probe_job()], "job_overrides": {"episodes": 7}},
        }
    }
    before = copy.deepcopy(raw)
    suites = parse_suites(raw)
    assert raw == before  # the document is not modified
    assert list(suites.evaluators) == ["a", "b"] and suites.templates == ["base"]
    a, b = suites.evaluators["a"], suites.evaluators["b"]
    assert (a.config.interval, b.config.interval) == (3, 10)
    assert a.config.video == {"episodes": 5, "cameras": ["default"]}
    assert b.config.video == {"episodes": 2, "cameras": ["default"]}
    assert a.config.job_overrides == {"num_envs": 2}
    assert b.config.job_overrides == {"num_envs": 2, "episodes": 7}
    assert a.chain == ["base", "a"]
    # Siblings share no mutable state: editing one's merged config leaves the other alone.
    assert a.config.video is not b.config.video
    a.config.video["cameras"].append("side")  # type: ignore[index]
    a.config.job_overrides["num_envs"] = 9
    assert b.config.video == {"episodes": 2, "cameras": ["default"]}
    assert b.config.job_overrides == {"num_envs": 2, "episodes": 7}
    assert raw == before
    # The resolved jobs carry the merged values.
    assert [j.num_envs for j in a.run_config.jobs] == [2] and a.run_config.jobs[0].episodes == 4
    assert b.run_config.jobs[0].episodes == 7 and b.run_config.jobs[0].video.episodes == 2  # type: ignore[union-attr]
    assert a.run_config.jobs[0].video.episodes == 5  # type: ignore[union-attr]


def test_chains_of_three_merge_root_first() -> None:
    suites = parse_suites(
        {
            "evaluators": {
                "root": {"interval": 4, "seed": 3, "mode": "subprocess", "timeout": 50},
                "mid": {"inherits": "root", "interval": 6},
                "leaf": {"inherits": "mid", "timeout": 20, "jobs": [_probe_job()]},
            }
        }
    )
    leaf = suites.evaluators["leaf"]
    assert leaf.chain == ["root", "mid", "leaf"]
    assert (leaf.config.interval, leaf.config.seed, leaf.config.mode, leaf.config.timeout) == (
        6,
        3,
        "subprocess",
        20,
    )
    assert leaf.run_config.seed == 3 and leaf.run_config.name == "leaf"
    assert suites.templates == ["root", "mid"]


def test_inheritance_cycle_is_a_clear_error() -> None:
    message = _errors(
        {
            "evaluators": {
                "a": {"inherits": "b", "jobs": [_probe_job()]},
                "b": {"inherits": "a", "jobs": [_probe_job()]},
            }
        }
    )
    assert message == ("suites.yaml: field 'evaluators.b.inherits': evaluator inheritance cycle: a -> b -> a")
    self_loop = _errors({"evaluators": {"x": {"inherits": "x", "jobs": [_probe_job()]}}})
    assert self_loop.endswith("evaluator inheritance cycle: x -> x")


def test_unknown_parent_names_the_chain() -> None:
    message = _errors(
        {
            "evaluators": {
                "base": {"inherits": "missing"},
                "child": {"inherits": "base", "jobs": [_probe_job()]},
            }
        }
    )
    assert message == (
        "suites.yaml: field 'evaluators.base.inherits': evaluator 'base' inherits from 'missing', which is "
        "not defined (inheritance chain: base -> missing); evaluators: base, child"
    )


def test_templates_never_run() -> None:
    suites = parse_suites(
        {
            "evaluators": {
                "empty": {"interval": 2},  # no jobs at all
                "runs_and_parents": {"jobs": [_probe_job()]},  # own jobs: runs even though a parent
                "child": {"inherits": "runs_and_parents", "interval": 5},  # inherits jobs, not a parent: runs
            }
        }
    )
    assert list(suites.evaluators) == ["runs_and_parents", "child"]
    assert suites.templates == ["empty"]
    assert [j.name for j in suites.evaluators["child"].run_config.jobs] == ["probe"]
    with pytest.raises(ConfigError, match=r"evaluator 'empty' is a template"):
        suites.evaluator("empty")
    with pytest.raises(ConfigError, match=r"unknown evaluator 'nope'; evaluators: runs_and_parents, child"):
        suites.evaluator("nope")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "intervall": 3}}},
            "suites.yaml: field 'evaluators.e.intervall': unknown key 'intervall'; allowed keys: "
            "checkpoint_type, enabled, gate, inherits, interval, job_overrides, jobs, mode, nominal, seed, "
            "timeout, video",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "interval": 0}}},
            "suites.yaml: field 'evaluators.e.interval': Input should be greater than or equal to 1",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "mode": "thread"}}},
            "suites.yaml: field 'evaluators.e.mode': Input should be 'inline' or 'subprocess'",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job(episodes=0)]}}},
            "suites.yaml: field 'evaluators.e.jobs.0.episodes': Input should be greater than or equal to 1",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "timeout": 30}}},
            "suites.yaml: field 'evaluators.e': 'timeout' applies to mode: subprocess only (an inline "
            "evaluation runs in the trainer's process and cannot be interrupted); remove it or set "
            "timeout: null",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()]}}, "logers": ["jsonl"]},
            "suites.yaml: field 'logers': unknown key 'logers'; allowed keys: evaluators, loggers, output_dir",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()]}}, "loggers": ["jsonl", "neptune"]},
            "suites.yaml: field 'loggers': unknown logger 'neptune'; allowed loggers: jsonl, mlflow, "
            "tensorboard, wandb",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()]}}, "loggers": [{"type": "wandb", "projekt": "x"}]},
            "suites.yaml: field 'loggers.0.projekt': unknown key 'projekt'; allowed keys: dir, entity, group, "
            "mode, name, project, tags, type",
        ),
        (
            {"evaluators": {"tensorboard": {"jobs": [_probe_job()]}}},
            "suites.yaml: field 'evaluators.tensorboard': 'tensorboard' is reserved (it is a file or folder "
            "of output_dir: checkpoints, metrics.jsonl, mlartifacts, mlflow.db, mlruns, tensorboard, wandb); "
            "choose another name",
        ),
        (
            {"evaluators": {"a/b": {"jobs": [_probe_job()]}}},
            "suites.yaml: field 'evaluators.a/b': an evaluator name must start with a letter, digit or '_' "
            "and use only letters, digits, '_', '.', '-' (at most 100 characters; it names a folder and a "
            "metric prefix)",
        ),
        (
            {"evaluators": {}},
            "suites.yaml: field 'evaluators': a suites file needs at least one evaluator (a mapping of name to "
            "evaluator keys)",
        ),
        ([1, 2], "suites.yaml: a suites file must be a YAML mapping with 'evaluators'"),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "job_overrides": {"factors.mass.sampler.low": 2}}}},
            "suites.yaml: field 'evaluators.e.job_overrides.factors.mass.sampler.low': no job of evaluator 'e' "
            "has a factor 'mass'; factors: (none)",
        ),
        (
            {"evaluators": {"e": {"jobs": [_probe_job()], "job_overrides": {"name": "x"}}}},
            "suites.yaml: field 'evaluators.e.job_overrides': job_overrides cannot rename jobs (job names must "
            "stay unique)",
        ),
    ],
)
def test_bad_suites_name_file_and_field(raw: Any, expected: str) -> None:
    assert _errors(raw) == expected


def test_unknown_job_key_lists_the_job_keys() -> None:
    message = _errors({"evaluators": {"e": {"jobs": [_probe_job(colour="red")]}}})
    assert message.startswith(
        "suites.yaml: field 'evaluators.e.jobs.0.colour': unknown key 'colour'; allowed keys: act_timeout, "
        "allow_unseeded, design, env, episode_timeout, episodes, factors,"
    )


def test_load_suites_reads_yaml_and_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "suites.yaml"
    path.write_text(
        yaml.safe_dump(
            {"output_dir": "out", "loggers": ["jsonl"], "evaluators": {"e": {"jobs": [_probe_job()]}}}
        )
    )
    suites = load_suites(path)
    assert suites.file == path and suites.output_dir == Path("out")
    assert [lg.type for lg in suites.loggers] == ["jsonl"]
    path.write_text("evaluators: {e: {jobs: [}")
    with pytest.raises(ConfigError, match=r"suites.yaml: invalid YAML at line 1"):
        load_suites(path)
    with pytest.raises(ConfigError, match=r"missing.yaml: no such file"):
        load_suites(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- jobs, overrides, video


def test_job_overrides_and_video_merge_into_every_job() -> None:
    cart = _cart_job()
    cart["video"] = {"fps": 10, "episodes": 1}
    config = EvaluatorConfig.model_validate(
        {
            "jobs": [cart, _probe_job()],
            "video": {"episodes": 3, "size": [64, 48]},
            "job_overrides": {"episodes": 9, "factors.mass.sampler.low": 2.5, "env.kwargs.render_mode": None},
        }
    )
    doc = resolve_jobs("e", config)
    first, second = doc["jobs"]
    assert doc["name"] == "e" and doc["seed"] == 0
    assert first["episodes"] == second["episodes"] == 9
    # factors.* overrides reach only the jobs that have the factor.
    assert first["factors"]["mass"]["sampler"] == {"type": "uniform", "low": 2.5, "high": 3.0}
    assert "factors" not in second
    assert first["env"] == {"id": "CartPole-v1", "kwargs": {"render_mode": None}}
    # The job's own video keys win over the evaluator's.
    assert first["video"] == {"episodes": 1, "size": [64, 48], "fps": 10}
    assert second["video"] == {"episodes": 3, "size": [64, 48]}
    # Jobs without a policy evaluate the trainer's; a given policy replaces every job's.
    assert first["policy"] == second["policy"] == {"type": TRAINER_POLICY}
    replaced = resolve_jobs("e", config, policy={"type": "zero", "kwargs": {}})
    assert [j["policy"] for j in replaced["jobs"]] == [{"type": "zero", "kwargs": {}}] * 2
    # The evaluator's config is not modified by resolving it.
    assert config.jobs[0]["video"] == {"fps": 10, "episodes": 1} and "policy" not in config.jobs[0]


def test_nominal_pins_every_factor_except_explicit_settings() -> None:
    config = EvaluatorConfig.model_validate(
        {"nominal": True, "jobs": [_cart_job()], "job_overrides": {"factors.mass.sampler.high": 5.0}}
    )
    job = resolve_jobs("n", config)["jobs"][0]
    # mass: reached by a job_overrides key; pole: a constant the job chose; length: pinned.
    assert pinned_factors(config, job) == ["length"]
    values = {"cart": {"length": 0.5, "mass": 1.0, "pole": 0.1}}
    pinned = resolve_jobs("n", config, nominal_values=values)["jobs"][0]["factors"]
    assert pinned["length"]["sampler"] == {"type": "constant", "value": 0.5}
    assert pinned["mass"]["sampler"] == {"type": "uniform", "low": 0.5, "high": 5.0}
    assert pinned["pole"]["sampler"] == {"type": "constant", "value": 0.3}
    # Every override form that names the sampler counts as explicit.
    for key, value in [
        ("factors.length", _cart_job()["factors"]["length"]),
        ("factors.length.sampler", {"type": "uniform", "low": 1.0, "high": 1.2}),
        ("factors.length.sampler.type", "uniform"),
    ]:
        cfg = EvaluatorConfig.model_validate(
            {"nominal": True, "jobs": [_cart_job()], "job_overrides": {key: value}}
        )
        assert pinned_factors(cfg, resolve_jobs("n", cfg)["jobs"][0]) == ["mass"]
    # Overriding the variation (not the sampler) does not keep the factor's sampler.
    cfg = EvaluatorConfig.model_validate(
        {"nominal": True, "jobs": [_cart_job()], "job_overrides": {"factors.length.variation.mode": "set"}}
    )
    assert pinned_factors(cfg, resolve_jobs("n", cfg)["jobs"][0]) == ["length", "mass"]
    # nominal: false pins nothing even when values are known.
    off = EvaluatorConfig.model_validate({"jobs": [_cart_job()]})
    assert resolve_jobs("x", off, nominal_values=values)["jobs"][0]["factors"] == _cart_job()["factors"]
