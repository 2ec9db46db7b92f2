"""The batched rollout: one simulator object steps every world (``vectorization: native``).

The loop drives a :class:`~trialrun.envs.batched.BatchedEnv` in one of its two modes:

- **exact**: each world runs one slot at a time and is reset alone, with the
  slot's seed, when its episode ends (worlds left without a slot are reset to
  a valid state and never recorded). The episode count is exact, nothing in
  flight is dropped, and a slot's result does not depend on ``num_envs``,
  exactly as in the per-env loop of :mod:`trialrun.rollout`.
- **wave**: the simulator resets all worlds together from one seed. Waves are
  fixed chunks of ``num_envs`` consecutive slots of the job's plan (so a wave
  is a pure function of the run seed, the job and ``num_envs``): world ``i``
  of a wave runs its ``i``-th slot, the wave is seeded with the seed of its
  first slot, and everything a world does after its first episode ends is
  discarded (Brax's evaluation rule): counts stay exact and unbiased toward
  short episodes. A wave with only some of its slots missing (resume, a
  shard) runs whole and emits only the missing ones. Records carry the wave
  (seed, first episode, world, ``num_envs``) under ``extra.wave``, since the
  result of a slot depends on ``num_envs`` in this mode.

In exact mode, a simulator with the :class:`~trialrun.envs.batched.StepsAhead`
hook (MuJoCo Playground) driven by a pure policy (a jitted JAX function) is
stepped one ahead: step ``t + 1`` is queued before step ``t``'s flags are
read, and dropped when a world finished at ``t``, so the device does not
wait for the host's per-step work; the records are the same.

Per finished episode there is a little Python (the result), and the episodes
that end in one step reach ``on_episode`` together (its ``many``, when it has
one: one block of records, one write, one flush); the step path is array
operations only. Observations and actions are passed between the
simulator and the policy untouched.

Example:
    >>> import trialrun.envs
    >>> from trialrun.envs.batched import make_batched_env
    >>> from trialrun.plan import plan_job
    >>> from trialrun.policies import build_policy
    >>> results = []
    >>> env = make_batched_env("trialrun/SeedProbe-v0", {}, 3)
    >>> zero = lambda ctx: build_policy("zero", {}, ctx)
    >>> rollout_native(plan_job(0, "demo", 7), env, zero, results.append)   # the probe reports success
    True
    >>> env.close()
    >>> sorted(r.slot.episode for r in results)
    [0, 1, 2, 3, 4, 5, 6]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import numpy as np

from trialrun.boundary import Guard, GuardConfig
from trialrun.envs.batched import BatchedEnv, PerWorldFactors, StepsAhead
from trialrun.outcomes import OutcomeTerm, OutcomeTracker, SuccessRule
from trialrun.plan import PLAN_BLOCK, PlannedSlots, Slot, SlotQueue, episode_indices
from trialrun.policies.base import Policy, PolicyContext
from trialrun.recording.native_film import WorldFilm
from trialrun.recording.native_steps import WorldSteps
from trialrun.rollout import (
    EpisodeResult,
    Instruct,
    PolicyBuilder,
    deliver,
    deliver_built,
    episode_instructions,
    record_extra,
    utc_now,
    warn_after_rollout,
)

logger = logging.getLogger(__name__)

#: The seed a world without a slot is reset with (its episodes are never recorded).
IDLE_SEED = 0


def rollout_native(
    slots: Sequence[Slot],
    env: BatchedEnv,
    policy_builder: PolicyBuilder,
    on_episode: Callable[[EpisodeResult], None],
    *,
    plan: Sequence[Slot] | None = None,
    env_id: str = "",
    env_kwargs: dict[str, Any] | None = None,
    success: SuccessRule | None = None,
    terms: list[OutcomeTerm] | None = None,
    limits: GuardConfig | None = None,
    job: str = "",
    instruction_factor: str | None = None,
    film: WorldFilm | None = None,
    steps: WorldSteps | None = None,
) -> bool:
    """Run every slot in ``slots`` exactly once on the worlds of ``env`` and call
    ``on_episode`` as each ends.

    ``limits`` bounds the calls into the policy and the simulator (as in
    :func:`trialrun.rollout.rollout`; actions that are not numpy arrays get
    the shape check only, so device arrays stay on their device).
    ``film`` films the episodes its video selection wants and ``steps``
    records the trajectories its selection wants; records name the files.

    ``plan`` is the ordered list of all slots the waves are cut from (the
    job's, or its build-time group's); it defaults to ``slots`` and matters
    only in wave mode. The env is not closed here. Exceptions from the env or
    the policy propagate; episodes that ended before have been emitted.
    Returns whether the env ever reported the success key.
    """
    if not slots:
        return False
    context = PolicyContext(
        env_id=env_id,
        num_envs=env.num_worlds,
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        env_kwargs=dict(env_kwargs or {}),
    )
    policy = policy_builder(context)
    instruct = episode_instructions(policy, instruction_factor, job)
    tracker = OutcomeTracker(env.num_worlds, success or SuccessRule(), terms)
    where = f"job '{job}'" if job else ""
    with Guard(limits or GuardConfig(), env.single_action_space, env.num_worlds, where=where) as guard:
        if env.mode == "exact":
            _run_exact(env, policy, guard, tracker, SlotQueue(slots), on_episode, instruct, film, steps)
        else:
            _run_waves(env, policy, guard, tracker, slots, plan or slots, on_episode, instruct, film, steps)
    warn_after_rollout(tracker, env_id)
    return tracker.success_key_seen


def _run_exact(
    env: BatchedEnv,
    policy: Policy,
    guard: Guard,
    tracker: OutcomeTracker,
    queue: SlotQueue,
    on_episode: Callable[[EpisodeResult], None],
    instruct: Instruct | None = None,
    film: WorldFilm | None = None,
    steps: WorldSteps | None = None,
) -> None:
    n = env.num_worlds
    episode_extra: Callable[[int], dict[str, Any]] | None = getattr(policy, "episode_extra", None)
    finish = _Finish(tracker, guard, episode_extra, film, steps)
    assigned: list[Slot | None] = [None] * n
    started = [""] * n
    active = np.zeros(n, dtype=bool)

    def assigned_slot(i: int) -> Slot:
        slot = assigned[i]
        if slot is None:  # an active world always has a slot
            raise RuntimeError(f"world {i} ended an episode without a slot")
        return slot

    def start(mask: np.ndarray) -> Any:
        seeds: list[int | None] = [None] * n
        policy_seeds: list[int | None] = [None] * n
        starting = np.zeros(n, dtype=bool)
        episodes: list[int | None] = [None] * n
        for i in mask.nonzero()[0].tolist():
            if queue:
                slot = queue.popleft()
                assigned[i], seeds[i], policy_seeds[i] = slot, slot.seed, slot.policy_seed
                episodes[i] = slot.episode
                starting[i] = True
            else:  # no slot left: keep the world valid, never record it
                assigned[i], seeds[i] = None, IDLE_SEED
        if isinstance(env, PerWorldFactors):
            _apply_factors(env, mask, assigned)
        obs, reset_infos = env.reset_worlds(mask, seeds)
        now = utc_now()
        for i in starting.nonzero()[0].tolist():
            started[i] = now
        guard.reset(policy, mask, policy_seeds)
        if instruct is not None:
            instruct(starting, assigned)
        guard.started(starting, episodes)
        tracker.start(starting)
        active[mask] = starting[mask]
        if film is not None or steps is not None:
            worlds = starting.nonzero()[0].tolist()
            started_slots = [slot for i in worlds if (slot := assigned[i]) is not None]
            if film is not None:
                film.begin(worlds, started_slots)
            if steps is not None:
                steps.begin(worlds, started_slots, obs, reset_infos)
        return obs

    # One step ahead (StepsAhead): step t+1 is queued before step t's flags are
    # read, and dropped if a world finished at t. Only with a pure policy (its
    # extra call on the dropped step changes nothing) and nothing that reads
    # the simulator between steps (videos, trajectories, instructions).
    ahead: StepsAhead | None = None
    reads_between = film is not None or steps is not None or instruct is not None
    if isinstance(env, StepsAhead) and getattr(policy, "pure", False) and not reads_between:
        ahead = env
    queued: Any = None
    obs = start(np.ones(n, dtype=bool))
    while active.any():
        if ahead is not None:
            current = queued if queued is not None else ahead.step_async(guard.act(policy, obs, active))
            queued = ahead.step_async(guard.act(policy, current.obs, active))
            obs, rewards, terminated, truncated, infos = guard.step(active, ahead.finish, current)
        else:
            actions = guard.act(policy, obs, active)
            obs, rewards, terminated, truncated, infos = guard.step(active, env.step, actions)
        tracker.step(active, rewards, terminated, truncated, infos)
        if film is not None:
            film.capture()
        if steps is not None and steps.recording:
            steps.capture(actions, obs, rewards, terminated, truncated, infos)
        done = terminated | truncated
        ended = (done & active).nonzero()[0].tolist()
        guard.finished(ended)
        held: list[EpisodeResult] = []
        try:
            if ended:  # the results now: starting the next episodes resets their worlds' tallies
                now = utc_now()
                for i, outcome in zip(ended, tracker.results(ended), strict=True):
                    held.append(finish(assigned_slot(i), i, outcome, started[i], now))
            if done.any():
                if ahead is not None and queued is not None:
                    ahead.discard(queued)
                    queued = None
                obs = start(done)
                if ahead is not None and active.any():
                    # The new episodes' first step computes while the host writes the records.
                    queued = ahead.step_async(guard.act(policy, obs, active))
        finally:
            # One block (one validation, one write, one flush), also when building one or the reset failed.
            deliver(on_episode, held)


def _run_waves(
    env: BatchedEnv,
    policy: Policy,
    guard: Guard,
    tracker: OutcomeTracker,
    slots: Sequence[Slot],
    plan: Sequence[Slot],
    on_episode: Callable[[EpisodeResult], None],
    instruct: Instruct | None = None,
    film: WorldFilm | None = None,
    steps: WorldSteps | None = None,
) -> None:
    n = env.num_worlds
    episode_extra: Callable[[int], dict[str, Any]] | None = getattr(policy, "episode_extra", None)
    finish = _Finish(tracker, guard, episode_extra, film, steps)
    for wave, wanted in _waves(slots, plan, n):
        members = list(plan[wave * n : (wave + 1) * n])
        wave_seed = members[0].seed
        if isinstance(env, PerWorldFactors):
            world_slots: list[Slot | None] = [*members, *[None] * (n - len(members))]
            _apply_factors(env, np.ones(n, dtype=bool), world_slots)
            members = [s for s in world_slots if s is not None]
        obs, reset_infos = env.reset_all(wave_seed)
        started = utc_now()
        mask = np.zeros(n, dtype=bool)
        mask[: len(members)] = True
        seeds = [m.policy_seed for m in members] + [None] * (n - len(members))
        guard.reset(policy, np.ones(n, dtype=bool), seeds)
        if instruct is not None:
            instruct(mask, members + [None] * (n - len(members)))
        guard.started(mask, [m.episode for m in members] + [None] * (n - len(members)))
        tracker.start(mask)
        active = mask.copy()
        if film is not None or steps is not None:
            recorded = [i for i, m in enumerate(members) if m.episode in wanted]
            if film is not None:
                film.begin(recorded, [members[i] for i in recorded])
            if steps is not None:
                steps.begin(recorded, [members[i] for i in recorded], obs, reset_infos)
        while active.any():
            actions = guard.act(policy, obs, active)
            obs, rewards, terminated, truncated, infos = guard.step(active, env.step, actions)
            tracker.step(active, rewards, terminated, truncated, infos)
            if film is not None:
                film.capture()
            if steps is not None and steps.recording:
                steps.capture(actions, obs, rewards, terminated, truncated, infos)
            ended = ((terminated | truncated) & active).nonzero()[0].tolist()
            if not ended:
                continue
            guard.finished(ended)
            active[ended] = False
            now = utc_now()
            recorded = [i for i in ended if members[i].episode in wanted]
            deliver_built(
                on_episode,
                (
                    finish.wave(members, i, outcome, wave_seed, n, started, now)
                    for i, outcome in zip(recorded, tracker.results(recorded), strict=True)
                ),
            )


def _waves(slots: Sequence[Slot], plan: Sequence[Slot], n: int) -> Iterator[tuple[int, set[int]]]:
    """The waves (chunk ``i`` of ``n`` slots of ``plan``) that hold some of
    ``slots``, in plan order, each with the episodes of ``slots`` in it.

    ``slots`` are read a block at a time (a lazy plan of a million is never a
    million episode ints at once); slots out of plan order (never from the
    runner, whose sub-plans keep it) are grouped all at once instead.
    """
    locate = _locator(plan)

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(slots), PLAN_BLOCK):
            part = episode_indices(slots[start : start + PLAN_BLOCK])
            episodes = np.arange(part.start, part.stop) if isinstance(part, range) else part
            positions = locate(episodes)
            if (positions < 0).any():
                absent = episodes[positions < 0][:5].tolist()
                raise ValueError(f"slots {absent} are not in the plan the waves are cut from")
            yield episodes, positions // n

    last = -1
    for _, waves in blocks():
        if waves[0] < last or bool(np.any(waves[1:] < waves[:-1])):
            grouped: dict[int, set[int]] = {}
            for episodes, block_waves in blocks():
                for episode, wave in zip(episodes.tolist(), block_waves.tolist(), strict=True):
                    grouped.setdefault(wave, set()).add(episode)
            yield from sorted(grouped.items())
            return
        last = int(waves[-1])
    current, wanted = -1, set[int]()
    for episodes, waves in blocks():
        cuts = [0, *(np.flatnonzero(np.diff(waves)) + 1).tolist(), len(waves)]
        for lo, hi in pairwise(cuts):
            wave = int(waves[lo])
            if wave != current:
                if wanted:
                    yield current, wanted
                current, wanted = wave, set()
            wanted.update(episodes[lo:hi].tolist())
    if wanted:
        yield current, wanted


def _locator(plan: Sequence[Slot]) -> Callable[[np.ndarray], np.ndarray]:
    """Maps episode indices to their positions in ``plan`` (-1: not in it)."""
    if isinstance(plan, PlannedSlots):
        return plan.positions
    where = {slot.episode: index for index, slot in enumerate(plan)}
    return lambda episodes: np.array([where.get(e, -1) for e in episodes.tolist()], dtype=np.int64)


def _apply_factors(env: PerWorldFactors, mask: np.ndarray, assigned: list[Slot | None]) -> None:
    """Set each masked world's slot factors in the simulator (nominal for a
    world without a slot) and keep the values read back in its slot, so the
    record holds what the world ran with."""
    worlds = mask.nonzero()[0].tolist()
    applied = env.apply(worlds, [dict(s.factors) if (s := assigned[i]) is not None else {} for i in worlds])
    for i, values in zip(worlds, applied, strict=True):
        slot = assigned[i]
        if slot is not None and values:
            assigned[i] = replace(slot, factors={**slot.factors, **values})


@dataclass(frozen=True)
class _Finish:
    """The result of a world's finished episode, as both modes build it: the
    tracker's outcome, the guard's and the policy's extras, then the film and
    the trajectory (which settle on the outcome)."""

    tracker: OutcomeTracker
    guard: Guard
    episode_extra: Callable[[int], dict[str, Any]] | None
    film: WorldFilm | None
    steps: WorldSteps | None

    def __call__(
        self,
        slot: Slot,
        world: int,
        outcome: dict[str, Any],
        started: str,
        ended: str,
        wave: dict[str, Any] | None = None,
    ) -> EpisodeResult:
        """``outcome``: the world's, read with the step's others (:meth:`OutcomeTracker.results`)."""
        result = EpisodeResult(
            slot=slot,
            env_index=world,
            outcome=outcome,
            factors=dict(slot.factors),
            started_at=started,
            ended_at=ended,
            extra=record_extra(self.guard, world, outcome, self.episode_extra),
        )
        if wave is not None:
            result.extra["wave"] = wave
        if self.film is not None:
            result.video = self.film.finish(world, outcome)
        if self.steps is not None:
            result.trajectory = self.steps.finish(world, outcome).get("trajectory")
        return result

    def wave(
        self,
        members: Sequence[Slot],
        world: int,
        outcome: dict[str, Any],
        wave_seed: int,
        n: int,
        started: str,
        ended: str,
    ) -> EpisodeResult:
        """The result of ``world``'s first episode in the wave of ``members``,
        seeded with ``wave_seed`` (its record says which wave)."""
        slot = members[world]
        # A direct constructor: dataclasses.replace costs ~10 us per episode.
        waved = Slot(slot.job, slot.episode, wave_seed, slot.policy_seed, slot.factor_seed, slot.factors)
        wave = {"seed": wave_seed, "first_episode": members[0].episode, "world": world, "num_envs": n}
        return self(waved, world, outcome, started, ended, wave=wave)
