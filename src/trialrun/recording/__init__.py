"""Run files: the episode log, manifest and summary (and, later, videos)."""
