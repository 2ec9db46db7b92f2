"""``language``: the episode's instruction as a factor.

Language-conditioned policies (VLAs) are evaluated on how they handle the
wording of a task: LIBERO-Plus and Isaac Lab Arena rephrase it per episode.
A ``language`` factor draws the instruction per episode (a ``choice``
sampler over phrasings); nothing in the env changes. The rollout hands the
episode's instruction to the policy: a local policy whose ``act`` takes an
``instruction`` receives one per sub-env, a server policy sends it as the
prompt. The record holds it like any categorical factor, so the report's
charts and the analysis show success per phrasing.

Example:
    >>> v = LanguageVariation({})
    >>> v.kind, v.applies_at, v.apply(None, "pick up the red block")
    ('categorical', 'reset', 'pick up the red block')
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym

from trialrun.variations.base import FactorValue, TargetInfo, Variation
from trialrun.variations.registry import register_variation


@register_variation
class LanguageVariation(Variation):
    """The instruction of the episode (the policy gets it; the env is unchanged)."""

    type_name = "language"
    kind: ClassVar[Literal["continuous", "categorical"]] = "categorical"

    def _bind(self, env: gym.Env[Any, Any]) -> None:
        """Nothing to find: the instruction goes to the policy, not the env."""

    def nominal(self) -> FactorValue:
        """No phrasing is nominal: the empty instruction."""
        return ""

    def apply(self, env: gym.Env[Any, Any] | None, value: FactorValue) -> FactorValue:
        if not isinstance(value, str):
            raise self.error(
                f"an instruction must be text, got {value!r} (use a choice sampler over phrasings)"
            )
        return value

    def restore(self, env: gym.Env[Any, Any]) -> None:
        """Nothing was changed."""

    @classmethod
    def targets(cls, env: gym.Env[Any, Any]) -> list[TargetInfo]:
        return [
            TargetInfo("language", "instruction", "", note="the episode's instruction, sent to the policy")
        ]
