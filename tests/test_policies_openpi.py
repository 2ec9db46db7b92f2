"""openpi's protocol: the msgpack-numpy codec, the client transport and ``serve-policy --protocol openpi``.

The codec is checked byte for byte against frames written by openpi-client's own
``msgpack_numpy.packb`` (tests/data/openpi/, recorded by record.py in a throwaway
venv with numpy<2), and against frames recorded from openpi's own
``WebsocketPolicyServer``. The transport runs against two real servers on
127.0.0.1: trialrun's (``OpenpiPolicyServer``) and a small one in this file
that behaves on the wire as openpi's server does (metadata first, one
observation per request, ``server_timing``, the traceback as a text frame then
close 1011), so the client is tested against openpi's behaviour, not only ours.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync import client as ws_client
from websockets.sync import server as ws_server

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.server import ServerLimits
from trialrun.policies.vla.openpi import OpenpiServerError, OpenpiTransport, binary_frame
from trialrun.policies.vla.openpi_codec import OpenpiCodecError, packb, unpackb
from trialrun.policies.vla.openpi_server import ERROR_CLOSE_REASON, OpenpiPolicyServer
from trialrun.runfiles import read_manifest

DATA = Path(__file__).parent / "data" / "openpi"
PENDULUM = PolicyContext(
    "Pendulum-v1",
    1,
    gym.spaces.Box(np.array([-1, -1, -8], np.float32), np.array([1, 1, 8], np.float32)),
    gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
    {},
)


def _load_record_module() -> Any:
    spec = importlib.util.spec_from_file_location("openpi_record", DATA / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS: dict[str, Any] = _load_record_module().corpus()


def assert_same(got: Any, want: Any) -> None:
    """Equal values of equal types, arrays with equal dtype and shape, through dicts and lists."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, list | tuple):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    else:
        if isinstance(want, np.float64 | np.str_):  # subclasses of float and str: msgpack writes them as such
            want = float(want) if isinstance(want, float) else str(want)
        assert type(got) is type(want) and got == want


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_packb_writes_the_bytes_openpi_client_writes(name: str) -> None:
    assert packb(CORPUS[name]) == (DATA / f"{name}.msgpack").read_bytes()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_unpackb_reads_openpi_frames_back_to_the_same_values(name: str) -> None:
    assert_same(unpackb((DATA / f"{name}.msgpack").read_bytes()), CORPUS[name])


def test_the_wire_form_is_openpis_tagged_maps_with_binary_keys() -> None:
    raw = _raw(packb(np.arange(3, dtype=np.int16).reshape(3, 1)))
    assert raw == {b"__ndarray__": True, b"data": b"\0\0\1\0\2\0", b"dtype": "<i2", b"shape": [3, 1]}
    assert _raw(packb(np.float32(0.5))) == {b"__npgeneric__": True, b"data": 0.5, b"dtype": "<f4"}
    zero_d = unpackb(packb(np.array(7, np.uint8)))
    assert zero_d.shape == () and zero_d.dtype == np.uint8 and zero_d == 7
    scalar = unpackb(packb(np.int64(-3)))
    assert type(scalar) is np.int64 and scalar == -3


def _raw(frame: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(frame)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros(2, np.complex64), "Unsupported dtype: complex64"),
        (np.array([object()], dtype=object), "Unsupported dtype: object"),
        (np.zeros(1, dtype=[("a", "<i4")]), "Unsupported dtype: [('a', '<i4')]"),
        (np.complex128(1j), "Unsupported dtype: complex128"),
    ],
)
def test_object_void_and_complex_dtypes_are_refused_as_openpi_refuses_them(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        packb({"x": value})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            {b"__ndarray__": True, b"data": b"\0" * 7, b"dtype": "<f4", b"shape": [2]},
            "an array of shape (2,) and dtype float32 needs 8 bytes, got 7",
        ),
        (
            {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]},
            "refused an array of dtype object (openpi carries no 'O' arrays)",
        ),
        (
            {b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [-1]},
            "an array's shape must be a list of sizes >= 0, got [-1]",
        ),
        ({b"__ndarray__": True, b"data": b"", b"dtype": "nope", b"shape": []}, "unknown dtype 'nope'"),
        ({b"__npgeneric__": True, b"data": "x", b"dtype": "<c16"}, "refused an array of dtype complex128"),
    ],
)
def test_frames_a_peer_could_abuse_are_refused(frame: dict[bytes, Any], message: str) -> None:
    import msgpack

    with pytest.raises(OpenpiCodecError) as info:
        unpackb(msgpack.packb({"obs": frame}))
    assert str(info.value).startswith(message)


def test_a_frame_that_is_not_msgpack_is_a_codec_error() -> None:
    with pytest.raises(OpenpiCodecError, match=r"^not an openpi msgpack frame: "):
        unpackb(b"\xc1")


def test_frames_recorded_from_openpis_own_server_decode() -> None:
    assert unpackb((DATA / "server_metadata.msgpack").read_bytes()) == {"action_horizon": 5}
    reply = unpackb((DATA / "server_reply.msgpack").read_bytes())
    assert list(reply) == ["actions", "server_timing"]
    np.testing.assert_array_equal(reply["actions"], np.array([[1, -1], [2, -2], [3, -3], [4, -4], [5, -5]]))
    assert reply["actions"].dtype == np.float32
    assert list(reply["server_timing"]) == ["infer_ms"] and isinstance(
        reply["server_timing"]["infer_ms"], float
    )


# --------------------------------------------------------------------------- openpi's server, as a test double


class FakeOpenpiServer:
    """openpi's ``WebsocketPolicyServer`` as it behaves on the wire (websockets' sync server here):
    metadata first, one observation per request, ``server_timing`` added, and on an exception the
    traceback as a text frame followed by close 1011 with openpi's reason. Records what it saw."""

    def __init__(
        self, infer: Callable[[dict[str, Any], Any], dict[str, Any]], metadata: Any = None, **options: Any
    ) -> None:
        self.infer = infer
        self.metadata = {"action_horizon": 5} if metadata is None else metadata
        self.error_text: str | None = None  # sent instead of the real traceback when set
        self.headers: list[str | None] = []
        self.requests = 0
        self.open = self.max_open = self.inflight = self.max_inflight = 0
        self.connections: list[Any] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends a hanging request
        self.server = ws_server.serve(
            self._handle, "127.0.0.1", 0, compression=None, max_size=None, **options
        )
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, ws: Any) -> None:
        with self.lock:
            self.headers.append(ws.request.headers.get("Authorization"))
            self.connections.append(ws)
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        try:
            ws.send(packb(self.metadata))
            prev_total = None
            while True:
                try:
                    raw = ws.recv()
                except ConnectionClosed:
                    return
                start = time.monotonic()
                with self.lock:
                    self.requests += 1
                    self.inflight += 1
                    self.max_inflight = max(self.max_inflight, self.inflight)
                try:
                    obs = unpackb(raw)
                    infer_start = time.monotonic()
                    action = self.infer(obs, ws)
                    action["server_timing"] = {"infer_ms": (time.monotonic() - infer_start) * 1000}
                    if prev_total is not None:
                        action["server_timing"]["prev_total_ms"] = prev_total * 1000
                    ws.send(packb(action))
                    prev_total = time.monotonic() - start
                except _Drop:
                    return
                except ConnectionClosed:
                    return
                except Exception:
                    ws.send(self.error_text or traceback.format_exc())
                    ws.close(1011, ERROR_CLOSE_REASON)
                    return
                finally:
                    with self.lock:
                        self.inflight -= 1
        finally:
            with self.lock:
                self.open -= 1

    def die(self) -> None:
        """Cut every connection (no close frame) and stop listening: a killed server.

        Cut first: a shutdown first would send close frames and wait for answers that
        an idle client (no thread reads its sockets between steps) gives only when it
        next reads."""
        for ws in list(self.connections):
            _cut(ws)
        self.server.shutdown()

    def stop(self) -> None:
        self.release.set()
        self.die()
        self.thread.join(5)


class _Drop(Exception):
    """Raised by an ``infer`` that cut its connection."""


def _cut(ws: Any) -> None:
    import socket

    with contextlib.suppress(OSError):  # already closed: nothing to cut
        ws.socket.shutdown(socket.SHUT_RDWR)


def chunk_of_state(obs: dict[str, Any], ws: Any) -> dict[str, Any]:
    """The reference policy of tests/data/openpi/reference_server.py: ``state * [1..5]``, fails on "fail"."""
    if obs.get("prompt") == "fail":
        raise ValueError("the policy was told to fail")
    state = np.asarray(obs["observation/state"], dtype=np.float32)
    return {"actions": np.stack([state * (k + 1) for k in range(5)])}


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    """Servers and transports register their stop/close here; all run after the test, newest first."""
    stops: list[Callable[[], None]] = []
    yield stops
    for stop in reversed(stops):
        stop()


@pytest.fixture
def fake(cleanup: list[Callable[[], None]]) -> Callable[..., FakeOpenpiServer]:
    def start(
        infer: Callable[..., dict[str, Any]] = chunk_of_state, metadata: Any = None, **options: Any
    ) -> FakeOpenpiServer:
        server = FakeOpenpiServer(infer, metadata, **options)
        cleanup.append(server.stop)
        return server

    return start


@pytest.fixture
def transports(cleanup: list[Callable[[], None]]) -> Iterator[list[OpenpiTransport]]:
    """Transports a test made; each is closed after the test, before the servers stop
    (this fixture's teardown runs before ``cleanup``'s, which it depends on)."""
    made: list[OpenpiTransport] = []
    yield made
    for transport in made:
        transport.close()


def states(n: int) -> list[dict[str, Any]]:
    return [{"observation/state": np.array([i, -i], np.float32), "prompt": "go"} for i in range(n)]


# --------------------------------------------------------------------------- the transport, against openpi's behaviour


def test_the_metadata_frame_is_read_at_construction(fake: Any, transports: list[OpenpiTransport]) -> None:
    server = fake(metadata={"action_horizon": 10, "policy": {"name": "pi05_libero"}})
    transport = OpenpiTransport(server.url)
    transports.append(transport)
    assert transport.metadata == {"action_horizon": 10, "policy": {"name": "pi05_libero"}}
    assert transport.address == server.url
    assert server.requests == 0


def test_replies_come_back_in_request_order_with_chunks_and_timing(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    server = fake()
    transport = OpenpiTransport(server.url, max_connections=3)
    transports.append(transport)
    for _ in range(2):  # the second call reuses the connections and gets prev_total_ms
        replies = transport.infer(states(7))
        assert len(replies) == 7
        for i, reply in enumerate(replies):
            want = np.array([[i * k, -i * k] for k in range(1, 6)], np.float32)
            np.testing.assert_array_equal(reply["actions"], want)
            assert reply["actions"].dtype == np.float32
    assert set(replies[0]["server_timing"]) == {"infer_ms", "prev_total_ms"}
    assert server.requests == 14
    assert len(server.headers) == 3  # three connections, kept between calls
    assert transport.infer([]) == []


def test_requests_go_out_concurrently_over_at_most_max_connections(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    def slow(obs: dict[str, Any], ws: Any) -> dict[str, Any]:
        time.sleep(0.2)
        return chunk_of_state(obs, ws)

    server = fake(slow)
    transport = OpenpiTransport(server.url, max_connections=3)
    transports.append(transport)
    start = time.monotonic()
    replies = transport.infer(states(9))
    elapsed = time.monotonic() - start
    assert [float(r["actions"][0, 0]) for r in replies] == [float(i) for i in range(9)]
    assert server.max_open == 3
    assert server.max_inflight == 3
    assert 0.6 <= elapsed < 1.5  # three rounds of three, not nine in a row (1.8 s)


def test_the_api_key_is_sent_as_openpis_header(fake: Any, transports: list[OpenpiTransport]) -> None:
    server = fake()
    transports.append(OpenpiTransport(server.url, api_key="s3cret"))
    transports.append(OpenpiTransport(server.url))
    assert server.headers == ["Api-Key s3cret", None]


def test_an_error_frame_fails_with_the_traceback_last_line_and_keeps_the_whole(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    recorded = (DATA / "server_error.txt").read_text()  # as openpi's own server sent it
    server = fake()
    server.error_text = recorded
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    requests = states(3)
    requests[1]["prompt"] = "fail"
    with pytest.raises(OpenpiServerError) as info:
        transport.infer(requests)
    assert str(info.value) == (
        f"openpi policy server {server.url}: the server failed: ValueError: the policy was told to fail"
    )
    assert info.value.remote_traceback == recorded
    assert isinstance(info.value, RemotePolicyError)
    # the transport goes on with new connections (the failed one was closed with 1011)
    assert float(transport.infer(states(2))[1]["actions"][0, 0]) == 1.0


def test_a_server_that_hangs_fails_after_timeout_naming_address_and_time(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    def hang(obs: dict[str, Any], ws: Any) -> dict[str, Any]:
        server.release.wait(30)
        return chunk_of_state(obs, ws)

    server = fake(hang)
    transport = OpenpiTransport(server.url, timeout=1.0)
    transports.append(transport)
    start = time.monotonic()
    with pytest.raises(RemotePolicyError) as info:
        transport.infer(states(1))
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 3.0
    assert re.fullmatch(
        rf"the openpi policy server at {server.url} did not answer request 0 within 1 s "
        r"\(timeout; waited 1\.\d s\)",
        str(info.value),
    ), str(info.value)


def test_a_dropped_connection_is_reopened_and_the_request_resent_once(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    dropped: list[int] = []

    def drop_once(obs: dict[str, Any], ws: Any) -> dict[str, Any]:
        if not dropped and float(obs["observation/state"][0]) == 2.0:
            dropped.append(1)
            _cut(ws)
            raise _Drop
        return chunk_of_state(obs, ws)

    server = fake(drop_once)
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    replies = transport.infer(states(4))
    assert [float(r["actions"][0, 0]) for r in replies] == [0.0, 1.0, 2.0, 3.0]
    assert transport.reconnects == 1
    assert server.requests == 5  # request 2 twice


def test_a_request_dropped_twice_is_an_error(fake: Any, transports: list[OpenpiTransport]) -> None:
    def always_drop(obs: dict[str, Any], ws: Any) -> dict[str, Any]:
        _cut(ws)
        raise _Drop

    server = fake(always_drop)
    transport = OpenpiTransport(server.url)
    transports.append(transport)
    with pytest.raises(RemotePolicyError) as info:
        transport.infer(states(1))
    assert str(info.value).startswith(
        f"the openpi policy server at {server.url} dropped the connection twice while answering request 0 ("
    )
    assert str(info.value).endswith("; gave up")


def test_a_server_that_dies_mid_episode_reconnects_once_then_fails_clearly(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    server = fake()
    transport = OpenpiTransport(server.url, max_connections=2, timeout=5)
    transports.append(transport)
    transport.infer(states(2))
    server.die()
    start = time.monotonic()
    with pytest.raises(RemotePolicyError) as info:
        transport.infer(states(2))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith(f"the openpi policy server at {server.url} dropped the connection (")
    assert f"reconnecting failed: cannot connect to the openpi policy server at {server.url}: " in message
    assert "\n" not in message


def test_a_wrong_url_fails_at_construction_naming_it() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(RemotePolicyError) as info:
        OpenpiTransport(url)
    assert time.monotonic() - start < 2
    assert str(info.value).startswith(
        f"cannot connect to the openpi policy server at {url}: connection refused"
    )
    with pytest.raises(ConfigError, match="url must be ws://HOST:PORT"):
        OpenpiTransport("http://127.0.0.1:8000")
    with pytest.raises(ConfigError, match=r"max_connections must be an integer in 1\.\.1024"):
        OpenpiTransport("ws://127.0.0.1:1", max_connections=0)
    with pytest.raises(ConfigError, match="timeout must be a number of seconds > 0"):
        OpenpiTransport("ws://127.0.0.1:1", timeout=float("nan"))


# --------------------------------------------------------------------------- trialrun's openpi server


@pytest.fixture
def serve(cleanup: list[Callable[[], None]]) -> Callable[..., OpenpiPolicyServer]:
    def start(
        policy: str = "pendulum-swingup",
        context: PolicyContext = PENDULUM,
        token: str | None = None,
        **options: Any,
    ) -> OpenpiPolicyServer:
        limits = ServerLimits(**options.pop("limits", {}))
        server = OpenpiPolicyServer(policy, {}, context, port=0, token=token, limits=limits, **options)
        server.start()
        cleanup.append(server.stop)
        return server

    return start


def test_served_controller_gives_exactly_its_local_actions(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve()
    transport = OpenpiTransport(server.url, max_connections=4)
    transports.append(transport)
    assert transport.metadata == {
        "server": "trialrun",
        "policy": "pendulum-swingup",
        "env_id": "Pendulum-v1",
        "action_horizon": 1,
        "action_dim": 1,
        "observation_keys": ["observation/state"],
    }
    assert_serves_swingup_exactly(transport, steps=60)


def assert_serves_swingup_exactly(transport: OpenpiTransport, steps: int) -> None:
    """8 Pendulum worlds driven through ``transport`` get exactly the actions 'pendulum-swingup' gives locally."""
    envs = gym.make_vec("Pendulum-v1", num_envs=8, vectorization_mode="sync")
    local = build_policy("pendulum-swingup", {}, PolicyContext(*_fields(PENDULUM, num_envs=8)))
    obs, _ = envs.reset(seed=3)
    try:
        for _ in range(steps):
            replies = transport.infer([{"observation/state": row} for row in obs])
            remote = np.concatenate([r["actions"] for r in replies])
            want = local.act(obs)
            assert remote.shape == (8, 1) and remote.dtype == want.dtype
            np.testing.assert_array_equal(remote, want)
            obs, *_ = envs.step(remote)
    finally:
        envs.close()


def _fields(context: PolicyContext, num_envs: int) -> tuple[Any, ...]:
    return (context.env_id, num_envs, context.observation_space, context.action_space, {})


def test_a_job_through_openpi_records_what_the_local_job_records(
    serve: Callable[..., OpenpiPolicyServer], tmp_path: Path
) -> None:
    server = serve()
    served = {"type": "openpi", "url": server.url, "timeout": 10, "kwargs": {"max_connections": 2}}
    outcomes = {}
    for name, policy in [("local", "pendulum-swingup"), ("served", served)]:
        job = {
            "name": "j",
            "env": "Pendulum-v1",
            "policy": policy,
            "episodes": 4,
            "num_envs": 2,
            "max_steps": 60,
        }
        config = parse_run_config({"name": name, "seed": 5, "jobs": [job]})
        assert run_evaluation(config, tmp_path / name).statuses == {"j": "completed"}
        lines = (tmp_path / name / "episodes.jsonl").read_text().splitlines()
        outcomes[name] = {r["episode"]: r["outcome"] for r in map(json.loads, lines)}
    assert outcomes["served"] == outcomes["local"] and len(outcomes["local"]) == 4


def test_our_server_answers_a_failure_as_openpi_does(serve: Callable[..., OpenpiPolicyServer]) -> None:
    server = serve()
    with ws_client.connect(server.url, compression=None, proxy=None) as ws:
        assert unpackb(ws.recv())["policy"] == "pendulum-swingup"
        ws.send(packb({"wrong": np.zeros(3)}))
        text = ws.recv()
        assert isinstance(text, str) and text.startswith("Traceback (most recent call last):\n")
        assert (
            text.rstrip().splitlines()[-1]
            == "ValueError: the request has no 'observation/state' (its keys: wrong)"
        )
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, ERROR_CLOSE_REASON)


def test_a_failing_openpi_server_fails_its_job_with_the_traceback_in_the_manifest(
    serve: Callable[..., OpenpiPolicyServer], tmp_path: Path
) -> None:
    server = serve(obs_key="observation/joints")  # the client sends observation/state: every request fails
    common = {"env": "Pendulum-v1", "episodes": 2, "num_envs": 2, "max_steps": 20}
    jobs = [
        {"name": "broken", "policy": {"type": "openpi", "url": server.url}, **common},
        {"name": "fine", "policy": "pendulum-swingup", **common},
    ]
    result = run_evaluation(parse_run_config({"name": "t", "seed": 1, "jobs": jobs}), tmp_path / "run")
    assert result.statuses == {"broken": "failed", "fine": "completed"}
    job = read_manifest(tmp_path / "run").jobs["broken"]
    assert (job.error or "").startswith(
        f"OpenpiServerError: openpi policy server {server.url}: the server failed: "
        "ValueError: the request has no 'observation/joints' (its keys: observation/state)"
    )
    assert (job.traceback or "").startswith("Traceback (most recent call last):\n")
    assert "openpi_server.py" in (job.traceback or "")


def test_a_dict_observation_and_the_prompt_reach_the_served_policy(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    space = gym.spaces.Dict(
        {
            "joints": gym.spaces.Box(-1, 1, (2,), np.float32),
            "image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
        }
    )
    context = PolicyContext("X-v0", 1, space, gym.spaces.Box(-9, 9, (2,), np.float32), {})
    server = serve(f"{__name__}:PromptLength", context)
    transport = OpenpiTransport(server.url)
    transports.append(transport)
    assert transport.metadata["observation_keys"] == [
        "observation/image",
        "observation/joints",
    ]  # gym sorts keys
    image = np.full((4, 4, 3), 7, np.uint8)
    request = {"observation/joints": [0.5, 0.25], "observation/image": image, "prompt": "open the drawer"}
    reply = transport.infer([request, {**request, "prompt": "go"}])
    np.testing.assert_array_equal(reply[0]["actions"], np.array([[15.0 + 0.5 + 7, 0.25]], np.float32))
    np.testing.assert_array_equal(reply[1]["actions"], np.array([[2.0 + 0.5 + 7, 0.25]], np.float32))


class PromptLength:
    """A language-conditioned test policy: the prompt's length plus joint 0 plus a pixel, and joint 1."""

    def __init__(self, context: PolicyContext) -> None:
        self.num_envs = context.num_envs

    def act(self, obs: dict[str, np.ndarray], instruction: Any) -> np.ndarray:
        texts = instruction if isinstance(instruction, list) else [instruction] * self.num_envs
        joints, image = obs["joints"], obs["image"]
        assert joints.shape == (1, 2) and joints.dtype == np.float32 and image.dtype == np.uint8
        first = np.array([len(t or "") for t in texts]) + joints[:, 0] + image[:, 0, 0, 0]
        return np.stack([first, joints[:, 1]], axis=1).astype(np.float32)

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless."""


def test_a_token_is_checked_as_openpis_api_key(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve(token="s3cret")
    transports.append(OpenpiTransport(server.url, api_key="s3cret"))
    with pytest.raises(RemotePolicyError) as info:
        OpenpiTransport(server.url, api_key="wrong")
    assert str(info.value).startswith(
        f"the openpi policy server at {server.url} refused the api_key it was sent"
    )
    with pytest.raises(RemotePolicyError, match="refused the connection: no api_key was set"):
        OpenpiTransport(server.url)
    with urllib.request.urlopen(server.url.replace("ws://", "http://") + "/healthz", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"OK\n")


def test_connections_over_the_cap_are_refused(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve(limits={"max_connections": 2})
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    transport.infer([{"observation/state": np.zeros(3, np.float32)}] * 2)
    with pytest.raises(RemotePolicyError, match=r"refused the connection \(HTTP 503: server busy"):
        OpenpiTransport(server.url)


def test_serve_policy_protocol_openpi_from_the_command_line(transports: list[OpenpiTransport]) -> None:
    cli = (sys.executable, "-m", "trialrun.cli", "serve-policy")
    proc = subprocess.Popen(
        [*cli, "pendulum-swingup", "--protocol", "openpi", "--env", "Pendulum-v1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(
            r"serving policy 'pendulum-swingup' on (ws://127\.0\.0\.1:\d+) \(openpi protocol", line
        )
        assert found, line
        transport = OpenpiTransport(found.group(1))
        transports.append(transport)
        obs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], np.float32)
        local = build_policy("pendulum-swingup", {}, PolicyContext(*_fields(PENDULUM, num_envs=2)))
        remote = np.concatenate(
            [r["actions"] for r in transport.infer([{"observation/state": o} for o in obs])]
        )
        np.testing.assert_array_equal(remote, local.act(obs))
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    for args, message in [
        (["zero", "--protocol", "openpi"], "--protocol openpi needs --env ENV_ID"),
        (["zero", "--env", "Pendulum-v1"], "--env and --obs-key apply only to --protocol openpi"),
        (["zero", "--protocol", "grpc"], "--protocol must be one of trialrun, openpi, got 'grpc'"),
    ]:
        done = subprocess.run([*cli, *args], capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith(f"trialrun: error: {message}"), done.stderr


# --------------------------------------------------------------------------- requests answered together


class CountingSwingUp:
    """pendulum-swingup that counts its calls and the observations in each (a batch policy)."""

    calls: ClassVar[list[int]] = []

    def __init__(self, context: PolicyContext) -> None:
        self.inner = build_policy("pendulum-swingup", {}, context)
        CountingSwingUp.calls = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        CountingSwingUp.calls.append(len(obs))
        return np.asarray(self.inner.act(obs))

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless."""


class OneAtATime(CountingSwingUp):
    """A policy that takes exactly one observation per call (it was built for one world)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        if len(obs) != 1:
            raise ValueError(f"built for 1 world, got {len(obs)}")
        return super().act(obs)


def pendulum_requests(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    angles, speeds = rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)
    states = np.stack([np.cos(angles), np.sin(angles), speeds], axis=1).astype(np.float32)
    return [{"observation/state": state} for state in states]


def test_requests_answered_together_take_one_policy_call_and_get_their_own_actions() -> None:
    server = OpenpiPolicyServer(f"{__name__}:CountingSwingUp", {}, PENDULUM, port=0)
    requests = pendulum_requests(7)
    together = server.answer_many(requests)
    assert CountingSwingUp.calls == [7]
    alone = [server.answer(request) for request in requests]
    assert CountingSwingUp.calls == [7, 1, 1, 1, 1, 1, 1, 1]
    for batched, single in zip(together, alone, strict=True):
        assert isinstance(batched, dict)
        assert batched["actions"].shape == (1, 1) and batched["actions"].dtype == single["actions"].dtype
        np.testing.assert_array_equal(batched["actions"], single["actions"])
        assert list(batched["server_timing"]) == ["infer_ms"]
    assert server.batching


def test_a_policy_that_cannot_take_a_batch_is_asked_one_request_at_a_time_from_then_on() -> None:
    server = OpenpiPolicyServer(f"{__name__}:OneAtATime", {}, PENDULUM, port=0)
    requests = pendulum_requests(3)
    first = server.answer_many(requests)
    assert not server.batching
    assert CountingSwingUp.calls == [1, 1, 1]  # the batch of 3 raised before it was counted
    again = server.answer_many(requests)
    assert CountingSwingUp.calls == [1, 1, 1, 1, 1, 1]
    for a, b, request in zip(first, again, requests, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        np.testing.assert_array_equal(a["actions"], b["actions"])
        np.testing.assert_array_equal(a["actions"], server.answer(request)["actions"])


def test_a_bad_request_among_those_answered_together_fails_alone() -> None:
    server = OpenpiPolicyServer(f"{__name__}:CountingSwingUp", {}, PENDULUM, port=0)
    requests = pendulum_requests(3)
    requests[1] = {"observation/joints": np.zeros(3, np.float32)}
    results = server.answer_many(requests)
    assert CountingSwingUp.calls == [2]
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "the request has no 'observation/state' (its keys: observation/joints)"
    for i in (0, 2):
        result = results[i]
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["actions"], server.answer(requests[i])["actions"])


def test_sixteen_connections_get_the_actions_of_their_own_observations(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve(f"{__name__}:CountingSwingUp")
    transport = OpenpiTransport(server.url, max_connections=16)
    transports.append(transport)
    local = build_policy("pendulum-swingup", {}, PolicyContext(*_fields(PENDULUM, num_envs=16)))
    for seed in range(20):
        requests = pendulum_requests(16, seed)
        remote = np.concatenate([r["actions"] for r in transport.infer(requests)])
        np.testing.assert_array_equal(remote, local.act(np.stack([r["observation/state"] for r in requests])))
    assert sum(CountingSwingUp.calls) == 20 * 16
    assert server.batching


# --------------------------------------------------------------------------- the server's wire and limits


def test_openpis_own_client_settings_get_metadata_then_replies_with_timing(
    serve: Callable[..., OpenpiPolicyServer],
) -> None:
    server = serve()
    # as openpi_client.websocket_client_policy connects
    with ws_client.connect(server.url, compression=None, max_size=None, proxy=None) as ws:
        assert unpackb(ws.recv())["action_dim"] == 1
        timings = []
        for request in pendulum_requests(2):
            ws.send(packb(request))
            reply = unpackb(ws.recv())
            assert reply["actions"].shape == (1, 1)
            timings.append(sorted(reply["server_timing"]))
        assert timings == [["infer_ms"], ["infer_ms", "prev_total_ms"]]


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    serve: Callable[..., OpenpiPolicyServer],
) -> None:
    server = serve(limits={"session_idle_timeout": 0.3})
    start = time.monotonic()  # the server counts from the handshake
    with ws_client.connect(server.url, compression=None, proxy=None) as ws:
        ws.recv()  # the metadata
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert 0.3 <= time.monotonic() - start < 2.0
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "no request within 0.3 s")


def test_the_client_drops_idle_connections_the_server_closed_without_resending(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve(limits={"session_idle_timeout": 0.2})
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    first = transport.infer(pendulum_requests(2))
    time.sleep(0.8)  # the server closes both connections meanwhile
    again = transport.infer(pendulum_requests(2))
    assert transport.reconnects == 0
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["actions"], b["actions"])


def test_a_request_over_the_servers_frame_limit_is_refused_as_too_big(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve(limits={"max_frame_bytes": 1000, "max_buffered_bytes": 4000})
    transport = OpenpiTransport(server.url)
    transports.append(transport)
    request = {**pendulum_requests(1)[0], "observation/image": np.zeros(2000, np.uint8)}
    with pytest.raises(RemotePolicyError) as info:
        transport.infer([request])
    assert str(info.value).startswith(
        f"the openpi policy server at {server.url} refused request 0 as too big ("
    )
    assert len(transport.infer(pendulum_requests(1))) == 1  # a new connection


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_binary_frame_is_what_websockets_parses_on_either_side(size: int) -> None:
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    server = ServerProtocol(state=State.OPEN, max_size=None)  # reads masked frames, as a client sends
    server.receive_data(binary_frame(payload, masked=True))
    client = ClientProtocol(parse_uri("ws://x"), state=State.OPEN, max_size=None)  # reads unmasked ones
    client.receive_data(binary_frame(payload, masked=False))
    for protocol in (server, client):
        (frame,) = protocol.events_received()
        assert (frame.opcode.name, frame.fin, frame.data) == ("BINARY", True, payload)
        assert protocol.data_to_send() == []  # nothing to complain about
    masks = {binary_frame(b"x", masked=True)[2:6] for _ in range(8)}
    assert len(masks) == 8  # a fresh mask per frame


def test_a_handshake_answer_that_arrives_in_pieces_is_read_whole(transports: list[OpenpiTransport]) -> None:
    import socket

    from websockets.server import ServerProtocol

    listener = socket.create_server(("127.0.0.1", 0))

    def serve_in_pieces() -> None:
        conn, _ = listener.accept()
        protocol = ServerProtocol()
        while not (events := protocol.events_received()):
            protocol.receive_data(conn.recv(65536))
        protocol.send_response(protocol.accept(events[0]))
        answer = b"".join(protocol.data_to_send()) + binary_frame(packb({"action_horizon": 3}), masked=False)
        for piece in (answer[:20], answer[20:-5], answer[-5:]):  # mid-header, mid-frame
            conn.sendall(piece)
            time.sleep(0.05)
        conn.recv(1)  # until the client closes
        conn.close()

    thread = threading.Thread(target=serve_in_pieces, daemon=True)
    thread.start()
    transport = OpenpiTransport(f"ws://127.0.0.1:{listener.getsockname()[1]}", timeout=5)
    transports.append(transport)
    assert transport.metadata == {"action_horizon": 3}
    transport.close()
    thread.join(5)
    listener.close()


def test_request_bytes_in_flight_are_released_once_answered_fragmented_or_not(
    serve: Callable[..., OpenpiPolicyServer],
) -> None:
    server = serve()
    frame = packb(pendulum_requests(1)[0])
    with ws_client.connect(server.url, compression=None, proxy=None, ping_interval=None) as ws:
        ws.recv()  # the metadata
        for _ in range(3):
            ws.send([frame[:10], frame[10:20], frame[20:]])  # one message in three frames
            assert unpackb(ws.recv())["actions"].shape == (1, 1)
            ws.send(frame)
            assert unpackb(ws.recv())["actions"].shape == (1, 1)
        assert server._budget.total == 0
        assert server._budget.peak >= len(frame)


def test_connections_a_keepalive_closed_while_idle_are_replaced_quietly(
    fake: Any, transports: list[OpenpiTransport], caplog: pytest.LogCaptureFixture
) -> None:
    # openpi's server pings every 20 s and closes with 1011 "keepalive ping timeout" when no
    # pong comes; between steps nothing reads this client's sockets, so a long pause gets there
    server = fake(ping_interval=0.1, ping_timeout=0.1)
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    first = transport.infer(states(2))
    time.sleep(0.8)
    with caplog.at_level(logging.WARNING, logger="trialrun.policies.vla.openpi"):
        again = transport.infer(states(2))
    assert transport.reconnects == 0 and caplog.records == []
    assert len(server.headers) == 4  # two connections, then two new ones
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["actions"], b["actions"])


def test_a_reply_over_max_message_bytes_is_refused_naming_the_limit(
    fake: Any, transports: list[OpenpiTransport]
) -> None:
    server = fake()  # metadata of 17 bytes, replies of about 200
    transport = OpenpiTransport(server.url, max_message_bytes=100)
    transports.append(transport)
    with pytest.raises(RemotePolicyError) as info:
        transport.infer(states(1))
    assert str(info.value) == (
        f"the openpi policy server at {server.url} answered request 0 with a frame over 100 bytes "
        "(max_message_bytes)"
    )


def test_requests_bigger_than_a_socket_buffer_go_out_in_pieces(
    serve: Callable[..., OpenpiPolicyServer], transports: list[OpenpiTransport]
) -> None:
    server = serve()
    transport = OpenpiTransport(server.url, max_connections=2)
    transports.append(transport)
    image = np.arange(8 << 20, dtype=np.uint8)  # 8 MiB each: several sends per request
    requests = [{**request, "observation/image": image} for request in pendulum_requests(3)]
    replies = transport.infer(requests)
    small = transport.infer(pendulum_requests(3))
    for big, plain in zip(replies, small, strict=True):
        np.testing.assert_array_equal(big["actions"], plain["actions"])


class _SlowUplink:
    """A TCP proxy that passes the client's bytes to the server 4 KiB per millisecond: a
    big request stays partly unsent in the client for a while, as over a real network."""

    def __init__(self, upstream_port: int) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}"
        self.upstream_port = upstream_port
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        for source, sink, pause in ((client, server, 0.001), (server, client, 0.0)):
            thread = threading.Thread(target=self._pipe, args=(source, sink, pause), daemon=True)
            thread.start()
            self.threads.append(thread)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, pause: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(4096):
                sink.sendall(data)
                time.sleep(pause)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.listener.close()


def test_a_pong_owed_while_a_big_request_is_still_going_out_is_sent_after_it(
    fake: Any, transports: list[OpenpiTransport], cleanup: list[Callable[[], None]]
) -> None:
    # openpi's server pings every 20 s; a ping read while a request is only partly sent
    # must be answered after the request's last byte: a pong written into the middle of
    # a frame corrupts the stream, and one dropped because the socket buffer is full
    # lets the keepalive close the connection (1011) 20 s later.
    server = fake()
    proxy = _SlowUplink(int(server.url.rsplit(":", 1)[1]))
    cleanup.append(proxy.stop)
    transport = OpenpiTransport(proxy.url, max_connections=1)
    transports.append(transport)
    transport.infer(states(1))
    transport._idle[0].sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    pongs: list[Any] = []
    # the request below takes ~0.5 s to go through the proxy: the ping comes in the middle
    threading.Timer(0.15, lambda: pongs.append(server.connections[0].ping())).start()
    image = np.arange(2 << 20, dtype=np.uint8)  # 2 MiB
    reply = transport.infer([{**states(1)[0], "observation/image": image}])
    np.testing.assert_array_equal(reply[0]["actions"], chunk_of_state(states(1)[0], None)["actions"])
    assert len(pongs) == 1 and pongs[0].wait(2)
    assert transport.reconnects == 0 and len(server.headers) == 1
