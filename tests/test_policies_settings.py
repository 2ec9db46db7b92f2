"""The checks of policy settings (trialrun.policies.settings), and how the
registry applies them before anything is built (check_policy_settings)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest

from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.preflight import preflight
from trialrun.policies import registry
from trialrun.policies.registry import check_policy_settings, register_policy
from trialrun.policies.settings import host_name, integer_in, names, one_of, seconds, text_line, ws_url


def _message(fn: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


def test_seconds_are_finite_numbers_above_zero() -> None:
    assert seconds(3, "timeout") == 3.0 and isinstance(seconds(3, "timeout"), float)
    assert seconds(0.25, "connect_timeout") == 0.25
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        assert _message(seconds, bad, "timeout") == (
            f"field 'policy.timeout': timeout must be a number of seconds > 0, got {bad!r}"
        )
    # A setting that is not written next to 'type' is named under kwargs.
    assert _message(seconds, 0, "grace").startswith("field 'policy.kwargs.grace': grace must be")


def test_integers_text_hosts_choices_and_names() -> None:
    assert integer_in(16, "max_connections", 1, 1024) == 16
    for bad in (0, 1025, 2.0, False):
        assert _message(integer_in, bad, "max_connections", 1, 1024) == (
            f"field 'policy.max_connections': max_connections must be an integer in 1..1024, got {bad!r}"
        )
    assert text_line("k-123", "api_key") == "k-123"
    for bad in ("", "  ", "a\nb", "a\rb", 7):
        assert _message(text_line, bad, "api_key") == (
            "field 'policy.api_key': api_key must be a non-empty line of text"
        )
    assert host_name("gpu-box.local") == "gpu-box.local"
    assert _message(host_name, "gpu box") == (
        "field 'policy.host': host must be a host name or address, got 'gpu box'"
    )
    assert one_of("n1.5", "api", ("n1.6", "n1.5")) == "n1.5"
    assert _message(one_of, "n2", "api", ("n1.6", "n1.5")) == (
        "field 'policy.api': api must be one of n1.6, n1.5, got 'n2'"
    )
    assert names(("a", "b"), "action_keys") == ["a", "b"]
    for bad in ("arm", [], ["arm", ""], [3]):
        assert _message(names, bad, "action_keys") == (
            f"field 'policy.action_keys': action_keys must be a non-empty list of names, got {bad!r}"
        )


def test_websocket_urls_need_a_scheme_a_host_and_a_real_port() -> None:
    for good in ("ws://127.0.0.1:8000", "wss://gpu-box:443/policy", "ws://[::1]:8000", "ws://gpu-box"):
        assert ws_url(good) == good
    shape = "field 'policy.url': url must be ws://HOST:PORT or wss://HOST:PORT, got "
    assert _message(ws_url, "http://gpu-box:8000") == shape + "'http://gpu-box:8000'"
    assert _message(ws_url, "ws://:8000") == shape + "'ws://:8000'"
    assert _message(ws_url, "ws://gpu box:8000") == shape + "'ws://gpu box:8000'"
    assert _message(ws_url, None) == shape + "None"
    assert _message(ws_url, "ws://h:99999") == shape + "'ws://h:99999' (Port out of range 0-65535)"
    assert _message(ws_url, "ws://h:0") == shape + "'ws://h:0' (port 0 is not a server's port)"
    assert _message(ws_url, "ws://h:port").startswith(shape + "'ws://h:port' (Port could not be cast")


def test_the_registry_checks_names_and_required_settings_from_the_factory_signature() -> None:
    with pytest.raises(ConfigError) as info:
        check_policy_settings("openpi", {"url": "ws://gpu-box:8000", "max_conections": 4})
    assert str(info.value) == (
        "field 'policy.kwargs.max_conections': policy 'openpi' has no setting 'max_conections'; its "
        "settings: api_key, ca_file, max_connections, obs_map, replan_steps, timeout, url; "
        "did you mean 'max_connections'?"
    )
    with pytest.raises(ConfigError) as info:
        check_policy_settings("random", {"sed": 1})
    assert (
        str(info.value)
        == "field 'policy.kwargs.sed': policy 'random' has no setting 'sed'; its settings: none"
    )
    with pytest.raises(ConfigError) as info:
        check_policy_settings("openpi", {})
    assert str(info.value) == "field 'policy.url': policy 'openpi' needs 'url'"
    with pytest.raises(ConfigError) as info:
        check_policy_settings("remote", {"timeout": 5})
    assert str(info.value) == "field 'policy.url': policy 'remote' needs 'url'"
    # Factories of users: a plain class, and one taking **kwargs (anything goes).
    check_policy_settings("helpers:SlowPolicy", {"delay": 0.0})
    with pytest.raises(
        ConfigError, match=r"^field 'policy.kwargs.dealy': policy 'helpers:SlowPolicy' has no"
    ):
        check_policy_settings("helpers:SlowPolicy", {"dealy": 0.0})
    check_policy_settings("helpers:plain_function_factory", {})
    # A 'cameras' setting is for the env: it never reaches a factory that does not take it.
    check_policy_settings("zero", {"cameras": {"corner": [64, 64]}})


def test_the_server_policies_values_and_the_file_policies_path_are_checked() -> None:
    cases = {
        ("openpi", "max_connections"): (
            {"url": "ws://h:1", "max_connections": 0},
            "max_connections must be an integer in 1..1024, got 0",
        ),
        ("openpi", "replan_steps"): (
            {"url": "ws://h:1", "replan_steps": 0},
            "replan_steps must be an integer >= 1, got 0",
        ),
        ("openpi", "api_key"): (
            {"url": "ws://h:1", "api_key": ""},
            "api_key must be a non-empty line of text",
        ),
        ("gr00t", "port"): ({"port": 0}, "port must be an integer in 1..65535, got 0"),
        ("gr00t", "connect_timeout"): (
            {"connect_timeout": -2},
            "connect_timeout must be a number of seconds > 0, got -2",
        ),
        ("gr00t", "api_token"): ({"api_token": "a\nb"}, "api_token must be a non-empty line of text"),
        ("remote", "token"): ({"url": "ws://h:1", "token": " "}, "token must be a non-empty line of text"),
        ("sb3", "path"): ({}, "a 'sb3' policy needs a file: set 'path'"),
        ("npz", "path"): ({"path": ""}, "a 'npz' policy needs a file: set 'path'"),
        ("onnx", "path"): ({}, "a 'onnx' policy needs a file: set 'path'"),
        ("torchscript", "path"): ({}, "a 'torchscript' policy needs a file: set 'path'"),
        ("npz-conv", "path"): ({}, "a 'npz-conv' policy needs a file: set 'path'"),
    }
    for (policy, setting), (kwargs, message) in cases.items():
        with pytest.raises(ConfigError) as info:
            check_policy_settings(policy, kwargs)
        assert str(info.value) == f"field 'policy.{setting}': {message}", policy
    check_policy_settings("gr00t", {"host": "gpu-box", "port": 5555, "api": "n1.5", "action_keys": ["arm"]})
    check_policy_settings("openpi", {"url": "wss://gpu-box:443", "max_connections": 8, "timeout": 2})


def test_a_registered_check_runs_on_the_settings_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's entry goes with it
    seen: list[dict[str, Any]] = []

    def factory(context: Any, gain: float = 1.0) -> Any:
        raise AssertionError("preflight must not build the policy")

    def check(settings: Mapping[str, Any]) -> None:
        seen.append(dict(settings))
        if settings["gain"] <= 0:
            raise ConfigError(f"gain must be > 0, got {settings['gain']}", field="policy.kwargs.gain")

    register_policy("test-checked-gain", factory, "a test policy", check)
    check_policy_settings("test-checked-gain", {"gain": 2.0})
    check_policy_settings("test-checked-gain", {})  # the check sees the factory's default
    with pytest.raises(ConfigError, match=r"^field 'policy.kwargs.gain': gain must be > 0, got -1$"):
        check_policy_settings("test-checked-gain", {"gain": -1})
    assert seen == [{"gain": 2.0}, {"gain": 1.0}, {"gain": -1}]


def test_preflight_checks_a_server_policy_without_connecting_to_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        job = {
            "name": "vla",
            "env": "Pendulum-v1",
            "episodes": 2,
            "policy": {"type": "openpi", "url": f"ws://127.0.0.1:{port}", "timeout": 0},
        }
        with pytest.raises(ConfigError) as info:
            preflight(parse_run_config({"name": "r", "jobs": [job]}))
        assert str(info.value) == (
            "field 'jobs.0.policy.timeout': timeout must be a number of seconds > 0, got 0"
        )
        job["policy"] = {"type": "openpi", "url": f"ws://127.0.0.1:{port}"}
        preflight(parse_run_config({"name": "r", "jobs": [job]}))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
