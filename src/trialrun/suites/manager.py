"""``EvalManager``: run a suites file's evaluators while a policy trains.

The trainer calls :meth:`EvalManager.maybe_run` once per epoch (or lets
:class:`trialrun.integrations.sb3.EvalSuiteCallback` do it). Every enabled
evaluator whose ``interval`` divides the epoch runs, each into an ordinary run
directory ``<output_dir>/<evaluator>/epoch<N>/`` (so ``trialrun report``,
``analyze`` and ``replay`` work on it), and its metrics go to the configured
loggers at the trainer's step.

- ``mode: inline`` evaluates the policy object the trainer passes (a trialrun
  policy, a Stable-Baselines3 model, a torch ``nn.Module`` or a callable; see
  :func:`trialrun.integrations.as_policy`) in the trainer's process.
- ``mode: subprocess`` runs ``trialrun suite SUITES.yaml --name EVALUATOR
  --policy CHECKPOINT ...`` on the newest checkpoint (a file, or the newest
  checkpoint file in a directory), in its own process group that is killed
  when ``timeout`` passes, and reads the run directory the child wrote
  (:mod:`trialrun.suites.subprocess_mode`).

An evaluator that fails (its env or policy raises, the child exits non-zero,
times out) is logged with its message and traceback and reported as a
``failed`` :class:`EvalResult`; the other evaluators still run.

An evaluator with a ``gate`` compares each completed run with its baseline
run (:func:`trialrun.suites.result.apply_gate`); the loggers get
``<evaluator>/gate_passed``.

Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> manager = EvalManager.from_dict({"output_dir": out, "evaluators": {
    ...     "probe": {"interval": 2, "jobs": [{"name": "p", "env": "trialrun/SeedProbe-v0",
    ...                                        "episodes": 4}]}}})
    >>> sorted(manager.maybe_run(1, policy="zero")), sorted(manager.maybe_run(2, policy="zero"))
    ([], ['probe'])
    >>> manager.close()
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from trialrun.config import RunConfig
from trialrun.envs.build import make_env
from trialrun.errors import ConfigError, EvaluatorError
from trialrun.execution.preflight import preflight
from trialrun.execution.runner import LocalExecutor, RunObserver, run_evaluation
from trialrun.policies.base import Policy, PolicyContext
from trialrun.policies.spec import checkpoint_spec, newest_checkpoint
from trialrun.policies.spec import spec_from_mapping as policy_config
from trialrun.policies.spec import spec_from_text as parse_policy_spec
from trialrun.suites.config import (
    TRAINER_POLICY,
    Evaluator,
    SuitesConfig,
    load_suites,
    parse_suites,
    resolve_jobs,
    validate_jobs,
)
from trialrun.suites.loggers import EvalLogger, build_logger, check_logger_available
from trialrun.suites.result import EvalResult, apply_gate
from trialrun.suites.run_reader import result_from_run_dir
from trialrun.suites.subprocess_mode import policy_args, run_child, suite_command
from trialrun.variations.factors import FactorSet

logger = logging.getLogger(__name__)


def trainer_policy(
    context: PolicyContext, object_type: str | None = None, checkpoint: str | None = None
) -> Policy:
    """The policy of a suite job that names none: the trainer supplies it at run
    time. Building it from a run file (replay, resume) is impossible, so this
    explains what to do instead."""
    what = f" (a {object_type} object)" if object_type else ""
    hint = (
        f"; the trainer also saved {checkpoint}, which 'trialrun suite ... --policy' evaluates"
        if checkpoint
        else ""
    )
    raise ConfigError(
        f"this job evaluated the policy a trainer passed in{what}, which cannot be rebuilt from the run "
        f"file: evaluate a saved checkpoint instead (trialrun suite SUITES.yaml --policy CHECKPOINT){hint}",
        field="policy",
    )


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _unique(path: Path) -> Path:
    candidate, suffix = path, 1
    while candidate.exists():
        suffix += 1
        candidate = path.with_name(f"{path.name}-{suffix}")
    return candidate


class EvalManager:
    """Runs the evaluators of a suites file during training (see the module docstring).

    Args:
        suites: a parsed suites file (:func:`trialrun.suites.config.load_suites`).
        output_dir: overrides the file's ``output_dir`` (relative paths are
            resolved against the current directory, once, here).
        loggers: ``None`` builds the file's ``loggers``; a list (possibly empty)
            replaces them.
    """

    def __init__(
        self,
        suites: SuitesConfig,
        *,
        output_dir: str | Path | None = None,
        loggers: list[EvalLogger] | None = None,
    ) -> None:
        self.suites = suites
        self.file = suites.file.resolve() if suites.file is not None else None
        self.output_dir = (
            Path(output_dir if output_dir is not None else suites.output_dir).expanduser().resolve()
        )
        if loggers is None:
            file = None if self.file is None else str(self.file)
            for index, config in enumerate(suites.loggers):
                check_logger_available(config, field=f"loggers.{index}", file=file)
            loggers = [build_logger(config, self.output_dir) for config in suites.loggers]
        self.loggers = list(loggers)
        self._nominal_cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._previous: dict[str, Path] = {}
        """The last completed run of each evaluator (``gate: {baseline: previous}``)."""

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        *,
        output_dir: str | Path | None = None,
        loggers: list[EvalLogger] | None = None,
    ) -> EvalManager:
        """Load a suites file (errors name the file and the field)."""
        return cls(load_suites(Path(path)), output_dir=output_dir, loggers=loggers)

    @classmethod
    def from_dict(
        cls,
        raw: dict[str, Any],
        *,
        output_dir: str | Path | None = None,
        loggers: list[EvalLogger] | None = None,
    ) -> EvalManager:
        """Build from a suites document already in memory."""
        return cls(parse_suites(raw), output_dir=output_dir, loggers=loggers)

    def __enter__(self) -> EvalManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the loggers (ending the tracker runs this manager started)."""
        for log in self.loggers:
            try:
                log.close()
            except Exception:
                logger.exception("closing logger %s failed", type(log).__name__)

    # ------------------------------------------------------------------ queries

    @property
    def evaluators(self) -> dict[str, Evaluator]:
        """The runnable evaluators (templates excluded), in file order."""
        return self.suites.evaluators

    def enabled(self) -> list[str]:
        """Names of the enabled evaluators."""
        return [name for name, ev in self.evaluators.items() if ev.config.enabled]

    def due(self, epoch: int) -> list[str]:
        """Enabled evaluators whose interval divides ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return [
            name
            for name, ev in self.evaluators.items()
            if ev.config.enabled and epoch % ev.config.interval == 0
        ]

    def needs_checkpoint(self, names: list[str]) -> bool:
        """Whether any of ``names`` runs in a subprocess (and so needs a saved checkpoint)."""
        return any(self.evaluators[name].config.mode == "subprocess" for name in names)

    def run_config(self, name: str, policy: dict[str, Any] | None = None) -> RunConfig:
        """The run file an evaluator runs: jobs resolved, factors pinned for
        ``nominal: true`` (reading nominal values from the env, once), and every
        job's policy replaced by ``policy`` when given."""
        evaluator = self.suites.evaluator(name)
        nominal = self._nominal_values(evaluator) if evaluator.config.nominal else None
        file = None if self.file is None else str(self.file)
        document = resolve_jobs(name, evaluator.config, policy=policy, nominal_values=nominal, file=file)
        return validate_jobs(name, document, file)

    def _nominal_values(self, evaluator: Evaluator) -> dict[str, dict[str, Any]]:
        if evaluator.name not in self._nominal_cache:
            values: dict[str, dict[str, Any]] = {}
            for job in evaluator.run_config.jobs:
                if not job.factors:
                    continue
                env = make_env(job.env.id, job.env.kwargs, job.max_steps)
                try:
                    values[job.name] = FactorSet(job).nominal_values(env)
                finally:
                    env.close()
            self._nominal_cache[evaluator.name] = values
        return self._nominal_cache[evaluator.name]

    def preflight(self, name: str, policy: Any = None, checkpoint: str | Path | None = None) -> RunConfig:
        """Check everything that can be checked before running ``name`` (env ids,
        policy types, factors): a ConfigError/InputError instead of a failed run."""
        evaluator = self.suites.evaluator(name)
        _, spec, _ = self._policy_for(evaluator, policy, checkpoint)
        config = self.run_config(name, spec)
        try:
            preflight(config)
        except ConfigError as exc:
            if exc.file is not None:
                raise
            # A setting of the policy passed in is named as the caller's (policy=, --policy);
            # anything else is the evaluator's, in the suites file.
            passed = re.fullmatch(r"jobs\.\d+\.(policy(?:\..+)?)", exc.field or "")
            if passed is not None and spec is not None:
                raise ConfigError(exc.message, field=passed.group(1)) from None
            file = None if self.file is None else str(self.file)
            raise exc.located(prefix=f"evaluators.{name}", file=file) from None
        return config

    # ------------------------------------------------------------------ running

    def maybe_run(
        self,
        epoch: int,
        policy: Any = None,
        checkpoint: str | Path | None = None,
        global_step: int | None = None,
    ) -> dict[str, EvalResult]:
        """Run every enabled evaluator whose interval divides ``epoch``.

        ``policy`` is what inline evaluators evaluate (see
        :func:`trialrun.integrations.as_policy`; a string is a policy spec);
        ``checkpoint`` (a file, or a directory whose newest checkpoint is used)
        is what subprocess evaluators evaluate, and what inline ones load when
        no ``policy`` is given. Returns the results by evaluator name.
        """
        return {
            name: self.run(name, policy=policy, checkpoint=checkpoint, epoch=epoch, global_step=global_step)
            for name in self.due(epoch)
        }

    def final(
        self,
        policy: Any = None,
        checkpoint: str | Path | None = None,
        epoch: int | None = None,
        global_step: int | None = None,
    ) -> dict[str, EvalResult]:
        """Run every enabled evaluator once (at the end of training) into ``<evaluator>/final``."""
        return {
            name: self.run(
                name, policy=policy, checkpoint=checkpoint, epoch=epoch, global_step=global_step, final=True
            )
            for name in self.enabled()
        }

    def run(
        self,
        name: str,
        policy: Any = None,
        checkpoint: str | Path | None = None,
        epoch: int | None = None,
        global_step: int | None = None,
        *,
        final: bool = False,
        run_dir: str | Path | None = None,
        in_process: bool = False,
        observer: RunObserver | None = None,
        log: bool = True,
    ) -> EvalResult:
        """Run evaluator ``name`` now (even if disabled or not due) and log it.

        ``run_dir`` overrides ``<output_dir>/<name>/epoch<N>`` (``final``,
        or ``run-<time>`` without an epoch). ``in_process`` runs a subprocess
        evaluator here (what the child ``trialrun suite`` does). Failures are
        returned as ``failed`` results, never raised, except for an unknown or
        template ``name``.
        """
        evaluator = self.suites.evaluator(name)
        mode = "inline" if in_process else evaluator.config.mode
        directory = Path(run_dir) if run_dir is not None else self._new_run_dir(name, epoch, final)
        started = time.monotonic()
        try:
            if mode == "subprocess":
                result = self._run_subprocess(evaluator, policy, checkpoint, epoch, global_step, directory)
            else:
                result = self._run_inline(evaluator, policy, checkpoint, directory, observer)
        except Exception as exc:
            logger.exception("evaluator '%s' (epoch %s) failed", name, epoch)
            result = EvalResult(
                evaluator=name,
                status="failed",
                eval_seconds=0.0,
                run_dir=directory if directory.exists() else None,
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
        else:
            if not result.ok:
                logger.error(
                    "evaluator '%s' (epoch %s) failed: %s\n%s",
                    name,
                    epoch,
                    result.error,
                    result.traceback or "",
                )
        result.eval_seconds = time.monotonic() - started
        result.epoch, result.global_step, result.mode = epoch, global_step, mode
        if result.ok and result.run_dir is not None:
            if evaluator.config.gate is not None:
                self._gate(evaluator, result)
            self._previous[name] = result.run_dir
        if result.ok:
            logger.info(
                "evaluator '%s' epoch %s: success %s over %d episodes in %.1f s (%s)",
                name,
                epoch,
                "-" if result.success_rate is None else f"{result.success_rate:.1%}",
                result.episodes,
                result.eval_seconds,
                result.run_dir,
            )
        if log:
            self._log(result)
        return result

    def _gate(self, evaluator: Evaluator, result: EvalResult) -> None:
        """Compare ``result``'s run with the gate's baseline; set its gate fields."""
        gate = evaluator.config.gate
        assert gate is not None and result.run_dir is not None
        if gate.baseline == "previous":
            baseline = self._previous.get(evaluator.name)
            if baseline is None:
                result.gate_verdict = "no baseline yet (the first run of the evaluator)"
                return
        else:
            baseline = Path(gate.baseline).expanduser().resolve()
        apply_gate(result, baseline, metric=gate.metric, margin=gate.margin)

    def _new_run_dir(self, name: str, epoch: int | None, final: bool) -> Path:
        leaf = "final" if final else (f"epoch{epoch}" if epoch is not None else f"run-{_stamp()}")
        return _unique(self.output_dir / name / leaf)

    def _log(self, result: EvalResult) -> None:
        step = result.global_step if result.global_step is not None else (result.epoch or 0)
        for log in self.loggers:
            try:
                log.log_result(result, step)
            except Exception:
                logger.exception(
                    "logger %s could not log evaluator '%s'", type(log).__name__, result.evaluator
                )

    def _policy_for(
        self, evaluator: Evaluator, policy: Any, checkpoint: str | Path | None
    ) -> tuple[Policy | None, dict[str, Any] | None, Path | None]:
        """(live policy, policy config for the jobs, checkpoint file)."""
        checkpoint_type = evaluator.config.checkpoint_type
        file = None
        if checkpoint is not None:
            file = newest_checkpoint(checkpoint, any_suffix=checkpoint_type is not None)
        if isinstance(policy, str):
            return None, parse_policy_spec(policy), file
        if isinstance(policy, dict):
            return None, policy_config(policy), file
        if policy is not None:
            from trialrun.integrations import as_policy

            live = as_policy(policy)
            kwargs = {"object_type": type(policy).__name__, "checkpoint": None if file is None else str(file)}
            return live, {"type": TRAINER_POLICY, "kwargs": kwargs}, file
        if file is not None:
            return None, checkpoint_spec(file, checkpoint_type), file
        if evaluator.trainer_policy_jobs:
            raise EvaluatorError(
                f"evaluator '{evaluator.name}': job(s) {', '.join(evaluator.trainer_policy_jobs)} "
                "name no policy and none was passed: pass policy= (the trainer's policy) or checkpoint=PATH"
            )
        return None, None, None

    def _run_inline(
        self,
        evaluator: Evaluator,
        policy: Any,
        checkpoint: str | Path | None,
        run_dir: Path,
        observer: RunObserver | None,
    ) -> EvalResult:
        live, spec, file = self._policy_for(evaluator, policy, checkpoint)
        config = self.run_config(evaluator.name, spec)
        started = time.monotonic()
        run_evaluation(
            config,
            run_dir,
            config_path=self.file,
            observer=observer,
            executor=LocalExecutor(policy=live) if live is not None else None,
            argv=list(sys.argv),
        )
        result = result_from_run_dir(evaluator.name, run_dir, time.monotonic() - started)
        result.checkpoint = file
        return result

    # ------------------------------------------------------------------ subprocess

    def _suites_file(self) -> Path:
        if self.file is not None:
            return self.file
        path = self.output_dir / "suites.resolved.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.suites.raw, sort_keys=False), encoding="utf-8")
        return path

    def _run_subprocess(
        self,
        evaluator: Evaluator,
        policy: Any,
        checkpoint: str | Path | None,
        epoch: int | None,
        global_step: int | None,
        run_dir: Path,
    ) -> EvalResult:
        args, file = policy_args(evaluator, policy, checkpoint)
        command = suite_command(
            self._suites_file(), evaluator.name, args, run_dir, self.output_dir, epoch, global_step
        )
        logger.info("evaluator '%s': running %s", evaluator.name, " ".join(command))
        result = run_child(evaluator.name, command, evaluator.config.effective_timeout, run_dir)
        result.checkpoint = file
        return result
