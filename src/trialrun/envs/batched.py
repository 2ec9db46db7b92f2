"""Natively batched simulators: one env object that steps many worlds.

The rollout drives any batched simulator through :class:`BatchedEnv`, a small
protocol that says how its worlds are reset (see ``docs/batched.md``):

- **exact mode**: :meth:`BatchedEnv.reset_worlds` resets a subset of worlds,
  each with its own seed, and leaves the others untouched. Each world runs one
  slot at a time and is refilled with the next slot's seed, exactly like the
  per-env loop: results are identical for any ``num_envs``.
- **wave mode**: the simulator can only reset all worlds together (or
  autoresets them itself from a shared generator). :meth:`BatchedEnv.reset_all`
  starts a wave from one seed; each world's first episode is its slot and
  whatever it does after that episode ends is discarded. Counting stays exact
  and unbiased, but a world's episode depends on the wave, so results depend
  on ``num_envs`` (records and the manifest say so).

:class:`GymnasiumBatchedEnv` adapts a ``gymnasium.vector.VectorEnv`` (what
``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` returns)
and detects the mode from its ``autoreset_mode``: autoreset disabled means the
env resets by mask with a list of seeds (exact), anything else means it resets
worlds by itself (wave). A forced mode the env cannot do fails loudly.

Observations and actions stay whatever array type the simulator uses (numpy
here; torch or JAX arrays pass through untouched).

Example:
    >>> import gymnasium as gym, numpy as np
    >>> import trialrun.envs
    >>> vec = gym.make_vec("trialrun/SeedProbe-v0", 3, vectorization_mode="vector_entry_point")
    >>> env = GymnasiumBatchedEnv(vec)
    >>> env.mode, env.num_worlds
    ('exact', 3)
    >>> obs, _ = env.reset_worlds(np.array([True, False, True]), [11, None, 13])
    >>> env.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, VectorEnv

from trialrun.errors import ConfigError

ResetMode = Literal["exact", "wave"]
BatchStep = tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


@runtime_checkable
class BatchedEnv(Protocol):
    """What the batched rollout needs from a simulator that steps many worlds.

    ``step`` returns, per world, the reward, ``terminated`` and ``truncated``
    of the step just taken and the infos of that step *for the episode that
    step belongs to*: an adapter of a simulator that autoresets inside
    ``step`` (Isaac Lab, ManiSkill's autoreset wrapper) takes the terminal
    infos (success) before the reset overwrites them.

    An adapter may also implement :class:`PerWorldFactors` (per-world factor
    values through a batched model).
    """

    mode: ResetMode
    num_worlds: int
    single_observation_space: gym.Space[Any]
    single_action_space: gym.Space[Any]

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        """Exact mode: reset the worlds where ``mask`` is true, world ``i`` with
        ``seeds[i]``; return the observations of all worlds."""
        ...

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        """Wave mode: reset every world from one seed."""
        ...

    def step(self, actions: Any) -> BatchStep:
        """Step every world with its action."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PerWorldFactors(Protocol):
    """The optional hook of a :class:`BatchedEnv` that sets factors per world.

    A simulator whose worlds can hold different model values at once (MJX's
    batched ``mjx.Model``) implements ``apply``; the batched rollout calls it
    for the worlds it is about to reset, before :meth:`BatchedEnv.reset_worlds`
    (exact mode) or :meth:`BatchedEnv.reset_all` (wave mode), with each world's
    slot factors (``{}`` for a world left without a slot: back to nominal).
    It returns, per world, the values read back from the simulator: those, not
    the sampled ones, go into the records. Values a world held before are
    restored first, so nothing leaks from one slot into the next. Which
    factors it sets is given once, by ``bind_factors`` (the run's
    ``execution`` layer binds a job's per-world factors).
    """

    def bind_factors(self, variations: Mapping[str, Any]) -> None:
        """The factors ``apply`` sets: name -> unbound variation (bound here to
        the simulator's model, so a bad target fails before anything runs)."""
        ...

    def apply(self, worlds: Sequence[int], factors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Set ``factors[k]`` on world ``worlds[k]``; return the values read back."""
        ...


@runtime_checkable
class StepsAhead(Protocol):
    """The optional hook of an exact-mode :class:`BatchedEnv` that can queue a
    step before the previous one's results are read (JAX dispatches a jitted
    call and returns at once). The batched rollout then dispatches step
    ``t + 1`` before it reads step ``t``'s flags, so the simulator never waits
    for the host's per-step work; when a world finished at ``t`` it discards
    step ``t + 1`` (the state goes back to the end of ``t``) and resets the
    finished worlds as usual, so the results are those of :meth:`BatchedEnv.step`.
    Only used with a policy whose extra call changes nothing (``pure``).
    """

    def step_async(self, actions: Any) -> Any:
        """Queue a step from the current state; return a handle whose ``obs``
        are the step's observations (not waited for). The env's state becomes
        the step's result at once, so a second ``step_async`` follows it."""
        ...

    def finish(self, pending: Any) -> BatchStep:
        """Wait for a queued step (oldest first) and return what :meth:`BatchedEnv.step` returns."""
        ...

    def discard(self, pending: Any) -> None:
        """Drop the newest queued step, unread: the state goes back to before it."""
        ...


@runtime_checkable
class CompilesPrograms(Protocol):
    """The optional hook of a :class:`BatchedEnv` whose step is a program that
    must be compiled before it runs (JAX's ``jit``: about a minute on CPU the
    first time). The runner calls it once per job before any episode, shows
    the phase as "compiling" and records its seconds in the manifest, so a
    long compile is not mistaken for a stalled job."""

    def compile(self) -> float:
        """Compile (or load from a cache) the programs for this many worlds
        without running an episode; return the seconds it took (0 when the
        process already holds them)."""
        ...


def _autoreset_mode(vec: VectorEnv[Any, Any, Any]) -> AutoresetMode | None:
    mode = (vec.metadata or {}).get("autoreset_mode")
    if mode is None:
        return None
    try:
        return AutoresetMode(mode)
    except ValueError:
        return None


class GymnasiumBatchedEnv:
    """A :class:`BatchedEnv` over a Gymnasium ``VectorEnv``.

    ``mode=None`` detects it: an env whose ``metadata["autoreset_mode"]`` is
    ``AutoresetMode.DISABLED`` resets by mask with per-world seeds (exact);
    any other mode means the env restarts worlds by itself (wave). With
    ``SAME_STEP`` autoreset the terminal infos come from ``final_info``.
    """

    def __init__(
        self, vec: VectorEnv[Any, Any, Any], mode: ResetMode | None = None, *, job: str = ""
    ) -> None:
        self.vec = vec
        self.num_worlds = int(vec.num_envs)
        self.single_observation_space = vec.single_observation_space
        self.single_action_space = vec.single_action_space
        self.autoreset = _autoreset_mode(vec)
        name = type(vec.unwrapped).__name__ if hasattr(vec, "unwrapped") else type(vec).__name__
        can_exact = self.autoreset == AutoresetMode.DISABLED
        supports = (
            "exact (resets chosen worlds with their own seeds)"
            if can_exact
            else f"wave only (it autoresets worlds itself: autoreset_mode={self._mode_name()})"
        )
        if mode == "exact" and not can_exact:
            raise ConfigError(
                f"job '{job}': native_mode 'exact' needs an env that resets a subset of worlds with "
                f"per-world seeds (autoreset disabled, reset(seed=[...], options={{'reset_mask': ...}})); "
                f"{name} supports {supports}. Use native_mode: wave (or auto).",
                field="native_mode",
            )
        if mode == "wave" and can_exact:
            raise ConfigError(
                f"job '{job}': native_mode 'wave' needs an env that restarts finished worlds by itself; "
                f"{name} has autoreset disabled and supports {supports}: use native_mode: exact (or auto)",
                field="native_mode",
            )
        self.mode: ResetMode = mode or ("exact" if can_exact else "wave")
        self.env_name = name

    def _mode_name(self) -> str:
        return self.autoreset.name if self.autoreset is not None else "not declared"

    def reset_worlds(self, mask: np.ndarray, seeds: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
        try:
            # Gymnasium's VectorEnv.reset is typed for one seed; vector envs take a list too.
            reset: Any = self.vec.reset
            obs, infos = reset(seed=list(seeds), options={"reset_mask": np.asarray(mask, dtype=np.bool_)})
            return obs, infos
        except (TypeError, ValueError, gym.error.Error) as exc:
            raise ConfigError(
                f"{self.env_name} cannot reset a subset of its worlds with per-world seeds ({exc}); "
                "set native_mode: wave",
                field="native_mode",
            ) from exc

    def reset_all(self, seed: int) -> tuple[Any, dict[str, Any]]:
        return self.vec.reset(seed=seed)

    def step(self, actions: Any) -> BatchStep:
        obs, rewards, terminated, truncated, infos = self.vec.step(actions)
        if self.autoreset == AutoresetMode.SAME_STEP and "final_info" in infos:
            infos = _terminal_infos(infos, np.asarray(terminated) | np.asarray(truncated))
        return (
            obs,
            np.asarray(rewards),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            infos,
        )

    def render_worlds(self, worlds: Sequence[int]) -> list[np.ndarray]:
        """One RGB image per asked world, from the vector env's ``render()``
        (Gymnasium's vector envs return one image per sub-env)."""
        frames = self.vec.render()
        if frames is None or len(frames) != self.num_worlds:
            got = "nothing" if frames is None else f"{len(frames)} image(s)"
            raise ConfigError(
                f"{self.env_name}.render() gave {got} for {self.num_worlds} worlds; filming a native job "
                "needs one image per world (build it with render_mode='rgb_array')",
                field="video",
            )
        return [np.asarray(frames[i]) for i in worlds]

    def close(self) -> None:
        self.vec.close()


def _terminal_infos(infos: dict[str, Any], ended: np.ndarray) -> dict[str, Any]:
    """Infos where each ended world's entries come from ``final_info`` (the
    episode that ended), not from the reset that followed in the same step."""
    final = infos["final_info"]
    merged = {
        k: v for k, v in infos.items() if k not in ("final_info", "_final_info", "final_obs", "_final_obs")
    }
    for key, values in final.items():
        if key.startswith("_"):
            continue
        column = np.array(merged.get(key, values), copy=True)
        present = np.asarray(merged.get(f"_{key}", np.zeros(len(ended), dtype=bool)), dtype=bool).copy()
        column[ended] = np.asarray(values)[ended]
        present[ended] = np.asarray(final.get(f"_{key}", ended))[ended]
        merged[key], merged[f"_{key}"] = column, present
    return merged


def make_batched_env(
    env_id: str,
    kwargs: dict[str, Any],
    num_worlds: int,
    *,
    max_steps: int | None = None,
    mode: ResetMode | Literal["auto"] | None = None,
    job: str = "",
) -> BatchedEnv:
    """The batched simulator of ``env_id``: its registered ``vector_entry_point``
    called with ``num_envs=num_worlds`` and ``kwargs`` (as
    ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` does;
    ``module:Env-v0`` ids import ``module`` first).

    A Gymnasium ``VectorEnv`` is wrapped in a :class:`GymnasiumBatchedEnv`; an
    entry point that returns a :class:`BatchedEnv` itself (an adapter of
    Isaac Lab, ManiSkill or PufferLib, see ``docs/batched.md``) is used as it is.

    Raises:
        ConfigError: the id has no vector entry point (naming the job and what
            the env supports), or ``mode`` is one the env cannot do (``"auto"``
            or None: whatever the env does).
    """
    from trialrun.envs.build import check_env_id, check_env_kwargs, ensure_headless_rendering

    if mode == "auto":  # a job's native_mode: detected from the env, as None
        mode = None
    ensure_headless_rendering()
    spec = check_env_id(env_id, field="env.id")
    if spec.vector_entry_point is None:
        raise ConfigError(
            f"job '{job}': vectorization 'native' needs an env with a vector entry point (one object that "
            f"steps many worlds); '{env_id}' has none, it only builds single envs: use vectorization: sync "
            "or async, or register a vector_entry_point (see docs/batched.md)",
            field="vectorization",
        )
    check_env_kwargs(spec, kwargs, field="env.kwargs", vector=True)
    make_kwargs = {**spec.kwargs, **kwargs}
    if max_steps is not None:
        make_kwargs["max_episode_steps"] = max_steps
    elif spec.max_episode_steps is not None and "max_episode_steps" not in make_kwargs:
        make_kwargs["max_episode_steps"] = spec.max_episode_steps
    entry = spec.vector_entry_point
    creator = entry if callable(entry) else load_env_creator(entry)
    built = creator(num_envs=num_worlds, **make_kwargs)
    if isinstance(built, VectorEnv):
        return GymnasiumBatchedEnv(built, mode, job=job)
    if not isinstance(built, BatchedEnv):
        raise ConfigError(
            f"job '{job}': the vector entry point of '{env_id}' returned a {type(built).__name__}, which is "
            "neither a gymnasium.vector.VectorEnv nor a trialrun BatchedEnv (docs/batched.md)",
            field="env.id",
        )
    if mode is not None and built.mode != mode:
        raise ConfigError(
            f"job '{job}': native_mode '{mode}' was asked for, but {type(built).__name__} resets its worlds "
            f"in {built.mode} mode",
            field="native_mode",
        )
    return built
