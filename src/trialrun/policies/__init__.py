"""Policies: the protocol, built-in and scripted policies, and loaders."""

from trialrun.policies.base import Policy, PolicyContext
from trialrun.policies.registry import available_policies, build_policy, register_policy

__all__ = ["Policy", "PolicyContext", "available_policies", "build_policy", "register_policy"]
