"""Load test of trialrun's two servers on 127.0.0.1: are they bounded?

Starts each server as a child process (``python -m trialrun serve-policy zero``
and ``python -m trialrun report RUN --serve``), attacks it, and prints what it
held: connections attempted/accepted/refused, whether it still answers
afterwards, sessions held, and its memory (``VmRSS`` before/after and the peak
``VmHWM``, read from ``/proc/<pid>/status``) and threads.

Cases (the measured failures of issue 15):

a. 200 concurrent websocket connections, each saying hello;
b. 3000 hellos on one connection, then 3000 hellos each on its own connection;
c. 4 concurrent 200 MB ``act`` frames (within ``--max-frame-bytes``, 4x over
   the buffered-bytes cap), and one 300 MB frame (over ``--max-frame-bytes``);
d. ``report --serve``: 400 idle half-open connections, the idle timeout, the
   ``Host`` check.

Sessions held are counted from outside: a session is held if its secret still
resumes it. Standard library plus websockets, msgpack and numpy (the
``remote`` extra); Linux only (``/proc``). About a minute on 2 cores.

Usage:
    python benchmarks/serve_load.py
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from trialrun.policies.remote import PROTOCOL, packb, unpackb

HELLO: dict[str, Any] = {
    "type": "hello",
    "protocol": PROTOCOL,
    "num_envs": 2,
    "observation_space": {
        "space": "Box",
        "low": np.full(4, -5, np.float32),
        "high": np.full(4, 5, np.float32),
        "dtype": "<f4",
    },
    "action_space": {"space": "Discrete", "n": 2, "start": 0},
}


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of process ``pid``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def memory(pid: int) -> str:
    s = proc_status(pid)
    return f"RSS {s['VmRSS'] / 1024:.0f} MB (peak {s['VmHWM'] / 1024:.0f} MB), {s['Threads']} threads"


@contextmanager
def child(args: list[str], pattern: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A trialrun server in a child process, and the URL it printed."""
    # Its log goes to a file: a pipe nobody reads would fill up and block the server.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trialrun", *args], stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(pattern, line)
            if not match:
                log.seek(0)
                raise SystemExit(f"the server did not start: {line!r} {log.read()}")
            yield proc, match.group(1)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def recv_map(ws: ClientConnection) -> dict[str, Any]:
    reply: dict[str, Any] = unpackb(bytes(await ws.recv(decode=False)))
    return reply


async def say_hello(url: str, session: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, max_size=None, compression=None)
    await ws.send(packb({**HELLO, "session": session}))
    return ws, await recv_map(ws)


async def answers(url: str) -> bool:
    """Whether a fresh client gets a policy and an action."""
    try:
        ws, ready = await say_hello(url, os.urandom(16).hex())
        await ws.send(packb({"type": "act", "seq": 1, "obs": np.zeros((2, 4), np.float32)}))
        reply = await recv_map(ws)
        await ws.close()
    except Exception:
        return False
    return ready.get("type") == "ready" and reply.get("type") == "action"


async def held(url: str, secrets: dict[str, str]) -> int:
    """How many of these sessions the server still holds: their secret resumes them.

    The probe's hello asks for 0 envs, so a session the server no longer holds
    is refused instead of built afresh (which would evict others).
    """
    count = 0
    for key, secret in secrets.items():
        ws = await connect(url, compression=None)
        await ws.send(packb({**HELLO, "num_envs": 0, "session": key, "resume": secret}))
        reply = await recv_map(ws)
        count += reply.get("type") == "ready" and bool(reply.get("resumed"))
        await ws.close()
    return count


def report_line(name: str, **values: Any) -> None:
    print(f"  {name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in values.items()), flush=True)


async def case_connections(url: str, pid: int, n: int = 200) -> None:
    before = memory(pid)

    async def one(k: int) -> Any:
        try:
            return await say_hello(url, f"conn{k:028d}")
        except InvalidStatus as exc:
            return exc.response.status_code
        except Exception as exc:  # over twice the cap the server resets the TCP connection
            return type(exc).__name__

    results = await asyncio.gather(*(one(k) for k in range(n)))
    opened = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if r == 503]
    other = [r for r in results if not isinstance(r, tuple) and r != 503]
    during = memory(pid)
    secrets = {r[1]["session"]: r[1]["resume"] for r in opened if r[1].get("type") == "ready"}
    for ws, _ in opened:
        await ws.close()
    await asyncio.sleep(0.2)
    print(f"(a) {n} concurrent connections, each saying hello")
    report_line(
        "connections",
        attempted=n,
        accepted=len(opened),
        refused_503=len(refused),
        reset_at_handshake=f"{len(other)} ({', '.join(sorted(set(map(str, other))))})",
    )
    report_line(
        "server",
        still_answering="yes" if await answers(url) else "no",
        sessions_held=await held(url, secrets),
    )
    print(f"  memory: before {before}; while held {during}; after {memory(pid)}")


async def case_hellos(url: str, pid: int, n: int = 3000) -> None:
    before = memory(pid)
    ws = await connect(url, compression=None)
    kinds: dict[str, int] = {}
    secrets: dict[str, str] = {}
    for k in range(n):
        await ws.send(packb({**HELLO, "session": f"same{k:028d}"}))
        reply = await recv_map(ws)
        kinds[reply["type"]] = kinds.get(reply["type"], 0) + 1
        if reply["type"] == "ready":
            secrets[reply["session"]] = reply["resume"]
    await ws.close()
    print(f"(b) {n} hellos on one connection")
    report_line("replies", **kinds)
    print(f"  memory: before {before}; after {memory(pid)}")
    for k in range(n):
        ws, reply = await say_hello(url, f"many{k:028d}")
        if reply["type"] == "ready":
            secrets[reply["session"]] = reply["resume"]
        await ws.close()
    print(f"    then {n} hellos each on its own connection (closed after its ready)")
    report_line(
        "server",
        sessions_created=len(secrets),
        sessions_held=await held(url, secrets),
        still_answering="yes" if await answers(url) else "no",
    )
    print(f"  memory: after {memory(pid)}")


async def case_frames(url: str, pid: int, size: int = 200_000_000, n: int = 4) -> None:
    before = memory(pid)
    obs = np.zeros((2, size // 8), np.float32)
    blob = packb({"type": "act", "seq": 1, "obs": obs})
    del obs

    async def one(k: int) -> str:
        try:
            ws, _ = await say_hello(url, f"big{k:029d}")
            await ws.send(blob)
            reply = await recv_map(ws)
            await ws.close()
            return str(reply["type"])
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else '?'}"
        except InvalidStatus as exc:
            return f"HTTP {exc.response.status_code}"

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(k) for k in range(n)))
    print(f"(c) {n} concurrent {len(blob) / 1e6:.0f} MB act frames ({time.monotonic() - started:.1f} s)")
    report_line("outcomes", **{o.replace(" ", "_"): outcomes.count(o) for o in sorted(set(outcomes))})
    report_line("server", still_answering="yes" if await answers(url) else "no")
    print(f"  memory: before {before}; after {memory(pid)}")
    blob = b""  # let it go before the next one is made
    big = packb({"type": "act", "seq": 1, "obs": np.zeros((2, 300_000_000 // 8), np.float32)})
    outcome = "?"
    try:
        ws, _ = await say_hello(url, "huge" + "0" * 28)
        await ws.send(big)
        outcome = str((await recv_map(ws))["type"])
    except ConnectionClosed as exc:
        outcome = f"closed {exc.rcvd.code if exc.rcvd else '?'} ({exc.rcvd.reason if exc.rcvd else ''})"
    print(f"    then one {len(big) / 1e6:.0f} MB frame (over --max-frame-bytes): {outcome}")
    report_line("server", still_answering="yes" if await answers(url) else "no")
    print(f"  memory: after {memory(pid)}")


def http_get(port: int, host: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/report/index.html", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def case_report(run_dir: Path, n: int = 400, idle_timeout: float = 3.0) -> None:
    args = ["report", str(run_dir), "--serve", "--port", "0", "--idle-timeout", str(idle_timeout)]
    with child(args, r"at (http://\S+) ") as (proc, url):
        port = int(url.split(":")[2].split("/")[0])
        before = memory(proc.pid)
        socks, refused = [], 0
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /report/index.html HTTP/1.1\r\n")  # half a request, then silence
            socks.append(sock)
        time.sleep(0.5)
        for sock in socks:
            sock.setblocking(False)
            with suppress(BlockingIOError):
                if sock.recv(64).startswith(b"HTTP/1.1 503"):
                    refused += 1
        during = memory(proc.pid)
        print(f"(d) report --serve: {n} idle half-open connections (--idle-timeout {idle_timeout:g})")
        report_line("connections", attempted=n, held_by_server=n - refused, refused_503=refused)
        print(f"  memory: before {before}; while held {during}")
        time.sleep(idle_timeout + 1.0)
        closed = 0
        for sock in socks:
            with suppress(BlockingIOError, ConnectionResetError):
                data = sock.recv(64)
                closed += data == b"" or data.startswith(b"HTTP/1.1 503")
        report_line(
            "after the idle timeout",
            closed_by_server=closed,
            still_answering="yes" if http_get(port, f"127.0.0.1:{port}") == 200 else "no",
        )
        for sock in socks:
            sock.close()
        print(f"  memory: after {memory(proc.pid)}")
        report_line(
            "Host check",
            good_host=http_get(port, f"localhost:{port}"),
            evil_host=http_get(port, f"attacker.example:{port}"),
        )


def make_run(root: Path) -> Path:
    config = root / "run.yaml"
    config.write_text(
        "name: load\nseed: 1\njobs:\n  - {name: j, env: CartPole-v1, policy: zero, episodes: 4}\n"
    )
    subprocess.run(
        [sys.executable, "-m", "trialrun", "run", str(config), "--run-dir", str(root / "run")],
        check=True,
        capture_output=True,
    )
    return root / "run"


async def policy_cases() -> None:
    with child(["serve-policy", "zero", "--port", "0"], r"on (ws://\S+) ") as (proc, url):
        print(f"serve-policy zero at {url} (default limits: 64 connections, 256 sessions, 300 s idle,")
        print("  256 MiB per frame and in flight)")
        print(f"  memory at start: {memory(proc.pid)}")
        await case_connections(url, proc.pid)
        await case_hellos(url, proc.pid)
        await case_frames(url, proc.pid)


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    asyncio.run(policy_cases())
    with tempfile.TemporaryDirectory() as tmp:
        case_report(make_run(Path(tmp)))


if __name__ == "__main__":
    main()
