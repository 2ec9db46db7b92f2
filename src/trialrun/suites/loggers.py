"""Loggers: where evaluator results go besides their run directories.

Every logger receives each :class:`~trialrun.suites.result.EvalResult` with
the trainer's step and writes the scalars ``<evaluator>/<metric>`` and
``<evaluator>/<job>/<metric>`` (see :meth:`EvalResult.metrics`) and, when the
run recorded videos, the videos under ``<evaluator>/video``:

- ``jsonl``: one JSON object per evaluator run in ``<output_dir>/metrics.jsonl``
  (no dependency).
- ``tensorboard``: event files in ``<output_dir>/tensorboard`` via tensorboardX
  (or ``torch.utils.tensorboard``); videos become animated GIFs (TensorBoard's
  Images tab plays them).
- ``wandb``: the trainer's active W&B run if there is one, else a new run with
  its files under ``<output_dir>/wandb`` (``WANDB_MODE=offline`` works);
  videos are ``wandb.Video`` objects. Metrics are plotted against
  ``trialrun/global_step``, so they never fight the trainer's own step counter.
- ``mlflow``: the trainer's active MLflow run if there is one, else a run in a
  local store under ``output_dir`` (``<output_dir>/mlflow.db``, a SQLite
  tracking database, with artifacts in ``<output_dir>/mlartifacts``; MLflow 3
  no longer writes the old ``mlruns`` file store by default); videos are
  artifacts.

The trackers are optional (``pip install 'trialrun[trackers]'``); asking for
one that is not installed is a :class:`~trialrun.errors.ConfigError` naming
the extra, raised when the manager is created rather than at the first
evaluation.

Example:
    >>> import json, tempfile, pathlib
    >>> from trialrun.suites.result import EvalResult
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> log = build_logger(JsonlLoggerConfig(), out)
    >>> log.log_result(EvalResult("nominal", "completed", 2.0, success_rate=0.5), step=100)
    >>> log.close()
    >>> json.loads((out / "metrics.jsonl").read_text())["metrics"]["nominal/success_rate"]
    0.5
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
import re
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trialrun.errors import ConfigError
from trialrun.suites.config import (
    JsonlLoggerConfig,
    MlflowLoggerConfig,
    TensorBoardLoggerConfig,
    WandbLoggerConfig,
)
from trialrun.suites.result import EvalResult

logger = logging.getLogger(__name__)

TRACKERS_HINT = "pip install 'trialrun[trackers]'"


class EvalLogger(ABC):
    """Receives evaluator results. Subclasses implement the three primitives."""

    def log_result(self, result: EvalResult, step: int) -> None:
        """Log ``result``'s metrics and videos at ``step``."""
        metrics = result.metrics()
        if metrics:
            self.log_metrics(metrics, step)
        if result.videos:
            self.log_videos(f"{result.evaluator}/video", result.videos, step)
        self.flush()

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log scalars at ``step``."""

    @abstractmethod
    def log_videos(self, key: str, videos: list[Path], step: int) -> None:
        """Log mp4 files under ``key`` at ``step``."""

    def flush(self) -> None:  # noqa: B027 (optional hook)
        """Make what was logged durable (default: nothing to do)."""

    @abstractmethod
    def close(self) -> None:
        """Finish (a run the logger started is ended; the trainer's is left open)."""


# --------------------------------------------------------------------------- jsonl


class JsonlLogger(EvalLogger):
    """One line per evaluator run: ``{"time", "step", "evaluator", "status",
    "metrics", "videos", "run_dir", "error", ...}``, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: io.TextIOWrapper | None = None

    def _open(self) -> io.TextIOWrapper:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across calls)
        return self._file

    def log_result(self, result: EvalResult, step: int) -> None:
        line = {"time": _now(), "step": step, **result.to_dict()}
        f = self._open()
        f.write(json.dumps(line, allow_nan=False, default=str) + "\n")
        f.flush()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        f = self._open()
        f.write(json.dumps({"time": _now(), "step": step, "metrics": metrics}) + "\n")
        f.flush()

    def log_videos(self, key: str, videos: list[Path], step: int) -> None:
        f = self._open()
        f.write(json.dumps({"time": _now(), "step": step, key: [str(v) for v in videos]}) + "\n")
        f.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- tensorboard


def mp4_to_gif(path: Path, max_frames: int = 64, max_width: int = 160) -> tuple[bytes, int, int]:
    """An animated GIF of an mp4 (every k-th frame, at most ``max_frames``,
    scaled to at most ``max_width`` pixels wide): ``(gif bytes, height, width)``.

    TensorBoard plays GIFs in its Images tab; writing them this way needs no
    moviepy (which tensorboardX's ``add_video`` would).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames or 0
        every = max(1, math.ceil(total / max_frames)) if total else 1
        rate = float(stream.average_rate or 30)
        images = []
        for index, frame in enumerate(container.decode(stream)):
            if index % every:
                continue
            image = frame.to_image()
            if image.width > max_width:
                height = max(1, round(image.height * max_width / image.width))
                image = image.resize((max_width, height))
            images.append(image)
            if len(images) >= max_frames:
                break
    if not images:
        raise ValueError(f"{path}: no video frames")
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 * every / rate)),
        loop=0,
    )
    return buffer.getvalue(), images[0].height, images[0].width


class TensorBoardLogger(EvalLogger):
    """Scalars with ``add_scalar``; each video as an animated-GIF image summary
    tagged ``<evaluator>/video/<job>/<file name>``."""

    def __init__(self, log_dir: Path, backend: str = "auto") -> None:
        self.log_dir = Path(log_dir)
        self.backend = _tensorboard_backend(backend)
        self._writer: Any = None

    def _get(self) -> Any:
        if self._writer is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self.backend == "tensorboardX":
                from tensorboardX import SummaryWriter
            else:
                from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        writer = self._get()
        for key, value in metrics.items():
            writer.add_scalar(key, value, global_step=step)

    def log_videos(self, key: str, videos: list[Path], step: int) -> None:
        writer = self._get()
        if self.backend == "tensorboardX":
            from tensorboardX.proto.summary_pb2 import Summary
        else:
            from tensorboard.compat.proto.summary_pb2 import Summary
        for path in videos:
            try:
                gif, height, width = mp4_to_gif(path)
            except Exception as exc:
                logger.warning("tensorboard: could not turn %s into a GIF: %s", path, exc)
                continue
            tag = f"{key}/{path.parent.name}/{path.stem}"
            image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
            writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tensorboard_backend(backend: str) -> str:
    has_x = importlib.util.find_spec("tensorboardX") is not None
    has_torch = (
        importlib.util.find_spec("torch") is not None and importlib.util.find_spec("tensorboard") is not None
    )
    if backend == "tensorboardX" and not has_x:
        raise ConfigError(
            f"logger 'tensorboard' with backend tensorboardX needs tensorboardX: {TRACKERS_HINT}"
        )
    if backend == "torch" and not has_torch:
        raise ConfigError(
            f"logger 'tensorboard' with backend torch needs torch and tensorboard: {TRACKERS_HINT}"
        )
    if backend == "auto":
        if has_x:
            return "tensorboardX"
        if has_torch:
            return "torch"
        raise ConfigError(
            f"logger 'tensorboard' needs tensorboardX (or torch with tensorboard): {TRACKERS_HINT}"
        )
    return backend


# --------------------------------------------------------------------------- wandb

STEP_METRIC = "trialrun/global_step"


class WandbLogger(EvalLogger):
    """Logs into ``wandb.run`` when the trainer started one (and leaves it open),
    else starts a run whose files go under ``<output_dir>/wandb``."""

    def __init__(self, config: WandbLoggerConfig, output_dir: Path) -> None:
        self.config = config
        self.dir = Path(config.dir) if config.dir else Path(output_dir)
        self._run: Any = None
        self._owns_run = False
        self._defined: set[str] = set()

    def _get(self) -> Any:
        if self._run is None:
            import wandb

            if wandb.run is not None:
                self._run = wandb.run
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._run = wandb.init(
                    project=self.config.project,
                    entity=self.config.entity,
                    name=self.config.name,
                    group=self.config.group,
                    tags=self.config.tags or None,
                    mode=self.config.mode,
                    dir=str(self.dir),
                    job_type="eval",
                )
                self._owns_run = True
            self._run.define_metric(STEP_METRIC)
        return self._run

    def _define(self, keys: list[str]) -> None:
        run = self._get()
        for key in keys:
            prefix = key.split("/", 1)[0]
            if prefix not in self._defined:
                run.define_metric(f"{prefix}/*", step_metric=STEP_METRIC)
                self._defined.add(prefix)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._define(list(metrics))
        self._get().log({**metrics, STEP_METRIC: step})

    def log_videos(self, key: str, videos: list[Path], step: int) -> None:
        import wandb

        self._define([key])
        items = [
            wandb.Video(str(path), caption=f"{path.parent.name}/{path.name}", format="mp4") for path in videos
        ]
        self._get().log({key: items, STEP_METRIC: step})

    def close(self) -> None:
        if self._run is not None and self._owns_run:
            self._run.finish()
        self._run = None


# --------------------------------------------------------------------------- mlflow

_MLFLOW_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


class MlflowLogger(EvalLogger):
    """Logs into the trainer's active MLflow run when there is one (and no
    ``tracking_uri`` was set), else into a run it creates in ``tracking_uri``
    (default: ``sqlite:///<output_dir>/mlflow.db``, artifacts in
    ``<output_dir>/mlartifacts``)."""

    def __init__(self, config: MlflowLoggerConfig, output_dir: Path) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self._client: Any = None
        self.run_id: str | None = None
        self._owns_run = False

    def _get(self) -> tuple[Any, str]:
        if self._client is None or self.run_id is None:
            import mlflow
            from mlflow.tracking import MlflowClient

            active = mlflow.active_run()
            if active is not None and self.config.tracking_uri is None:
                self._client = MlflowClient()
                self.run_id = active.info.run_id
            else:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                default = self.config.tracking_uri is None
                uri = self.config.tracking_uri or f"sqlite:///{(self.output_dir / 'mlflow.db').resolve()}"
                self._client = MlflowClient(tracking_uri=uri)
                experiment = self._client.get_experiment_by_name(self.config.experiment)
                if experiment is not None:
                    experiment_id = experiment.experiment_id
                else:
                    # With a database store MLflow would put artifacts in ./mlruns of
                    # the current directory: keep them under output_dir instead.
                    location = (self.output_dir / "mlartifacts").resolve().as_uri() if default else None
                    experiment_id = self._client.create_experiment(
                        self.config.experiment, artifact_location=location
                    )
                tags = {"mlflow.runName": self.config.run_name} if self.config.run_name else None
                run = self._client.create_run(experiment_id, tags=tags, run_name=self.config.run_name)
                self.run_id = run.info.run_id
                self._owns_run = True
        return self._client, self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        client, run_id = self._get()
        stamp = int(datetime.now(timezone.utc).timestamp() * 1000)
        batch = [
            Metric(key=_MLFLOW_BAD.sub("_", k), value=v, timestamp=stamp, step=step)
            for k, v in metrics.items()
        ]
        client.log_batch(run_id, metrics=batch)

    def log_videos(self, key: str, videos: list[Path], step: int) -> None:
        client, run_id = self._get()
        for path in videos:
            client.log_artifact(run_id, str(path), artifact_path=f"{key}/step{step}/{path.parent.name}")

    def close(self) -> None:
        if self._client is not None and self.run_id is not None and self._owns_run:
            self._client.set_terminated(self.run_id)
        self._client = None
        self.run_id = None


# --------------------------------------------------------------------------- factory


def check_logger_available(config: Any, field: str | None = None, file: str | None = None) -> None:
    """Raise a ConfigError naming the extra when ``config``'s tracker is missing."""
    need = {"wandb": ["wandb"], "mlflow": ["mlflow"]}.get(config.type, [])
    for module in need:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"logger '{config.type}' needs the '{module}' package, which is not installed: "
                f"{TRACKERS_HINT}",
                file=file,
                field=field,
            )
    if isinstance(config, TensorBoardLoggerConfig):
        try:
            _tensorboard_backend(config.backend)
        except ConfigError as exc:
            raise ConfigError(str(exc), file=file, field=field) from None


def build_logger(config: Any, output_dir: Path) -> EvalLogger:
    """The logger for one ``loggers:`` entry (nothing is opened until it logs)."""
    output_dir = Path(output_dir)
    check_logger_available(config)
    if isinstance(config, JsonlLoggerConfig):
        return JsonlLogger(output_dir / config.path)
    if isinstance(config, TensorBoardLoggerConfig):
        return TensorBoardLogger(output_dir / config.log_dir, config.backend)
    if isinstance(config, WandbLoggerConfig):
        return WandbLogger(config, output_dir)
    if isinstance(config, MlflowLoggerConfig):
        return MlflowLogger(config, output_dir)
    raise TypeError(f"not a logger config: {config!r}")
