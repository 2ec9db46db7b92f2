"""The GR00T transport against a test server that speaks Isaac GR00T's ZeroMQ protocol.

The server below follows ``gr00t/policy/server_client.py`` (``PolicyServer``,
``MsgSerializer``) of Isaac-GR00T N1.6, and ``gr00t/eval/service.py`` for
N1.5: a REP socket, msgpack requests ``{"endpoint", "data", "api_token"}``,
arrays as ``{"__ndarray_class__": True, "as_npy": np.save bytes}``, the token
checked before the endpoint, ``{"error": str(e)}`` for any failure. Its
serializer is written here from GR00T's code, not taken from trialrun, so the
tests check compatibility rather than agreement with itself.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import msgpack
import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from trialrun.errors import ConfigError, RemotePolicyError  # noqa: E402
from trialrun.policies.vla import gr00t_codec  # noqa: E402
from trialrun.policies.vla.gr00t import Gr00tServerError, Gr00tTransport  # noqa: E402

HORIZON = 4
INSTRUCTION_KEY = "annotation.human.task_description"


# -- GR00T's serializer, as in gr00t/policy/server_client.py -----------------------------------


def _gr00t_encode_custom(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        output = io.BytesIO()
        np.save(output, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": output.getvalue()}
    return obj


def _gr00t_decode_custom(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    if "__ModalityConfig_class__" in obj:
        return obj
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    return obj


def gr00t_to_bytes(data: Any) -> bytes:
    packed: bytes = msgpack.packb(data, default=_gr00t_encode_custom)
    return packed


def gr00t_from_bytes(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_gr00t_decode_custom)


# -- a deterministic controller ------------------------------------------------------------------


def controller(observation: dict[str, Any]) -> dict[str, np.ndarray]:
    """Flat GR00T observation (B leading) -> ``action.arm`` (B, H, 2) and ``action.gripper`` (B, H, 1)."""
    state = observation["state.joints"]  # (B, 1, 3) float32
    video = observation["video.front"]  # (B, 1, 8, 8, 3) uint8
    texts = observation[INSTRUCTION_KEY]  # list of B strings
    if state.dtype != np.float32 or state.ndim != 3 or video.dtype != np.uint8 or video.ndim != 5:
        raise ValueError(f"bad shapes {state.dtype} {state.shape} {video.dtype} {video.shape}")
    if not isinstance(texts, list) or len(texts) != len(state):
        raise ValueError("language must be a list with one text per world")
    steps = np.arange(1, HORIZON + 1, dtype=np.float32)[None, :, None]
    brightness = video.reshape(len(video), -1).mean(axis=1).astype(np.float32)[:, None, None] / 255.0
    length = np.array([len(t) for t in texts], dtype=np.float32)[:, None, None]
    arm = state[:, :, :2] * steps + brightness + length
    gripper = np.repeat(state.sum(axis=2, keepdims=True), HORIZON, axis=1) - length
    return {"action.arm": arm.astype(np.float32), "action.gripper": gripper.astype(np.float32)}


def local_actions(
    request: dict[str, Any], order: tuple[str, ...] = ("action.arm", "action.gripper")
) -> np.ndarray:
    """What the controller gives one world, computed here without any wire: (H, 3)."""
    observation = {
        "state.joints": np.asarray(request["state.joints"], np.float32)[None, None],
        "video.front": np.asarray(request["video.front"])[None, None],
        INSTRUCTION_KEY: [request[INSTRUCTION_KEY]],
    }
    out = controller(observation)
    return np.concatenate([out[k][0] for k in order], axis=-1)


def make_requests(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    texts = ["pick the cube", "open the drawer", "push", "stack the red block"]
    return [
        {
            "state.joints": rng.normal(size=3),  # float64, as a Box env gives it
            "video.front": rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8),
            INSTRUCTION_KEY: texts[i % len(texts)],
        }
        for i in range(n)
    ]


# -- the server ----------------------------------------------------------------------------------


class FakeGr00tServer:
    """A GR00T ``PolicyServer`` in a thread (REP socket, one request at a time).

    ``api``: ``n1.6`` (``get_action(**data)`` -> ``[actions, info]``, has ``reset``),
    ``n1.6-nested`` (the same, nested observation), ``n1.5`` (``get_action(data)`` -> actions, no reset).
    ``before_reply(server, endpoint, n)`` may sleep or return ``"die"`` (close without answering).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        api: str = "n1.6",
        api_token: str | None = None,
        before_reply: Callable[[FakeGr00tServer, str, int], str | None] | None = None,
        fail_with: str | None = None,
    ) -> None:
        self.api = api
        self.api_token = api_token
        self.before_reply = before_reply
        self.fail_with = fail_with
        self.requests: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        if port is None:
            self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.socket.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        self.running = True
        self.endpoints: dict[str, tuple[Callable[..., Any], bool]] = {
            "ping": (lambda: {"status": "ok", "message": "Server is running"}, False),
            "kill": (self._kill, False),
            "get_action": (self._get_action, True),
            "get_modality_config": (lambda: {}, False),
        }
        if api != "n1.5":
            self.endpoints["reset"] = (lambda options=None: {}, True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _kill(self) -> dict[str, Any]:
        self.running = False
        return {}

    def _get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
        """N1.6 is called ``handler(**data)``, N1.5 ``handler(data)``: Python's own TypeError on a mismatch."""
        if self.api == "n1.5":
            return self._compute(observation)
        if self.api == "n1.6-nested":
            flat = {f"video.{k}": v for k, v in observation["video"].items()}
            flat |= {f"state.{k}": v for k, v in observation["state"].items()}
            for key, value in observation["language"].items():
                if not all(isinstance(item, list) and len(item) == 1 for item in value):
                    raise ValueError("language must be list[list[str]]")
                flat[key] = [item[0] for item in value]
            actions = {k.removeprefix("action."): v for k, v in self._compute(flat).items()}
            return actions, {}
        return self._compute(observation), {}

    def _compute(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.fail_with is not None:
            raise ValueError(self.fail_with)
        return controller(observation)

    def _run(self) -> None:
        while self.running:
            if not self.socket.poll(20):
                continue
            message = self.socket.recv()
            try:
                request = gr00t_from_bytes(message)
                self.requests.append(request)
                if self.api_token is not None and request.get("api_token") != self.api_token:
                    self.socket.send(gr00t_to_bytes({"error": "Unauthorized: Invalid API token"}))
                    continue
                endpoint = request.get("endpoint", "get_action")
                if endpoint not in self.endpoints:
                    raise ValueError(f"Unknown endpoint: {endpoint}")
                self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
                if (
                    self.before_reply is not None
                    and self.before_reply(self, endpoint, self.calls[endpoint]) == "die"
                ):
                    self.running = False
                    self.socket.close(linger=0)  # the process died holding the request
                    return
                handler, requires_input = self.endpoints[endpoint]
                if requires_input:
                    data = request.get("data", {})
                    result = handler(data) if self.api == "n1.5" else handler(**data)
                else:
                    result = handler()
                self.socket.send(gr00t_to_bytes(result))
            except Exception as e:  # exactly what GR00T's server does
                self.socket.send(gr00t_to_bytes({"error": str(e)}))

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        if not self.socket.closed:
            self.socket.close(linger=0)
        self.context.term()

    def observations(self) -> list[Any]:
        return [r["data"] for r in self.requests if r.get("endpoint") == "get_action"]


@pytest.fixture
def servers() -> Any:
    started: list[FakeGr00tServer] = []

    def start(**kwargs: Any) -> FakeGr00tServer:
        server = FakeGr00tServer(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def transports() -> Any:
    opened: list[Gr00tTransport] = []

    def connect(port: int, **kwargs: Any) -> Gr00tTransport:
        transport = Gr00tTransport("127.0.0.1", port, **kwargs)
        opened.append(transport)
        return transport

    yield connect
    for transport in opened:
        transport.close()


# -- batching --------------------------------------------------------------------------------


def test_a_batch_gives_each_world_what_the_controller_computes_locally(servers: Any, transports: Any) -> None:
    server = servers()
    transport = transports(server.port)
    requests = make_requests(5)
    replies = transport.infer(requests)
    assert len(replies) == 5
    for request, reply in zip(requests, replies, strict=True):
        assert reply["actions"].shape == (HORIZON, 3)
        np.testing.assert_allclose(reply["actions"], local_actions(request), rtol=1e-6)
    (batched,) = server.observations()
    observation = batched["observation"]
    assert batched["options"] is None
    assert observation["video.front"].shape == (5, 1, 8, 8, 3)
    assert observation["state.joints"].dtype == np.float32 and observation["state.joints"].shape == (5, 1, 3)
    assert observation[INSTRUCTION_KEY] == [r[INSTRUCTION_KEY] for r in requests]
    assert transport.address == f"tcp://127.0.0.1:{server.port}"
    assert [r["endpoint"] for r in server.requests] == ["ping", "get_action"]
    assert "data" not in server.requests[0]  # ping takes no input, as GR00T's client sends it


def test_action_keys_choose_the_order_of_the_parts(servers: Any, transports: Any) -> None:
    server = servers()
    transport = transports(server.port, action_keys=["gripper", "action.arm"])  # with or without 'action.'
    requests = make_requests(3)
    for request, reply in zip(requests, transport.infer(requests), strict=True):
        np.testing.assert_allclose(reply["actions"], local_actions(request, ("action.gripper", "action.arm")))
    missing = transports(server.port, action_keys=["base"])
    with pytest.raises(
        RemotePolicyError, match=r"without action 'base' \(it sent action.arm, action.gripper\)"
    ):
        missing.infer(requests)


def test_nested_and_n15_servers(servers: Any, transports: Any) -> None:
    requests = make_requests(3, seed=1)
    expected = [local_actions(r) for r in requests]
    nested = servers(api="n1.6-nested")
    for reply, want in zip(transports(nested.port, api="n1.6-nested").infer(requests), expected, strict=True):
        np.testing.assert_allclose(reply["actions"], want)
    observation = nested.observations()[0]["observation"]
    assert observation["language"][INSTRUCTION_KEY] == [[r[INSTRUCTION_KEY]] for r in requests]
    assert observation["video"]["front"].shape == (3, 1, 8, 8, 3)

    old = servers(api="n1.5")
    transport = transports(old.port, api="n1.5")
    for reply, want in zip(transport.infer(requests), expected, strict=True):
        np.testing.assert_allclose(reply["actions"], want)
    assert old.observations()[0]["state.joints"].shape == (3, 1, 3)  # data is the observation itself
    transport.reset([0])
    assert "reset" not in [r["endpoint"] for r in old.requests]


def test_a_version_mismatch_names_the_api_setting(servers: Any, transports: Any) -> None:
    server = servers(api="n1.6")
    transport = transports(server.port, api="n1.5")
    with pytest.raises(Gr00tServerError, match=r"unexpected keyword argument.*api is n1\.5"):
        transport.infer(make_requests(1))


def test_reset_is_sent_to_servers_that_have_it(servers: Any, transports: Any) -> None:
    server = servers()
    transport = transports(server.port)
    transport.reset([0, 2])
    transport.reset([])
    resets = [r for r in server.requests if r["endpoint"] == "reset"]
    assert resets == [{"endpoint": "reset", "data": {"options": None}}]

    without = servers(api="n1.5")  # answers "Unknown endpoint: reset"
    transport = transports(without.port)
    transport.reset([0])
    transport.reset([1])
    assert [r["endpoint"] for r in without.requests].count("reset") == 1


def test_a_request_key_without_value_is_left_out(servers: Any, transports: Any) -> None:
    server = servers()
    requests = make_requests(2)
    for r in requests:
        r["prompt"] = None
    transports(server.port).infer(requests)
    assert "prompt" not in server.observations()[0]["observation"]


# -- token and errors ------------------------------------------------------------------------


def test_api_token_is_sent_and_checked(servers: Any, transports: Any) -> None:
    server = servers(api_token="s3cret")
    transport = transports(server.port, api_token="s3cret")
    transport.infer(make_requests(2))
    assert [r["api_token"] for r in server.requests] == ["s3cret", "s3cret"]
    start = time.monotonic()
    with pytest.raises(RemotePolicyError, match=rf"tcp://127.0.0.1:{server.port} refused the api_token"):
        Gr00tTransport("127.0.0.1", server.port, api_token="wrong")
    with pytest.raises(RemotePolicyError, match="wants an api_token and none was set"):
        Gr00tTransport("127.0.0.1", server.port)
    assert time.monotonic() - start < 5


def test_an_error_reply_is_a_clear_error_with_the_whole_text(servers: Any, transports: Any) -> None:
    server = servers(fail_with="state.joints has 3 values, the model wants 7\nmore detail here")
    transport = transports(server.port)
    with pytest.raises(Gr00tServerError) as caught:
        transport.infer(make_requests(2))
    assert str(caught.value) == (
        f"the GR00T policy server at tcp://127.0.0.1:{server.port} failed on 'get_action': "
        "state.joints has 3 values, the model wants 7"
    )
    assert caught.value.remote_traceback == "state.joints has 3 values, the model wants 7\nmore detail here"
    server.fail_with = None  # the REP socket answered: the same transport goes on
    assert len(transport.infer(make_requests(2))) == 2


# -- timeouts, dead servers ------------------------------------------------------------------


def test_a_timeout_fails_in_time_and_a_new_socket_works_after(servers: Any, transports: Any) -> None:
    def slow_first(server: FakeGr00tServer, endpoint: str, n: int) -> None:
        if endpoint == "get_action" and n == 1:
            time.sleep(2.5)

    server = servers(before_reply=slow_first)
    transport = transports(server.port, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(
        RemotePolicyError, match=rf"tcp://127.0.0.1:{server.port} did not answer 'get_action' within 1 s"
    ):
        transport.infer(make_requests(2))
    assert time.monotonic() - start < 1.0 + 2.0
    time.sleep(1.8)  # the server answers the lost request (to a socket that is gone)
    requests = make_requests(2, seed=3)
    for request, reply in zip(requests, transport.infer(requests), strict=True):
        np.testing.assert_allclose(reply["actions"], local_actions(request))


def die_on_second(server: FakeGr00tServer, endpoint: str, n: int) -> str | None:
    """The server process dies holding the second ``get_action`` (no reply, its socket closed)."""
    return "die" if endpoint == "get_action" and n == 2 else None


def test_a_server_that_dies_mid_run_is_reconnected_once_then_an_error(
    servers: Any, transports: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = servers(before_reply=die_on_second)
    transport = transports(server.port, timeout=20.0, connect_timeout=0.5)
    transport.infer(make_requests(2))
    start = time.monotonic()
    with pytest.raises(RemotePolicyError, match=rf"tcp://127.0.0.1:{server.port} went away"):
        transport.infer(make_requests(2))
    assert time.monotonic() - start < 5.0  # not the 20 s timeout
    assert "reconnecting and resending once" in caplog.text


def test_a_restarted_server_gets_the_request_again(servers: Any, transports: Any) -> None:
    first = servers(before_reply=die_on_second)
    transport = transports(first.port, timeout=10.0, connect_timeout=3.0)
    transport.infer(make_requests(2))
    restarted: list[FakeGr00tServer] = []

    def restart() -> None:
        first.thread.join(timeout=5)
        time.sleep(0.2)
        restarted.append(servers(port=first.port))

    threading.Thread(target=restart, daemon=True).start()
    requests = make_requests(2, seed=7)
    for request, reply in zip(requests, transport.infer(requests), strict=True):
        np.testing.assert_allclose(reply["actions"], local_actions(request))
    assert len(restarted[0].observations()) == 1


def test_a_wrong_address_fails_fast_naming_it() -> None:
    with zmq.Context() as context, context.socket(zmq.REP) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    start = time.monotonic()
    with pytest.raises(RemotePolicyError, match=rf"tcp://127.0.0.1:{port} is unreachable"):
        Gr00tTransport("127.0.0.1", port, timeout=30.0, connect_timeout=0.5)
    assert time.monotonic() - start < 3.0


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="port must be an integer"):
        Gr00tTransport("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="api must be one of"):
        Gr00tTransport("127.0.0.1", 5555, api="n2")
    with pytest.raises(ConfigError, match="timeout must be"):
        Gr00tTransport("127.0.0.1", 5555, timeout=float("nan"))
    with pytest.raises(ConfigError, match="action_keys"):
        Gr00tTransport("127.0.0.1", 5555, action_keys="action.arm")


def test_close_is_idempotent_and_refuses_later_calls(servers: Any) -> None:
    server = servers()
    transport = Gr00tTransport("127.0.0.1", server.port)
    transport.close()
    transport.close()
    with pytest.raises(RemotePolicyError, match="closed"):
        transport.infer(make_requests(1))


def test_the_server_policy_runs_over_the_transport(servers: Any) -> None:
    """The registry path (``gr00t_policy``) with chunks of 4 and ``replan_steps: 2``."""
    from trialrun.policies.base import PolicyContext
    from trialrun.policies.vla.factories import gr00t_policy

    server = servers()
    space = gym.spaces.Dict(
        {
            "joints": gym.spaces.Box(-5, 5, (3,), np.float64),
            "camera/front": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
        }
    )
    context = PolicyContext("X-v0", 2, space, gym.spaces.Box(-100, 100, (3,)), {}, instruction="push")
    obs_map = {
        "state.joints": "obs.joints",
        "video.front": "obs.camera/front",
        INSTRUCTION_KEY: "instruction",
    }
    policy = gr00t_policy(context, "127.0.0.1", server.port, obs_map=obs_map, replan_steps=2)
    try:
        rng = np.random.default_rng(0)
        obs: dict[str, np.ndarray] = {
            "joints": rng.normal(size=(2, 3)),
            "camera/front": rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8),
        }
        first = policy.act(obs)
        want = [
            local_actions(
                {
                    "state.joints": obs["joints"][i],
                    "video.front": obs["camera/front"][i],
                    INSTRUCTION_KEY: "push",
                }
            )
            for i in range(2)
        ]
        np.testing.assert_allclose(first, np.stack([w[0] for w in want]), rtol=1e-6)
        np.testing.assert_allclose(policy.act(obs), np.stack([w[1] for w in want]), rtol=1e-6)
        policy.act(obs)  # replans
        assert len(server.observations()) == 2
    finally:
        policy.close()


# -- the codec -------------------------------------------------------------------------------


def test_codec_round_trips_and_speaks_gr00ts_encoding() -> None:
    message = {
        "endpoint": "get_action",
        "data": {
            "observation": {
                "video.front": np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 1, 8, 8, 3),
                "state.joints": np.asfortranarray(np.ones((2, 3, 4), np.float32)),
                "flags": np.array([True, False]),
                "ints": np.arange(3, dtype=">i8"),
                "scalar": np.array(3.5),
                INSTRUCTION_KEY: ["a", "b"],
            },
            "options": None,
        },
        "api_token": "t",
        "np_scalar": np.float32(1.5),
    }
    ours = gr00t_codec.encode(message)
    theirs = gr00t_from_bytes(ours)
    for decoded in (theirs, gr00t_codec.decode(ours), gr00t_codec.decode(gr00t_to_bytes(theirs))):
        observation = decoded["data"]["observation"]
        for key, value in message["data"]["observation"].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(observation[key], value)
                assert observation[key].dtype == value.dtype
            else:
                assert observation[key] == value
        assert decoded["np_scalar"] == 1.5 and decoded["api_token"] == "t"
    assert gr00t_codec.decode(gr00t_to_bytes({"__ModalityConfig_class__": True, "as_json": {"a": 1}})) == {
        "__ModalityConfig_class__": True,
        "as_json": {"a": 1},
    }


def _npy_message(npy: Any) -> bytes:
    packed: bytes = msgpack.packb({"actions": {"__ndarray_class__": True, "as_npy": npy}})
    return packed


def test_codec_refuses_what_would_need_pickle_or_lie_about_sizes() -> None:
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"run": "os.system"}], dtype=object), allow_pickle=True)
    with pytest.raises(gr00t_codec.Gr00tCodecError, match=r"dtype object.*pickle"):
        gr00t_codec.decode(_npy_message(pickled.getvalue()))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="object arrays need pickle"):
        gr00t_codec.encode({"a": np.array([None, 1], dtype=object)})

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (9999999999,)}
    )
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="needs 79999999992 bytes, the payload has 32"):
        gr00t_codec.decode(_npy_message(header.getvalue() + bytes(32)))
    valid = gr00t_codec.npy_bytes(np.zeros(4, np.float64))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="needs 32 bytes, the payload has 31"):
        gr00t_codec.decode(_npy_message(valid[:-1]))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match=r"not a valid \.npy payload: unsupported format"):
        gr00t_codec.decode(_npy_message(b"\x93NUMPY garbage"))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match=r"not a valid \.npy payload"):
        gr00t_codec.decode(_npy_message(b"PK\x03\x04 an npz, say"))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="must be bytes"):
        gr00t_codec.decode(_npy_message("text"))
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="exceeds the limit of 10 bytes"):
        gr00t_codec.decode(gr00t_codec.encode({"a": "x" * 20}), max_bytes=10)
    with pytest.raises(gr00t_codec.Gr00tCodecError, match="not a valid GR00T"):
        gr00t_codec.decode(b"\xc1")


def test_a_refused_reply_is_a_remote_policy_error(transports: Any) -> None:
    """A server answering a pickled array: the transport refuses it and names the address."""
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    pickled = io.BytesIO()
    np.save(pickled, np.array([1, "x"], dtype=object), allow_pickle=True)

    def serve() -> None:
        socket.recv()
        socket.send(gr00t_to_bytes({"status": "ok"}))
        socket.recv()
        socket.send(
            msgpack.packb([{"action.arm": {"__ndarray_class__": True, "as_npy": pickled.getvalue()}}, {}])
        )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        transport = transports(port)
        with pytest.raises(
            RemotePolicyError,
            match=rf"tcp://127.0.0.1:{port} answered 'get_action' with a message trialrun refuses",
        ):
            transport.infer(make_requests(1))
    finally:
        thread.join(timeout=5)
        socket.close(linger=0)
        context.term()
