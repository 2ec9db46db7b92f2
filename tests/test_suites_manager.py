from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

import helpers  # noqa: F401  (registers helpers/Broken-v0)
from trialrun.envs.probe import probe_success
from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.runfiles import read_episodes, read_manifest
from trialrun.suites import EvalManager, EvalResult
from trialrun.suites.config import TRAINER_POLICY
from trialrun.suites.manager import trainer_policy


def _probe(name: str = "probe", episodes: int = 6, **extra: Any) -> dict[str, Any]:
    return {"name": name, "env": "trialrun/SeedProbe-v0", "episodes": episodes, "num_envs": 2, **extra}


def _cart(name: str = "cart", episodes: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "env": "CartPole-v1",
        "episodes": episodes,
        "num_envs": 2,
        "max_steps": 40,
        "success": "survived",
        **extra,
    }


def _manager(tmp_path: Path, evaluators: dict[str, Any], **top: Any) -> EvalManager:
    doc = {"output_dir": str(tmp_path / "evals"), "evaluators": evaluators, **top}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "suites.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return EvalManager.from_yaml(path)


class _Recorder:
    """A logger that keeps what it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def log_result(self, result: EvalResult, step: int) -> None:
        self.calls.append((result.evaluator, step, result.status))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- dispatch


def test_interval_dispatch_runs_exactly_the_due_evaluators(tmp_path: Path) -> None:
    manager = _manager(
        tmp_path,
        {
            "every": {"interval": 1, "jobs": [_probe(episodes=2)]},
            "even": {"interval": 2, "jobs": [_probe(episodes=2)]},
            "third": {"interval": 3, "jobs": [_probe(episodes=2)]},
            "off": {"interval": 1, "enabled": False, "jobs": [_probe(episodes=2)]},
            "template": {"interval": 5},
        },
    )
    assert list(manager.evaluators) == ["every", "even", "third", "off"]
    assert manager.enabled() == ["every", "even", "third"]
    expected = {
        0: ["every", "even", "third"],
        1: ["every"],
        2: ["every", "even"],
        3: ["every", "third"],
        4: ["every", "even"],
        5: ["every"],
        6: ["every", "even", "third"],
        7: ["every"],
        12: ["every", "even", "third"],
    }
    assert {epoch: manager.due(epoch) for epoch in expected} == expected
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        manager.due(-1)

    recorder = _Recorder()
    manager.loggers = [recorder]  # type: ignore[list-item]
    ran = {
        epoch: sorted(manager.maybe_run(epoch, policy="zero", global_step=100 * epoch))
        for epoch in range(1, 7)
    }
    assert ran == {
        1: ["every"],
        2: ["even", "every"],
        3: ["every", "third"],
        4: ["even", "every"],
        5: ["every"],
        6: ["even", "every", "third"],
    }
    evals = tmp_path / "evals"
    assert sorted(p.name for p in (evals / "every").iterdir()) == [f"epoch{i}" for i in range(1, 7)]
    assert sorted(p.name for p in (evals / "even").iterdir()) == ["epoch2", "epoch4", "epoch6"]
    assert sorted(p.name for p in (evals / "third").iterdir()) == ["epoch3", "epoch6"]
    assert not (evals / "off").exists()
    assert recorder.calls[:3] == [
        ("every", 100, "completed"),
        ("every", 200, "completed"),
        ("even", 200, "completed"),
    ]
    assert len(recorder.calls) == 11

    # final() runs every enabled evaluator once into <evaluator>/final; run() runs even a disabled one.
    finals = manager.final(policy="zero", global_step=700)
    assert sorted(finals) == ["even", "every", "third"]
    assert all(r.run_dir == evals / name / "final" for name, r in finals.items())
    off = manager.run("off", policy="zero", epoch=1)
    assert off.ok and off.run_dir == evals / "off" / "epoch1"
    # A second run at the same epoch gets its own directory.
    again = manager.run("every", policy="zero", epoch=1)
    assert again.run_dir == evals / "every" / "epoch1-2"


def test_result_carries_exact_metrics_from_the_run(tmp_path: Path) -> None:
    manager = _manager(tmp_path, {"e": {"seed": 9, "jobs": [_probe("a", 10), _probe("b", 6)]}})
    result = manager.run("e", policy="zero", epoch=4, global_step=1234)
    assert result.ok and result.status == "completed" and result.error is None
    assert (result.epoch, result.global_step, result.mode) == (4, 1234, "inline")
    assert result.run_dir == tmp_path / "evals" / "e" / "epoch4"
    assert result.eval_seconds > 0
    records = read_episodes(result.run_dir / "episodes.jsonl")
    assert len(records) == 16 and result.episodes == 16
    successes = [probe_success(r.seed) for r in records]
    assert result.success_rate == pytest.approx(sum(successes) / 16)
    assert result.return_mean == pytest.approx(np.mean([r.outcome["length"] for r in records]))
    assert result.length_mean == result.return_mean  # SeedProbe's reward is 1 per step
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.success_ci_low == summary["overall"]["success_ci"]["low"]
    assert result.success_ci_high == summary["overall"]["success_ci"]["high"]
    a = [r for r in records if r.job == "a"]
    assert result.jobs["a"].success_rate == pytest.approx(sum(probe_success(r.seed) for r in a) / 10)
    metrics = result.metrics()
    assert set(metrics) == {
        f"e/{m}"
        for m in (
            "success_rate",
            "success_ci_low",
            "success_ci_high",
            "return_mean",
            "length_mean",
            "eval_seconds",
        )
    } | {
        f"e/{j}/{m}"
        for j in "ab"
        for m in ("success_rate", "success_ci_low", "success_ci_high", "return_mean", "length_mean")
    }
    # The run dir is an ordinary run: its manifest holds the resolved jobs and the seed.
    manifest = read_manifest(result.run_dir)
    assert manifest.run == "e" and manifest.seed == 9
    assert manifest.config["jobs"][0]["policy"] == {"type": "zero", "kwargs": {}}
    # Same seed, same episodes: a second epoch is a paired comparison.
    second = manager.run("e", policy="zero", epoch=5)
    assert [(r.job, r.episode, r.seed) for r in read_episodes(second.run_dir / "episodes.jsonl")] == [
        (r.job, r.episode, r.seed) for r in records
    ]


# --------------------------------------------------------------------------- failures


def test_a_failing_evaluator_is_logged_and_the_others_complete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _manager(
        tmp_path,
        {
            "first": {"jobs": [_probe(episodes=8)]},
            "broken": {
                "jobs": [{"name": "diverges", "env": "helpers/Broken-v0", "episodes": 3}, _probe(episodes=4)]
            },
            "no_such_env": {"jobs": [{"name": "x", "env": "NoSuchEnv-v9", "episodes": 2}]},
            "last": {"jobs": [_cart(episodes=4)]},
        },
    )
    with caplog.at_level(logging.ERROR, logger="trialrun.suites.manager"):
        results = manager.maybe_run(1, policy="zero", global_step=10)
    assert list(results) == ["first", "broken", "no_such_env", "last"]
    first, broken, missing, last = results.values()
    assert first.ok and first.episodes == 8 and first.jobs["probe"].episodes == 8
    assert last.ok and last.episodes == 4 and last.jobs["cart"].status == "completed"
    # The env that raises fails its job; the evaluator reports it and keeps what it measured.
    assert broken.status == "failed"
    assert broken.error == "job 'diverges' failed: ValueError: the simulator diverged on purpose"
    assert broken.jobs["diverges"].status == "failed" and broken.jobs["probe"].status == "completed"
    assert broken.episodes == 4 and broken.jobs["probe"].episodes == 4
    assert "Traceback" in (broken.traceback or "") and "diverged on purpose" in (broken.traceback or "")
    # An evaluator that cannot even start is a failed result too, with its traceback.
    assert missing.status == "failed" and missing.run_dir is None
    assert missing.error is not None and missing.error.startswith(
        "ConfigError: field 'jobs.0.env.id': unknown environment"
    )
    assert "Traceback" in (missing.traceback or "")

    manager_records = [r for r in caplog.records if r.name == "trialrun.suites.manager"]
    logged = {r.getMessage().split("\n")[0]: r for r in manager_records}
    assert (
        "evaluator 'broken' (epoch 1) failed: job 'diverges' failed: ValueError: the simulator diverged on purpose"
        in logged
    )
    broken_record = logged[
        "evaluator 'broken' (epoch 1) failed: job 'diverges' failed: ValueError: the simulator diverged on purpose"
    ]
    assert "Traceback (most recent call last)" in broken_record.getMessage()
    missing_record = logged["evaluator 'no_such_env' (epoch 1) failed"]
    assert missing_record.exc_info is not None and missing_record.exc_info[0] is ConfigError
    assert len(manager_records) == 2


def test_no_policy_for_policyless_jobs_is_a_failed_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _manager(tmp_path, {"e": {"jobs": [_probe(), _probe("own", policy="zero")]}})
    with caplog.at_level(logging.ERROR, logger="trialrun.suites.manager"):
        result = manager.run("e", epoch=1)
    assert result.status == "failed"
    assert result.error == (
        "EvaluatorError: evaluator 'e': job(s) probe name no policy and none was passed: "
        "pass policy= (the trainer's policy) or checkpoint=PATH"
    )
    # Jobs that name their policy run without one being passed.
    manager = _manager(tmp_path / "two", {"e": {"jobs": [_probe("own", policy="zero")]}})
    assert manager.run("e", epoch=1).ok


def test_a_live_policy_object_is_evaluated_and_recorded_as_the_trainers(tmp_path: Path) -> None:
    calls: list[int] = []

    class Alternating:
        def act(self, obs: Any) -> np.ndarray:
            calls.append(len(obs))
            return np.array([len(calls) % 2] * len(obs))

        def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
            pass

    manager = _manager(tmp_path, {"e": {"jobs": [_cart(episodes=4)]}})
    result = manager.run("e", policy=Alternating(), epoch=2)
    assert result.ok and calls and set(calls) <= {1, 2}
    manifest = read_manifest(result.run_dir)  # type: ignore[arg-type]
    assert manifest.config["jobs"][0]["policy"] == {
        "type": TRAINER_POLICY,
        "kwargs": {"object_type": "Alternating", "checkpoint": None},
    }
    space = gym.spaces.Discrete(2)
    context = PolicyContext("CartPole-v1", 1, gym.spaces.Box(-1, 1, (4,)), space, {})
    with pytest.raises(ConfigError, match="cannot be rebuilt from the run file"):
        trainer_policy(context, object_type="Alternating")
    # A plain callable and a torch module are adapted too.
    assert manager.run("e", policy=lambda obs: np.zeros(len(obs), dtype=np.int64), epoch=3).ok


# --------------------------------------------------------------------------- nominal


class _ModeEnv(gym.Env):  # type: ignore[type-arg]
    """An env whose constructor kwarg has no scalar default (its nominal is unknown)."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> Any:
        return np.zeros(1, np.float32), 1.0, True, False, {"success": self.mode == "easy"}


gym.register(id="suites-test/Mode-v0", entry_point=_ModeEnv)


def test_nominal_pins_factors_at_the_envs_nominal_values_and_explicit_settings_win(tmp_path: Path) -> None:
    cart = _cart(
        episodes=6,
        policy="cartpole-balance",
        factors={
            "length": {
                "variation": {"type": "attr", "name": "length"},
                "sampler": {"type": "uniform", "low": 0.3, "high": 2.0},
            },
            "cart_scale": {
                "variation": {"type": "attr", "name": "masscart", "mode": "scale"},
                "sampler": {"type": "loguniform", "low": 0.5, "high": 4.0},
            },
            "pole": {
                "variation": {"type": "attr", "name": "masspole"},
                "sampler": {"type": "constant", "value": 0.3},
            },
            "force": {
                "variation": {"type": "attr", "name": "force_mag"},
                "sampler": {"type": "uniform", "low": 5, "high": 15},
            },
            "reward": {
                "variation": {"type": "env_kwarg", "key": "sutton_barto_reward"},
                "sampler": {"type": "choice", "values": [True, False]},
            },
        },
    )
    mode_job = {
        "name": "mode",
        "env": "suites-test/Mode-v0",
        "policy": "zero",
        "episodes": 2,
        "factors": {
            "mode": {
                "variation": {"type": "env_kwarg", "key": "mode"},
                "sampler": {"type": "choice", "values": ["easy", "hard"]},
            }
        },
    }
    manager = _manager(
        tmp_path,
        {
            "sweep": {"jobs": [cart, mode_job]},
            "nominal": {
                "inherits": "sweep",
                "nominal": True,
                "job_overrides": {"factors.force.sampler.low": 12},
            },
        },
    )
    config = manager.run_config("nominal")
    samplers = {name: f.sampler.model_dump() for name, f in config.job("cart").factors.items()}
    assert samplers["length"] == {"type": "constant", "value": 0.5}  # CartPole's pole half-length
    assert samplers["cart_scale"] == {"type": "constant", "value": 1.0}  # a scale's nominal
    assert samplers["pole"] == {"type": "constant", "value": 0.3}  # the job's own pin
    assert samplers["force"] == {
        "type": "uniform",
        "low": 12.0,
        "high": 15.0,
        "levels": None,
    }  # explicit override
    assert samplers["reward"] == {"type": "constant", "value": False}  # the constructor's default
    # No nominal from the env: the sampler's nominal_hint (a choice's first value).
    assert config.job("mode").factors["mode"].sampler.model_dump() == {"type": "constant", "value": "easy"}

    result = manager.run("nominal", epoch=1)
    assert result.ok, result.error
    records = [r for r in read_episodes(result.run_dir / "episodes.jsonl") if r.job == "cart"]  # type: ignore[operator]
    assert len(records) == 6
    for r in records:
        assert r.factors["length"] == 0.5 and r.factors["cart_scale"] == 1.0 and r.factors["pole"] == 0.3
        assert r.factors["reward"] is False and 12.0 <= r.factors["force"] <= 15.0
    assert len({r.factors["force"] for r in records}) == 6
    # The template evaluator itself is untouched by its nominal child.
    sweep = manager.run_config("sweep")
    assert sweep.job("cart").factors["length"].sampler.model_dump()["type"] == "uniform"


# --------------------------------------------------------------------------- subprocess mode


@pytest.fixture(scope="module")
def sb3_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, n_epochs=2, seed=3, device="cpu")
    model.learn(384)
    path = tmp_path_factory.mktemp("ckpt") / "ppo_cartpole.zip"
    model.save(str(path))
    return path


def test_subprocess_mode_evaluates_the_checkpoint_like_inline_mode(
    tmp_path: Path, sb3_checkpoint: Path
) -> None:
    jobs = [_cart(episodes=6, max_steps=60)]
    manager = _manager(
        tmp_path,
        {"child": {"mode": "subprocess", "timeout": 120, "jobs": jobs}, "here": {"jobs": jobs}},
    )
    # A directory of checkpoints: the newest by modification time is evaluated.
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    older = ckpts / "older.zip"
    older.write_bytes(b"not a model")
    os.utime(older, (time.time() - 100, time.time() - 100))
    newest = ckpts / "newest.zip"
    newest.write_bytes(sb3_checkpoint.read_bytes())
    (ckpts / "stats.pkl").write_bytes(b"x")  # not a checkpoint suffix: ignored

    results = manager.maybe_run(3, checkpoint=ckpts, global_step=3000)
    child, here = results["child"], results["here"]
    assert child.ok, child.error
    assert here.ok, here.error
    assert (child.mode, here.mode) == ("subprocess", "inline")
    assert child.checkpoint == here.checkpoint == newest.resolve()
    assert child.run_dir == tmp_path / "evals" / "child" / "epoch3"
    child_records = read_episodes(child.run_dir / "episodes.jsonl")
    here_records = read_episodes(here.run_dir / "episodes.jsonl")  # type: ignore[operator]
    assert len(child_records) == 6
    # Same jobs, same seed, same checkpoint: the same episodes and the same outcomes.
    assert [(r.episode, r.seed, r.outcome) for r in sorted(child_records, key=lambda r: r.episode)] == [
        (r.episode, r.seed, r.outcome) for r in sorted(here_records, key=lambda r: r.episode)
    ]
    assert child.success_rate == here.success_rate and child.return_mean == here.return_mean
    manifest = read_manifest(child.run_dir)
    assert manifest.config["jobs"][0]["policy"] == {"type": "sb3", "kwargs": {"path": str(newest.resolve())}}
    assert "--epoch" in manifest.command and "3" in manifest.command and "--global-step" in manifest.command


def test_subprocess_timeout_kills_the_child_process_group(tmp_path: Path) -> None:
    slow = _cart(episodes=200, max_steps=500, vectorization="async")
    manager = _manager(tmp_path, {"slow": {"mode": "subprocess", "timeout": 8, "jobs": [slow]}})
    started = time.monotonic()
    result = manager.run("slow", policy="{type: 'helpers:SlowPolicy', kwargs: {delay: 0.2}}", epoch=1)
    elapsed = time.monotonic() - started
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(
        "EvaluatorError: evaluator 'slow' timed out after 8 s"
    )
    assert 8 <= elapsed < 30
    pid = int(result.error.split("(pid ")[1].split(")")[0])
    time.sleep(0.5)
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pid and state != "Z":
            alive.append(stat.parent.name)
    assert alive == []


def test_subprocess_failures_report_the_childs_error(tmp_path: Path, sb3_checkpoint: Path) -> None:
    manager = _manager(
        tmp_path,
        {
            "badtype": {
                "mode": "subprocess",
                "timeout": 120,
                "checkpoint_type": "no-such-loader",
                "jobs": [_cart()],
            },
            "corrupt": {"mode": "subprocess", "timeout": 120, "jobs": [_cart()]},
        },
    )
    bad = manager.run("badtype", checkpoint=sb3_checkpoint, epoch=1)
    assert bad.status == "failed" and bad.error is not None
    assert bad.error.startswith(
        "EvaluatorError: evaluator 'badtype': the child process exited with code 2 and wrote no results; "
        "its stderr ended with:\ntrialrun: error: "
    )
    assert "unknown policy 'no-such-loader'" in bad.error
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK not really a zip")
    result = manager.run("corrupt", checkpoint=corrupt, epoch=1)
    assert result.status == "failed" and result.run_dir == tmp_path / "evals" / "corrupt" / "epoch1"
    assert result.error is not None and result.error.startswith("job 'cart' failed: ConfigError:")
    assert "not a Stable-Baselines3 model zip" in result.error
    assert "child stderr:" in result.error
    # Subprocess mode needs a checkpoint (a live object cannot cross the process boundary).
    no_ckpt = manager.run("corrupt", policy=lambda obs: obs, epoch=2)
    assert no_ckpt.error == (
        "EvaluatorError: evaluator 'corrupt' runs in a subprocess, which evaluates a saved checkpoint: "
        "pass checkpoint=PATH (a file, or a directory whose newest checkpoint is used)"
    )


class _MetricsRecorder:
    """A logger that keeps the metrics it receives."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def log_result(self, result: EvalResult, step: int) -> None:
        self.metrics.append(result.metrics())

    def close(self) -> None:
        pass


def test_gate_against_the_previous_run(tmp_path: Path) -> None:
    manager = _manager(
        tmp_path,
        {"cart": {"jobs": [_cart(episodes=16)], "gate": {"baseline": "previous", "margin": 0.05}}},
    )
    recorder = _MetricsRecorder()
    manager.loggers = [recorder]
    first = manager.maybe_run(0, policy="cartpole-balance")["cart"]
    assert first.ok and first.gate_passed is None
    assert first.gate_verdict == "no baseline yet (the first run of the evaluator)"
    assert "cart/gate_passed" not in recorder.metrics[0]

    worse = manager.maybe_run(1, policy="random")["cart"]
    assert worse.ok and worse.gate_passed is False and worse.gate_baseline == first.run_dir
    assert worse.gate_verdict is not None and worse.gate_verdict.startswith("B worse on success")
    assert "worse by more than the margin 0.05 on job(s) cart" in worse.gate_verdict
    assert recorder.metrics[1]["cart/gate_passed"] == 0.0

    better = manager.maybe_run(2, policy="cartpole-balance")["cart"]
    assert better.gate_passed is True and better.gate_baseline == worse.run_dir
    assert recorder.metrics[2]["cart/gate_passed"] == 1.0
    assert better.to_dict()["gate"]["passed"] is True


def test_gate_with_a_run_dir_baseline_and_a_metric(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = _manager(tmp_path / "base", {"cart": {"jobs": [_cart(episodes=12)]}})
    baseline = base.run("cart", policy="cartpole-balance", epoch=0).run_dir
    assert baseline is not None
    manager = _manager(
        tmp_path / "gated",
        {
            "cart": {"jobs": [_cart(episodes=12)], "gate": {"baseline": str(baseline), "metric": "return"}},
            "other": {"seed": 9, "jobs": [_cart(episodes=12)], "gate": {"baseline": str(baseline)}},
        },
    )
    manager.loggers = []
    same = manager.run("cart", policy="cartpole-balance", epoch=1)
    assert (
        same.gate_passed is True
        and same.gate_verdict == "no clear difference on return (B: this run, A: the baseline)"
    )
    with caplog.at_level(logging.ERROR, logger="trialrun.suites.result"):
        refused = manager.run("other", policy="cartpole-balance", epoch=1)
    assert refused.ok and refused.gate_passed is None  # the evaluation counts; the gate could not decide
    assert refused.gate_verdict is not None and "the run seed differs: 0 (A) vs 9 (B)" in refused.gate_verdict
    assert "the gate could not compare" in caplog.text


def test_gate_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluators\.cart\.gate\.margin"):
        _manager(tmp_path, {"cart": {"jobs": [_cart()], "gate": {"baseline": "previous", "margin": -1}}})
    with pytest.raises(ConfigError, match=r"evaluators\.cart\.gate\.baseline"):
        _manager(tmp_path, {"cart": {"jobs": [_cart()], "gate": {"metric": "success"}}})
