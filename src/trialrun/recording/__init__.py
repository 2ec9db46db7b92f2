"""Run files: the episode log, manifest, summary and per-episode videos."""
