"""Stable-Baselines3 checkpoints: ``{type: sb3, path: model.zip}`` (extra ``sb3``).

The algorithm (PPO, A2C, SAC, TD3, DQN, DDPG) is read from the zip's
``data`` record, so a run file names only the file; ``algorithm:`` overrides
the detection and also accepts ``module:Class`` (for example
``sb3_contrib:RecurrentPPO``). Actions are deterministic by default, as a
checkpoint is usually evaluated; ``deterministic: false`` samples, and then
each slot's draws come from its own policy seed (one generator per sub-env,
re-seeded at every episode start), so a slot's actions do not depend on which
sub-env ran it or on torch's global generator (it is forked and restored
around each draw). Recurrent policies get their ``episode_start`` flags from
``reset(mask)``.

``vecnormalize_path:`` points at a saved ``VecNormalize`` (``vec_env.save(...)``):
its observation statistics are applied before the model sees an observation.
Models trained on channel-first images (SB3 transposes HWC envs during
training) get HWC observations transposed for them.

Example (needs ``pip install 'trialrun[sb3]'``)::

    jobs:
      - name: ppo
        env: CartPole-v1
        policy: {type: sb3, path: checkpoints/ppo_cartpole.zip}
        episodes: 100
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun._imports import load_object
from trialrun.errors import ConfigError
from trialrun.policies.base import PolicyContext
from trialrun.policies.loaders import require_extra, resolve_policy_file
from trialrun.policies.npz_mlp import save_npz_mlp

logger = logging.getLogger(__name__)

ALGORITHMS = ("PPO", "A2C", "SAC", "TD3", "DQN", "DDPG")


def read_sb3_data(path: Path) -> dict[str, Any]:
    """The JSON ``data`` record of an SB3 zip (hyper-parameters, spaces, policy class)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data: dict[str, Any] = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path} is not a Stable-Baselines3 model zip (no readable 'data' record: {exc})",
            field="policy.path",
        ) from None
    return data


def detect_algorithm(path: Path) -> str:
    """Which SB3 algorithm saved ``path``, from its policy class and hyper-parameters.

    PPO and A2C share ``ActorCriticPolicy``: only PPO stores ``clip_range`` and
    ``n_epochs``. DDPG is TD3 with ``policy_delay == 1`` and no target noise clip.
    """
    data = read_sb3_data(path)
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    if module.startswith("sb3_contrib"):
        raise ConfigError(
            f"{path.name} was saved by sb3_contrib ({module}); name its class with "
            "'algorithm: sb3_contrib:<Class>' (e.g. sb3_contrib:RecurrentPPO)",
            field="policy.kwargs.algorithm",
        )
    if module.endswith("sac.policies"):
        return "SAC"
    if module.endswith("dqn.policies"):
        return "DQN"
    if module.endswith("td3.policies"):
        if data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0:
            return "DDPG"
        return "TD3"
    if "n_epochs" in data or "clip_range" in data:
        return "PPO"
    if "gae_lambda" in data:
        return "A2C"
    raise ConfigError(
        f"cannot tell which algorithm saved {path.name} (policy class module '{module}'); "
        f"set 'algorithm' to one of {', '.join(ALGORITHMS)} or 'module:Class'",
        field="policy.kwargs.algorithm",
    )


def algorithm_class(name: str) -> Any:
    """The SB3 algorithm class for a name in :data:`ALGORITHMS` or a ``module:Class`` spec."""
    if ":" in name:
        return load_object(name, field="policy.kwargs.algorithm")
    if name.upper() not in ALGORITHMS:
        raise ConfigError(
            f"unknown algorithm '{name}'; use one of {', '.join(ALGORITHMS)} or 'module:Class'",
            field="policy.kwargs.algorithm",
        )
    sb3 = require_extra("stable_baselines3", "sb3", "an 'sb3' policy")
    return getattr(sb3, name.upper())


def _describe(space: gym.Space[Any]) -> str:
    return f"{type(space).__name__}{getattr(space, 'shape', '')}"


def _image_transpose(model_space: gym.Space[Any], env_space: gym.Space[Any]) -> bool:
    """Whether ``env_space`` is the HWC layout of the CHW ``model_space``."""
    if not isinstance(model_space, gym.spaces.Box) or not isinstance(env_space, gym.spaces.Box):
        return False
    ms, es = model_space.shape, env_space.shape
    return len(ms) == 3 and len(es) == 3 and (es[2], es[0], es[1]) == ms and ms != es


def _obs_plan(model_space: gym.Space[Any], env_space: gym.Space[Any]) -> Any:
    """How to adapt env observations to the model: ``None`` (as is), ``"T"``
    (transpose HWC -> CHW) or, for dicts, a dict of those. Raises on a mismatch."""
    if isinstance(model_space, gym.spaces.Dict):
        if not isinstance(env_space, gym.spaces.Dict) or set(model_space.spaces) != set(env_space.spaces):
            raise ConfigError(
                f"the model takes a Dict observation with keys {sorted(model_space.spaces)}, the env gives "
                f"{_describe(env_space)}"
                + (
                    f" with keys {sorted(env_space.spaces)}" if isinstance(env_space, gym.spaces.Dict) else ""
                ),
                field="policy.path",
            )
        return {k: _obs_plan(model_space[k], env_space[k]) for k in model_space.spaces}
    if _image_transpose(model_space, env_space):
        return "T"
    if getattr(model_space, "shape", None) != getattr(env_space, "shape", None) or type(
        model_space
    ) is not type(env_space):
        raise ConfigError(
            f"the model was trained on observations {_describe(model_space)}, "
            f"the env gives {_describe(env_space)}",
            field="policy.path",
        )
    return None


def _apply_plan(obs: Any, plan: Any) -> Any:
    if isinstance(plan, dict):
        return {k: _apply_plan(obs[k], plan[k]) for k in plan}
    return np.transpose(np.asarray(obs), (0, 3, 1, 2)) if plan == "T" else obs


def _check_actions(model_space: gym.Space[Any], env_space: gym.Space[Any]) -> None:
    same = type(model_space) is type(env_space) and getattr(model_space, "shape", None) == getattr(
        env_space, "shape", None
    )
    if isinstance(model_space, gym.spaces.Discrete) and isinstance(env_space, gym.spaces.Discrete):
        same = int(model_space.n) == int(env_space.n)
    if not same:
        raise ConfigError(
            f"the model acts in {model_space}, the env's action space is {env_space}", field="policy.path"
        )


def _slice(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[i : i + 1] for k, v in obs.items()}
    return obs[i : i + 1]


class SB3Policy:
    """Acts with a saved Stable-Baselines3 model (see the module docstring)."""

    def __init__(
        self,
        context: PolicyContext,
        path: str | None = None,
        deterministic: bool = True,
        algorithm: str | None = None,
        vecnormalize_path: str | None = None,
        device: str = "cpu",
        torch_threads: int | None = 1,
    ) -> None:
        require_extra("stable_baselines3", "sb3", "an 'sb3' policy")
        import torch

        if torch_threads is not None:
            torch.set_num_threads(int(torch_threads))
        self._torch = torch
        file = resolve_policy_file(path, kind="sb3")
        self.algorithm = algorithm or detect_algorithm(file)
        cls = algorithm_class(self.algorithm)
        # Schedules are pickled closures that often fail to load across Python
        # versions; evaluation never uses them. ``seed: None`` stops SB3 from
        # re-seeding the global numpy/random/torch generators at load time.
        custom = {
            "learning_rate": 0.0,
            "lr_schedule": lambda _: 0.0,
            "clip_range": lambda _: 0.0,
            "seed": None,
        }
        try:
            # Building the networks before the weights are loaded draws from
            # torch's global generator: fork it so loading leaves it untouched.
            with torch.random.fork_rng(devices=[]):
                self.model = cls.load(file, device=device, custom_objects=custom)
        except Exception as exc:  # a corrupt or foreign zip: say which file
            raise ConfigError(f"cannot load {file} as {self.algorithm}: {exc}", field="policy.path") from None
        self.deterministic = bool(deterministic)
        self._obs_plan = _obs_plan(self.model.observation_space, context.observation_space)
        _check_actions(self.model.action_space, context.action_space)
        self.vecnormalize = None
        if vecnormalize_path:
            stats = resolve_policy_file(
                vecnormalize_path, field="policy.kwargs.vecnormalize_path", kind="sb3"
            )
            with open(stats, "rb") as f:
                self.vecnormalize = pickle.load(f)
            if not hasattr(self.vecnormalize, "normalize_obs"):
                raise ConfigError(
                    f"{stats} is not a saved VecNormalize", field="policy.kwargs.vecnormalize_path"
                )
        self.num_envs = context.num_envs
        self._state: tuple[np.ndarray, ...] | None = None
        self._episode_start = np.ones(context.num_envs, dtype=bool)
        self._rngs = [np.random.default_rng() for _ in range(context.num_envs)]
        self._is_dqn = type(self.model).__name__ == "DQN"

    def _prepare(self, obs: Any) -> Any:
        obs = _apply_plan(obs, self._obs_plan)
        if self.vecnormalize is not None:
            obs = self.vecnormalize.normalize_obs(obs)
        return obs

    def act(self, obs: Any) -> np.ndarray:
        obs = self._prepare(obs)
        if self.deterministic:
            actions, self._state = self.model.predict(
                obs, state=self._state, episode_start=self._episode_start, deterministic=True
            )
        elif self._is_dqn:
            actions = self._epsilon_greedy(obs)
        else:
            actions = self._sample(obs)
        self._episode_start[:] = False
        return np.asarray(actions)

    def _epsilon_greedy(self, obs: Any) -> np.ndarray:
        greedy, _ = self.model.predict(obs, deterministic=True)
        actions = np.array(greedy, copy=True)
        eps = float(self.model.exploration_rate)
        n = int(self.model.action_space.n)
        for i, rng in enumerate(self._rngs[: len(actions)]):
            if rng.random() < eps:
                actions[i] = rng.integers(n)
        return actions

    def _sample(self, obs: Any) -> np.ndarray:
        rows, states = [], []
        num = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        for i in range(num):
            state = None if self._state is None else tuple(s[:, i : i + 1] for s in self._state)
            with self._torch.random.fork_rng(devices=[]):
                self._torch.manual_seed(int(self._rngs[i].integers(2**63)))
                action, state = self.model.predict(
                    _slice(obs, i),
                    state=state,
                    episode_start=self._episode_start[i : i + 1],
                    deterministic=False,
                )
            rows.append(np.asarray(action)[0])
            states.append(state)
        if all(s is not None for s in states):
            self._state = tuple(np.concatenate([s[k] for s in states], axis=1) for k in range(len(states[0])))
        return np.stack(rows)

    def reset(self, mask: np.ndarray, seeds: Sequence[int | None] | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        self._episode_start[mask] = True
        for i in np.flatnonzero(mask):
            self._rngs[i] = np.random.default_rng(None if seeds is None else seeds[int(i)])


# --------------------------------------------------------------------------- export to npz


def _mlp_layers(modules: Sequence[Any]) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``(W, b)`` pairs and the one activation name of a torch Sequential's modules."""
    import torch.nn as nn

    names = {
        nn.Tanh: "tanh",
        nn.ReLU: "relu",
        nn.ELU: "elu",
        nn.Sigmoid: "sigmoid",
        nn.LeakyReLU: "leaky_relu",
    }
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    activations = set()
    for module in modules:
        if isinstance(module, nn.Linear):
            layers.append((module.weight.detach().cpu().numpy().T, module.bias.detach().cpu().numpy()))
        elif type(module) in names:
            activations.add(names[type(module)])
        elif not isinstance(module, nn.Identity | nn.Flatten):
            raise ValueError(f"cannot export a {type(module).__name__} layer to an npz MLP")
    if len(activations) > 1:
        raise ValueError(f"an npz MLP has one activation, this network mixes {sorted(activations)}")
    return layers, activations.pop() if activations else "identity"


def export_sb3_to_npz(model: Any, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write the deterministic actor of an SB3 ``MlpPolicy`` model as a
    ``trialrun-mlp/1`` file (see :mod:`trialrun.policies.npz_mlp`), which then
    runs with numpy alone and gives the same actions as
    ``model.predict(obs, deterministic=True)``.

    Supported: PPO/A2C (separate or shared MLP), SAC, TD3/DDPG and DQN, with
    flat Box observations and no observation normalisation in the model.
    """
    import torch.nn as nn

    policy = model.policy
    name = type(model).__name__
    space = model.action_space
    if not isinstance(model.observation_space, gym.spaces.Box) or len(model.observation_space.shape) != 1:
        raise ValueError("only flat Box observations can be exported")
    if name in ("PPO", "A2C"):
        if not isinstance(space, gym.spaces.Discrete | gym.spaces.Box):
            raise ValueError(f"cannot export action space {space}")
        layers, activation = _mlp_layers(list(policy.mlp_extractor.policy_net))
        layers += _mlp_layers([policy.action_net])[0]
        head = "discrete" if isinstance(space, gym.spaces.Discrete) else "continuous-clip"
    elif name == "SAC":
        layers, activation = _mlp_layers(list(policy.actor.latent_pi))
        layers += _mlp_layers([policy.actor.mu])[0]
        head = "continuous"
    elif name in ("TD3", "DDPG"):
        modules = list(policy.actor.mu)
        if not isinstance(modules[-1], nn.Tanh):
            raise ValueError("expected the TD3/DDPG actor to end in Tanh")
        layers, activation = _mlp_layers(modules[:-1])
        head = "continuous"
    elif name == "DQN":
        layers, activation = _mlp_layers(list(policy.q_net.q_net))
        head = "discrete"
    else:
        raise ValueError(f"cannot export a {name} model to an npz MLP")
    bounds: dict[str, Any] = {}
    if isinstance(space, gym.spaces.Box):
        bounds = {"action_low": space.low.reshape(-1), "action_high": space.high.reshape(-1)}
    save_npz_mlp(
        path, layers, activation=activation, head=head, meta={"algorithm": name, **(meta or {})}, **bounds
    )
