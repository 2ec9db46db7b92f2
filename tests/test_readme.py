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
