"""The bounds of ``trialrun serve-policy``: connections, sessions, frames, buffered bytes, tokens.

Real servers on 127.0.0.1 (port 0) and real websocket clients; every limit is set
small so each test takes about a second.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync import client as ws_client
from websockets.sync.client import ClientConnection

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.errors import RemotePolicyError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.remote import (
    PROTOCOL,
    _open_connection,
    packb,
    space_to_wire,
    unpackb,
)
from trialrun.policies.server import PolicyServer, ServerLimits
from trialrun.runfiles import read_manifest

CTX = PolicyContext(
    "CartPole-v1", 2, gym.spaces.Box(-5, 5, (4,), dtype=np.float32), gym.spaces.Discrete(2), {}
)
OBS = np.zeros((2, 4), np.float32)


@pytest.fixture
def serve() -> Iterator[Callable[..., PolicyServer]]:
    servers: list[PolicyServer] = []

    def start(token: str | None = None, **limits: Any) -> PolicyServer:
        server = PolicyServer("zero", {}, port=0, limits=ServerLimits(**limits), token=token)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def connect(url: str, **kwargs: Any) -> ClientConnection:
    """A websocket client connection the test closes itself (as the remote policy's own)."""
    conn: ClientConnection = _open_connection(ws_client, url, **kwargs)
    return conn


def hello(session: str = "a" * 32, resume: str | None = None) -> bytes:
    return packb(
        {
            "type": "hello",
            "protocol": PROTOCOL,
            "session": session,
            "resume": resume,
            "num_envs": 2,
            "observation_space": space_to_wire(CTX.observation_space),
            "action_space": space_to_wire(CTX.action_space),
        }
    )


def ask(ws: ClientConnection, message: bytes) -> dict[str, Any]:
    ws.send(message)
    reply: dict[str, Any] = unpackb(bytes(ws.recv(timeout=5, decode=False)))
    return reply


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_connection_over_the_cap_gets_503_and_the_server_serves_the_others(
    serve: Callable[..., PolicyServer],
) -> None:
    server = serve(max_connections=2)
    first, second = connect(server.url), connect(server.url)
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url)
    assert refused.value.response.status_code == 503
    assert refused.value.response.body == (
        b"server busy: 2 connections open (--max-connections 2); try again later\n"
    )
    assert ask(first, hello())["type"] == "ready"  # the open ones are unaffected
    second.close()
    first.close()
    wait_for(lambda: len(server._budget.admitted) == 0)
    policy = build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    assert policy.act(OBS).shape == (2,)
    policy.close()  # type: ignore[attr-defined]


def test_a_client_refused_for_too_many_connections_says_so_after_its_timeout(
    serve: Callable[..., PolicyServer],
) -> None:
    server = serve(max_connections=1)
    holder = connect(server.url)
    try:
        with pytest.raises(
            RemotePolicyError, match=r"unreachable \(HTTP 503: server busy: 1 connections open"
        ):
            build_policy("remote", {"url": server.url, "timeout": 0.5}, CTX)
    finally:
        holder.close()


def test_sessions_expire_are_evicted_and_one_connection_holds_one(serve: Callable[..., PolicyServer]) -> None:
    server = serve(session_idle_timeout=0.3, max_sessions=3)
    with connect(server.url) as ws:
        assert ask(ws, hello("s" * 32))["type"] == "ready"
        again = ask(ws, hello("t" * 32))
        assert again["type"] == "error" and "one hello per connection" in again["message"]
    wait_for(lambda: server.session_count == 0, 3)  # detached, then expired after 0.3 s idle

    server = serve(session_idle_timeout=60, max_sessions=3)
    for k in range(6):  # each hello on its own connection, then gone: the oldest idle ones are evicted
        with connect(server.url) as ws:
            assert ask(ws, hello(f"{k:032d}"))["type"] == "ready"
    assert server.session_count == 3
    held = [connect(server.url) for _ in range(3)]
    for k, ws in enumerate(held):
        assert ask(ws, hello(f"held{k:028d}"))["type"] == "ready"
    with connect(server.url) as ws:  # all three sessions are attached: nothing to evict
        full = ask(ws, hello("x" * 32))
    assert full == {
        "type": "error",
        "seq": None,
        "message": "the server holds 3 sessions, all in use (--max-sessions); try later",
        "fatal": False,
    }
    for ws in held:
        ws.close()


def test_an_attached_idle_connection_and_a_silent_one_are_closed(serve: Callable[..., PolicyServer]) -> None:
    server = serve(session_idle_timeout=0.3, hello_timeout=0.3)
    with connect(server.url) as silent, pytest.raises(ConnectionClosed) as closed:
        silent.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.reason == "no hello within 0.3 s"
    with connect(server.url) as idle:
        assert ask(idle, hello())["type"] == "ready"
        with pytest.raises(ConnectionClosed) as closed:
            idle.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.reason == "no request within 0.3 s"


def test_a_live_session_cannot_be_taken_over(serve: Callable[..., PolicyServer]) -> None:
    server = serve()
    owner = connect(server.url)
    ready = ask(owner, hello("o" * 32))
    secret = ready["resume"]
    assert ready["type"] == "ready" and len(secret) == 32
    with connect(server.url) as thief:
        stolen = ask(thief, hello("o" * 32))
    assert stolen["type"] == "error" and stolen["fatal"] is True
    assert stolen["message"] == "ValueError: session oooooooo exists and this hello does not hold its secret"
    with connect(server.url) as second:  # the secret alone is not enough while the owner is alive
        busy = ask(second, hello("o" * 32, resume=secret))
    assert busy == {
        "type": "error",
        "seq": None,
        "message": "session oooooooo is in use by another live connection",
        "fatal": False,
    }
    assert ask(owner, packb({"type": "act", "seq": 1, "obs": OBS}))["type"] == "action"  # still the owner's
    owner.close()
    with connect(server.url) as back:  # the owner's secret resumes it once the owner is gone
        resumed = ask(back, hello("o" * 32, resume=secret))
    assert resumed["type"] == "ready" and resumed["resumed"] is True


def test_token_required_accepted_and_wrong(
    serve: Callable[..., PolicyServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = serve(token="s3cret-token")
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url)
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"a token is required (Authorization: Bearer ...)\n"
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url, additional_headers={"Authorization": "Bearer nope"})
    assert refused.value.response.body == b"wrong token (Authorization: Bearer ...)\n"

    monkeypatch.delenv("TRIALRUN_TOKEN", raising=False)
    started = time.monotonic()
    with pytest.raises(RemotePolicyError) as missing:
        build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    assert time.monotonic() - started < 1  # no retrying: a refused token will not change
    assert str(missing.value) == (
        f"the policy server at {server.url} refused the connection: no token was sent (a token is required "
        "(Authorization: Bearer ...)); set 'token:' in the policy or TRIALRUN_TOKEN to the server's --token"
    )
    with pytest.raises(RemotePolicyError, match=r"refused the token it was sent \(wrong token"):
        build_policy("remote", {"url": server.url, "timeout": 5, "token": "nope"}, CTX)
    policy = build_policy("remote", {"url": server.url, "timeout": 5, "token": "s3cret-token"}, CTX)
    assert policy.act(OBS).shape == (2,)
    policy.close()  # type: ignore[attr-defined]
    monkeypatch.setenv("TRIALRUN_TOKEN", "s3cret-token")
    policy = build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    assert policy.act(OBS).shape == (2,)
    policy.close()  # type: ignore[attr-defined]

    # Through a run: the job fails with the one line, the run goes on.
    monkeypatch.setenv("TRIALRUN_TOKEN", "wrong")
    job = {"name": "j", "env": "CartPole-v1", "episodes": 2, "policy": {"type": "remote", "url": server.url}}
    result = run_evaluation(parse_run_config({"name": "t", "seed": 1, "jobs": [job]}), tmp_path / "run")
    assert result.statuses == {"j": "failed"}
    error = read_manifest(tmp_path / "run").jobs["j"].error or ""
    assert error.startswith(
        f"RemotePolicyError: the policy server at {server.url} refused the token it was sent"
    )


def _frame_header(length: int) -> bytes:
    """A masked binary frame header announcing ``length`` payload bytes (RFC 6455 5.2)."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, length) + b"\0\0\0\0"


def test_an_oversized_frame_is_refused_from_its_header(serve: Callable[..., PolicyServer]) -> None:
    server = serve(max_frame_bytes=1 << 20, max_buffered_bytes=1 << 20)
    with connect(server.url, max_size=None) as ws:
        ws.socket.sendall(_frame_header(200 << 20) + bytes(1 << 20))  # announces 200 MiB, sends 1 MiB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason == "frame with 209715200 bytes exceeds limit of 1048576 bytes"
    assert server._budget.peak < 1 << 20  # the payload was never held
    policy = build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    with pytest.raises(
        RemotePolicyError, match=r"refused a message as too big .*raise its --max-frame-bytes"
    ):
        policy.act(np.zeros((2, 300_000), np.float32))
    wait_for(lambda: server._budget.total == 0)


def test_buffered_bytes_over_the_cap_close_the_biggest_holder_with_1013(
    serve: Callable[..., PolicyServer],
) -> None:
    server = serve(max_frame_bytes=2 << 20, max_buffered_bytes=2 << 20)
    hog, other = connect(server.url), connect(server.url)
    hog.socket.sendall(_frame_header(2 << 20) + bytes(1_500_000))  # a 2 MiB frame, 1.5 MB of it so far
    wait_for(lambda: server._budget.total >= 1_500_000)
    other.socket.sendall(_frame_header(1 << 20) + bytes(1 << 20))  # would pass the cap
    with pytest.raises(ConnectionClosed) as closed:
        hog.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason == f"server busy: over {2 << 20} bytes of requests in flight; try again"
    answer = unpackb(
        bytes(other.recv(timeout=5, decode=False))
    )  # the other connection's frame went through (and is no msgpack)
    assert answer["type"] == "error"
    other.close()
    hog.close()
    wait_for(lambda: server._budget.total == 0)
    policy = build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    assert policy.act(OBS).shape == (2,)
    policy.close()  # type: ignore[attr-defined]


def test_serve_policy_options_and_the_no_token_warning() -> None:
    env = {k: v for k, v in subprocess_env().items() if k != "TRIALRUN_TOKEN"}
    proc = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "trialrun.cli",
                "serve-policy",
                "zero",
                "--port",
                "0",
                "--host",
                "0.0.0.0",
            ),
            *("--max-connections", "3", "--session-idle-timeout", "5", "--max-frame-bytes", "65536"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = re.search(r"on ws://0\.0\.0\.0:(\d+)", line)
        assert port, line
        url = f"ws://127.0.0.1:{port.group(1)}"
        conns = [connect(url) for _ in range(3)]
        with pytest.raises(InvalidStatus):
            connect(url)
        for ws in conns:
            ws.close()
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "serving on 0.0.0.0 without a token: anyone who can reach it can run this policy" in err
    done = subprocess.run(
        [
            *(sys.executable, "-m", "trialrun.cli", "serve-policy", "zero", "--port", "0"),
            *("--max-frame-bytes", "2048", "--max-buffered-bytes", "1024"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "trialrun: error: --max-buffered-bytes (1024) must be at least --max-frame-bytes (2048): "
        "a largest message could never be received"
    )


def test_a_flood_of_connections_starts_no_thread(serve: Callable[..., PolicyServer]) -> None:
    server = serve(max_connections=4)
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    time.sleep(0.3)
    assert threading.active_count() == before  # connections cost no thread; only policy calls do
    for sock in socks:
        sock.close()
    policy = build_policy("remote", {"url": server.url, "timeout": 5}, CTX)
    assert policy.act(OBS).shape == (2,)
    policy.close()  # type: ignore[attr-defined]
