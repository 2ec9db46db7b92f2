"""``wss://`` for both WebSocket policy clients, over real TLS on 127.0.0.1.

A test CA (trustme) signs the servers' certificates; the clients trust it
through ``ca_file:`` or ``SSL_CERT_FILE``. The servers are the ones users
meet: trialrun's openpi server behind a TLS-terminating proxy (how a GPU
machine's server is usually reached), websockets' own TLS server speaking
openpi's protocol, and ``trialrun serve-policy --tls-cert`` for trialrun's
protocol. Frames of a 224x224x3 image (150 kB) span many TLS records both
ways, so a client that left decrypted bytes in its TLS buffer would hang here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync import server as ws_server

import test_policies_openpi
from helpers import subprocess_env
from test_policies_openpi import PENDULUM, assert_serves_swingup_exactly
from test_policies_remote import ServerProcess
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError, RemotePolicyError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext
from trialrun.policies.remote import RemotePolicy
from trialrun.policies.server import PolicyServer, server_tls_context
from trialrun.policies.vla.openpi import OpenpiServerError, OpenpiTransport
from trialrun.policies.vla.openpi_codec import packb, unpackb
from trialrun.policies.vla.openpi_server import OpenpiPolicyServer
from trialrun.runfiles import read_manifest

cleanup = test_policies_openpi.cleanup  # the fixture: servers, proxies and clients stop after the test
CLI = (sys.executable, "-m", "trialrun.cli")
UNTRUSTED = (
    "its TLS certificate was not trusted (unable to get local issuer certificate); for a server behind "
    "a private CA, set 'ca_file:' in the policy (or SSL_CERT_FILE) to the CA's PEM file"
)
MISMATCH = (
    "its TLS certificate was not trusted (IP address mismatch, certificate is not valid for '127.0.0.1'); "
    "for a server behind a private CA, set 'ca_file:' in the policy (or SSL_CERT_FILE) to the CA's PEM file"
)


# --------------------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: the test CA, a certificate for 127.0.0.1 and its key, one for example.org only."""
    root = tmp_path_factory.mktemp("pki")
    files = {name: root / f"{name}.pem" for name in ("ca", "cert", "key", "other_cert", "other_key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    local = ca.issue_cert("127.0.0.1")
    local.cert_chain_pems[0].write_to_path(str(files["cert"]))
    local.private_key_pem.write_to_path(str(files["key"]))
    other = ca.issue_cert("example.org")
    other.cert_chain_pems[0].write_to_path(str(files["other_cert"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    return files


@pytest.fixture(autouse=True)
def no_ambient_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients must trust the test CA only when a test says so."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# --------------------------------------------------------------------------- a TLS-terminating proxy


class TlsProxy:
    """A TLS front for a plain TCP server (as nginx or a cloud load balancer puts one in front of a
    GPU machine's policy server): asyncio streams, so records are cut as a real proxy cuts them."""

    def __init__(self, backend: tuple[str, int], context: ssl.SSLContext) -> None:
        self.backend = backend
        self.context = context
        self.handshakes = 0  # TLS connections that completed their handshake
        self.clients: list[asyncio.StreamWriter] = []
        self.hold = False  # when set, nothing from the backend reaches the clients (a hung server)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.url = f"wss://127.0.0.1:{self.port}"

    async def _start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        self.clients.append(writer)
        up_reader, up_writer = await asyncio.open_connection(*self.backend)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, down=True))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, down: bool = False
    ) -> None:
        try:
            with contextlib.suppress(ConnectionError, ssl.SSLError):  # a side hung up: the pipe ends
                while data := await reader.read(1 << 16):
                    if down and self.hold:
                        continue
                    writer.write(data)
                    await writer.drain()
        finally:
            with contextlib.suppress(Exception):  # the other side is gone already
                writer.close()

    def cut(self) -> None:
        """Abort every client connection: no TLS close_notify, no WebSocket close (a proxy restarted)."""

        async def abort() -> None:
            for writer in self.clients:
                writer.transport.abort()
            self.clients.clear()

        asyncio.run_coroutine_threadsafe(abort(), self.loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Let them finish cancelling: a loop stopped with tasks pending logs "Task was destroyed".
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def server_context(pki: dict[str, Path], name: str = "") -> ssl.SSLContext:
    return server_tls_context(pki[f"{name}cert"], pki[f"{name}key"])


@pytest.fixture
def openpi_behind_tls(
    pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> Callable[..., tuple[OpenpiPolicyServer, TlsProxy]]:
    """trialrun's openpi server (pendulum-swingup) behind a TLS proxy with the certificate ``name``."""

    def start(name: str = "") -> tuple[OpenpiPolicyServer, TlsProxy]:
        server = OpenpiPolicyServer("pendulum-swingup", {}, PENDULUM, port=0)
        server.start()
        cleanup.append(server.stop)
        proxy = TlsProxy(("127.0.0.1", server.port), server_context(pki, name))
        cleanup.append(proxy.stop)
        return server, proxy

    return start


def transport(url: str, cleanup: list[Callable[[], None]], **options: Any) -> OpenpiTransport:
    client = OpenpiTransport(url, **options)
    cleanup.append(client.close)
    return client


# --------------------------------------------------------------------------- openpi over wss


def test_openpi_over_wss_gives_exactly_the_local_actions_over_concurrent_connections(
    openpi_behind_tls: Callable[..., Any], pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    _, proxy = openpi_behind_tls()
    client = transport(proxy.url, cleanup, max_connections=4, ca_file=str(pki["ca"]))
    assert client.metadata["policy"] == "pendulum-swingup"
    assert_serves_swingup_exactly(client, steps=40)
    assert proxy.handshakes == 4 and client.reconnects == 0


def test_an_openpi_job_over_wss_records_what_the_local_job_records(
    openpi_behind_tls: Callable[..., Any], pki: dict[str, Path], tmp_path: Path
) -> None:
    _, proxy = openpi_behind_tls()
    served = {
        "type": "openpi",
        "url": proxy.url,
        "timeout": 10,
        "max_connections": 3,
        "ca_file": str(pki["ca"]),  # as documented: next to type, not under kwargs
    }
    job = {"env": "Pendulum-v1", "episodes": 6, "num_envs": 3, "max_steps": 50}
    local = outcomes(tmp_path / "local", {**job, "policy": "pendulum-swingup"})
    assert outcomes(tmp_path / "served", {**job, "policy": served}) == local and len(local) == 6
    assert proxy.handshakes == 3


def outcomes(run_dir: Path, job: dict[str, Any]) -> dict[int, Any]:
    """Each episode's outcome after running ``job`` alone (it must complete)."""
    config = parse_run_config({"name": run_dir.name, "seed": 5, "jobs": [{"name": "j", **job}]})
    assert run_evaluation(config, run_dir).statuses == {"j": "completed"}
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    return {r["episode"]: r["outcome"] for r in map(json.loads, lines)}


def test_connections_cut_over_wss_are_reopened_and_the_requests_resent(
    openpi_behind_tls: Callable[..., Any], pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    _, proxy = openpi_behind_tls()
    client = transport(proxy.url, cleanup, max_connections=2, ca_file=str(pki["ca"]))
    states = [{"observation/state": np.array([1.0, 0.0, k], np.float32)} for k in range(4)]
    first = client.infer(states)
    proxy.cut()
    time.sleep(0.2)
    again = client.infer(states)
    assert client.reconnects == 2 and proxy.handshakes == 4
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["actions"], b["actions"])


def test_an_error_frame_and_a_hung_server_over_wss_fail_as_over_ws(
    openpi_behind_tls: Callable[..., Any], pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    _, proxy = openpi_behind_tls()
    client = transport(proxy.url, cleanup, timeout=0.5, ca_file=str(pki["ca"]))
    with pytest.raises(OpenpiServerError) as failed:
        client.infer([{"wrong": np.zeros(3)}])
    assert str(failed.value) == (
        f"openpi policy server {proxy.url}: the server failed: "
        "ValueError: the request has no 'observation/state' (its keys: wrong)"
    )
    assert (failed.value.remote_traceback or "").startswith("Traceback (most recent call last):\n")
    hung = transport(proxy.url, cleanup, timeout=0.5, ca_file=str(pki["ca"]))
    proxy.hold = True
    with pytest.raises(
        RemotePolicyError,
        match=rf"^the openpi policy server at {proxy.url} did not answer "
        r"request 0 within 0.5 s \(timeout; waited 0.5 s\)$",
    ):
        hung.infer([{"observation/state": np.zeros(3, np.float32)}])


class ImageEcho:
    """openpi's protocol over websockets' own TLS server: each reply carries the request's image back
    (150 kB each way) and an action that depends on every pixel."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.requests = 0
        self.lock = threading.Lock()
        self.server = ws_server.serve(
            self._handle, "127.0.0.1", 0, ssl=context, compression=None, max_size=None
        )
        self.url = f"wss://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, ws: Any) -> None:
        ws.send(packb({"action_horizon": 1}))
        with contextlib.suppress(ConnectionClosed):
            while True:
                obs = unpackb(ws.recv())
                image = obs["observation/image"]
                with self.lock:
                    self.requests += 1
                checksum = np.array([[image.astype(np.int64).sum()]], np.float64)
                ws.send(packb({"actions": checksum, "image": image, "server_timing": {"infer_ms": 0.1}}))

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def test_image_frames_larger_than_a_tls_record_arrive_whole_both_ways(
    pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    server = ImageEcho(server_context(pki))
    cleanup.append(server.stop)
    client = transport(server.url, cleanup, max_connections=3, ca_file=str(pki["ca"]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        images = rng.integers(0, 256, (7, 224, 224, 3), dtype=np.uint8)
        replies = client.infer([{"observation/image": image} for image in images])
        for image, reply in zip(images, replies, strict=True):
            assert reply["image"].dtype == np.uint8 and reply["image"].shape == (224, 224, 3)
            np.testing.assert_array_equal(reply["image"], image)
            assert reply["actions"].tolist() == [[float(image.astype(np.int64).sum())]]
    assert server.requests == 35 and client.reconnects == 0


def test_ssl_cert_file_is_honoured_without_ca_file(
    openpi_behind_tls: Callable[..., Any],
    pki: dict[str, Path],
    cleanup: list[Callable[[], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, proxy = openpi_behind_tls()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    client = transport(proxy.url, cleanup)
    replies = client.infer([{"observation/state": np.array([1.0, 0.0, 0.0], np.float32)}])
    assert replies[0]["actions"].shape == (1, 1)


def test_an_untrusted_or_mismatched_certificate_fails_at_once_naming_the_url(
    openpi_behind_tls: Callable[..., Any], pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    _, proxy = openpi_behind_tls()
    _, other = openpi_behind_tls("other_")
    start = time.monotonic()
    with pytest.raises(RemotePolicyError) as untrusted:
        transport(proxy.url, cleanup, timeout=20)
    assert str(untrusted.value) == f"the openpi policy server at {proxy.url}: {UNTRUSTED}"
    with pytest.raises(RemotePolicyError) as mismatch:
        transport(other.url, cleanup, timeout=20, ca_file=str(pki["ca"]))
    assert str(mismatch.value) == f"the openpi policy server at {other.url}: {MISMATCH}"
    assert time.monotonic() - start < 5


def test_ca_file_is_checked_when_the_policy_is_built(pki: dict[str, Path], tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    cases = [
        ("wss://127.0.0.1:1", str(tmp_path / "missing.pem"), f"no such file: {tmp_path / 'missing.pem'}"),
        (
            "ws://127.0.0.1:1",
            str(pki["ca"]),
            "applies only to wss:// URLs; ws://127.0.0.1:1 is not encrypted",
        ),
        ("wss://127.0.0.1:1", "", "must be the path of a PEM file, got ''"),
        ("wss://127.0.0.1:1", str(not_pem), f"{not_pem} holds no CA certificate in PEM form ("),
    ]
    for url, ca_file, message in cases:
        with pytest.raises(ConfigError) as openpi:
            OpenpiTransport(url, ca_file=ca_file)
        assert openpi.value.field == "policy.ca_file" and message in str(openpi.value)
        with pytest.raises(ConfigError) as remote:
            RemotePolicy(PENDULUM, url=url, ca_file=ca_file)
        assert remote.value.field == "policy.ca_file" and message in str(remote.value)


def test_an_untrusted_server_fails_the_job_in_one_line_without_a_traceback(
    openpi_behind_tls: Callable[..., Any], tmp_path: Path
) -> None:
    _, proxy = openpi_behind_tls()
    job = {
        "name": "j",
        "env": "Pendulum-v1",
        "policy": {"type": "openpi", "url": proxy.url, "timeout": 5},
        "episodes": 2,
        "max_steps": 10,
    }
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"name": "tls", "seed": 1, "jobs": [job]}))
    run_dir = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "run", str(config), "--run-dir", str(run_dir), "--no-report"],
        capture_output=True,
        text=True,
        env={k: v for k, v in subprocess_env().items() if not k.startswith("SSL_CERT_")},
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    message = f"the openpi policy server at {proxy.url}: {UNTRUSTED}"
    assert message in " ".join(output.split()), output
    assert read_manifest(run_dir).jobs["j"].error == f"RemotePolicyError: {message}"


# --------------------------------------------------------------------------- trialrun's protocol over wss


def test_serve_policy_with_tls_gives_the_same_episodes_as_local(
    pki: dict[str, Path], tmp_path: Path, cleanup: list[Callable[[], None]]
) -> None:
    server = ServerProcess("random", "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]))
    cleanup.append(server.kill)
    assert server.url.startswith("wss://127.0.0.1:")
    # 'random' draws from per-slot seeds: identical outcomes prove that resets and seeds travel.
    remote = {"type": "remote", "url": server.url, "timeout": 10, "kwargs": {"ca_file": str(pki["ca"])}}
    job = {"env": "CartPole-v1", "episodes": 9, "num_envs": 3}
    local = outcomes(tmp_path / "local", {**job, "policy": "random"})
    assert outcomes(tmp_path / "remote", {**job, "policy": remote}) == local and len(local) == 9


def test_a_remote_policy_refuses_an_untrusted_server_at_once(
    pki: dict[str, Path], cleanup: list[Callable[[], None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = []
    for name in ("", "other_"):
        server = PolicyServer("zero", {}, port=0, tls=server_context(pki, name))
        server.start()
        cleanup.append(server.stop)
        servers.append(server)
    trusted, other = servers
    start = time.monotonic()
    with pytest.raises(RemotePolicyError) as untrusted:
        RemotePolicy(PENDULUM, url=trusted.url, timeout=20)
    assert str(untrusted.value) == f"remote policy server {trusted.url}: {UNTRUSTED}"
    with pytest.raises(RemotePolicyError) as mismatch:
        RemotePolicy(PENDULUM, url=other.url, timeout=20, ca_file=str(pki["ca"]))
    assert str(mismatch.value) == f"remote policy server {other.url}: {MISMATCH}"
    assert time.monotonic() - start < 5
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    client = RemotePolicy(PENDULUM, url=trusted.url, timeout=10)
    cleanup.append(client.close)
    assert client.act(np.zeros((1, 3), np.float32)).tolist() == [[0.0]]


class ImageMean:
    """Each world's action is the mean of its image: a wrong byte anywhere changes it."""

    def __init__(self, context: PolicyContext) -> None:
        self.num_envs = context.num_envs

    def act(self, obs: Any) -> np.ndarray:
        return np.asarray(obs).reshape(len(obs), -1).mean(axis=1, keepdims=True)

    def reset(self, mask: np.ndarray, seeds: Any = None) -> None:
        """Stateless."""


def test_image_observations_over_wss_reach_trialrun_server_whole(
    pki: dict[str, Path], cleanup: list[Callable[[], None]]
) -> None:
    server = PolicyServer("test_policies_tls:ImageMean", {}, port=0, tls=server_context(pki))
    server.start()
    cleanup.append(server.stop)
    images = gym.spaces.Box(0, 255, (224, 224, 3), np.uint8)
    context = PolicyContext("Images-v0", 4, images, gym.spaces.Box(0.0, 255.0, (1,), np.float64), {})
    client = RemotePolicy(context, url=server.url, timeout=10, ca_file=str(pki["ca"]))
    cleanup.append(client.close)
    rng = np.random.default_rng(1)
    for _ in range(3):  # 600 kB a request
        obs = rng.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
        np.testing.assert_array_equal(client.act(obs), obs.reshape(4, -1).mean(axis=1, keepdims=True))
    assert client.reconnects == 0


def test_serve_policy_refuses_bad_tls_options_in_one_line(pki: dict[str, Path], tmp_path: Path) -> None:
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    cert, key = str(pki["cert"]), str(pki["key"])
    cases = [
        (["--tls-cert", str(missing), "--tls-key", key], f"--tls-cert: no such file: {missing}"),
        (["--tls-cert", cert, "--tls-key", str(missing)], f"--tls-key: no such file: {missing}"),
        (["--tls-key", key], "--tls-key needs --tls-cert"),
        (["--tls-cert", cert], f"cannot load a TLS certificate and key from {cert}: "),
        (
            ["--tls-cert", str(not_pem), "--tls-key", key],
            f"cannot load a TLS certificate and key from {not_pem}",
        ),
        (
            ["--tls-cert", cert, "--tls-key", str(pki["other_key"])],
            "cannot load a TLS certificate and key from",
        ),
        (
            ["--tls-cert", cert, "--tls-key", key, "--protocol", "openpi", "--env", "Pendulum-v1"],
            "--tls-cert applies only to --protocol trialrun; serve openpi's protocol over wss:// behind a "
            "TLS-terminating proxy",
        ),
    ]
    for args, message in cases:
        done = subprocess.run(
            [*CLI, "serve-policy", "zero", *args, "--port", "0"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith(f"trialrun: error: {message}"), (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.count("\n") <= 2, done.stderr
