"""MuJoCo Playground (MJX) as a natively batched simulator, in exact mode.

A Playground env is a pure JAX object: ``reset(key) -> State`` and
``step(state, action) -> State``. This adapter ``vmap``-s both over the
worlds and jits them once, and adds what the batched rollout needs:

- **Exact mode through per-world keys.** World ``i`` is reset from the key of
  its slot's seed (``jax.random.PRNGKey(seed)``, built on the host), and a
  world that finished is reset alone: every world is reset in the same jitted
  call and ``where(mask, fresh, state)`` keeps the others' state (not
  Playground's ``AutoResetWrapper``, which restores a cached first state).
  A slot's episode is therefore a function of its seed only, for any
  ``num_envs``.
- **Outcomes from the env itself.** ``terminated`` is Playground's ``done``
  (a failure state or a NaN), ``truncated`` is the time limit
  (``episode_length`` of the env's config, or ``max_episode_steps``) counted
  here, the reward is the env's reward summed over ``action_repeat``, and
  ``success`` is the env's ``metrics["success"]`` where it reports one.
- **Per-world factors through the batched model**
  (:class:`~trialrun.envs.batched.PerWorldFactors`): the fields
  :class:`~trialrun.variations.mjx.WorldModels` keeps per world are passed to
  the jitted functions as a leading-axis argument, and each world runs with
  its own ``mjx.Model``. Their shapes are fixed, so new values never
  recompile (``traces`` counts the traces of each function).

Observations are the env's JAX arrays, passed to the policy untouched: a JAX
policy takes them as they are, a numpy policy converts them with
``numpy.asarray`` when it needs to (JAX arrays support ``__array__``).
Actions may be numpy or JAX arrays.

Env ids ``playground/<Name>`` are registered when this module is imported
(``trialrun.envs.namespaces`` imports it for ids starting with
``playground/``); the JAX compilation cache is persistent
(:func:`enable_compile_cache`).

Example (a world's key is its seed's ``jax.random.PRNGKey``, built on the host):
    >>> seed_keys([1, 2**32 + 5]).tolist()
    [[0, 1], [1, 5]]
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.envs.adapters.mjx_worlds import WorldModels, read_field
from trialrun.envs.adapters.playground_catalog import Catalog, catalog, unknown_env
from trialrun.envs.batched import BatchStep, ResetMode
from trialrun.errors import ConfigError

logger = logging.getLogger(__name__)

NAMESPACE = "playground"
DEFAULT_LANES = 256
"""Worlds per vectorized group (see :class:`PlaygroundBatchedEnv`). Any fixed
width is exact; the width sets the speed. At 1024 worlds on 2 CPU cores,
per CPU-second of the whole ``trialrun run`` against a plain jitted loop
(``benchmarks/batched.py --mjx``, medians of 5-7): 128 lanes 0.81, 256 lanes
0.89-1.01, 512 lanes 0.96-1.00, one ``vmap`` 1.03; 32 at ~0.6, 8 at ~0.4:
XLA on a CPU vectorizes narrow groups poorly, and each group is one turn of
a loop. A job of fewer worlds pays for up to 255 padded ones, which costs
little (on this CPU a step of 256 worlds takes about 0.7 ms, one of 8 worlds
0.5-0.6 ms). The default was 8 up to 0.1.0, then
128: the same slot's records differ from a run at another width at float
rounding level (set ``lanes`` to reproduce one; a resume keeps its run's)."""
RENDER_SIZE = (240, 320)
"""Height and width of a filmed world's frames (the video's ``size`` rescales them)."""
CACHE_ENV = "TRIALRUN_JAX_CACHE"
"""Environment variable naming the JAX compilation cache directory."""


def compile_cache_dir() -> Path:
    """Where compiled programs are kept between runs: ``$TRIALRUN_JAX_CACHE``,
    else ``$XDG_CACHE_HOME/trialrun/jax`` (``~/.cache/trialrun/jax``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trialrun" / "jax"


def enable_compile_cache() -> Path:
    """Turn on JAX's persistent compilation cache (every program, however fast
    it compiled), so a second run skips the minute of JIT compilation."""
    import jax

    config: Any = jax.config
    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    if config.jax_compilation_cache_dir != str(path):
        config.update("jax_compilation_cache_dir", str(path))
        config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def seed_keys(seeds: Sequence[int | None]) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` of every seed (``None``: 0), built on the
    host as the raw ``uint32`` pairs ``[seed >> 32, seed & 0xffffffff]``."""
    values = np.array([0 if s is None else int(s) for s in seeds], dtype=np.uint64)
    return np.stack([values >> np.uint64(32), values & np.uint64(0xFFFFFFFF)], axis=1).astype(np.uint32)


@dataclass
class _Programs:
    """The jitted reset and step of one env at one world count, shared by
    every :class:`PlaygroundBatchedEnv` of this process built alike, so a
    second simulator (the runner's compile phase, then the job's own) neither
    traces nor loads anything again.

    Both take and return the state as its flat list of arrays (``treedef``
    rebuilds the Playground ``State``): a call with the ``State`` itself
    flattens and rebuilds MJX's dataclasses in Python, about 0.5 ms per call,
    a fifth of a 1024-world step on 2 cores, and the rollout waits for every
    step's flags, so that time is not hidden behind the device's work.
    """

    reset: Any
    step: Any
    treedef: Any
    blank_leaves: Callable[[], list[Any]]
    traces: dict[str, int] = field(default_factory=lambda: {"reset": 0, "step": 0})
    _blank: list[Any] | None = None

    def blank(self) -> list[Any]:
        """A zero state of the right shapes, the ``old`` side of the first reset;
        built once (JAX arrays are immutable and no call donates them): ~130
        arrays cost ~15 ms to build, a run's first reset and its compile
        phase each ask for one."""
        if self._blank is None:
            self._blank = self.blank_leaves()
        return self._blank


@dataclass(frozen=True)
class _Pending:
    """A dispatched step: the state it started from (for ``discard``), its
    observations and its packed reward/done/success (device arrays, maybe
    not computed yet)."""

    before: list[Any]
    obs: Any
    packed: Any


_PROGRAMS: dict[tuple[int, int, int], tuple[Any, _Programs]] = {}
"""(id of the Playground env, worlds, lanes) -> (that env, its programs). The
env is held so that its id is never reused for another."""
_LOADED: dict[tuple[str, str], Any] = {}
"""(env name, config overrides as JSON) -> the loaded Playground env."""


_RESET_SHAPES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def reset_shapes(env: Any) -> Any:
    """The shapes and dtypes of one world's reset state, traced once per env
    (``jax.eval_shape``, no computation). They give ``observation_size`` and
    the batched zero state of the first reset (the same shapes with a world
    axis): each costs a trace of the env's reset otherwise (1-4 s on 2 cores,
    and Playground's own ``observation_size`` runs ``reset`` eagerly, op by
    op, on every access)."""
    import jax

    if env not in _RESET_SHAPES:
        _RESET_SHAPES[env] = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    return _RESET_SHAPES[env]


def observation_size(env: Any) -> Any:
    """``env.observation_size`` from :func:`reset_shapes` (a run builds the
    same env's simulator up to four times: preflight, factor nominals,
    compile phase, job)."""
    obs = reset_shapes(env).obs
    if isinstance(obs, Mapping):
        return {key: tuple(value.shape) for key, value in obs.items()}
    return tuple(obs.shape) if len(obs.shape) != 1 else int(obs.shape[0])


def _space(size: Any, low: float, high: float) -> gym.Space[Any]:
    if isinstance(size, Mapping):
        return gym.spaces.Dict({k: _space(v, low, high) for k, v in size.items()})
    shape = (size,) if isinstance(size, int) else tuple(size)
    return gym.spaces.Box(low, high, shape, dtype=np.float32)


class PlaygroundBatchedEnv:
    """A :class:`~trialrun.envs.batched.BatchedEnv` over one Playground env
    (``mujoco_playground.MjxEnv``), stepping ``num_worlds`` worlds; see the
    module docstring. ``factors`` maps factor names to unbound per-world
    variations (:func:`trialrun.variations.mjx.per_world_variations`), as
    :meth:`bind_factors` does.

    ``lanes`` is how many worlds one compiled step computes side by side
    (``vmap``); the worlds are padded to a multiple of it and the lanes are
    stepped one group after another (``lax.map``). XLA's floating-point
    results depend on the vectorized shape (a ``vmap`` over 1 world and over
    4 worlds differ in the 7th digit), so a fixed ``lanes`` is what makes a
    world's episode identical for every ``num_envs``. ``lanes=None`` uses
    ``num_envs`` (one ``vmap`` over every world: fastest, but results then
    depend on ``num_envs`` at float rounding level).
    """

    mode: ResetMode = "exact"

    def __init__(
        self,
        env: Any,
        num_worlds: int,
        *,
        max_episode_steps: int | None = None,
        factors: Mapping[str, Any] | None = None,
        lanes: int | None = DEFAULT_LANES,
        name: str = "",
        render_mode: str | None = None,
    ) -> None:
        enable_compile_cache()
        self.render_mode = render_mode
        self._renderer: Any = None
        self._render_data: Any = None
        self._camera = -1
        self.env = env
        self.env_name = name or type(env).__name__
        self.num_worlds = int(num_worlds)
        self.lanes = int(lanes or self.num_worlds)
        self.padded = -(-self.num_worlds // self.lanes) * self.lanes
        config: Any = getattr(env, "_config", None)
        limit: int = (
            getattr(config, "episode_length", 1000) if max_episode_steps is None else max_episode_steps
        )
        repeat: int = getattr(config, "action_repeat", 1) or 1
        self.max_steps = int(limit)
        self.action_repeat = int(repeat)
        self.single_observation_space = _space(observation_size(env), -np.inf, np.inf)
        self.single_action_space = _space(env.action_size, -1.0, 1.0)
        self.worlds = WorldModels(env.mj_model, self.padded, factors)
        self.compile_seconds = 0.0
        """Wall time of this simulator's calls that traced (compiling, or loading from the cache)."""
        key = (id(env), self.num_worlds, self.lanes)
        if key not in _PROGRAMS:
            _PROGRAMS[key] = (env, self._build())
        self._programs = _PROGRAMS[key][1]
        self._steps = np.zeros(self.num_worlds, dtype=np.int64)
        self._state: Any = None
        self._uploaded = -1
        self._fields: dict[str, Any] = {}

    @property
    def traces(self) -> dict[str, int]:
        """How often each jitted function was traced (each trace is a
        compilation), counted over every simulator sharing the programs."""
        return self._programs.traces

    def _build(self) -> _Programs:
        import jax
        import jax.numpy as jnp

        env, base, repeat = self.env, self.env.mjx_model, self.action_repeat
        n, padded, lanes = self.num_worlds, self.padded, self.lanes
        single = reset_shapes(env)
        treedef = jax.tree_util.tree_structure(single)

        def model_with(fields: dict[str, Any]) -> Any:
            model = base
            for name, value in fields.items():
                if name.startswith("opt."):
                    model = model.replace(opt=model.opt.replace(**{name[4:]: value}))
                else:
                    model = model.replace(**{name: value})
            return model

        def with_model(fields: dict[str, Any], fn: Any, *args: Any) -> Any:
            # Playground envs read self._mjx_model while they trace: swap in this world's model.
            nominal = env._mjx_model
            env._mjx_model = model_with(fields)
            try:
                return fn(*args)
            finally:
                env._mjx_model = nominal

        def in_lanes(fn: Any, *trees: Any) -> Any:
            """``vmap(fn)`` over all padded worlds, ``lanes`` worlds at a time."""
            groups = jax.tree_util.tree_map(
                lambda a: a.reshape((padded // lanes, lanes, *a.shape[1:])), trees
            )
            out = jax.lax.map(lambda xs: jax.vmap(fn)(*xs), groups)
            return jax.tree_util.tree_map(lambda a: a.reshape((padded, *a.shape[2:])), out)

        def reset_one(fields: dict[str, Any], key: Any) -> Any:
            return with_model(fields, env.reset, key)

        traces = {"reset": 0, "step": 0}

        def reset(fields: dict[str, Any], keys: Any, mask: Any, leaves: list[Any]) -> Any:
            traces["reset"] += 1
            fresh = jax.tree_util.tree_leaves(in_lanes(reset_one, fields, keys))

            def pick(new: Any, old: Any) -> Any:
                return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

            out = [pick(new, old) for new, old in zip(fresh, leaves, strict=True)]
            obs = jax.tree_util.tree_unflatten(treedef, out).obs
            return out, jax.tree_util.tree_map(lambda a: a[:n], obs)

        def step_one(fields: dict[str, Any], state: Any, action: Any) -> Any:
            reward = jnp.zeros_like(state.reward)
            for _ in range(repeat):
                state = with_model(fields, env.step, state, action)
                reward = reward + state.reward
            return state.replace(reward=reward)

        def step(fields: dict[str, Any], leaves: list[Any], actions: Any) -> Any:
            traces["step"] += 1
            actions = jnp.pad(actions, ((0, padded - n), (0, 0)))
            state = in_lanes(step_one, fields, jax.tree_util.tree_unflatten(treedef, leaves), actions)
            success = state.metrics.get("success") if isinstance(state.metrics, Mapping) else None
            # One small host transfer per step: reward, done (and success) of the real worlds.
            flags = [state.reward, state.done] + ([] if success is None else [success])
            packed = jnp.stack([f[:n].astype(jnp.float32) for f in flags])
            obs = jax.tree_util.tree_map(lambda a: a[:n], state.obs)
            return jax.tree_util.tree_leaves(state), obs, packed

        def blank_leaves() -> list[Any]:
            # From one world's traced shapes (cached per env): no trace of the batched reset.
            return [jnp.zeros((padded, *s.shape), s.dtype) for s in jax.tree_util.tree_leaves(single)]

        return _Programs(jax.jit(reset), jax.jit(step), treedef, blank_leaves, traces)

    def _keys(self, seeds: Sequence[int | None]) -> np.ndarray:
        return seed_keys([*seeds, *[None] * (self.padded - len(seeds))])

    def _device_fields(self) -> dict[str, Any]:
        import jax.numpy as jnp

        if self._uploaded != self.worlds.version:
            base = self.env.mjx_model
            self._fields = {
                f: jnp.asarray(a, dtype=read_field(base, f).dtype) for f, a in self.worlds.arrays.items()
            }
            self._uploaded = self.worlds.version
        return self._fields

    def _timed(self, kind: str, *args: Any) -> Any:
        import jax

        block: Any = jax.block_until_ready
        fn = self._programs.reset if kind == "reset" else self._programs.step
        before = self.traces[kind]
        start = time.perf_counter()
        out = fn(*args)
        if self.traces[kind] != before:
            block(out)
            seconds = time.perf_counter() - start
            self.compile_seconds += seconds
            logger.info("%s: compiled %s for %d worlds in %.1f s", self.env_name, kind, self.padded, seconds)
        return out

    def _blank(self) -> list[Any]:
        return self._programs.blank()

    def compile(self) -> float:
        """Trace and compile reset and step for this many worlds (or load them
        from the persistent cache), without running an episode; return the
        seconds it took: 0 when this process already holds the programs.

        Why apart: compiling takes a minute the first time, and a run shows
        it as its own phase instead of a job stuck at 0 episodes
        (:mod:`trialrun.execution.compiling`)."""
        import jax.numpy as jnp

        if self.traces["reset"] and self.traces["step"]:
            return 0.0  # this process compiled both already: running them again proves nothing
        before = self.compile_seconds
        fields = self._device_fields()
        leaves, _ = self._timed(
            "reset", fields, self._keys([]), np.zeros(self.padded, dtype=bool), self._blank()
        )
        shape: tuple[int, ...] = self.single_action_space.shape or ()
        actions = jnp.zeros((self.num_worlds, *shape), dtype=jnp.float32)
        self._timed("step", fields, leaves, actions)
        return self.compile_seconds - before

    # -- PerWorldFactors -----------------------------------------------------------

    def bind_factors(self, variations: Mapping[str, Any]) -> None:
        """Set the factors of :meth:`apply` (name -> unbound MuJoCo variation,
        see :func:`trialrun.variations.mjx.per_world_variations`); every world
        goes back to nominal. The batched fields are the same for any factors,
        so nothing recompiles."""
        self.worlds = WorldModels(self.env.mj_model, self.padded, variations)
        self._uploaded = -1

    def apply(self, worlds: Sequence[int], factors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Set per-world factor values in the batched model (see
        :meth:`trialrun.envs.adapters.mjx_worlds.WorldModels.apply`)."""
        return self.worlds.apply(worlds, factors)

    def model_value(self, field: str, world: int) -> np.ndarray:
        """World ``world``'s ``field`` as the jitted functions receive it."""
        return np.asarray(self._device_fields()[field][world])

    # -- BatchedEnv ----------------------------------------------------------------

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        padding = np.full(self.padded - self.num_worlds, self._state is None)
        full = np.concatenate([np.asarray(mask, dtype=bool), padding])
        leaves = self._blank() if self._state is None else self._state
        self._state, obs = self._timed("reset", self._device_fields(), self._keys(seeds), full, leaves)
        self._steps[full[: self.num_worlds]] = 0
        return obs, {}

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        """Every world from ``seed + i`` (exact mode needs no waves; for completeness)."""
        return self.reset_worlds(
            np.ones(self.num_worlds, dtype=bool), [seed + i for i in range(self.num_worlds)]
        )

    def step(self, actions: Any) -> BatchStep:
        return self.finish(self.step_async(actions))

    def step_async(self, actions: Any) -> _Pending:
        """Dispatch a step (:class:`~trialrun.envs.batched.StepsAhead`): JAX
        returns at once, the results are read by :meth:`finish`."""
        import jax.numpy as jnp

        if self._state is None:
            raise RuntimeError(f"{self.env_name}: step before reset_worlds")
        shape = (self.num_worlds, -1)
        if type(actions) is np.ndarray:
            actions = actions.astype(np.float32, copy=False).reshape(shape)
        elif getattr(actions, "dtype", None) != jnp.float32 or actions.ndim != 2:
            actions = jnp.asarray(actions, dtype=jnp.float32).reshape(shape)
        before = self._state
        self._state, obs, packed = self._timed("step", self._device_fields(), before, actions)
        return _Pending(before, obs, packed)

    def finish(self, pending: _Pending) -> BatchStep:
        """Wait for a dispatched step and return its results."""
        flags = np.asarray(pending.packed)
        self._steps += 1
        terminated = flags[1] > 0.5
        truncated = (self._steps >= self.max_steps) & ~terminated
        infos: dict[str, Any] = {}
        if len(flags) > 2:
            infos = {"success": flags[2] > 0.5, "_success": np.ones(self.num_worlds, dtype=bool)}
        return pending.obs, flags[0].astype(np.float64), terminated, truncated, infos

    def discard(self, pending: _Pending) -> None:
        """Drop the newest dispatched step, unread: back to the state before it."""
        self._state = pending.before

    def render_worlds(self, worlds: Sequence[int]) -> list[np.ndarray]:
        """Frames of ``worlds`` from their current state, drawn by MuJoCo's
        renderer on the host (the model's first camera, else the free camera).

        Why on the host: MJX computes no images; each filmed world's
        positions are copied into one ``MjData`` and drawn there, so only
        the few filmed worlds leave the device.
        """
        import mujoco

        if self._state is None:
            raise RuntimeError(f"{self.env_name}: render before reset_worlds")
        model = self.env.mj_model
        if self._renderer is None:
            self._render_data = mujoco.MjData(model)
            self._renderer = mujoco.Renderer(model, height=RENDER_SIZE[0], width=RENDER_SIZE[1])
            self._camera = 0 if model.ncam > 0 else -1
        import jax

        data = jax.tree_util.tree_unflatten(self._programs.treedef, self._state).data
        index = np.asarray(worlds, dtype=np.int64)
        qpos = np.asarray(data.qpos[index])
        mocap = None
        if model.nmocap:
            mocap = (np.asarray(data.mocap_pos[index]), np.asarray(data.mocap_quat[index]))
        frames = []
        for row in range(len(index)):
            self._render_data.qpos[:] = qpos[row]
            if mocap is not None:
                self._render_data.mocap_pos[:] = mocap[0][row]
                self._render_data.mocap_quat[:] = mocap[1][row]
            mujoco.mj_forward(model, self._render_data)
            self._renderer.update_scene(self._render_data, camera=self._camera)
            frames.append(self._renderer.render().copy())
        return frames

    def close(self) -> None:
        """Release the renderer (the worlds themselves are arrays)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def load_playground(env_name: str, config_overrides: Mapping[str, Any] | None = None) -> Any:
    """The Playground env ``env_name`` (an error listing the available names otherwise)."""
    known: Catalog = catalog()
    if env_name not in known.names:
        raise unknown_env(env_name, known)
    return known.load(env_name, config_overrides=dict(config_overrides) if config_overrides else None)


def _loaded(env_name: str, config_overrides: Mapping[str, Any] | None) -> Any:
    """:func:`load_playground`, once per process for each name and overrides:
    the simulators built from it share their compiled programs. Safe because
    a Playground env is not changed by running it (a world's model is swapped
    in only while tracing)."""
    key = (env_name, json.dumps(dict(config_overrides or {}), sort_keys=True, default=str))
    if key not in _LOADED:
        _LOADED[key] = load_playground(env_name, config_overrides)
    return _LOADED[key]


def make_playground_env(
    num_envs: int,
    *,
    env_name: str,
    max_episode_steps: int | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    lanes: int | None = DEFAULT_LANES,
    render_mode: str | None = None,
) -> PlaygroundBatchedEnv:
    """The vector entry point of ``playground/<env_name>`` (see ``docs/batched.md``)."""
    env = _loaded(env_name, config_overrides)
    return PlaygroundBatchedEnv(
        env,
        num_envs,
        max_episode_steps=max_episode_steps,
        lanes=lanes,
        name=f"{NAMESPACE}/{env_name}",
        render_mode=render_mode,
    )


class PlaygroundModelEnv(gym.Env[Any, Any]):
    """The MuJoCo model of a Playground env behind Gymnasium's single-env
    interface, for what needs only the model (factor targets and nominal
    values for the manifest, ``trialrun list variations``). It does not
    simulate: Playground envs run with ``vectorization: native``."""

    def __init__(self, env_name: str, config_overrides: Mapping[str, Any] | None = None, **_: Any) -> None:
        import mujoco

        env = _loaded(env_name, config_overrides)
        self.env_name = f"{NAMESPACE}/{env_name}"
        self.model = copy.deepcopy(env.mj_model)  # factor checks may set values: not on the shared env's
        self.data = mujoco.MjData(self.model)
        self.observation_space = _space(observation_size(env), -np.inf, np.inf)
        self.action_space = _space(env.action_size, -1.0, 1.0)

    def _native_only(self) -> ConfigError:
        return ConfigError(
            f"{self.env_name} is a batched MJX env: run it with vectorization: native", field="vectorization"
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        raise self._native_only()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        raise self._native_only()


def register_playground_envs() -> list[str]:
    """Register ``playground/<Name>`` for every env this machine can load."""
    ids = []
    for name in catalog().names:
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=f"{__name__}:PlaygroundModelEnv",
                vector_entry_point=f"{__name__}:make_playground_env",
                kwargs={"env_name": name},
            )
        ids.append(env_id)
    return ids


register_playground_envs()
