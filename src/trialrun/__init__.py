"""trialrun: evaluate control and robot policies across environment variations."""

import os as _os

# MuJoCo picks its GL backend once, at import: default to EGL (headless) before
# anything imports mujoco. A user's explicit MUJOCO_GL wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
