"""Every command block in README.md and docs/*.md runs as written (issue 17).

A doc drifted from the code once (an example that needed an extra its install
line did not name, a command whose flags had changed); this test is what keeps
that from happening again. It extracts the shell commands from the fenced
blocks of the Markdown files, runs every ``trialrun ...`` command and every
``python examples/...`` script in a real subprocess, from a temporary copy of
``examples/``, in document order (README first: its runs are what later
commands such as ``trialrun analyze RUN_DIR`` read), and asserts exit code 0
and no traceback.

What the test adds, and only that: a cap on the episodes of a ``trialrun run``
(``--set jobs.N.episodes=...`` appended after the user's own arguments, so the
command is otherwise the documented one) and a shorter training for the
training example; placeholders (``RUN_DIR``, ``runs/baseline``) name run
directories that earlier commands made.

Commands that cannot run here are in :data:`NOT_RUN` with the reason. That is
not a pytest skip: :func:`test_every_doc_command_is_run_or_listed_with_a_reason`
asserts the list is exactly the set of documented commands that are not run,
so a new command that cannot run here forces a decision, and a command that
left the docs leaves the list.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL_TAGS = {"bash", "sh", "shell", "console"}
"""Blocks whose every non-comment line is a command."""
LOOSE_TAGS = {"", "text"}
"""Blocks that mix commands with diagrams or output: only lines that start with a command count."""
COMMAND_START = re.compile(r"^(\$ )?(trialrun|python3?|pip|pytest) ")

FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```", re.S | re.M)

SYNOPSIS = "a synopsis (optional parts in [brackets], metavariables), not a command; its concrete forms are in the same doc"

NOT_RUN: dict[str, str] = {
    # README, command 1 and 2: the set-up CI itself performs (.ci/run), network installs
    "python3 -m venv .venv": "creates the virtual environment CI runs in",
    ". .venv/bin/activate": "a shell built-in; the test runs the venv's own trialrun and python",
    "pip install -e .[metaworld]": "a network install; the venv CI runs in has every extra",
    "pip install torch==2.13.0": "a network install; the venv CI runs in has every extra",
    "pip install -e .[dev]": "a network install; the venv CI runs in has every extra",
    "pip install -e .[sb3,trackers,video]": "a network install; the venv CI runs in has every extra",
    # docs/environments.md
    "pip install -e .[envs]": "a network install; the venv CI runs in has every extra",
    # docs/batched.md
    "pip install -e .[mjx]": "a network install; the venv CI runs in has every extra",
    "pytest": "the test suite this test is part of (CI runs it: tests/test_readme.py checks .ci/run)",
    # docs/analysis.md
    "trialrun analyze RUN_DIR [--job NAME] [--outcome success] [--out DIR] [--method glm|posterior]": SYNOPSIS,
    "trialrun analyze --episodes FILE.jsonl --factors FACTORS.yaml [--outcome success] [--job NAME]": SYNOPSIS,
    # docs/compare.md
    "trialrun run run.yaml --set jobs.0.policy=ckpt.zip --stop-when worse --baseline runs/baseline "
    "[--metric success] [--batch 10] [--alpha 0.05] [--bound X] [--margin M]": SYNOPSIS,
    # docs/importing.md: the inputs are files other tools wrote on the user's machine
    "trialrun import arena eval/episode_summary.jsonl --factors factors.yaml -o runs/": (
        "reads an Arena log the user has; tests/test_importers.py imports real Arena output"
    ),
    "trialrun import csv episode_metrics.csv --episode episode --factor speed --factor map --outcome score "
    "--success goal_reached --job-name drive --run-dir runs/drive": (
        "reads the user's own CSV; tests/test_importers.py covers the CSV importer"
    ),
    "trialrun import jsonl my_loop.jsonl --name my-sweep": (
        "reads the user's own jsonl; tests/test_importers.py covers the jsonl importer"
    ),
    "trialrun report runs/drive": "reads runs/drive, which the CSV import above (not run) would make",
    "trialrun analyze runs/drive": "reads runs/drive, which the CSV import above (not run) would make",
    # docs/policies.md: servers that run until stopped, or need a GPU model
    "trialrun serve-policy pendulum-ppo --protocol openpi --env Pendulum-v1 --port 8000": (
        "a server that runs until Ctrl-C; tests/test_policies_server.py starts and stops it"
    ),
    "python gr00t/eval/run_gr00t_server.py --model-path nvidia/GR00T-N1.6-3B --embodiment-tag <TAG> "
    "--use-sim-policy-wrapper --host 0.0.0.0 --port 5555": "NVIDIA's GR00T server: a GPU and a 3B model",
    "trialrun serve-policy checkpoints/ppo.zip --port 8765": (
        "a server that runs until Ctrl-C, on the user's checkpoint; tests/test_policies_server.py"
    ),
    "trialrun serve-policy {type: sb3, path: ppo.zip} --kwarg deterministic=false": (
        "a server that runs until Ctrl-C, on the user's checkpoint; tests/test_policies_server.py"
    ),
    "trialrun serve-policy mypkg.policies:make_policy --port 0": (
        "a server that runs until Ctrl-C, on the user's package; tests/test_policies_server.py"
    ),
    "trialrun serve-policy ppo.zip --host 0.0.0.0 --tls-cert server.pem --tls-key server-key.pem": (
        "a server that runs until Ctrl-C, with the user's certificate; tests/test_policies_tls.py serves TLS"
    ),
    # docs/report.md and the README's report block
    "trialrun report RUN_DIR [--out DIR]": SYNOPSIS,
    "trialrun report RUN_DIR --serve [--port 8000] [--host 127.0.0.1]": SYNOPSIS,
    "trialrun report RUN_DIR --serve": "serves until Ctrl+C; tests/test_report_server.py serves and stops it",
    # docs/scaling.md
    "trialrun run RUN.yaml --executor process --workers 8": (
        "eight worker processes on a 2-core CI machine; tests/test_execution_process.py runs the pool"
    ),
    "trialrun run RUN.yaml --executor ray --ray-address auto": "needs a running Ray cluster",
    "trialrun run RUN.yaml --executor ray --workers 2": (
        "starts a local Ray cluster (minutes on 2 cores); tests/test_execution_ray.py runs it"
    ),
    # docs/suites.md
    "python -m trialrun.cli suite SUITES.yaml --name EVALUATOR --policy CHECKPOINT --run-dir "
    "<output_dir>/<evaluator>/epoch<N> --epoch N --global-step S --no-log --quiet": (
        "the command EvalManager runs for mode: subprocess, shown for reference with its placeholders; "
        "tests/test_suites_manager.py runs subprocess evaluators"
    ),
    "trialrun suite SUITES.yaml [--policy SPEC] [--policy-type TYPE] [--name EVALUATOR ...] [--epoch N] "
    "[--global-step S] [-o OUTPUT_DIR] [--run-dir DIR] [--no-log] [-q]": SYNOPSIS,
    # docs/video.md
    "python benchmarks/video.py": "a benchmark (5-6 minutes), not run in CI",
    "python benchmarks/video.py --quick": "a benchmark, not run in CI",
}
"""Every documented command that this test does not run, with the reason."""

PICK_PLACE_RUN = "runs/pick-place-sweep-<time>"
PLACEHOLDERS = {
    # the run the README's command 1 makes (its name ends in the start time)
    "RUN_DIR": PICK_PLACE_RUN,
    "runs/pick-place-sweep-20261121T190000Z": PICK_PLACE_RUN,
}
"""Placeholders in the docs and the run directory that stands in for them."""

EPISODE_CAPS = {"pick-place": 18}
"""Episodes per job of a capped run (default 2): the docs replay pick-place episode 17."""
DEFAULT_CAP = 2
TRAINING_ARGS = ["--timesteps", "1024", "--eval-every", "512"]
"""The training example trains 100,000 steps; here 4 PPO updates and 3 evaluation points."""


@dataclass(frozen=True)
class DocCommand:
    doc: str
    line: int
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.argv)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _split_commands(line: str) -> list[list[str]]:
    """A shell line as commands: comments dropped, ``a && b`` as two commands."""
    tokens = shlex.split(line, comments=True)
    out: list[list[str]] = [[]]
    for token in tokens:
        if token == "&&":
            out.append([])
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


def doc_commands() -> list[DocCommand]:
    """The commands of the fenced shell blocks of README.md and docs/*.md, in order."""
    found: list[DocCommand] = []
    for doc in DOCS:
        text = doc.read_text()
        for block in FENCE.finditer(text):
            tag, body = block.group(1), block.group(2)
            if tag not in SHELL_TAGS | LOOSE_TAGS:
                continue
            first_line = text[: block.start(2)].count("\n") + 1
            joined: list[tuple[int, str]] = []
            continued = False
            for offset, raw in enumerate(body.splitlines()):
                wrapped = tag in LOOSE_TAGS and raw[:1].isspace() and raw.strip() and joined
                if continued or (wrapped and COMMAND_START.match(joined[-1][1])):
                    # a backslash continuation, or a synopsis wrapped onto an indented line
                    joined[-1] = (joined[-1][0], joined[-1][1] + " " + raw.strip())
                else:
                    joined.append((first_line + offset, raw.strip()))
                continued = raw.rstrip().endswith("\\")
                if continued:
                    joined[-1] = (joined[-1][0], joined[-1][1].rstrip()[:-1].rstrip())
            for number, line in joined:
                if not line or line.startswith("#"):
                    continue
                if tag in LOOSE_TAGS and not COMMAND_START.match(line):
                    continue
                line = line.removeprefix("$ ")
                for argv in _split_commands(line):
                    found.append(DocCommand(doc.relative_to(ROOT).as_posix(), number, tuple(argv)))
    return found


def _runnable(command: DocCommand) -> bool:
    argv = command.argv
    return argv[0] == "trialrun" or (argv[0] in ("python", "python3") and argv[1].startswith("examples/"))


def test_every_doc_command_is_run_or_listed_with_a_reason() -> None:
    commands = doc_commands()
    texts = {c.text for c in commands}
    assert len(commands) > 30  # the extraction finds the blocks (README alone has 9 commands)
    not_run = {c.text for c in commands if c.text in NOT_RUN or not _runnable(c)}
    assert not_run == set(NOT_RUN), (
        f"documented but neither run nor listed: {sorted(not_run - set(NOT_RUN))}; "
        f"listed but not documented (any more): {sorted(set(NOT_RUN) - texts)}"
    )
    assert all(reason.strip() for reason in NOT_RUN.values())
    # the README's own tour is run, not listed away
    readme = [c for c in commands if c.doc == "README.md" and c.argv[0] in ("trialrun", "python")]
    assert [c.text for c in readme if c.text in NOT_RUN] == ["trialrun report RUN_DIR --serve"]


# ------------------------------------------------------------------------------ running them


class Workspace:
    """A temporary directory with a copy of ``examples/``, where the commands run in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.copytree(ROOT / "examples", path / "examples")
        bin_dir = Path(sys.executable).parent
        self.trialrun = str(bin_dir / "trialrun") if (bin_dir / "trialrun").exists() else None
        self.env = {
            **os.environ,
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "SDL_VIDEODRIVER": os.environ.get("SDL_VIDEODRIVER", "dummy"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "160",
        }

    def pick_place_run(self) -> str:
        """The run directory the README's command 1 made (``runs/pick-place-sweep-<UTC time>``)."""
        made = sorted((self.path / "runs").glob("pick-place-sweep-*"))
        assert made, "no pick-place-sweep run: README command 1 must run before the commands that read it"
        return made[-1].relative_to(self.path).as_posix()

    def argv(self, command: DocCommand) -> list[str]:
        """The command as run: placeholders filled, episodes capped, the venv's executables."""
        argv = list(command.argv)
        for i, token in enumerate(argv):
            if PLACEHOLDERS.get(token) == PICK_PLACE_RUN or token == PICK_PLACE_RUN:
                argv[i] = self.pick_place_run()
            elif token in ("runs/baseline", "runs/candidate") and not (self.path / token).exists():
                # two runs of one config: the pick-place run stands for both
                shutil.copytree(self.path / self.pick_place_run(), self.path / token)
        if argv[0] == "trialrun":
            argv[:1] = [self.trialrun] if self.trialrun else [sys.executable, "-m", "trialrun.cli"]
            if argv[1:2] == ["run"] and len(argv) > 2 and argv[2].endswith(".yaml"):
                argv += self._caps(self.path / argv[2])
        else:
            argv[0] = sys.executable
            if argv[1] == "examples/train_cartpole_ppo.py":
                argv += TRAINING_ARGS
        return argv

    @staticmethod
    def _caps(run_file: Path) -> list[str]:
        jobs = yaml.safe_load(run_file.read_text()).get("jobs", [])
        out = []
        for i, job in enumerate(jobs):
            out += ["--set", f"jobs.{i}.episodes={EPISODE_CAPS.get(job.get('name'), DEFAULT_CAP)}"]
        return out


@pytest.mark.slow
@pytest.mark.metaworld  # the README's main example is the Meta-World sweep
def test_doc_commands_run_as_written(tmp_path: Path) -> None:
    """Each runnable documented command exits 0 without a traceback (about 2 minutes)."""
    workspace = Workspace(tmp_path)
    failures, timings = [], []
    for command in doc_commands():
        if command.text in NOT_RUN:
            continue
        argv = workspace.argv(command)
        started = time.monotonic()
        done = subprocess.run(
            argv, cwd=tmp_path, env=workspace.env, capture_output=True, text=True, timeout=300
        )
        timings.append(f"{time.monotonic() - started:5.1f} s  {command}")
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Traceback" in output:
            failures.append(
                f"{command}\n  ran: {shlex.join(argv)}\n  exit {done.returncode}\n{output[-3000:]}"
            )
    print("\n".join(timings))
    assert not failures, "\n\n".join(failures)
