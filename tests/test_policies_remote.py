from __future__ import annotations

import contextlib
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from helpers import subprocess_env
from trialrun.config import parse_run_config
from trialrun.errors import ConfigError
from trialrun.execution.runner import run_evaluation
from trialrun.policies import PolicyContext, build_policy
from trialrun.policies.remote import RemotePolicyError, packb, space_from_wire, space_to_wire, unpackb
from trialrun.policies.server import PolicyServer
from trialrun.runfiles import read_episodes, read_manifest

CARTPOLE_CTX = PolicyContext(
    "CartPole-v1", 2, gym.spaces.Box(-5, 5, (4,), dtype=np.float32), gym.spaces.Discrete(2), {}
)


class ServerProcess:
    """``trialrun serve-policy SPEC --port 0`` in a child process."""

    def __init__(self, *spec: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trialrun.cli", "serve-policy", *spec, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the socket listens
        match = re.search(r"on (wss?://127\.0\.0\.1:\d+)", line)
        assert match, f"no URL in {line!r}; stderr: {self.proc.stderr.read() if self.proc.stderr else ''}"
        self.url = match.group(1)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def served() -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    yield servers
    for server in servers:
        if server.proc.poll() is None:
            server.kill()


def _records(run_dir: Path) -> dict[tuple[str, int], tuple[float, int]]:
    return {
        (r.job, r.episode): (r.outcome["return"], r.outcome["length"])
        for r in read_episodes(run_dir / "episodes.jsonl")
    }


def _config(name: str, policy: object, episodes: int = 12, **extra: object) -> object:
    job = {"name": "j", "env": "CartPole-v1", "policy": policy, "episodes": episodes, "num_envs": 3, **extra}
    return parse_run_config({"name": name, "seed": 11, "jobs": [job]})


def test_wire_format_round_trips_arrays_dicts_and_spaces() -> None:
    obs = {"image": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "state": np.ones((2, 3), np.float64)}
    back = unpackb(packb({"type": "act", "seq": 1, "obs": obs, "scalar": np.float32(2.5)}))
    assert back["obs"]["image"].dtype == np.uint8 and back["obs"]["state"].dtype == np.float64
    np.testing.assert_array_equal(back["obs"]["image"], obs["image"])
    assert back["scalar"].shape == () and float(back["scalar"]) == 2.5
    space = gym.spaces.Dict(
        {
            "a": gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32)),
            "b": gym.spaces.Discrete(4, start=1),
            "c": gym.spaces.MultiDiscrete([2, 3]),
            "d": gym.spaces.Tuple([gym.spaces.MultiBinary(3)]),
        }
    )
    assert space_from_wire(unpackb(packb(space_to_wire(space)))) == space


def test_a_served_policy_gives_the_same_episodes_as_the_local_one(
    tmp_path: Path, served: list[ServerProcess]
) -> None:
    # 'random' draws from per-slot seeds: identical results prove that resets and seeds travel.
    server = ServerProcess("random")
    served.append(server)
    run_evaluation(_config("local", "random"), tmp_path / "local")  # type: ignore[arg-type]
    remote = {"type": "remote", "url": server.url, "timeout": 10}
    result = run_evaluation(_config("remote", remote), tmp_path / "remote")  # type: ignore[arg-type]
    assert result.statuses == {"j": "completed"}
    assert _records(tmp_path / "remote") == _records(tmp_path / "local")
    assert len(_records(tmp_path / "local")) == 12


def test_killing_the_server_fails_its_job_within_the_timeout_and_the_run_goes_on(
    tmp_path: Path, served: list[ServerProcess]
) -> None:
    server = ServerProcess("helpers:SlowPolicy", "--kwarg", "delay=0.01")
    served.append(server)
    cfg = parse_run_config(
        {
            "name": "kill",
            "seed": 1,
            "jobs": [
                {
                    "name": "remote",
                    "env": "CartPole-v1",
                    "episodes": 400,
                    "num_envs": 2,
                    "policy": {"type": "remote", "url": server.url, "timeout": 2},
                },
                {"name": "local", "env": "CartPole-v1", "policy": "zero", "episodes": 5},
            ],
        }
    )
    killed_at: list[float] = []

    def killer() -> None:
        episodes = tmp_path / "run" / "episodes.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if episodes.exists() and episodes.read_text().count('"job":"remote"') >= 3:
                break
            time.sleep(0.02)
        killed_at.append(time.time())
        server.kill()

    thread = threading.Thread(target=killer)
    thread.start()
    result = run_evaluation(cfg, tmp_path / "run")  # type: ignore[arg-type]
    thread.join()
    assert result.statuses == {"remote": "failed", "local": "completed"}
    manifest = read_manifest(tmp_path / "run")
    error = manifest.jobs["remote"].error or ""
    assert error.startswith("RemotePolicyError: remote policy server ws://127.0.0.1:")
    assert "is unreachable" in error and "gave up after 2 s" in error
    ended = datetime.fromisoformat(manifest.jobs["remote"].ended_at.replace("Z", "+00:00")).timestamp()  # type: ignore[union-attr]
    assert 0 < ended - killed_at[0] < 2 + 1.5
    done = [r for r in read_episodes(tmp_path / "run" / "episodes.jsonl") if r.job == "remote"]
    assert 3 <= len(done) < 400


class CuttingProxy:
    """A TCP proxy that drops every connection after each ``every`` chunks from the server."""

    def __init__(self, upstream_port: int, every: int) -> None:
        self.upstream_port = upstream_port
        self.every = every
        self.cuts = 0
        self.chunks = 0
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if from_server:
                    with self.lock:
                        self.chunks += 1
                        cut = self.chunks % self.every == 0 and self.cuts < 6
                    if cut:
                        self.cut()
                        return
        except OSError:
            pass

    def cut(self) -> None:
        with self.lock:
            self.cuts += 1
            conns, self.conns = self.conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
        self.cut()


def test_dropped_connections_reconnect_and_resend_without_changing_results(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = PolicyServer("random", {}, port=0)
    server.start()
    proxy = CuttingProxy(server.port, every=40)
    try:
        run_evaluation(_config("local", "random", episodes=30), tmp_path / "local")  # type: ignore[arg-type]
        remote = {"type": "remote", "url": f"ws://127.0.0.1:{proxy.port}", "timeout": 5}
        with caplog.at_level(logging.WARNING, logger="trialrun.policies.remote"):
            result = run_evaluation(_config("remote", remote, episodes=30), tmp_path / "remote")  # type: ignore[arg-type]
    finally:
        proxy.close()
        server.stop()
    assert result.statuses == {"j": "completed"}
    assert proxy.cuts >= 3
    assert sum("connection to ws://127.0.0.1" in r.message for r in caplog.records) >= 3
    # The server kept each session's policy (and its random generators) across reconnects
    # and did not act twice on a resent request: the episodes are exactly the local ones.
    assert _records(tmp_path / "remote") == _records(tmp_path / "local")


def test_a_restarted_server_gets_a_fresh_session_and_the_last_resets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = PolicyServer("random", {}, port=0)
    first.start()
    port = first.port
    policy = build_policy("remote", {"url": f"ws://127.0.0.1:{port}", "timeout": 5}, CARTPOLE_CTX)
    policy.reset(np.array([True, True]), [3, 4])
    policy.act(np.zeros((2, 4), np.float32))
    first.stop()
    second = PolicyServer("random", {}, port=port)
    second.start()
    try:
        with caplog.at_level(logging.WARNING, logger="trialrun.policies.remote"):
            action = policy.act(np.zeros((2, 4), np.float32))
    finally:
        policy.close()  # type: ignore[attr-defined]
        second.stop()
    assert action.shape == (2,)
    assert policy.reconnects == 1  # type: ignore[attr-defined]
    assert any("lost this session" in r.message for r in caplog.records)
    # The replayed reset re-seeded sub-env 0 with slot seed 3: its first draw matches a fresh policy's.
    fresh = build_policy("random", {}, CARTPOLE_CTX)
    fresh.reset(np.array([True, True]), [3, 4])
    np.testing.assert_array_equal(action, fresh.act(np.zeros((2, 4))))


def test_timeouts_policy_errors_and_dead_servers_fail_with_clear_messages() -> None:
    slow = PolicyServer("helpers:SlowPolicy", {"delay": 3.0}, port=0)
    slow.start()
    try:
        policy = build_policy("remote", {"url": slow.url, "timeout": 0.5}, CARTPOLE_CTX)
        started = time.monotonic()
        with pytest.raises(RemotePolicyError, match=r"did not answer 'act' within 0.5 s"):
            policy.act(np.zeros((2, 4), np.float32))
        assert time.monotonic() - started < 2.0
    finally:
        slow.stop()

    exploding = PolicyServer("helpers:ExplodingPolicy", {"after": 0}, port=0)
    exploding.start()
    try:
        policy = build_policy("remote", {"url": exploding.url, "timeout": 5}, CARTPOLE_CTX)
        with pytest.raises(
            RemotePolicyError, match=r"failed on act: RuntimeError: policy exploded on purpose"
        ):
            policy.act(np.zeros((2, 4), np.float32))
    finally:
        exploding.stop()

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RemotePolicyError, match=rf"ws://127.0.0.1:{dead} is unreachable .*gave up after 1 s"):
        build_policy("remote", {"url": f"ws://127.0.0.1:{dead}", "timeout": 1}, CARTPOLE_CTX)
    assert 0.9 < time.monotonic() - started < 2.5
    with pytest.raises(
        ConfigError,
        match=r"^field 'policy.url': url must be ws://HOST:PORT or wss://HOST:PORT, got 'http://x'$",
    ):
        build_policy("remote", {"url": "http://x"}, CARTPOLE_CTX)


def test_serve_policy_rejects_bad_specs_and_busy_ports(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trialrun.cli", "serve-policy", *args],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )

    proc = serve("no-such-policy", "--port", "0")
    assert proc.returncode == 2 and "field 'SPEC': unknown policy 'no-such-policy'" in proc.stderr
    proc = serve("{type: npz, path: missing.npz}", "--port", "0")
    assert proc.returncode == 2 and "field 'path': no such file:" in proc.stderr
    # The settings are checked before serving (the policy itself is built per client session).
    proc = serve("{type: random, kwargs: {sed: 1}}", "--port", "0")
    assert (proc.returncode, proc.stderr) == (
        2,
        "trialrun: error: SPEC: field 'kwargs.sed': policy 'random' has no setting 'sed'; its settings: none\n",
    )
    proc = serve("{type: sb3}", "--port", "0")
    assert (proc.returncode, proc.stderr) == (
        2,
        "trialrun: error: SPEC: field 'path': a 'sb3' policy needs a file: set 'path'\n",
    )
    # openpi's server builds the policy once, for --env's spaces: a policy that cannot is one line.
    proc = serve("pendulum-swingup", "--protocol", "openpi", "--env", "CartPole-v1", "--port", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "trialrun: error: cannot build policy 'pendulum-swingup' for CartPole-v1: TypeError: policy "
        "'pendulum-swingup' needs a Box(3,) space"
    )
    with socket.create_server(("127.0.0.1", 0)) as busy:
        proc = serve("zero", "--port", str(busy.getsockname()[1]))
    assert proc.returncode == 2 and "cannot listen on 127.0.0.1:" in proc.stderr
