from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from trialrun.errors import InputError
from trialrun.suites.checkpoints import (
    checkpoint_policy_type,
    checkpoint_spec,
    newest_checkpoint,
    parse_policy_spec,
    spec_to_text,
)


def _touch(path: Path, age_s: float) -> Path:
    path.write_bytes(b"x")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_newest_checkpoint_in_a_directory_by_mtime(tmp_path: Path) -> None:
    _touch(tmp_path / "model_300.zip", 30)
    newest = _touch(tmp_path / "model_100.zip", 10)  # newer although its name sorts first
    _touch(tmp_path / "model_200.zip", 20)
    _touch(tmp_path / "model_400.vecnormalize.pkl", 1)  # not a checkpoint suffix
    _touch(tmp_path / ".model_500.zip", 0)  # hidden: a save in progress
    _touch(tmp_path / "model_600.zip.tmp", 0)
    (tmp_path / "subdir.zip").mkdir()
    assert newest_checkpoint(tmp_path) == newest.resolve()
    # With an explicit policy type any file counts (a format with another suffix).
    assert newest_checkpoint(tmp_path, any_suffix=True) == (tmp_path / "model_400.vecnormalize.pkl").resolve()
    # A file is used as it is.
    assert newest_checkpoint(tmp_path / "model_300.zip") == (tmp_path / "model_300.zip").resolve()


def test_newest_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such checkpoint file or directory: .*missing"):
        newest_checkpoint(tmp_path / "missing")
    _touch(tmp_path / "notes.txt", 0)
    with pytest.raises(
        InputError, match=r"holds no checkpoint files \(\.zip, \.pt, \.pth, \.ts, \.onnx, \.npz\)"
    ):
        newest_checkpoint(tmp_path)


def test_policy_type_from_suffix(tmp_path: Path) -> None:
    assert checkpoint_policy_type(Path("m.zip")) == "sb3"
    assert checkpoint_policy_type(Path("m.PT")) == "torchscript"
    assert checkpoint_policy_type(Path("m.onnx")) == "onnx"
    assert checkpoint_policy_type(Path("m.npz")) == "npz"
    assert checkpoint_policy_type(Path("m.bin"), "my.pkg:load") == "my.pkg:load"
    with pytest.raises(
        InputError, match=r"cannot tell how to load m\.bin from its suffix .*pass --policy-type"
    ):
        checkpoint_policy_type(Path("m.bin"))


def test_checkpoint_spec_adds_vecnormalize_stats_next_to_an_sb3_model(tmp_path: Path) -> None:
    model = _touch(tmp_path / "model_step100.zip", 5)
    assert checkpoint_spec(model) == {"type": "sb3", "kwargs": {"path": str(model.resolve())}}
    stats = _touch(tmp_path / "model_step100.vecnormalize.pkl", 5)
    assert checkpoint_spec(tmp_path) == {
        "type": "sb3",
        "kwargs": {"path": str(model.resolve()), "vecnormalize_path": str(stats)},
    }


def test_parse_policy_spec_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = _touch(tmp_path / "ppo.zip", 0)
    assert parse_policy_spec("ppo.zip") == {"type": "sb3", "kwargs": {"path": str(model.resolve())}}
    assert parse_policy_spec(str(tmp_path)) == {"type": "sb3", "kwargs": {"path": str(model.resolve())}}
    assert parse_policy_spec("ppo.zip", "npz") == {"type": "npz", "kwargs": {"path": str(model.resolve())}}
    assert parse_policy_spec("random") == {"type": "random", "kwargs": {}}
    assert parse_policy_spec("helpers:SlowPolicy") == {"type": "helpers:SlowPolicy", "kwargs": {}}
    assert parse_policy_spec("{type: sb3, path: ppo.zip, kwargs: {deterministic: false}}") == {
        "type": "sb3",
        "kwargs": {"deterministic": False, "path": "ppo.zip"},
    }
    spec = {"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.5}}
    assert parse_policy_spec(spec_to_text(spec)) == spec
    with pytest.raises(InputError, match=r"no such checkpoint file or directory: other\.zip"):
        parse_policy_spec("other.zip")
    with pytest.raises(InputError, match=r"no such checkpoint file or directory: runs/ckpts"):
        parse_policy_spec("runs/ckpts")
    with pytest.raises(InputError, match=r"--policy: kwargs: Input should be a valid dictionary"):
        parse_policy_spec("{type: zero, kwargs: 3}")
    with pytest.raises(InputError, match=r"is not a valid YAML mapping"):
        parse_policy_spec("{type: zero")
    with pytest.raises(InputError, match=r"--policy is empty"):
        parse_policy_spec("  ")
