"""The language factor: each episode's instruction drawn per slot, recorded, and given to the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trialrun.config import parse_run_config
from trialrun.execution.runner import run_evaluation
from trialrun.runfiles import read_episodes, read_manifest

PHRASINGS = ["push the cart left", "keep the pole up", "balance it"]
SEEN: dict[str, list[Any]] = {}


class RecordingInstructedPolicy:
    """A 'zero' policy whose act() takes the instruction and notes what it got."""

    def __init__(self, context: Any, tag: str) -> None:
        self.tag = tag
        SEEN[tag] = []

    def act(self, obs: Any, instruction: Any) -> np.ndarray:
        SEEN[self.tag].append(instruction)
        return np.zeros(len(obs), dtype=np.int64)

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless: nothing to clear."""


def _config(num_envs: int, policy: dict[str, Any], instruction: str | None = None) -> Any:
    job: dict[str, Any] = {
        "name": "lang",
        "env": "CartPole-v1",
        "policy": policy,
        "episodes": 9,
        "num_envs": num_envs,
        "max_steps": 3,
        "factors": {
            "wording": {"variation": {"type": "language"}, "sampler": {"type": "choice", "values": PHRASINGS}}
        },
    }
    if instruction is not None:
        job["instruction"] = instruction
    return parse_run_config({"name": "lang", "seed": 11, "jobs": [job]})


def _by_episode(run_dir: Path) -> dict[int, Any]:
    return {r.episode: r.factors["wording"] for r in read_episodes(run_dir / "episodes.jsonl")}


def test_each_episode_gets_its_drawn_instruction_whatever_num_envs(tmp_path: Path) -> None:
    policy = {"type": "test_variations_language:RecordingInstructedPolicy", "kwargs": {"tag": "a"}}
    one = run_evaluation(_config(1, policy), tmp_path / "one")
    three = run_evaluation(_config(3, {**policy, "kwargs": {"tag": "b"}}), tmp_path / "three")
    assert one.exit_code == three.exit_code == 0
    drawn = _by_episode(tmp_path / "one")
    assert drawn == _by_episode(tmp_path / "three")
    assert sorted(drawn) == list(range(9)) and set(drawn.values()) <= set(PHRASINGS)
    assert len(set(drawn.values())) > 1
    # One sub-env: each step's instruction is the running episode's (3 steps per episode).
    assert SEEN["a"] == [[drawn[e]] for e in range(9) for _ in range(3)]
    # Three sub-envs: a list with each sub-env's episode's instruction.
    assert SEEN["b"][0] == [drawn[0], drawn[1], drawn[2]]
    (spec,) = read_manifest(tmp_path / "one").jobs["lang"].factors
    assert (spec.name, spec.kind, spec.values) == ("wording", "categorical", PHRASINGS)


def test_a_policy_class_that_takes_no_instruction_is_refused_before_running(tmp_path: Path) -> None:
    from trialrun.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        run_evaluation(_config(2, {"type": "zero"}), tmp_path / "run")
    assert str(info.value) == (
        "field 'jobs[lang].factors.wording': factor 'wording' gives each episode an instruction, "
        "but the policy (ZeroPolicy) takes none: its act() has no 'instruction' parameter and it is not a "
        "server policy"
    )
    assert not (tmp_path / "run").exists()


def test_a_factory_functions_policy_that_takes_no_instruction_fails_the_job_clearly(tmp_path: Path) -> None:
    # What a factory function returns is only known once it is built.
    result = run_evaluation(_config(2, {"type": "helpers:plain_function_factory"}), tmp_path / "run")
    assert result.statuses == {"lang": "failed"}
    assert result.errors["lang"] == (
        "ConfigError: field 'jobs[lang].factors.wording': factor 'wording' gives each episode an instruction, "
        "but the policy (CallablePolicy) takes none: its act() has no 'instruction' parameter and it is not a "
        "server policy"
    )


def test_two_language_factors_are_refused() -> None:
    config = _config(1, {"type": "zero"})
    job = config.jobs[0].model_dump()
    job["factors"]["other"] = job["factors"]["wording"]
    from trialrun.errors import ConfigError
    from trialrun.variations.factors import FactorSet

    with pytest.raises(ConfigError, match=r"factors \['wording', 'other'\] are both 'language'"):
        FactorSet(parse_run_config({"name": "x", "jobs": [job]}).jobs[0])


def test_the_report_charts_the_instruction_as_a_categorical_factor(tmp_path: Path) -> None:
    from trialrun.report import build_report

    policy = {"type": "test_variations_language:RecordingInstructedPolicy", "kwargs": {"tag": "r"}}
    run_evaluation(_config(2, policy), tmp_path / "run")
    html = build_report(tmp_path / "run").read_text()
    assert "wording" in html
    for phrasing in set(_by_episode(tmp_path / "run").values()):
        assert phrasing in html
