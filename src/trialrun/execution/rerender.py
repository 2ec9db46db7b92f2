"""Re-simulating a finished episode from its actions, with its cameras on.

``select: failures`` (or ``successes``) keeps videos of episodes whose outcome
is known only when they end. Filming every episode in case it is one of them
costs a rendered and encoded video per episode; instead the rollout keeps each
episode's actions (:class:`~trialrun.policies.playback.ActionLog`), and when a
wanted episode ends, :class:`Rerender` runs it again on a fresh sub-env built
like the job's: reset with the slot's seed and factors, stepped with the
recorded actions, filmed. The policy is not called again, so the cost is the
env's steps and the frames of the kept episodes only, and a stochastic or
remote policy changes nothing.

The re-simulated outcome must equal the recorded one (every outcome term, as
``trialrun replay`` compares them). When it does not, the env does not follow
its seed (or its factors, or its actions) exactly: the video would show
another episode, so it is deleted, and the caller films the rest of the job
live (:class:`~trialrun.recording.selection.VideoSelection`).

Example:
    >>> import gymnasium as gym
    >>> from trialrun.plan import slot_for
    >>> rerender = Rerender(lambda: lambda: gym.make("CartPole-v1"), env_id="CartPole-v1")
    >>> slot = slot_for(0, "j", 0)
    >>> first = rerender(slot, [1] * 500, {}, None)  # always push right: the pole falls
    >>> first.outcome["length"], first.outcome["terminated"]
    (8, True)
    >>> rerender(slot, [1] * 8, first.outcome, None).matches
    True
    >>> rerender(slot, [0] * 8, first.outcome, None).differences
    ['length']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trialrun.boundary import GuardConfig
from trialrun.outcomes import OutcomeTerm, SuccessRule, differing_keys
from trialrun.plan import Slot
from trialrun.policies.base import Policy, PolicyContext
from trialrun.policies.playback import ActionPlayback, ActionRow, PlaybackExhausted
from trialrun.rollout import EnvFn, EpisodeResult, rollout


@dataclass(frozen=True)
class Rerendered:
    """What a re-simulation gave: its videos, and whether it matched the record."""

    files: dict[str, str]
    outcome: dict[str, Any]
    differences: list[str]
    """Outcome terms that differ from the record (``length`` first when the
    env ran past the recorded actions)."""

    @property
    def matches(self) -> bool:
        return not self.differences


class _FilmOnce:
    """The video plan of a re-simulation: film its one episode, keep the files."""

    def __init__(self, settings: dict[str, Any] | None) -> None:
        self._settings = settings

    def settings(self, slot: Slot) -> dict[str, Any] | None:
        return self._settings

    def keeps_actions(self) -> bool:
        return False

    def settle(
        self,
        slot: Slot,
        outcome: dict[str, Any],
        files: dict[str, str],
        actions: Sequence[ActionRow] | None = None,
    ) -> dict[str, str]:
        return files


@dataclass
class Rerender:
    """Re-simulates episodes of one env group of a job (see the module docstring).

    ``env_fns`` makes a builder of a sub-env exactly like the job's rollout
    sub-envs (the same kwargs, factor hooks and recorder factory; a fresh
    builder per episode, as each builds its own env and a factor hook binds to
    the env it first resets); ``terms`` makes fresh custom
    outcome terms, so the re-simulated outcome has the recorded one's keys.
    Only ``episode_timeout`` of ``limits`` applies: the actions were checked
    (and clipped, with ``on_out_of_bounds: clip``) before the env got them,
    and no policy runs.
    """

    env_fns: Callable[[], EnvFn]
    env_id: str = ""
    success: SuccessRule = field(default_factory=SuccessRule)
    terms: Callable[[], list[OutcomeTerm]] = list
    limits: GuardConfig = field(default_factory=GuardConfig)
    job: str = ""
    records: Literal["video", "trajectory"] = "video"
    """What the re-simulation records with the settings it is given."""

    def __call__(
        self,
        slot: Slot,
        actions: Sequence[ActionRow],
        recorded: dict[str, Any],
        settings: dict[str, Any] | None,
    ) -> Rerendered:
        """Run ``slot`` with ``actions``, filming with the recorder ``settings``
        (None: no video), and compare its outcome with ``recorded``."""
        playback = ActionPlayback(actions)
        results: list[EpisodeResult] = []

        def play(context: PolicyContext) -> Policy:
            return playback

        limits = GuardConfig(
            act_timeout=None, episode_timeout=self.limits.episode_timeout, check_actions=False
        )
        try:
            rollout(
                [slot],
                [self.env_fns()],
                play,
                results.append,
                env_id=self.env_id,
                success=self.success,
                terms=self.terms(),
                video=_FilmOnce(settings) if self.records == "video" else None,
                trajectories=_FilmOnce(settings) if self.records == "trajectory" else None,
                limits=limits,
                job=self.job,
                warn=False,
            )
        except PlaybackExhausted:
            # The env did not end where the recorded episode did; its partial
            # video was never finished, so no file is named or left complete.
            return Rerendered(files={}, outcome={}, differences=["length"])
        (result,) = results
        if self.records == "video":
            files = result.video
        else:
            files = {"trajectory": result.trajectory} if result.trajectory else {}
        return Rerendered(
            files=files, outcome=result.outcome, differences=differing_keys(recorded, result.outcome)
        )
