"""Per-episode videos: rendered inside each sub-env, encoded in the background.

One mp4 per (job, episode, camera), ``videos/<job>/ep<k>-<camera>.mp4`` in the
run directory: H.264, yuv420p, ``movflags=faststart`` (the index comes first,
so a browser starts playing before the whole file has arrived), written with
PyAV. The pieces and why they are split this way:

- :class:`VideoWriter` encodes one file. Frames go through a bounded ring of
  shared memory to an encoder process (:mod:`trialrun.recording.encoder`, one
  per rendering process), so encoding runs on another core while the
  simulation goes on, and at most the ring's 8 MB of frames is in flight,
  whatever the episode length. The file is written under a hidden ``.part`` name and renamed when
  complete, so a killed run never leaves a half-written video under a final
  name (and the encoder deletes its partial files when the renderer dies).
- :class:`FrameSource` renders the cameras of one env: named MuJoCo cameras
  through one ``mujoco.Renderer`` per sub-env (reused across episodes, with
  the fast software-rendering settings, Meta-World's upside-down corner
  cameras turned upright), and ``default`` through the env's own
  ``render()`` (classic-control envs, built with ``render_mode="rgb_array"``).
- :class:`EpisodeRecorder` lives inside the sub-env (the
  :class:`~trialrun.envs.slot_wrapper.SlotWrapper`), so recording works the
  same in this process, in ``async`` vector-env workers and in executor
  workers. The first frame is the post-reset frame and the last is the
  terminal frame (``length + 1`` frames); the finished files' names come back
  in the terminal step's ``info["trialrun_video"]``.
- :class:`VideoSelection` runs where the rollout loop runs and knows the
  outcomes: it tells each sub-env whether to record an episode and, for
  ``select: failures | successes``, keeps at most ``episodes`` videos per job
  (claims are files, so the quota holds across worker processes) and deletes
  the rest as soon as the outcome is known.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ep0-default.mp4"
    >>> writer = VideoWriter(path, width=32, height=32, fps=10)
    >>> for shade in range(0, 250, 50):
    ...     writer.write(np.full((32, 32, 3), shade, dtype=np.uint8))
    >>> writer.close() == path
    True
    >>> info = probe_video(path)
    >>> info.frames, info.codec, info.pix_fmt, info.faststart
    (5, 'h264', 'yuv420p', True)
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trialrun.errors import ConfigError, EncoderError, RunWriteError, VideoError
from trialrun.recording.encoder import encoder

if TYPE_CHECKING:
    import gymnasium as gym

    from trialrun.config import VideoConfig
    from trialrun.plan import Slot

logger = logging.getLogger(__name__)


VIDEO_DIR = "videos"
REPLAY_DIR = "replays"
DEFAULT_CAMERA = "default"
INFO_KEY = "trialrun_video"
"""Terminal-step info key holding the finished files (JSON ``{camera: name}``)."""

_FILE_PATTERN = re.compile(r"^\.?ep(\d+)-.+\.mp4(\.part)?$")


def video_file_name(episode: int, camera: str) -> str:
    """``ep<k>-<camera>.mp4``, the file name of one episode's video."""
    return f"ep{episode}-{camera}.mp4"


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


# --------------------------------------------------------------------------- writer


class VideoWriter:
    """Encodes frames to one H.264 mp4 in this process's encoder process.

    :meth:`write` sends an RGB ``uint8`` image (``H x W x 3``; RGBA and
    grayscale are converted, other sizes are scaled to ``width x height``) to
    the encoder process (:mod:`trialrun.recording.encoder`) and returns once
    the frame is in the encoder's ring: encoding runs on another core, and at
    most the ring's 8 MB of frames is in flight (a renderer faster than the
    encoder waits). :meth:`close` waits for the encoder to finish the file, which it
    writes under a hidden ``.part`` name and renames to ``path`` when complete;
    :meth:`abort` discards it. Encoder failures (disk full...) raise
    :class:`~trialrun.runfiles.RunWriteError`.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> w = VideoWriter(pathlib.Path(tempfile.mkdtemp()) / "a.mp4", 16, 16, 30)
        >>> w.write(np.zeros((16, 16, 3), np.uint8)); w.close().name
        'a.mp4'
    """

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 in yuv420p needs even sides, got {width}x{height}")
        self.path = Path(path)
        self.partial = _partial_path(self.path)
        self.width = width
        self.height = height
        self.rate = Fraction(fps).limit_denominator(100_000)
        self.frames = 0
        self._finished = False
        self._encoder = encoder()
        try:
            self._id = self._encoder.open(self.path, self.partial, width, height, self.rate)
        except EncoderError as exc:
            raise RunWriteError(f"cannot write video {self.path}: {exc}") from None

    def write(self, image: np.ndarray) -> None:
        """Send one frame (blocks only while the encoder's ring is full)."""
        if self._finished:
            raise RuntimeError(f"{self.path}: write after close")
        pixels = _as_rgb24(image)
        try:
            self._encoder.frame(self._id, pixels)
        except EncoderError as exc:
            self._finished = True
            raise RunWriteError(f"cannot write video {self.path}: {exc}") from None
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and give it its final name; returns ``path``."""
        if self._finished:
            return self.path
        self._finished = True
        try:
            error = self._encoder.close(self._id)
        except EncoderError as exc:
            error = f"cannot write video {self.path}: {exc}"
        if error is not None:
            self.partial.unlink(missing_ok=True)
            raise RunWriteError(error)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file (nothing keeps its name)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._encoder.abort(self._id)
        except EncoderError:
            logger.debug("the encoder went away while aborting %s", self.path, exc_info=True)
        self.partial.unlink(missing_ok=True)


def _as_rgb24(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 images, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"video frames must be H x W x 3 (RGB) images, got shape {array.shape}")
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------- rendering


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


# --------------------------------------------------------------------------- sub-env side


class EpisodeRecorder:
    """Records the episodes a sub-env is told to record (lives in the sub-env).

    ``begin`` is called right after a reset with the episode's video settings
    (from :meth:`VideoSelection.settings`) and captures the post-reset frame;
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

    def begin(self, env: gym.Env[Any, Any], spec: dict[str, Any]) -> None:
        """Start recording the episode that was just reset (first frame now)."""
        self.abort()
        cameras = list(spec["cameras"])
        size = (int(spec["size"][0]), int(spec["size"][1]))
        key = (id(env.unwrapped), tuple(cameras), size)
        if self._source is None or self._source_key != key:
            if self._source is not None:
                self._source.close()
                self._source = None
            self._source = FrameSource(env, cameras, size)
            self._source_key = key
        directory = Path(spec["dir"])
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunWriteError(f"cannot create the video folder {directory}: {exc}") from exc
        for camera in cameras:
            name = video_file_name(int(spec["episode"]), camera)
            self._writers[camera] = VideoWriter(directory / name, size[0], size[1], float(spec["fps"]))
            self._names[camera] = f"{spec['prefix']}{name}"
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


def reported_videos(infos: dict[str, Any], index: int) -> dict[str, str]:
    """The files sub-env ``index`` reported in a vector step's infos."""
    texts = infos.get(INFO_KEY)
    if texts is None:
        return {}
    present = infos.get(f"_{INFO_KEY}")
    if present is not None and not present[index]:
        return {}
    value = texts[index]
    if not isinstance(value, str) or not value:
        return {}
    files: dict[str, str] = json.loads(value)
    return files


# --------------------------------------------------------------------------- rollout side


class VideoSelection:
    """Decides which episodes of a job are recorded and which videos are kept.

    ``directory`` is where the files go (``<run>/videos/<job>``); names in
    records are relative to ``root`` (the run directory) when the directory is
    inside it. ``select: first`` records slot ``k`` when ``k < episodes`` (a
    pure function of the slot, whatever ``num_envs``); ``all`` records every
    slot; ``failures``/``successes`` record every episode while fewer than
    ``episodes`` videos of that kind are kept, and delete a finished video
    that is of the other kind or over the quota. Quota places are claimed as
    files in ``<directory>/.claims``, so shards in other processes share them.

    Example:
        >>> import tempfile, pathlib
        >>> from trialrun.config import VideoConfig
        >>> from trialrun.plan import slot_for
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> sel = VideoSelection(VideoConfig(episodes=2), run / "videos" / "j", run)
        >>> [sel.settings(slot_for(0, "j", k)) is not None for k in range(3)]
        [True, True, False]
    """

    def __init__(self, config: VideoConfig, directory: Path, root: Path) -> None:
        self.config = config
        self.directory = Path(directory).absolute()
        self.root = Path(root).absolute()
        try:
            relative = self.directory.relative_to(self.root).as_posix()
            self.prefix = f"{relative}/"
        except ValueError:
            self.prefix = f"{self.directory.as_posix()}/"
        self.claims = self.directory / ".claims"

    @classmethod
    def for_job(cls, config: VideoConfig, job: str, run_dir: Path) -> VideoSelection:
        """The selection writing to ``<run_dir>/videos/<job>``."""
        return cls(config, Path(run_dir) / VIDEO_DIR / job, run_dir)

    @property
    def quota(self) -> bool:
        return self.config.select in ("failures", "successes")

    def prepare(self, episodes: Iterable[int]) -> None:
        """Remove what a killed run may have left for these (unrecorded)
        episodes: partial and complete files, and quota claims. Call it
        before running them, with the episodes the shard will run."""
        wanted = {int(k) for k in episodes}
        if not wanted or not self.directory.is_dir():
            return
        removed = 0
        for entry in os.scandir(self.directory):
            match = _FILE_PATTERN.match(entry.name)
            if match and int(match.group(1)) in wanted:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        if self.claims.is_dir():
            for entry in os.scandir(self.claims):
                if entry.name.startswith("."):
                    continue
                if _read_claim(Path(entry.path)) in wanted:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        if removed:
            logger.info(
                "%s: removed %d leftover video file(s) of episodes to re-run", self.directory, removed
            )

    def settings(self, slot: Slot) -> dict[str, Any] | None:
        """What the sub-env needs to record ``slot`` (None: do not record)."""
        cfg = self.config
        if cfg.select == "first" and slot.episode >= cfg.episodes:
            return None
        if self.quota and self._claimed() >= cfg.episodes:
            return None
        return {
            "dir": str(self.directory),
            "prefix": self.prefix,
            "episode": slot.episode,
            "cameras": list(cfg.cameras),
            "size": [int(cfg.size[0]), int(cfg.size[1])],
            "fps": float(cfg.fps),
        }

    def settle(self, slot: Slot, outcome: dict[str, Any], files: dict[str, str]) -> dict[str, str]:
        """The videos the record names: ``files``, or ``{}`` after deleting
        them when the episode's outcome is not wanted or the quota is full."""
        if not files or not self.quota:
            return dict(files)
        success = bool(outcome.get("success"))
        wanted = success if self.config.select == "successes" else not success
        if wanted and self._claim(slot.episode):
            return dict(files)
        for name in files.values():
            (self.root / name).unlink(missing_ok=True)
        return {}

    def _claimed(self) -> int:
        if not self.claims.is_dir():
            return 0
        places = {str(i) for i in range(self.config.episodes)}
        return sum(1 for name in os.listdir(self.claims) if name in places)

    def _claim(self, episode: int) -> bool:
        """Take a free quota place for ``episode`` (atomic across processes)."""
        try:
            self.claims.mkdir(parents=True, exist_ok=True)
            tmp = self.claims / f".{os.getpid()}-{threading.get_ident()}-{episode}"
            tmp.write_text(str(episode), encoding="utf-8")
        except OSError as exc:
            raise RunWriteError(f"cannot write in {self.claims}: {exc}") from exc
        try:
            for place in range(self.config.episodes):
                target = self.claims / str(place)
                if _read_claim(target) == episode:
                    return True
                try:
                    os.link(tmp, target)
                    return True
                except FileExistsError:
                    continue
                except OSError:  # no hard links on this filesystem: exclusive create
                    try:
                        with open(target, "x", encoding="utf-8") as f:
                            f.write(str(episode))
                        return True
                    except FileExistsError:
                        continue
            return False
        finally:
            tmp.unlink(missing_ok=True)


def _read_claim(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads back from an mp4."""

    frames: int
    width: int
    height: int
    codec: str
    pix_fmt: str
    fps: float
    faststart: bool


def probe_video(path: Path, decode: bool = True) -> VideoInfo:
    """Open an mp4 with PyAV and report its frames, size, codec, pixel format,
    frame rate and whether the ``moov`` index precedes the media data
    (``faststart``). ``decode`` counts frames by decoding them all (exact);
    otherwise the container's frame count is used.

    Example:
        >>> # probe_video(Path("runs/r/videos/j/ep0-default.mp4")).frames
    """
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream)) if decode else int(stream.frames)
        info = VideoInfo(
            frames=frames,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            codec=str(stream.codec_context.name),
            pix_fmt=str(stream.codec_context.pix_fmt),
            fps=float(stream.average_rate or 0.0),
            faststart=_moov_before_mdat(path),
        )
    return info


def _moov_before_mdat(path: Path) -> bool:
    """Walk the top-level mp4 boxes: is ``moov`` before ``mdat``?"""
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            header = f.read(16)
            size = int.from_bytes(header[0:4], "big")
            kind = header[4:8]
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if size < 8:
                return False
            offset += size
    return False
