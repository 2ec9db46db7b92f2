"""The rollout: a vectorized loop that runs a list of slots exactly once each.

Each sub-env runs one slot at a time. When its episode ends, the outcome is
emitted at once (with the others that ended in the same step, as one block:
:func:`deliver`) and the sub-env is reset with the next slot's seed and
settings (autoreset is disabled: Gymnasium's default NEXT_STEP autoreset spends
a step on the reset and never reseeds). When no slot is left, the sub-env goes
idle and is no longer stepped. Nothing in flight is dropped and nothing extra
runs, so the episode count is exact and short episodes are not over-represented
(stopping "after N completions" would bias toward them). A slot's result does
not depend on ``num_envs`` or on which sub-env ran it: the env is reset with the
slot's seed and the policy's per-env state and generator with the slot's
policy seed.

Example:
    >>> import gymnasium as gym
    >>> from trialrun.plan import plan_job
    >>> from trialrun.policies import build_policy
    >>> results = []
    >>> seen = rollout(plan_job(0, "demo", 5), [lambda: gym.make("CartPole-v1")] * 2,
    ...         lambda ctx: build_policy("zero", {}, ctx), results.append, env_id="CartPole-v1")
    >>> sorted(r.slot.episode for r in results)
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from trialrun.boundary import Guard, GuardConfig
from trialrun.envs.info import APPLIED_KEY, TRAJECTORY_KEY, VIDEO_KEY, sub_env_json
from trialrun.envs.slot_wrapper import SlotWrapper
from trialrun.envs.vector import ActiveSubsetAsyncVectorEnv, ActiveSubsetSyncVectorEnv
from trialrun.errors import ConfigError
from trialrun.outcomes import OutcomeTerm, OutcomeTracker, SuccessRule
from trialrun.plan import Slot, SlotQueue
from trialrun.policies.base import Policy, PolicyContext
from trialrun.policies.playback import ActionLog, ActionRow

logger = logging.getLogger(__name__)

EnvFn = Callable[[], gym.Env[Any, Any]]
PolicyBuilder = Callable[[PolicyContext], Policy]


class VideoPlan(Protocol):
    """Which episodes the sub-envs record, and which finished videos are kept
    (:class:`trialrun.recording.selection.VideoSelection` is one)."""

    def settings(self, slot: Slot) -> dict[str, Any] | None:
        """What the sub-env needs to record ``slot`` (None: do not record)."""
        ...

    def keeps_actions(self) -> bool:
        """Whether episodes starting now keep their actions, for :meth:`settle`
        to re-simulate the ones whose video is wanted instead of filming them all."""
        ...

    def settle(
        self,
        slot: Slot,
        outcome: dict[str, Any],
        files: dict[str, str],
        actions: Sequence[ActionRow] | None = None,
    ) -> dict[str, str]:
        """The videos the result names, once the outcome is known (others are
        deleted); ``actions`` is the episode's action stream when it kept one."""
        ...


class _UtcClock:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z``.

    The text is made once per millisecond: a fast env ends several episodes
    per millisecond and formatting a datetime costs more than a CartPole step.
    The date and time up to the second are formatted once per second; a new
    millisecond only appends its three digits.
    """

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")
        self._second: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        cached_ms, text = self._cached  # one tuple: consistent across threads
        if ms != cached_ms:
            second, prefix = self._second
            if ms // 1000 != second:
                second = ms // 1000
                prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
                self._second = (second, prefix)
            text = f"{prefix}{ms % 1000:03d}Z"
            self._cached = (ms, text)
        return text


utc_now = _UtcClock()


@dataclass
class EpisodeResult:
    """A finished episode as the rollout sees it (the executor turns it into a record)."""

    slot: Slot
    env_index: int
    outcome: dict[str, Any]
    factors: dict[str, Any]
    started_at: str
    ended_at: str
    video: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    trajectory: str | None = None


class EpisodeBatchSink(Protocol):
    """An ``on_episode`` that also takes every episode that ended in one step
    at once (the runner's sink): one block of records, one write and one
    flush, instead of one per episode."""

    def __call__(self, result: EpisodeResult) -> None: ...

    def many(self, results: list[EpisodeResult]) -> None: ...


def deliver(on_episode: Callable[[EpisodeResult], None], results: list[EpisodeResult]) -> None:
    """Hand the episodes that ended in one step to ``on_episode``: all at once
    through its ``many`` when it has one (an :class:`EpisodeBatchSink`),
    otherwise one at a time, in order (a plain callable such as
    ``list.append`` keeps working)."""
    if not results:
        return
    many: Callable[[list[EpisodeResult]], None] | None = getattr(on_episode, "many", None)
    if many is not None:
        many(results)
        return
    for result in results:
        on_episode(result)


def deliver_built(on_episode: Callable[[EpisodeResult], None], built: Iterable[EpisodeResult | None]) -> None:
    """:func:`deliver` a step's results as one block, building them from
    ``built`` (a generator; None for an episode that is not recorded). When
    building one raises, the results built before it are delivered first:
    episodes that ended are never lost to a later one's error."""
    results: list[EpisodeResult] = []
    try:
        for result in built:
            if result is not None:
                results.append(result)
    except BaseException:
        deliver(on_episode, results)
        raise
    deliver(on_episode, results)


class _WrappedEnvFn:
    """Picklable ``env_fn`` that wraps the env in a :class:`SlotWrapper`."""

    def __init__(self, env_fn: EnvFn, env_index: int) -> None:
        self.env_fn = env_fn
        self.env_index = env_index

    def __call__(self) -> gym.Env[Any, Any]:
        env = self.env_fn()
        if isinstance(env, SlotWrapper):
            env.env_index = self.env_index
            return env
        return SlotWrapper(env, self.env_index)


def rollout(
    slots: Sequence[Slot],
    env_fns: Sequence[EnvFn],
    policy_builder: PolicyBuilder,
    on_episode: Callable[[EpisodeResult], None],
    *,
    env_id: str = "",
    env_kwargs: dict[str, Any] | None = None,
    vectorization: str = "sync",
    success: SuccessRule | None = None,
    terms: list[OutcomeTerm] | None = None,
    video: VideoPlan | None = None,
    limits: GuardConfig | None = None,
    job: str = "",
    instruction_factor: str | None = None,
    warn: bool = True,
    trajectories: VideoPlan | None = None,
) -> bool:
    """Run every slot in ``slots`` exactly once on ``len(env_fns)`` sub-envs
    (fewer when there are fewer slots) and call ``on_episode`` as each ends
    (the episodes that ended in one step together, through :func:`deliver`).

    ``limits`` bounds the calls into the policy and the env (time limits,
    action checks; default :class:`~trialrun.boundary.GuardConfig`); ``job``
    names the job in their messages. ``instruction_factor`` names the factor
    whose value is each episode's instruction (a ``language`` factor): the
    policy gets it through ``instruct(mask, instructions)``. ``warn: False``
    keeps the warnings about the env's outcomes quiet (a re-simulation of an
    episode the run has already warned about).

    ``env_fns[i]`` builds sub-env ``i``; it may return a :class:`SlotWrapper`
    carrying pre-reset hooks (variations) and a recorder factory, otherwise
    one is added (without either: it cannot record videos).
    ``video`` decides which episodes the sub-envs record and which of the
    finished videos the results name (the others are deleted);
    ``trajectories`` does the same for per-step trajectories.
    Exceptions from the env or the policy propagate (a timeout or a bad
    action as a :class:`~trialrun.errors.UserCodeError`); episodes that ended
    before the exception have already been emitted.

    Returns whether the env ever reported the success key (``info["success"]``,
    ``info["is_success"]`` or the job's ``success.key``).
    """
    if not slots:
        return False
    num_envs = min(len(env_fns), len(slots))
    wrapped = [_WrappedEnvFn(env_fns[i], i) for i in range(num_envs)]
    vec_cls = ActiveSubsetAsyncVectorEnv if vectorization == "async" else ActiveSubsetSyncVectorEnv
    vec = vec_cls(wrapped)
    failed = True
    try:
        context = PolicyContext(
            env_id=env_id,
            num_envs=num_envs,
            observation_space=vec.single_observation_space,
            action_space=vec.single_action_space,
            env_kwargs=dict(env_kwargs or {}),
        )
        policy = policy_builder(context)
        instruct = episode_instructions(policy, instruction_factor, job)
        tracker = OutcomeTracker(num_envs, success or SuccessRule(), terms)
        where = f"job '{job}'" if job else ""
        with Guard(limits or GuardConfig(), vec.single_action_space, num_envs, where=where) as guard:
            queue = SlotQueue(slots)
            _loop(vec, policy, guard, tracker, queue, num_envs, on_episode, video, instruct, trajectories)
        failed = False
    finally:
        if isinstance(vec, ActiveSubsetAsyncVectorEnv):
            # After a failure a worker may be stuck mid-step (a timeout): do not wait for it.
            vec.close(terminate=failed)
        else:
            vec.close()
    if warn:
        warn_after_rollout(tracker, env_id)
    return tracker.success_key_seen


Instruct = Callable[[np.ndarray, Sequence[Slot | None]], None]


def instruction_not_taken(policy: str, factor: str, job: str = "") -> ConfigError:
    """The error for a ``language`` factor whose instructions the policy cannot take."""
    return ConfigError(
        f"factor '{factor}' gives each episode an instruction, but the policy ({policy}) "
        "takes none: its act() has no 'instruction' parameter and it is not a server policy",
        field=f"jobs[{job}].factors.{factor}" if job else f"factors.{factor}",
    )


def episode_instructions(policy: Policy, factor: str | None, job: str = "") -> Instruct | None:
    """What gives each starting episode's instruction (``factor``'s value) to
    the policy; None without a ``language`` factor. A policy that cannot take
    one is an error: the factor would silently have no effect."""
    if factor is None:
        return None
    instruct = getattr(policy, "instruct", None)
    if not callable(instruct):
        raise instruction_not_taken(type(policy).__name__, factor, job)

    def give(mask: np.ndarray, slots: Sequence[Slot | None]) -> None:
        instructions = [None if s is None else str(s.factors.get(factor, "")) for s in slots]
        instruct(mask, instructions)

    return give


def record_extra(
    guard: Guard, world: int, outcome: dict[str, Any], episode_extra: Callable[[int], dict[str, Any]] | None
) -> dict[str, Any]:
    """A record's ``extra``: the step timings, and what the policy keeps per episode."""
    extra: dict[str, Any] = {"timing": guard.timing(world, outcome["length"])}
    if episode_extra is not None:
        extra.update(episode_extra(world))
    return extra


def warn_after_rollout(tracker: OutcomeTracker, env_id: str) -> None:
    """What a finished rollout tells the user about its env: a success key
    never reported, rewards that were NaN or inf."""
    if not tracker.success_key_seen and tracker.rule.key is not None:
        logger.warning(
            "env '%s' never reported info['%s']: every episode is recorded as a failure",
            env_id,
            tracker.rule.key,
        )
    if tracker.nonfinite_episodes:
        logger.warning(
            "env '%s' gave NaN or inf rewards in %d episode(s): their records say "
            "nonfinite_reward: true and return statistics leave them out",
            env_id,
            tracker.nonfinite_episodes,
        )


def _loop(
    vec: ActiveSubsetSyncVectorEnv | ActiveSubsetAsyncVectorEnv,
    policy: Policy,
    guard: Guard,
    tracker: OutcomeTracker,
    queue: SlotQueue,
    num_envs: int,
    on_episode: Callable[[EpisodeResult], None],
    video: VideoPlan | None = None,
    instruct: Instruct | None = None,
    trajectories: VideoPlan | None = None,
) -> None:
    # A policy may keep per-episode facts for the record (a server policy's latency).
    episode_extra: Callable[[int], dict[str, Any]] | None = getattr(policy, "episode_extra", None)
    assigned: list[Slot | None] = [None] * num_envs
    applied: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    started: list[str] = [""] * num_envs
    active = np.zeros(num_envs, dtype=bool)
    plans = [plan for plan in (video, trajectories) if plan is not None]
    action_log = ActionLog(num_envs) if plans else None

    def start_episodes(mask: np.ndarray) -> Any:
        env_seeds: list[int | None] = [None] * num_envs
        policy_seeds: list[int | None] = [None] * num_envs
        settings: dict[int, dict[str, Any]] = {}
        episodes: list[int | None] = [None] * num_envs
        indices = mask.nonzero()[0].tolist()
        for i in indices:
            slot = queue.popleft()
            assigned[i] = slot
            episodes[i] = slot.episode
            env_seeds[i] = slot.seed
            policy_seeds[i] = slot.policy_seed
            settings[i] = {"slot": slot.episode, "seed": slot.seed, "factors": slot.factors}
            if video is not None:
                settings[i]["video"] = video.settings(slot)
            if trajectories is not None:
                settings[i]["trajectory"] = trajectories.settings(slot)
            if action_log is not None and any(plan.keeps_actions() for plan in plans):
                action_log.begin(i)
        obs, infos = vec.reset_slots(mask, env_seeds, {"trialrun": settings})
        now = utc_now()
        for i in indices:
            applied[i] = sub_env_json(infos, APPLIED_KEY, i)
            started[i] = now
        guard.reset(policy, mask, policy_seeds)
        if instruct is not None:
            instruct(mask, assigned)
        guard.started(mask, episodes)
        tracker.start(mask)
        active[mask] = True
        return obs

    def finished(i: int, infos: dict[str, Any], now: str) -> EpisodeResult:
        slot = assigned[i]
        assert slot is not None  # an active sub-env always has a slot
        outcome = tracker.result(i)
        files: dict[str, str] = sub_env_json(infos, VIDEO_KEY, i)
        stream = action_log.take(i) if action_log is not None else None
        if video is not None:
            files = video.settle(slot, outcome, files, stream)
        trajectory: str | None = None
        if trajectories is not None:
            kept = trajectories.settle(slot, outcome, sub_env_json(infos, TRAJECTORY_KEY, i), stream)
            trajectory = kept.get("trajectory")
        return EpisodeResult(
            slot=slot,
            env_index=i,
            outcome=outcome,
            factors=applied[i] or dict(slot.factors),
            started_at=started[i],
            ended_at=now,
            video=files,
            extra=record_extra(guard, i, outcome, episode_extra),
            trajectory=trajectory,
        )

    obs = start_episodes(np.ones(num_envs, dtype=bool))
    running = num_envs
    while running:
        actions = guard.act(policy, obs, active)
        if action_log is not None:
            action_log.add(actions, active)
        obs, rewards, terminated, truncated, infos = guard.step(active, vec.step_active, actions, active)
        tracker.step(active, rewards, terminated, truncated, infos)
        # Idle sub-envs are not stepped and report neither flag.
        ended = (terminated | truncated).nonzero()[0].tolist()
        if not ended:
            continue
        guard.finished(ended)
        now = utc_now()
        deliver_built(on_episode, (finished(i, infos, now) for i in ended))
        for i in ended:
            assigned[i] = None
        active[ended] = False
        # The first sub-envs to end take the slots left (the queue is read only by start_episodes).
        refills = min(len(ended), len(queue))
        refill = np.zeros(num_envs, dtype=bool)
        refill[ended[:refills]] = True
        running -= len(ended) - refills
        if refills:
            obs = start_episodes(refill)
