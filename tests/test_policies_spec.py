"""The one policy-spec parser: ``serve-policy SPEC``, ``suite --policy`` and
``EvalManager.run(policy="...")``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from trialrun.config import PolicyConfig
from trialrun.errors import ConfigError, InputError
from trialrun.policies.spec import (
    checkpoint_config,
    checkpoint_policy_type,
    checkpoint_spec,
    newest_checkpoint,
    parse_policy_spec,
    spec_from_mapping,
    spec_from_text,
    spec_to_text,
    validate_policy,
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
    with pytest.raises(InputError, match=r"^no such checkpoint file or directory: .*missing$"):
        newest_checkpoint(tmp_path / "missing")
    _touch(tmp_path / "notes.txt", 0)
    with pytest.raises(
        InputError, match=r"holds no checkpoint files \(\.zip, \.pt, \.pth, \.ts, \.onnx, \.npz\)$"
    ):
        newest_checkpoint(tmp_path)


def test_policy_type_from_suffix() -> None:
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
    expected = {"path": str(model.resolve()), "vecnormalize_path": str(stats)}
    assert checkpoint_spec(tmp_path) == {"type": "sb3", "kwargs": expected}
    assert checkpoint_config(tmp_path) == PolicyConfig(type="sb3", kwargs=expected)
    # Only sb3 loads the stats: another type given explicitly does not get them.
    assert checkpoint_spec(model, "npz") == {"type": "npz", "kwargs": {"path": str(model.resolve())}}


def test_parse_policy_spec_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = _touch(tmp_path / "ppo.zip", 0)
    path = str(model.resolve())
    assert parse_policy_spec("ppo.zip") == PolicyConfig(type="sb3", kwargs={"path": path})
    assert parse_policy_spec(f"  {tmp_path}  ") == PolicyConfig(type="sb3", kwargs={"path": path})
    assert parse_policy_spec("ppo.zip", "npz") == PolicyConfig(type="npz", kwargs={"path": path})
    assert parse_policy_spec("random") == PolicyConfig(type="random")
    assert parse_policy_spec("helpers:SlowPolicy") == PolicyConfig(type="helpers:SlowPolicy")
    # A mapping (flow or block style); relative file paths are made absolute against the cwd.
    expected = PolicyConfig(type="sb3", kwargs={"deterministic": False, "path": path})
    assert parse_policy_spec("{type: sb3, path: ppo.zip, kwargs: {deterministic: false}}") == expected
    assert parse_policy_spec("type: sb3\npath: ./ppo.zip\nkwargs: {deterministic: false}") == expected
    # The dict form EvalManager and run documents use, and back to text.
    assert spec_from_text("ppo.zip") == {"type": "sb3", "kwargs": {"path": path}}
    spec = {"type": "helpers:SlowPolicy", "kwargs": {"delay": 0.5}}
    assert spec_to_text(spec) == "{kwargs: {delay: 0.5}, type: 'helpers:SlowPolicy'}"
    assert spec_from_text(spec_to_text(spec)) == spec
    assert spec_to_text(PolicyConfig.model_validate(spec)) == spec_to_text(spec)


def test_a_registered_name_wins_over_a_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "random").mkdir()
    assert parse_policy_spec("random") == PolicyConfig(type="random")
    with pytest.raises(InputError, match=r"^--policy: .*random holds no checkpoint files"):
        parse_policy_spec("./random")


def open_factory(context: Any, **settings: Any) -> Any:
    """A user's factory that takes any setting (its own code checks them)."""
    return settings


def test_kwargs_are_set_parsed_as_yaml_and_file_paths_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = _touch(tmp_path / "mlp.npz", 0)
    _touch(tmp_path / "stats.pkl", 0)
    config = parse_policy_spec(
        "{type: 'test_policies_spec:open_factory', path: mlp.npz}",
        kwargs=["deterministic=false", "obs_path=stats.pkl", "scale=[1, 2]"],
        option="SPEC",
    )
    assert config == PolicyConfig(
        type="test_policies_spec:open_factory",
        kwargs={
            "path": str(model.resolve()),
            "deterministic": False,
            "obs_path": str((tmp_path / "stats.pkl").resolve()),
            "scale": [1, 2],
        },
    )
    # --kwarg wins over the mapping's kwargs.
    assert parse_policy_spec("{type: 'test_policies_spec:open_factory', kwargs: {a: 1}}", kwargs=["a=2"]) == (
        PolicyConfig(type="test_policies_spec:open_factory", kwargs={"a": 2})
    )
    # A setting the factory does not take is refused as in a run file.
    with pytest.raises(ConfigError) as info:
        parse_policy_spec("mlp.npz", kwargs=["deterministic=false"], option="SPEC")
    assert str(info.value) == (
        "SPEC: field 'kwargs.deterministic': policy 'npz' has no setting 'deterministic'; its settings: path"
    )
    with pytest.raises(ConfigError, match=r"^SPEC: field 'path': no such file: .*missing\.npz$"):
        parse_policy_spec("{type: npz, path: missing.npz}", option="SPEC")
    with pytest.raises(ConfigError, match=r"^--policy: field 'obs_path': no such file: .*nope\.pkl$"):
        parse_policy_spec("test_policies_spec:open_factory", kwargs=["obs_path=nope.pkl"])
    with pytest.raises(ConfigError, match=r"^field '--kwarg': override 'deterministic' is not of the form"):
        parse_policy_spec("zero", kwargs=["deterministic"])


def test_parse_policy_spec_errors_name_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^--policy: no such checkpoint file or directory: other\.zip$"):
        parse_policy_spec("other.zip")
    with pytest.raises(InputError, match=r"^--policy: no such checkpoint file or directory: runs/ckpts$"):
        parse_policy_spec("runs/ckpts")
    with pytest.raises(InputError, match=r"^--policy: no such checkpoint file or directory: .*ppo\.zip$"):
        parse_policy_spec("ppo.zip", "sb3")
    with pytest.raises(ConfigError, match=r"^--policy: field 'kwargs': Input should be a valid dictionary"):
        parse_policy_spec("{type: zero, kwargs: 3}")
    with pytest.raises(
        ConfigError,
        match=r"^--policy: unknown key 'algo'; allowed keys: action_keys, api, api_key, api_token, ca_file, cameras, connect_timeout, "
        r"host, kwargs, max_connections, obs_map, path, port, replan_steps, timeout, token, type, url "
        r"\(any other setting goes under 'kwargs'\)$",
    ):
        parse_policy_spec("{type: zero, algo: PPO}")
    with pytest.raises(InputError, match=r"^--policy '\{type: zero' is not a valid YAML mapping"):
        parse_policy_spec("{type: zero")
    with pytest.raises(InputError, match=r"^--policy is empty$"):
        parse_policy_spec("  ")
    with pytest.raises(InputError, match=r"^SPEC is empty$"):
        parse_policy_spec("", option="SPEC")
    with pytest.raises(ConfigError, match=r"^field 'SPEC': unknown policy 'no-such-policy'; registered"):
        parse_policy_spec("no-such-policy", option="SPEC")
    with pytest.raises(ConfigError, match=r"^field '--policy': unknown policy 'nope'"):
        parse_policy_spec("{type: nope}")
    with pytest.raises(ConfigError, match=r"^field '--policy': module 'helpers' has no attribute 'Nope'"):
        parse_policy_spec("helpers:Nope")
    _touch(tmp_path / "model.bin", 0)
    with pytest.raises(InputError, match=r"^--policy: cannot tell how to load model\.bin from its suffix"):
        parse_policy_spec("model.bin")
    with pytest.raises(ConfigError, match=r"^field '--policy-type': cannot import module 'no_such_pkg'"):
        parse_policy_spec("model.bin", "no_such_pkg:load")


def test_a_mapping_from_code_follows_the_same_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = _touch(tmp_path / "m.onnx", 0)
    assert validate_policy({"type": "onnx", "path": "m.onnx"}) == PolicyConfig(
        type="onnx", kwargs={"path": str(model.resolve())}
    )
    assert spec_from_mapping({"type": "zero"}) == {"type": "zero", "kwargs": {}}
    with pytest.raises(ConfigError, match=r"^--policy: field 'type': Field required$"):
        spec_from_mapping({"kwargs": {}})
