from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trialrun.envs.vector import ActiveSubsetAsyncVectorEnv, ActiveSubsetSyncVectorEnv


@pytest.mark.parametrize("cls", [ActiveSubsetSyncVectorEnv, ActiveSubsetAsyncVectorEnv])
def test_idle_sub_envs_are_not_stepped(cls: type) -> None:
    vec = cls([lambda: gym.make("trialrun/SeedProbe-v0")] * 3)
    try:
        obs, _ = vec.reset(seed=[1, 2, 3])
        active = np.array([True, False, True])
        for _ in range(1):
            obs, rewards, term, trunc, _ = vec.step_active(np.zeros(3, dtype=np.int64), active)
        assert obs[:, 1].tolist() == [1.0, 0.0, 1.0]  # the probe's step counter
        assert rewards.tolist() == [1.0, 0.0, 1.0]
        assert not term[1] and not trunc[1]
        obs, _ = vec.reset(seed=[None, 7, None], options={"reset_mask": np.array([False, True, False])})
        assert obs[:, 0].tolist() == [1.0, 7.0, 3.0]
        assert obs[:, 1].tolist() == [1.0, 0.0, 1.0]
    finally:
        vec.close()


def test_a_gl_driver_is_told_from_libegl_alone() -> None:
    from trialrun.envs.vector import gl_driver_loaded

    egl_only = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libEGL.so.1.1.0\n"
    assert gl_driver_loaded(egl_only) is False  # importing MuJoCo with MUJOCO_GL=egl maps this
    for driver in ("dri/swrast_dri.so", "libgallium-24.2.8.so", "libOSMesa.so.8", "libnvidia-glcore.so.550"):
        assert gl_driver_loaded(egl_only + f"7f02-7f03 r-xp 0 08:01 2 /usr/lib/{driver}\n") is True


def test_an_async_job_after_a_render_in_the_same_process_does_not_hang(tmp_path) -> None:
    """A forked copy of a GL context hung the worker's first render (Mesa's
    EGL lock); workers now start from a fork server once this process renders."""
    import subprocess
    import sys

    import yaml

    from helpers import subprocess_env

    config = {
        "name": "gl",
        "seed": 1,
        "jobs": [
            {
                "name": "cheetah",
                "env": "HalfCheetah-v5",
                "policy": "random",
                "episodes": 4,
                "num_envs": 2,
                "vectorization": "async",
                "max_steps": 20,
                "success": "survived",
                "video": {"select": "first", "episodes": 2, "size": [32, 32]},
            }
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    script = tmp_path / "render_then_run.py"
    script.write_text(
        "from pathlib import Path\n\n\n"
        "def main() -> None:\n"
        "    import gymnasium as gym\n\n"
        "    from trialrun import run_evaluation\n"
        "    from trialrun.config import load_run_config\n"
        "    from trialrun.envs.vector import async_start_method\n\n"
        "    before = async_start_method()\n"
        '    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=32, height=32)\n'
        "    env.reset(seed=0)\n"
        "    env.render()  # a GL context in this process, as in a notebook that looked at a frame\n"
        '    print("start methods:", before, async_start_method(), flush=True)\n'
        f'    run_evaluation(load_run_config(Path("{tmp_path / "run.yaml"}")), run_dir=Path("{tmp_path / "run"}"))\n\n\n'
        'if __name__ == "__main__":\n'
        "    main()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=subprocess_env(), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "start methods: None forkserver" in done.stdout
    assert len((tmp_path / "run" / "episodes.jsonl").read_text().splitlines()) == 4
    videos = sorted(p.name for p in (tmp_path / "run" / "videos" / "cheetah").iterdir())
    assert videos == ["ep0-default.mp4", "ep1-default.mp4"]
