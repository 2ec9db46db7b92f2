"""Clients of VLA policy servers (openpi, Isaac GR00T): observation mapping,
action chunks and latency above a wire transport (see docs/policies.md, "VLA servers")."""
