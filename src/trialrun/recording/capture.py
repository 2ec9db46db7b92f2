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

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trialrun.errors import ConfigError, RunWriteError, VideoError
from trialrun.recording.writer import VideoWriter
from trialrun.runfiles import video_file_name

if TYPE_CHECKING:
    import gymnasium as gym

    from trialrun.config import VideoConfig

logger = logging.getLogger(__name__)

DEFAULT_CAMERA = "default"
"""The camera that records the env's own ``render()`` image."""

DEFAULT_SIZE = (224, 224)
"""``(width, height)`` of named MuJoCo cameras when the job sets no size."""

_WARNED: set[tuple[str, str]] = set()
"""``(video folder, camera)`` of the one-colour warnings given (one per job
and camera in each rendering process)."""


_SDL_CHOSEN = False
"""Whether this process has chosen its SDL video driver (done once)."""


def headless_sdl() -> None:
    """Choose an SDL video driver that draws frames without a display, once
    per process, before an env's ``render()`` first initialises pygame.

    Classic-control envs, highway-env and others draw ``rgb_array`` frames with
    pygame (pygame-ce). SDL's ``dummy`` video driver draws some of them all
    black (highway-env's road and vehicles: measured with pygame-ce 2.5.8, SDL
    2.32), its ``offscreen`` driver draws them correctly and is as headless
    (and draws CartPole's frames identically). So ``offscreen`` is used when
    SDL has it, in place of an unset ``SDL_VIDEODRIVER`` and also of
    ``dummy``, which headless setups (CI) set only to have no window; any
    other value the user set is kept. Without ``offscreen`` it stays
    ``dummy``, and an all-one-colour video is warned about
    (:class:`EpisodeRecorder`).
    """
    global _SDL_CHOSEN
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    requested = os.environ.get("SDL_VIDEODRIVER") or None
    if _SDL_CHOSEN or requested not in (None, "dummy"):
        return
    _SDL_CHOSEN = True
    try:
        import pygame
    except ImportError:  # the env does not draw with pygame
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        return
    if pygame.display.get_init():
        return  # already drawing with a driver; changing it now would not apply
    os.environ["SDL_VIDEODRIVER"] = "offscreen"
    try:
        pygame.display.init()
    except pygame.error as exc:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        logger.debug("SDL has no offscreen video driver (%s); frames are drawn with 'dummy'", exc)
        return
    if requested == "dummy":
        logger.info(
            "SDL_VIDEODRIVER=dummy draws some pygame envs' frames all black (highway-env); "
            "frames are drawn with SDL's 'offscreen' driver instead, as headless"
        )


def _sdl_video_driver() -> str | None:
    """The SDL video driver pygame draws with in this process (None: pygame
    has not initialised its display)."""
    pygame = sys.modules.get("pygame")
    if pygame is None or not pygame.display.get_init():
        return None
    return str(pygame.display.get_driver())


_NATIVE_PIXELS = 224 * 224
"""Pixel budget of a ``default`` camera video without a set size (that of the
MuJoCo cameras' default 224 x 224)."""


def native_size(height: int, width: int, budget: int = _NATIVE_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of a video of an env's own ``height x width`` images
    when no size is set: the same aspect ratio, about ``budget`` pixels (never
    larger than the images), even sides (H.264 in yuv420p), at least 16.

    Example:
        >>> native_size(400, 600), native_size(150, 600), native_size(160, 160)
        ((274, 182), (448, 112), (160, 160))
    """
    scale = min(1.0, (budget / (height * width)) ** 0.5)
    return (max(16, round(width * scale / 2) * 2), max(16, round(height * scale / 2) * 2))


def _likely_cause(camera: str, colour: tuple[int, ...]) -> str:
    """The likely reason why every checked frame of a camera is one colour."""
    if camera == DEFAULT_CAMERA:
        driver = _sdl_video_driver()
        if driver == "dummy":
            return (
                "SDL's 'dummy' video driver, which draws some pygame envs' frames all black "
                "(highway-env): set SDL_VIDEODRIVER=offscreen"
            )
        return "the env's render() draws nothing in this setup (check its render settings)"
    if not any(colour):
        return "the camera sees nothing lit (inside a body, or every light off: a mujoco.light factor?)"
    return "the camera faces one uniform surface (inside or against a body?)"


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

    def __init__(self, env: gym.Env[Any, Any], cameras: list[str], size: tuple[int, int] | None) -> None:
        from trialrun.envs.metaworld import camera_is_upside_down, fast_render_settings

        self.cameras = list(cameras)
        size = size or DEFAULT_SIZE
        self.size = (int(size[0]), int(size[1]))
        self.env_unwrapped = env.unwrapped
        self._renderer: Any = None
        self._flip: dict[str, bool] = {}
        model = _mujoco_model(env)
        env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        named = [c for c in self.cameras if c != DEFAULT_CAMERA]
        if DEFAULT_CAMERA in self.cameras:
            headless_sdl()
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
        self._folder = ""
        """The job's video folder (``videos/<job>/``), which keys the one-colour warnings."""

    @property
    def recording(self) -> bool:
        return bool(self._writers)

    def begin(self, env: gym.Env[Any, Any], settings: dict[str, Any]) -> None:
        """Start recording the episode that was just reset (first frame now)."""
        self.abort()
        cameras = list(settings["cameras"])
        given = settings.get("size")
        size = (int(given[0]), int(given[1])) if given else None
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
        first = self._source.render(env)
        for camera in cameras:
            name = video_file_name(int(settings["episode"]), camera)
            # Without a set size a video keeps the env's own aspect ratio.
            width, height = size or native_size(*np.shape(first[camera])[:2])
            self._writers[camera] = VideoWriter(directory / name, width, height, float(settings["fps"]))
            self._names[camera] = f"{settings['prefix']}{name}"
        self._folder = str(settings["prefix"])
        self._write(first)

    def capture(self, env: gym.Env[Any, Any]) -> None:
        """Render every camera once and send the frames to the encoder."""
        if not self._writers or self._source is None:
            return
        try:
            frames = self._source.render(env)
        except BaseException:
            self.abort()
            raise
        self._write(frames)

    def _write(self, frames: dict[str, np.ndarray]) -> None:
        try:
            for camera, image in frames.items():
                self._writers[camera].write(image)
        except BaseException:
            self.abort()
            raise

    def _warn_if_one_colour(self, writers: dict[str, VideoWriter]) -> None:
        """Warn, once per job and camera, about a video whose checked frames
        (0, 1, 2, 4, 8 ...) are all one colour, naming the likely cause."""
        for camera, writer in writers.items():
            colour = writer.uniform_colour
            if colour is None or (self._folder, camera) in _WARNED:
                continue
            _WARNED.add((self._folder, camera))
            logger.warning(
                "%s: every frame checked of camera '%s' is one colour %s (%d frames); likely cause: %s",
                writer.path.name,
                camera,
                colour,
                writer.frames,
                _likely_cause(camera, colour),
            )

    def finish(self) -> dict[str, str]:
        """Complete the files (waits for the encoders); ``{camera: name}``."""
        names = dict(self._names)
        by_camera = dict(self._writers)
        writers = list(by_camera.values())
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
        self._warn_if_one_colour(by_camera)
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
