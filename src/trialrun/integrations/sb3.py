"""Stable-Baselines3: evaluate a model while it trains.

- :class:`SB3ModelPolicy` adapts a live SB3 model (``model.predict(obs,
  deterministic=True)``) to trialrun's policy protocol. Recurrent models in
  the sb3-contrib style (``RecurrentPPO``: ``predict(obs, state, episode_start)``)
  keep their hidden state per sub-env, and ``reset(mask)`` marks exactly the
  sub-envs whose episode starts, so their state (and only theirs) is cleared.
  Observations are normalized with the training ``VecNormalize`` statistics when
  one is given (the callback passes the model's own).
- Saved models (``.zip``) are loaded by the ``sb3`` policy type
  (:mod:`trialrun.policies.sb3`), which ``--policy model.zip`` and
  ``EvalManager.maybe_run(checkpoint=...)`` use.
- :class:`EvalSuiteCallback` runs an :class:`~trialrun.suites.EvalManager`
  from ``model.learn(callback=...)`` every ``eval_every_steps`` environment
  steps, and records the metrics to SB3's logger too.

Example:
    >>> import torch; torch.set_num_threads(1)
    >>> from stable_baselines3 import PPO
    >>> import numpy as np
    >>> model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    >>> policy = SB3ModelPolicy(model)
    >>> policy.reset(np.array([True, True]))
    >>> policy.act(np.zeros((2, 4), dtype=np.float32)).shape
    (2,)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError as _exc:
    raise ImportError(
        f"trialrun.integrations.sb3 needs stable-baselines3: pip install 'trialrun[sb3]' ({_exc})"
    ) from _exc


logger = logging.getLogger(__name__)


class SB3ModelPolicy:
    """A Stable-Baselines3 model as a trialrun policy (batch in, batch out).

    Args:
        model: any SB3/sb3-contrib algorithm (or an object with their ``predict``).
        deterministic: greedy actions (the default; evaluation should not sample).
        vec_normalize: a ``VecNormalize`` whose observation statistics the model
            was trained with; observations are normalized with it (not updated).
    """

    def __init__(self, model: Any, deterministic: bool = True, vec_normalize: Any = None) -> None:
        self.model = model
        self.deterministic = deterministic
        self.vec_normalize = vec_normalize
        self._state: Any = None
        self._episode_start: np.ndarray | None = None

    def act(self, obs: Any) -> Any:
        if not isinstance(obs, dict):
            obs = np.asarray(obs)
        if self.vec_normalize is not None:
            obs = self.vec_normalize.normalize_obs(obs)
        batch = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        if self._episode_start is None or len(self._episode_start) != batch:
            self._episode_start = np.ones(batch, dtype=bool)
            self._state = None
        actions, state = self.model.predict(
            obs, state=self._state, episode_start=self._episode_start, deterministic=self.deterministic
        )
        self._state = state
        self._episode_start = np.zeros(batch, dtype=bool)
        return actions

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        """Episodes start in the sub-envs of ``mask``: their recurrent state is
        cleared on the next ``act`` (sb3-contrib's ``episode_start``)."""
        mask = np.asarray(mask, dtype=bool)
        if self._episode_start is None or len(self._episode_start) != len(mask):
            self._episode_start = np.ones(len(mask), dtype=bool)
            self._state = None
            return
        self._episode_start = self._episode_start | mask


class EvalSuiteCallback(BaseCallback):
    """Runs an :class:`~trialrun.suites.EvalManager` during ``model.learn``.

    Every ``eval_every_steps`` environment steps (``model.num_timesteps``) is an
    evaluation point; at the ``k``-th point the manager runs the evaluators due
    at epoch ``k`` (``maybe_run(k, policy, checkpoint, global_step=num_timesteps)``).
    When a due evaluator runs in a subprocess, the model is first saved to
    ``checkpoint_dir`` (default ``<output_dir>/checkpoints``) and that file is
    evaluated. Metrics also go to SB3's logger (so its TensorBoard/CSV output
    has them), dumped at the current step. At the end of training every
    enabled evaluator runs once more (``final``) unless ``run_final=False``.

    ``history`` holds ``(epoch, global_step, results)`` per evaluation point,
    and ``final_results`` the final run.

    Example::

        manager = EvalManager.from_yaml("suites.yaml")
        model.learn(50_000, callback=EvalSuiteCallback(manager, eval_every_steps=10_000))
    """

    def __init__(
        self,
        manager: Any,
        eval_every_steps: int,
        *,
        deterministic: bool = True,
        checkpoint_dir: str | Path | None = None,
        run_final: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        if eval_every_steps < 1:
            raise ValueError("eval_every_steps must be at least 1")
        self.manager = manager
        self.eval_every_steps = int(eval_every_steps)
        self.deterministic = deterministic
        self.checkpoint_dir = (
            Path(checkpoint_dir) if checkpoint_dir else Path(manager.output_dir) / "checkpoints"
        )
        self.run_final = run_final
        self.epoch = 0
        self.history: list[tuple[int, int, dict[str, Any]]] = []
        self.final_results: dict[str, Any] = {}

    def _init_callback(self) -> None:
        # A resumed learn() continues counting evaluation points where it was.
        self.epoch = self.num_timesteps // self.eval_every_steps

    def _policy(self) -> SB3ModelPolicy:
        return SB3ModelPolicy(
            self.model, self.deterministic, vec_normalize=self.model.get_vec_normalize_env()
        )

    def _checkpoint(self) -> Path:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"model_step{self.num_timesteps}.zip"
        self.model.save(str(path))
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:
            # Found by trialrun.policies.spec.checkpoint_spec for subprocess evaluators.
            vec_normalize.save(str(path.with_suffix(".vecnormalize.pkl")))
        return path

    def _record(self, results: dict[str, Any]) -> None:
        for result in results.values():
            for key, value in result.metrics().items():
                self.logger.record(key, value)
        if results:
            # As SB3's EvalCallback does: the step goes into text/CSV outputs too.
            self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
            self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        reached = self.num_timesteps // self.eval_every_steps
        if reached <= self.epoch:
            return True
        self.epoch = reached
        due = self.manager.due(self.epoch)
        if not due:
            return True
        checkpoint = self._checkpoint() if self.manager.needs_checkpoint(due) else None
        results = self.manager.maybe_run(
            self.epoch, policy=self._policy(), checkpoint=checkpoint, global_step=self.num_timesteps
        )
        self.history.append((self.epoch, self.num_timesteps, results))
        self._record(results)
        if self.verbose:
            for name, result in results.items():
                logger.info("eval %s at step %d: %s", name, self.num_timesteps, result.metrics())
        return True

    def _on_training_end(self) -> None:
        if not self.run_final:
            return
        names = self.manager.enabled()
        checkpoint = self._checkpoint() if self.manager.needs_checkpoint(names) else None
        self.final_results = self.manager.final(
            policy=self._policy(), checkpoint=checkpoint, epoch=self.epoch, global_step=self.num_timesteps
        )
        self._record(self.final_results)
