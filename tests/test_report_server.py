"""trialrun.report.server and ``trialrun report --serve``: raw HTTP requests against a real server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import subprocess_env
from test_report_data import JobSpec, record, write_run
from trialrun.errors import InputError
from trialrun.report.server import (
    PortInUseError,
    RunServer,
    content_type,
    is_loopback,
    make_server,
    parse_range,
    serve_until_stopped,
)

TRIALRUN = [sys.executable, "-m", "trialrun.cli"]
VIDEO_BYTES = bytes(range(256)) * 40  # 10,240 bytes standing in for an mp4


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", k, k % 2 == 0) for k in range(4)])])
    (run / "report").mkdir()
    (run / "report" / "index.html").write_text("<!doctype html><p>report</p>")
    (run / "videos" / "a").mkdir(parents=True)
    (run / "videos" / "a" / "ep0-top.mp4").write_bytes(VIDEO_BYTES)
    (tmp_path / "secret.txt").write_text("outside the run")
    return run


@pytest.fixture()
def server(run_dir: Path) -> Iterator[RunServer]:
    srv = make_server(run_dir, port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def raw_request(
    srv: RunServer, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """Send a request line exactly as given (no client-side path normalisation)."""
    host, port = srv.server_address[:2]
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((str(host), int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


def test_serves_run_files_with_types(server: RunServer) -> None:
    status, headers, body = raw_request(server, "/report/index.html")
    assert status == 200 and body == b"<!doctype html><p>report</p>"
    assert headers["content-type"] == "text/html; charset=utf-8" and headers["cache-control"] == "no-cache"
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4")
    assert status == 200 and body == VIDEO_BYTES
    assert headers["content-type"] == "video/mp4" and headers["accept-ranges"] == "bytes"
    assert headers["content-length"] == str(len(VIDEO_BYTES))
    status, headers, _ = raw_request(server, "/manifest.json")
    assert status == 200 and headers["content-type"] == "application/json"
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(VIDEO_BYTES))


def test_range_requests(server: RunServer) -> None:
    size = len(VIDEO_BYTES)
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": "bytes=100-199"})
    assert status == 206 and body == VIDEO_BYTES[100:200]
    assert headers["content-range"] == f"bytes 100-199/{size}" and headers["content-length"] == "100"
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": "bytes=10000-"})
    assert (
        status == 206
        and body == VIDEO_BYTES[10000:]
        and headers["content-range"] == f"bytes 10000-{size - 1}/{size}"
    )
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": "bytes=-16"})
    assert status == 206 and body == VIDEO_BYTES[-16:]
    status, headers, body = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": "bytes=0-99999999"})
    assert status == 206 and body == VIDEO_BYTES and headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    status, headers, _ = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"
    status, _, body = raw_request(server, "/videos/a/ep0-top.mp4", {"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == VIDEO_BYTES  # multiple ranges: the whole file


def test_nothing_outside_the_run_is_served(server: RunServer, run_dir: Path, tmp_path: Path) -> None:
    for target in (
        "/../secret.txt",
        "/report/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/videos/%2E%2E/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/videos/..\\..\\secret.txt",
        "/%00",
    ):
        status, _, body = raw_request(server, target)
        assert status == 404, target
        assert b"outside the run" not in body
    os.symlink(tmp_path / "secret.txt", run_dir / "link.txt")
    os.symlink(tmp_path, run_dir / "parent")
    for target in ("/link.txt", "/parent/secret.txt"):
        status, _, body = raw_request(server, target)
        assert status == 403, target
        assert b"outside the run" not in body
    os.symlink(run_dir / "manifest.json", run_dir / "inside.json")
    assert raw_request(server, "/inside.json")[0] == 200  # a symlink within the run is fine


def test_directories_and_methods(server: RunServer) -> None:
    status, headers, _ = raw_request(server, "/")
    assert status == 302 and headers["location"] == "/report/index.html"
    status, headers, _ = raw_request(server, "/report")
    assert status == 302 and headers["location"] == "/report/"
    status, _, body = raw_request(server, "/report/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    status, _, body = raw_request(server, "/videos/")
    assert status == 404 and b"no directory listings" in body
    assert raw_request(server, "/missing.json")[0] == 404
    assert raw_request(server, "/manifest.json", method="POST")[0] == 501
    with urllib.request.urlopen(server.url("report/index.html")) as resp:
        assert resp.status == 200


def test_busy_port_is_a_clear_error(run_dir: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(PortInUseError, match=rf"^port {port} is in use; choose another with --port$"):
            make_server(run_dir, port=port)
        done = subprocess.run(
            [*TRIALRUN, "report", str(run_dir), "--serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )
    finally:
        blocker.close()
    assert done.returncode == 2
    assert done.stderr.strip() == f"trialrun: error: port {port} is in use; choose another with --port"


def test_bad_host_and_port(run_dir: Path) -> None:
    with pytest.raises(InputError, match="--port must be between 0 and 65535"):
        make_server(run_dir, port=70000)
    with pytest.raises(InputError, match=r"cannot listen on host 'no-such-host\.invalid'"):
        make_server(run_dir, host="no-such-host.invalid", port=0)
    with pytest.raises(InputError, match="no such run directory"):
        make_server(run_dir / "nope", port=0)


def test_helpers() -> None:
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes=-10", 1000) == (990, 999)
    assert parse_range("bytes=5-", 1000) == (5, 999)
    assert parse_range("bytes=9-3", 1000) is None
    assert parse_range("items=0-1", 1000) is None
    with pytest.raises(ValueError):
        parse_range("bytes=1000-", 1000)
    assert content_type(Path("a/ep1-top.mp4")) == "video/mp4"
    assert content_type(Path("episodes.jsonl")).startswith("application/x-ndjson")
    assert content_type(Path("x.unknownext")) == "application/octet-stream"
    assert [
        is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost", "0.0.0.0", "192.168.1.2")
    ] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_serve_until_stopped_returns_after_shutdown(run_dir: Path) -> None:
    srv = make_server(run_dir, port=0)
    thread = threading.Thread(target=serve_until_stopped, args=(srv,))
    thread.start()
    assert raw_request(srv, "/manifest.json")[0] == 200
    srv.shutdown()
    thread.join(10)
    assert not thread.is_alive()


def _start_serving(run: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*TRIALRUN, "report", str(run), "--serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"at (http://\S+) \(Ctrl\+C to stop\)", line)
    assert match, (line, proc.poll())
    return proc, match.group(1)


def test_serve_command_builds_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", k, k < 2) for k in range(5)])])
    proc, url = _start_serving(run)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/report/index\.html", url)
        assert (run / "report" / "index.html").is_file()  # built because it was missing
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and b'id="report-data"' in resp.read()
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out.strip() == "stopped"


def test_serve_on_a_public_address_warns_and_sigterm_stops_it(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", 0, True)])])
    proc, url = _start_serving(run, "--host", "0.0.0.0")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip() == "stopped"
    assert "warning: serving on 0.0.0.0: anyone who can reach this machine can read this run's files" in err
    assert "Traceback" not in err


def test_serve_refuses_an_out_dir_outside_the_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [JobSpec("a", [record("a", 0, True)])])
    done = subprocess.run(
        [*TRIALRUN, "report", str(run), "--serve", "--out", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert "--out must be inside the run directory with --serve" in done.stderr
    assert "Traceback" not in done.stderr


def _request_with_host(srv: RunServer, host_header: str | None) -> tuple[int, bytes]:
    port = srv.server_address[1]
    lines = ["GET /manifest.json HTTP/1.1", "Connection: close"]
    if host_header is not None:
        lines.append(f"Host: {host_header}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_host_header_must_name_this_server(server: RunServer) -> None:
    port = server.server_address[1]
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert _request_with_host(server, good)[0] == 200, good
    for evil in (
        f"evil.example:{port}",
        f"127.0.0.1.nip.io:{port}",
        f"localhost:{port + 1}",
        "localhost",
        "",
    ):
        status, body = _request_with_host(server, evil)
        assert (status, body) == (
            421,
            b"421 Misdirected Request: this server does not answer for that Host\n",
        ), evil
    assert _request_with_host(server, None) == (400, b"400 Bad Request: a Host header is required\n")


def test_host_check_on_a_wildcard_bind_and_with_allowed_hosts(run_dir: Path) -> None:
    srv = make_server(run_dir, host="0.0.0.0", port=0, allowed_hosts=("reports.lab",))
    port = srv.server_address[1]
    assert srv.host_allowed(f"127.0.0.1:{port}") and srv.host_allowed(f"10.1.2.3:{port}")
    assert srv.host_allowed(f"localhost:{port}") and srv.host_allowed(f"reports.lab:{port}")
    assert srv.host_allowed(f"{socket.gethostname()}:{port}")
    assert not srv.host_allowed(f"evil.example:{port}") and not srv.host_allowed(f"10.1.2.3:{port + 1}")
    srv.server_close()


def test_an_idle_connection_is_closed_after_the_idle_timeout(run_dir: Path) -> None:
    srv = make_server(run_dir, port=0, idle_timeout=0.3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /manifest.json HTTP/1.1\r\n")  # half a request, then silence
            assert sock.recv(1024) == b""  # the server closed it
            assert 0.25 < time.monotonic() - started < 3
        assert raw_request(srv, "/manifest.json")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


def test_connections_over_the_cap_get_503_and_threads_stay_bounded(run_dir: Path) -> None:
    srv = make_server(run_dir, port=0, max_connections=3, idle_timeout=5)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        deadline = time.monotonic() + 5
        while srv._open < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        extra = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        for sock in extra:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert data.endswith(b"\r\n\r\n503 Service Unavailable: too many connections\n")
            sock.close()
        assert threading.active_count() <= before + 3
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while srv._open > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raw_request(srv, "/manifest.json")[0] == 200
    srv.shutdown()
    srv.server_close()
