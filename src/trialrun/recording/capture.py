"""Rendering and recording episodes inside a sub-env.

- :class:`FrameSource` renders the cameras of one env: named MuJoCo cameras
  through one ``mujoco.Renderer`` per sub-env (reused across episodes, with
  the fast software-rendering settings, Meta-World's upside-down corner
  cameras turned upright), and ``default`` through the env's own
  ``render()`` (classic-control envs, built with ``render_mode="rgb_array"``).
- :class:`EpisodeRecorder` lives inside the sub-env: it is the episode
  capture that whoever builds the sub-env hands to the
  :class:`~trialrun.envs.slot_wrapper.SlotWrapper` (``recorder_factory=EpisodeRecorder``;
  a module-level class, so ``async`` vector-env workers unpickle it), so
  recording works the same in this process, in ``async`` vector-env workers
  and in executor workers. The first frame is the post-reset frame and the
  last is the terminal frame (``length + 1`` frames); the finished files'
  names come back in the terminal step's ``info["trialrun_video"]``
  (:data:`trialrun.envs.info.VIDEO_KEY`).
- :func:`camera_names` and :func:`check_video` tell which cameras an env has
  (preflight).

Each frame goes to a :class:`~trialrun.recording.writer.VideoWriter`; which
episodes are recorded and which videos are kept is
:class:`~trialrun.recording.selection.VideoSelection`'s decision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trialrun.errors import ConfigError, RunWriteError, VideoError
from trialrun.recording.writer import VideoWriter
from trialrun.runfiles import video_file_name

if TYPE_CHECKING:
    import gymnasium as gym

    from trialrun.config import VideoConfig

DEFAULT_CAMERA = "default"
"""The camera that records the env's own ``render()`` image."""


def _quiet_headless_pygame() -> None:
    """Classic-control envs draw ``rgb_array`` frames with pygame, which greets
    stdout on import and, without a display, makes SDL complain: frames are
    drawn off-screen, so SDL's dummy drivers are the right ones."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def _mujoco_model(env: gym.Env[Any, Any]) -> Any:
    """The env's ``mujoco.MjModel`` (``env.unwrapped.model``), or None."""
    model = getattr(env.unwrapped, "model", None)
    if model is None or type(model).__name__ != "MjModel":
        return None
    return model


def camera_names(env: gym.Env[Any, Any]) -> list[str]:
    """The cameras a job can record for ``env``: ``default`` when the env
    renders ``rgb_array`` images, plus every named MuJoCo camera."""
    names = [DEFAULT_CAMERA] if "rgb_array" in (env.metadata.get("render_modes") or []) else []
    model = _mujoco_model(env)
    if model is not None:
        import mujoco

        for index in range(model.ncam):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, index)
            if name:
                names.append(name)
    return names


def check_video(env: gym.Env[Any, Any], config: VideoConfig, field: str) -> None:
    """Check a job's video cameras against one built env (for preflight, so a
    typo in a camera name exits 2 before anything runs).

    Raises:
        ConfigError: naming ``field`` and listing the env's cameras.
    """
    available = camera_names(env)
    for camera in config.cameras:
        if camera not in available:
            listed = ", ".join(available) or "none (the env cannot render rgb_array images)"
            raise ConfigError(f"unknown camera '{camera}'; this env's cameras: {listed}", field=field)


class FrameSource:
    """Renders the configured cameras of one env, one image per camera.

    Named cameras use one ``mujoco.Renderer(model, height, width)`` on
    ``env.unwrapped.model/data`` (not gymnasium's render path, so several
    cameras work), with the fast settings of
    :func:`trialrun.envs.metaworld.fast_render_settings` and shadows and
    reflections off. ``default`` is the env's own ``render()`` image; the
    writer scales it to ``size``.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("CartPole-v1", render_mode="rgb_array"); _ = env.reset(seed=0)
        >>> source = FrameSource(env, ["default"], (64, 48))
        >>> source.render(env)["default"].shape
        (400, 600, 3)
        >>> source.close(); env.close()
    """

    def __init__(self, env: gym.Env[Any, Any], cameras: list[str], size: tuple[int, int]) -> None:
        from trialrun.envs.metaworld import camera_is_upside_down, fast_render_settings

        self.cameras = list(cameras)
        self.size = (int(size[0]), int(size[1]))
        self.env_unwrapped = env.unwrapped
        self._renderer: Any = None
        self._flip: dict[str, bool] = {}
        model = _mujoco_model(env)
        env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        named = [c for c in self.cameras if c != DEFAULT_CAMERA]
        if DEFAULT_CAMERA in self.cameras:
            _quiet_headless_pygame()
            if env.render_mode != "rgb_array":
                raise VideoError(
                    f"camera 'default' needs env '{env_name}' to render rgb_array images "
                    f"(its render modes: {env.metadata.get('render_modes') or 'none'})"
                )
        if named:
            if model is None:
                raise VideoError(
                    f"camera '{named[0]}': env '{env_name}' has no MuJoCo model, so it has no named "
                    "cameras; record its own render() image with cameras: [default]"
                )
            import mujoco

            available = camera_names(env)
            for camera in named:
                if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
                    raise VideoError(
                        f"env '{env_name}' has no camera '{camera}'; cameras: {', '.join(available)}"
                    )
                self._flip[camera] = camera_is_upside_down(env, camera)
            width, height = self.size
            fast_render_settings(model)
            model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
            model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
            self._renderer = mujoco.Renderer(model, height=height, width=width)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        elif model is not None:
            fast_render_settings(model)  # before gymnasium's renderer is made, at the first render()

    def render(self, env: gym.Env[Any, Any]) -> dict[str, np.ndarray]:
        """One new image per camera (the caller may keep them)."""
        import gymnasium as gym

        frames: dict[str, np.ndarray] = {}
        for camera in self.cameras:
            if camera == DEFAULT_CAMERA:
                try:
                    image = env.render()
                except (ImportError, gym.error.DependencyNotInstalled) as exc:  # no pygame
                    raise VideoError(
                        f"camera 'default' cannot render: {exc} (classic-control videos need pygame: "
                        "pip install 'trialrun[video]')"
                    ) from None
                if image is None:
                    raise VideoError("env.render() returned None for camera 'default'")
                frames[camera] = np.asarray(image)
                continue
            self._renderer.update_scene(env.unwrapped.data, camera=camera)  # type: ignore[attr-defined]
            image = self._renderer.render()
            # Meta-World's corner cameras look at the table upside down: a 180°
            # turn (not a mirror) gives the upright view from the same place.
            frames[camera] = image[::-1, ::-1] if self._flip[camera] else image
        return frames

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class EpisodeRecorder:
    """Records the episodes a sub-env is told to record (lives in the sub-env).

    It is an :class:`~trialrun.envs.slot_wrapper.EpisodeCapture`: the
    :class:`~trialrun.envs.slot_wrapper.SlotWrapper` makes one (the class is
    its ``recorder_factory``) the first time an episode is to be recorded.

    ``begin`` is called right after a reset with the episode's video settings
    (from
    :meth:`~trialrun.recording.selection.VideoSelection.settings`) and captures the post-reset frame;
    ``capture`` is called after every step; ``finish`` after the terminal step
    completes the files and returns ``{camera: name}``. The renderer is kept
    across episodes (rebuilt only when the env, cameras or size change).

    Example:
        >>> import gymnasium as gym, tempfile
        >>> env = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=3)
        >>> rec = EpisodeRecorder(); _ = env.reset(seed=0)
        >>> rec.begin(env, {"dir": tempfile.mkdtemp(), "prefix": "videos/j/", "episode": 4,
        ...                 "cameras": ["default"], "size": [32, 32], "fps": 30})
        >>> for _ in range(3):
        ...     _ = env.step(0); rec.capture(env)
        >>> rec.finish()
        {'default': 'videos/j/ep4-default.mp4'}
        >>> rec.close(); env.close()
    """

    def __init__(self) -> None:
        self._source: FrameSource | None = None
        self._source_key: tuple[Any, ...] = ()
        self._writers: dict[str, VideoWriter] = {}
        self._names: dict[str, str] = {}

    @property
    def recording(self) -> bool:
        return bool(self._writers)

    def begin(self, env: gym.Env[Any, Any], settings: dict[str, Any]) -> None:
        """Start recording the episode that was just reset (first frame now)."""
        self.abort()
        cameras = list(settings["cameras"])
        size = (int(settings["size"][0]), int(settings["size"][1]))
        key = (id(env.unwrapped), tuple(cameras), size)
        if self._source is None or self._source_key != key:
            if self._source is not None:
                self._source.close()
                self._source = None
            self._source = FrameSource(env, cameras, size)
            self._source_key = key
        directory = Path(settings["dir"])
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunWriteError(f"cannot create the video folder {directory}: {exc}") from exc
        for camera in cameras:
            name = video_file_name(int(settings["episode"]), camera)
            self._writers[camera] = VideoWriter(directory / name, size[0], size[1], float(settings["fps"]))
            self._names[camera] = f"{settings['prefix']}{name}"
        self.capture(env)

    def capture(self, env: gym.Env[Any, Any]) -> None:
        """Render every camera once and send the frames to the encoder."""
        if not self._writers or self._source is None:
            return
        try:
            for camera, image in self._source.render(env).items():
                self._writers[camera].write(image)
        except BaseException:
            self.abort()
            raise

    def finish(self) -> dict[str, str]:
        """Complete the files (waits for the encoders); ``{camera: name}``."""
        names = dict(self._names)
        writers = list(self._writers.values())
        self._writers.clear()
        self._names.clear()
        completed: list[Path] = []
        try:
            for writer in writers:
                completed.append(writer.close())
        except BaseException:
            for writer in writers:
                writer.abort()
            for path in completed:
                path.unlink(missing_ok=True)
            raise
        return names

    def abort(self) -> None:
        """Drop the episode being recorded (its partial files are deleted)."""
        for writer in self._writers.values():
            writer.abort()
        self._writers.clear()
        self._names.clear()

    def close(self) -> None:
        self.abort()
        if self._source is not None:
            self._source.close()
            self._source = None
