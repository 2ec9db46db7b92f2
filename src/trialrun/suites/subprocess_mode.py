"""``mode: subprocess`` evaluators: the child ``trialrun suite`` process.

:class:`~trialrun.suites.manager.EvalManager` evaluates a subprocess evaluator
by running ``trialrun suite SUITES.yaml --name EVALUATOR --policy CHECKPOINT
--run-dir DIR ...`` (:func:`suite_command`, with the policy arguments of
:func:`policy_args`) and reading back the run directory the child wrote
(:func:`run_child`). The child runs in its own process group with our import
path; when the evaluator's ``timeout`` passes the whole group is killed
(SIGTERM, then SIGKILL after a grace period). A child that fails is reported
with the tail of its stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trialrun.errors import EvaluatorError
from trialrun.policies.spec import newest_checkpoint, spec_to_text
from trialrun.runfiles import SUMMARY_FILE
from trialrun.suites.config import Evaluator
from trialrun.suites.result import EvalResult
from trialrun.suites.run_reader import result_from_run_dir

_STDERR_TAIL_LINES = 30
_KILL_GRACE_S = 3.0


def policy_args(
    evaluator: Evaluator, policy: Any, checkpoint: str | Path | None
) -> tuple[list[str], Path | None]:
    """The child's ``--policy`` arguments and the checkpoint file they name
    (None when a policy spec is passed instead of a checkpoint)."""
    config = evaluator.config
    if isinstance(policy, str | dict) and checkpoint is None:
        return ["--policy", policy if isinstance(policy, str) else spec_to_text(policy)], None
    if checkpoint is None:
        raise EvaluatorError(
            f"evaluator '{evaluator.name}' runs in a subprocess, which evaluates a saved checkpoint: "
            "pass checkpoint=PATH (a file, or a directory whose newest checkpoint is used)"
        )
    file = newest_checkpoint(checkpoint, any_suffix=config.checkpoint_type is not None)
    args = ["--policy", str(file)]
    if config.checkpoint_type:
        args += ["--policy-type", config.checkpoint_type]
    return args, file


def suite_command(
    suites_file: Path,
    name: str,
    policy: list[str],
    run_dir: Path,
    output_dir: Path,
    epoch: int | None,
    global_step: int | None,
) -> list[str]:
    """The child's command line: ``trialrun suite`` on evaluator ``name`` into ``run_dir``."""
    command = [
        sys.executable,
        "-m",
        "trialrun.cli",
        "suite",
        str(suites_file),
        "--name",
        name,
        *policy,
        "--run-dir",
        str(run_dir),
        "--output-dir",
        str(output_dir),
        "--no-log",
        "--quiet",
    ]
    if epoch is not None:
        command += ["--epoch", str(epoch)]
    if global_step is not None:
        command += ["--global-step", str(global_step)]
    return command


def run_child(name: str, command: list[str], timeout: float, run_dir: Path) -> EvalResult:
    """Run ``command`` (evaluator ``name``'s child) and read the result it wrote
    into ``run_dir``.

    Raises:
        EvaluatorError: the child timed out (its process group is killed), or
            exited without writing results.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=_child_env(),
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        _, stderr = process.communicate()
        raise EvaluatorError(
            f"evaluator '{name}' timed out after {timeout:g} s; killed its process group "
            f"(pid {process.pid})" + (f"; its stderr ended with:\n{_tail(stderr)}" if stderr.strip() else "")
        ) from None
    seconds = time.monotonic() - started
    if not (run_dir / SUMMARY_FILE).exists():
        raise EvaluatorError(
            f"evaluator '{name}': the child process exited with code {process.returncode} "
            f"and wrote no results; its stderr ended with:\n{_tail(stderr) or '(nothing)'}"
        )
    result = result_from_run_dir(name, run_dir, seconds)
    if process.returncode != 0 and result.ok:
        result.status = "failed"
        result.error = f"the child process exited with code {process.returncode}: {_tail(stderr)}"
    elif not result.ok and stderr.strip():
        result.error = f"{result.error}\nchild stderr:\n{_tail(stderr)}"
    return result


def _tail(text: str, lines: int = _STDERR_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)


def _child_env() -> dict[str, str]:
    """The child's environment: ours, plus our import path (so ``module:factory``
    specs and envs importable here are importable there)."""
    env = dict(os.environ)
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    extra = [os.getcwd()]
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in prefixes):
            continue
        extra.append(entry)
    existing = env.get("PYTHONPATH")
    parts = list(dict.fromkeys(extra + ([existing] if existing else [])))
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("MUJOCO_GL", "egl")
    return env


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_KILL_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
