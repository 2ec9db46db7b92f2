from __future__ import annotations

import io
import json
import logging
import struct
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from trialrun.errors import ConfigError
from trialrun.suites import EvalManager, EvalResult
from trialrun.suites.config import (
    JsonlLoggerConfig,
    MlflowLoggerConfig,
    TensorBoardLoggerConfig,
    WandbLoggerConfig,
)
from trialrun.suites.loggers import build_logger, mp4_to_gif


@pytest.fixture(scope="module")
def video_results(tmp_path_factory: pytest.TempPathFactory) -> list[EvalResult]:
    """Two real evaluator results (epochs 1 and 2) of a CartPole suite that records one video."""
    out = tmp_path_factory.mktemp("video-run")
    manager = EvalManager.from_dict(
        {
            "evaluators": {
                "nominal": {
                    "video": {"episodes": 1, "size": [64, 48]},
                    "jobs": [
                        {
                            "name": "cart",
                            "env": "CartPole-v1",
                            "episodes": 3,
                            "max_steps": 30,
                            "success": "survived",
                        }
                    ],
                }
            }
        },
        output_dir=out,
        loggers=[],
    )
    return [manager.run("nominal", policy="cartpole-balance", epoch=e, global_step=100 * e) for e in (1, 2)]


def test_results_list_the_runs_videos(video_results: list[EvalResult]) -> None:
    first = video_results[0]
    assert first.ok and first.success_rate == 1.0
    assert first.videos == [first.run_dir / "videos" / "cart" / "ep0-default.mp4"]  # type: ignore[operator]
    assert first.videos[0].stat().st_size > 0


def test_mp4_to_gif_decodes_the_video(video_results: list[EvalResult]) -> None:
    gif, height, width = mp4_to_gif(video_results[0].videos[0], max_frames=10, max_width=32)
    image = Image.open(io.BytesIO(gif))
    assert image.format == "GIF" and image.size == (32, 24) == (width, height)
    # 31 frames (reset + 30 steps) at 30 fps: every 4th is kept, 8 frames of 4/30 s each
    # (GIF stores 10 ms units; Pillow merges identical consecutive frames, adding their durations).
    durations = []
    for index in range(image.n_frames):
        image.seek(index)
        durations.append(image.info["duration"])
    assert 2 <= image.n_frames <= 8 and sum(durations) == 8 * 130


def test_jsonl_logger_appends_one_line_per_result(tmp_path: Path, video_results: list[EvalResult]) -> None:
    log = build_logger(JsonlLoggerConfig(), tmp_path)
    for result in video_results:
        log.log_result(result, step=result.global_step or 0)
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(line["step"], line["epoch"], line["evaluator"], line["status"]) for line in lines] == [
        (100, 1, "nominal", "completed"),
        (200, 2, "nominal", "completed"),
    ]
    assert lines[0]["metrics"] == video_results[0].metrics()
    assert lines[0]["metrics"]["nominal/success_rate"] == 1.0
    assert lines[0]["metrics"]["nominal/cart/length_mean"] == 30.0
    assert lines[1]["videos"] == [str(video_results[1].videos[0])]
    assert lines[0]["run_dir"] == str(video_results[0].run_dir)


def test_tensorboard_event_file_reads_back(tmp_path: Path, video_results: list[EvalResult]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for backend in ("tensorboardX", "torch"):
        log = build_logger(TensorBoardLoggerConfig(log_dir=f"tb-{backend}", backend=backend), tmp_path)
        for result in video_results:
            log.log_result(result, step=result.global_step or 0)
        log.close()
        acc = EventAccumulator(str(tmp_path / f"tb-{backend}"), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        assert set(acc.Tags()["scalars"]) == set(video_results[0].metrics())
        rates = acc.Scalars("nominal/success_rate")
        assert [(e.step, e.value) for e in rates] == [(100, 1.0), (200, 1.0)]
        assert [e.step for e in acc.Scalars("nominal/cart/return_mean")] == [100, 200]
        assert acc.Tags()["images"] == ["nominal/video/cart/ep0-default"]
        images = acc.Images("nominal/video/cart/ep0-default")
        assert [i.step for i in images] == [100, 200]
        gif = Image.open(io.BytesIO(images[0].encoded_image_string))
        assert gif.format == "GIF" and gif.size == (images[0].width, images[0].height) == (64, 48)
        assert 2 <= gif.n_frames <= 31


def _wandb_records(path: Path, timeout: float = 30.0) -> list[object]:
    """The records of a W&B ``.wandb`` transaction log, once the run's final
    ``exit`` record is in it (wandb's service can still be writing the log for
    a moment after ``run.finish()`` returns: seen as a 7-byte file)."""
    deadline = time.monotonic() + timeout
    while True:
        records = _parse_wandb_log(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:  # type: ignore[attr-defined]
            return records
        time.sleep(0.05)


def _parse_wandb_log(path: Path) -> list[object]:
    """The records of a W&B ``.wandb`` transaction log (LevelDB log format:
    7-byte header, 32 KiB blocks of ``crc32 | length | type | data`` chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            payload = chunk
        elif kind in (2, 3):
            pending += chunk
            continue
        elif kind == 4:
            payload, pending = pending + chunk, b""
        else:
            continue
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _key(item: object) -> str:
    """A history item's key (W&B writes it as ``key`` or as a one-element ``nested_key``)."""
    return item.key or "/".join(item.nested_key)  # type: ignore[attr-defined]


def test_wandb_offline_run_holds_the_metrics_and_videos(
    tmp_path: Path, video_results: list[EvalResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = build_logger(WandbLoggerConfig(project="trialrun-tests"), tmp_path)
    for result in video_results:
        log.log_result(result, step=result.global_step or 0)
    log.close()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (log_file,) = run_dir.glob("run-*.wandb")
    videos = list((run_dir / "files" / "media" / "videos" / "nominal").glob("*.mp4"))
    # The two recorded videos, copied byte for byte.
    assert sorted(v.read_bytes() for v in videos) == sorted(r.videos[0].read_bytes() for r in video_results)
    history = []
    metrics = []
    for record in _wandb_records(log_file):
        kind = record.WhichOneof("record_type")  # type: ignore[attr-defined]
        if kind == "history":
            history.append({_key(item): json.loads(item.value_json) for item in record.history.item})  # type: ignore[attr-defined]
        elif kind == "metric":
            metrics.append((record.metric.name or record.metric.glob_name, record.metric.step_metric))  # type: ignore[attr-defined]
    scalar_rows = [row for row in history if "nominal/success_rate" in row]
    assert [(row["trialrun/global_step"], row["nominal/success_rate"]) for row in scalar_rows] == [
        (100, 1.0),
        (200, 1.0),
    ]
    assert scalar_rows[0]["nominal/cart/length_mean"] == 30.0
    video_rows = [row for row in history if "nominal/video/_type" in row]
    assert [row["trialrun/global_step"] for row in video_rows] == [100, 200]
    assert video_rows[0]["nominal/video/captions"] == ["cart/ep0-default.mp4"]
    assert ("nominal/*", "trialrun/global_step") in metrics


def test_wandb_logs_into_the_trainers_active_run(
    tmp_path: Path, video_results: list[EvalResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(mode="offline", dir=str(tmp_path / "trainer"), project="trainer")
    try:
        log = build_logger(WandbLoggerConfig(), tmp_path / "evals")
        log.log_result(video_results[0], step=100)
        log.close()
        assert wandb.run is run  # the trainer's run is left open
        assert not (tmp_path / "evals" / "wandb").exists()
    finally:
        run.finish()
    (log_file,) = (tmp_path / "trainer" / "wandb").glob("offline-run-*/run-*.wandb")
    rows = [r for r in _wandb_records(log_file) if r.WhichOneof("record_type") == "history"]  # type: ignore[attr-defined]
    assert any(_key(item) == "nominal/success_rate" for row in rows for item in row.history.item)  # type: ignore[attr-defined]


def test_mlflow_run_reads_back_with_the_client(tmp_path: Path, video_results: list[EvalResult]) -> None:
    from mlflow.tracking import MlflowClient

    log = build_logger(MlflowLoggerConfig(experiment="evals", run_name="ppo"), tmp_path)
    for result in video_results:
        log.log_result(result, step=result.global_step or 0)
    run_id = log.run_id  # type: ignore[attr-defined]
    log.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ppo"
    assert client.get_experiment(run.info.experiment_id).name == "evals"
    history = client.get_metric_history(run_id, "nominal/success_rate")
    assert sorted((m.step, m.value) for m in history) == [(100, 1.0), (200, 1.0)]
    assert set(run.data.metrics) == set(video_results[0].metrics())
    artifacts = [a.path for a in client.list_artifacts(run_id, "nominal/video/step200/cart")]
    assert artifacts == ["nominal/video/step200/cart/ep0-default.mp4"]
    local = client.download_artifacts(run_id, artifacts[0], str(tmp_path / "download"))
    assert Path(local).read_bytes() == video_results[1].videos[0].read_bytes()
    assert (tmp_path / "mlartifacts").is_dir()


@pytest.mark.parametrize(
    ("kind", "module"), [("wandb", "wandb"), ("mlflow", "mlflow"), ("tensorboard", "tensorboardX")]
)
def test_a_missing_tracker_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the package unimportable
    if kind == "tensorboard":
        monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "suites.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "loggers": ["jsonl", kind],
                "evaluators": {"e": {"jobs": [{"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 1}]}},
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        EvalManager.from_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field 'loggers.1': logger '{kind}' needs ")
    assert message.endswith("pip install 'trialrun[trackers]'")


def test_a_failing_logger_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def log_result(self, result: EvalResult, step: int) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    jsonl = build_logger(JsonlLoggerConfig(), tmp_path)
    manager = EvalManager.from_dict(
        {"evaluators": {"e": {"jobs": [{"name": "p", "env": "trialrun/SeedProbe-v0", "episodes": 2}]}}},
        output_dir=tmp_path,
        loggers=[Broken(), jsonl],  # type: ignore[list-item]
    )
    with caplog.at_level(logging.ERROR):
        result = manager.run("e", policy="zero", epoch=1, global_step=5)
    manager.close()
    assert result.ok
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 5
    (record,) = [r for r in caplog.records if "could not log" in r.getMessage()]
    assert record.getMessage() == "logger Broken could not log evaluator 'e'" and record.exc_info is not None
