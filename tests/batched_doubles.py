"""Test doubles of Isaac Lab, ManiSkill3 and PufferLib batched envs (numpy only).

Each follows the call signatures and reset/autoreset semantics of the real API
(see the adapters' docstrings for the files and commits read); the physics is
replaced by SeedProbe's rule: a world's episode length and success are pure
functions of the seed it was reset with (``probe_length`` / ``probe_success``).
Flags and rewards come back as :class:`FakeTensor` (``.cpu().numpy()``), as
the real ones come back as torch tensors.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.envs.probe import probe_length, probe_success


class FakeTensor:
    """The slice of the torch.Tensor API the adapters use."""

    def __init__(self, array: Any) -> None:
        self.array: np.ndarray = np.asarray(array)

    def cpu(self) -> FakeTensor:
        return self

    def detach(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return np.array(self.array, copy=True)


class _Worlds:
    """Per-world SeedProbe state shared by the doubles."""

    def __init__(self, n: int) -> None:
        self.num_envs = n
        self.seed = np.zeros(n, dtype=np.int64)
        self.length = np.ones(n, dtype=np.int64)
        self.success = np.zeros(n, dtype=bool)
        self.t = np.zeros(n, dtype=np.int64)
        self.episodes: list[list[int]] = [[] for _ in range(n)]  # seeds of every episode, per world

    def start(self, world: int, seed: int) -> None:
        self.seed[world], self.t[world] = seed, 0
        self.length[world], self.success[world] = probe_length(seed), probe_success(seed)
        self.episodes[world].append(seed)

    def obs(self) -> np.ndarray:
        return np.stack([self.seed % 2**20, self.t, self.length - self.t], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- Isaac Lab


class _TerminationManager:
    def __init__(self, n: int) -> None:
        self.active_terms = ["success", "failure", "time_out"]
        self._term_dones = {name: np.zeros(n, dtype=bool) for name in self.active_terms}

    def get_term(self, name: str) -> FakeTensor:
        return FakeTensor(self._term_dones[name])


class IsaacLabDouble:
    """``ManagerBasedRLEnv``: global ``seed()``, ``reset(seed, env_ids, options)``,
    ``step`` that resets ended worlds (``_reset_idx``) and returns post-reset obs.

    Worlds draw their episode seeds from one shared generator (the global RNG
    that ``reset(seed=s)`` seeds). ``success_key`` (if set) is written to
    ``extras`` per world at each step, before the reset; ``extras["log"]`` is
    replaced at each reset with averages, as the real one.
    """

    def __init__(
        self, num_envs: int, *, success_key: str | None = None, max_steps: int | None = None
    ) -> None:
        self.num_envs = num_envs
        self.unwrapped = self
        self.single_observation_space = gym.spaces.Dict(
            {"policy": gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)}
        )
        self.single_action_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.termination_manager = _TerminationManager(num_envs)
        self.success_key, self.max_steps = success_key, max_steps
        self.extras: dict[str, Any] = {}
        self.worlds = _Worlds(num_envs)
        self._rng = np.random.default_rng()
        self.first_seeds: dict[int, list[int]] = {}  # reset seed -> each world's first episode seed

    def seed(self, seed: int = -1) -> int:
        self._rng = np.random.default_rng(seed)
        return seed

    def _reset_idx(self, env_ids: np.ndarray) -> None:
        for i, s in zip(
            env_ids.tolist(), self._rng.integers(0, 2**31, size=env_ids.size).tolist(), strict=True
        ):
            self.worlds.start(i, int(s))
        self.extras["log"] = {
            f"Episode_Termination/{k}": int(v[env_ids].sum())
            for k, v in self.termination_manager._term_dones.items()
        }

    def reset(
        self, seed: int | None = None, env_ids: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids)
        if seed is not None:
            self.seed(seed)
        self._reset_idx(ids)
        if seed is not None and env_ids is None:
            self.first_seeds[seed] = self.worlds.seed.tolist()
        return {"policy": self.worlds.obs()}, self.extras

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], FakeTensor, FakeTensor, FakeTensor, dict[str, Any]]:
        assert np.asarray(action).shape == (self.num_envs, 2)
        w = self.worlds
        w.t += 1
        done = w.t >= w.length
        time_outs = ~done & (w.t >= self.max_steps) if self.max_steps is not None else np.zeros_like(done)
        terms = self.termination_manager._term_dones
        terms["success"][:] = done & w.success
        terms["failure"][:] = done & ~w.success
        terms["time_out"][:] = time_outs
        terminated, rewards = done.copy(), np.ones(self.num_envs, dtype=np.float32)
        if self.success_key is not None:
            self.extras[self.success_key] = FakeTensor(done & w.success)
        reset_ids = np.flatnonzero(done | time_outs)
        if reset_ids.size:
            self._reset_idx(reset_ids)
        return (
            {"policy": w.obs()},
            FakeTensor(rewards),
            FakeTensor(terminated),
            FakeTensor(time_outs),
            self.extras,
        )

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- ManiSkill3


class ManiSkillDouble:
    """``BaseEnv`` with GPU sim: ``reset(seed=int|list, options={"env_idx": ...})``
    resets only ``env_idx`` with its entries of the per-world seed list; ``step``
    never resets. Stepping a finished world is allowed (as in the real env) and
    counted in ``stepped_finished``; every reset call is kept in ``reset_calls``.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.unwrapped = self
        self.single_observation_space = gym.spaces.Box(0.0, float(2**20), shape=(3,), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.worlds = _Worlds(num_envs)
        self.stepped_finished = 0
        self.reset_calls: list[tuple[list[int], list[int]]] = []

    def reset(
        self, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = options or {}
        env_idx = list(options.get("env_idx", range(self.num_envs)))
        if seed is None:
            seeds = np.random.default_rng().integers(0, 2**31, size=self.num_envs).tolist()
        elif isinstance(
            seed, int
        ):  # as _set_episode_rng: world 0 gets seed, the others RandomState(seed) draws
            seeds = [seed, *np.random.RandomState(seed).randint(2**31, size=self.num_envs - 1).tolist()]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"seed list of length {len(seed)} for {self.num_envs} envs")
            seeds = [int(s) for s in seed]
        self.reset_calls.append((list(seeds), [int(i) for i in env_idx]))
        for i in env_idx:
            self.worlds.start(int(i), int(seeds[int(i)]))
        info = {
            "elapsed_steps": FakeTensor(self.worlds.t),
            "success": FakeTensor(np.zeros(self.num_envs, bool)),
        }
        return self.worlds.obs(), {**info, "reconfigure": False}

    def step(self, action: Any) -> tuple[np.ndarray, FakeTensor, FakeTensor, FakeTensor, dict[str, Any]]:
        assert np.asarray(action).shape == (self.num_envs, 2)
        w = self.worlds
        self.stepped_finished += int((w.t >= w.length).sum())
        w.t += 1
        done = w.t >= w.length
        info = {
            "elapsed_steps": FakeTensor(w.t.copy()),
            "success": FakeTensor(done & w.success),
            "fail": FakeTensor(done & ~w.success),
        }
        zeros = np.zeros(self.num_envs, dtype=bool)
        return (
            w.obs(),
            FakeTensor(np.ones(self.num_envs, np.float32)),
            FakeTensor(done),
            FakeTensor(zeros),
            info,
        )

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- PufferLib


class PufferLibDouble:
    """``pufferlib.vector.Serial`` over single-agent emulated envs.

    ``async_reset(seed)`` resets env ``i`` with ``seed + i`` (``make_seeds``);
    ``send`` resets an env whose last step terminated (no seed: it continues
    its own generator) instead of stepping it; ``recv`` returns
    ``(obs, rewards, terminals, truncations, infos, env_ids, masks)`` where
    ``infos`` lists the non-empty info dicts in env order (episode ends only).
    """

    def __init__(self, num_envs: int) -> None:
        self.num_agents = self.agents_per_batch = num_envs
        self.single_observation_space = gym.spaces.Box(0.0, float(2**20), shape=(3,), dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.worlds = _Worlds(num_envs)
        self._rngs = [np.random.default_rng() for _ in range(num_envs)]
        self._done = np.zeros(num_envs, dtype=bool)
        self._rewards = np.zeros(num_envs, dtype=np.float32)
        self._terminals = np.zeros(num_envs, dtype=bool)
        self._infos: list[dict[str, Any]] = []
        self._flag = "reset"
        self.first_seeds: dict[int, list[int]] = {}

    @property
    def num_envs(self) -> int:
        return self.agents_per_batch

    def async_reset(self, seed: int = 42) -> None:
        self._flag = "recv"
        seeds = [seed + i for i in range(self.num_agents)]
        for i, s in enumerate(seeds):
            self._rngs[i] = np.random.default_rng(s)  # gymnasium: env.reset(seed=s) seeds np_random
            self.worlds.start(i, s)
        self.first_seeds[seed] = seeds
        self._done[:] = False
        self._rewards[:], self._terminals[:] = 0.0, False
        self._infos = []

    def send(self, actions: Any) -> None:
        if self._flag != "send":
            raise RuntimeError("Call (async) reset + recv before sending")
        assert np.asarray(actions).shape == (self.num_agents,)
        self._flag = "recv"
        self._infos = []
        w = self.worlds
        for i in range(self.num_agents):
            if self._done[i]:  # Serial.send: env.reset() with no seed
                w.start(i, int(self._rngs[i].integers(0, 2**31)))
                self._rewards[i], self._terminals[i], self._done[i] = 0.0, False, False
                continue
            w.t[i] += 1
            done = bool(w.t[i] >= w.length[i])
            self._rewards[i], self._terminals[i], self._done[i] = 1.0, done, done
            if done:
                self._infos.append({"success": bool(w.success[i]), "episode_length": int(w.t[i])})

    def recv(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray, np.ndarray]:
        if self._flag != "recv":
            raise RuntimeError("Call reset before stepping")
        self._flag = "send"
        n = self.num_agents
        truncations = np.zeros(n, dtype=bool)
        return (
            self.worlds.obs(),
            self._rewards.copy(),
            self._terminals.copy(),
            truncations,
            list(self._infos),
            np.arange(n),
            np.ones(n, dtype=bool),
        )

    def close(self) -> None:
        """Nothing to release."""


def maniskill_adapter(num_envs: int, **kwargs: Any) -> Any:
    """A vector entry point that returns a trialrun adapter instead of a
    Gymnasium VectorEnv (how a user registers a ManiSkill task for run files)."""
    from trialrun.envs.adapters import ManiSkillBatchedEnv

    return ManiSkillBatchedEnv(ManiSkillDouble(num_envs))
