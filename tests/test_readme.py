"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one() -> None:
    run_main, run_tests = _readme_commands()
    assert "pip install -e" in run_main and "trialrun run examples/" in run_main
    assert run_tests.endswith("pytest")
    assert run_tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_main_example_exists() -> None:
    run_main = _readme_commands()[0]
    example = re.search(r"trialrun run (\S+)", run_main)
    assert example is not None and (ROOT / example.group(1)).is_file()


def test_durations_are_stated_in_one_place() -> None:
    """Issue 17: the README said two minutes for the main example, its YAML five.
    Measured durations live in the README's "How long things take" table; the
    examples point there instead of stating their own."""
    readme = (ROOT / "README.md").read_text()
    assert "### How long things take" in readme
    table = readme.split("### How long things take", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    assert "trialrun run examples/pick_place_sweep.yaml" in table
    assert "python examples/train_cartpole_ppo.py" in table
    for example in sorted((ROOT / "examples").rglob("*")):
        if example.suffix in (".yaml", ".py"):
            text = example.read_text().lower()
            assert not re.search(r"\b(about|under|in) (a|one|two|five|\d+) (minute|second)", text), example


def test_the_training_examples_install_line_has_the_extras_the_example_suite_uses() -> None:
    """Issue 17: after the documented ``.[sb3,trackers]`` the example failed on every
    evaluation (CartPole's video needs pygame: the ``video`` extra) and the suites
    command on its TensorBoard logger. The install line next to the example names
    every extra the example suite and the script need."""
    import yaml

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(pip install[^\n]*)\npython examples/train_cartpole_ppo.py\n", readme)
    assert block is not None
    extras = set(re.search(r'\.\[([\w,]+)\]"', block.group(1)).group(1).split(","))  # type: ignore[union-attr]
    suites = yaml.safe_load((ROOT / "examples" / "suites" / "cartpole.yaml").read_text())
    needed = {"sb3"}  # the script trains with Stable-Baselines3
    if set(suites["loggers"]) & {"tensorboard", "wandb", "mlflow"}:
        needed.add("trackers")
    if any("video" in evaluator for evaluator in suites["evaluators"].values()):
        needed.add("video")  # CartPole's frames are drawn by pygame
    assert needed <= extras, f"the install line lacks {sorted(needed - extras)}"
