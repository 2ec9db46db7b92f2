"""Job lifecycle and executors."""

from trialrun.execution.runner import LocalExecutor, RunResult, default_run_dir, run_evaluation

__all__ = ["LocalExecutor", "RunResult", "default_run_dir", "run_evaluation"]
