"""Variations (what a factor changes), samplers and designs (how values are drawn).

The built-in variations register themselves on first use of the registry;
see :mod:`trialrun.variations.registry` to add your own.
"""

from trialrun.errors import VariationError
from trialrun.variations.base import TargetInfo, Variation
from trialrun.variations.registry import available_variations, register_variation

__all__ = ["TargetInfo", "Variation", "VariationError", "available_variations", "register_variation"]
