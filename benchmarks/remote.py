"""The same controller run locally and over openpi's protocol on 127.0.0.1: what does the wire cost?

Pendulum-v1, 16 sub-envs (a Gymnasium ``SyncVectorEnv``), the ``pendulum-swingup``
controller:

- local: ``policy.act(obs)`` on the batch of 16, then ``envs.step``;
- openpi: the controller served by ``trialrun serve-policy pendulum-swingup
  --protocol openpi --env Pendulum-v1`` in a child process, driven through
  ``policy: {type: openpi, url: ..., max_connections: 16}`` (the
  :class:`~trialrun.policies.vla.policy.ServerPolicy` over
  :class:`~trialrun.policies.vla.openpi.OpenpiTransport`): every step sends
  16 requests, one per sub-env, over 16 connections, and waits for all.

Both sides step the same envs from the same seed, so they take identical
actions (checked at the end). Rounds alternate local / openpi and the median
of each is printed: steps/s, the ratio openpi / local (target >= 0.5), the
per-step round trip (mean and 95th percentile of ``transport.infer`` for 16
requests), the server's own ``infer_ms``, the CPU each side spends per
request (the client's inside ``transport.infer``, the server process's
whole), and a floor: the same 16 loopback round trips per step with no
protocol at all (a Python echo server in a child process, 60-byte
messages, one selector loop on each side), i.e. what the sockets alone cost
on this machine at this load. The load average is printed with the numbers
(``/proc/loadavg``): on a busy machine every number here is slower.

Usage:
    python benchmarks/remote.py [--steps 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trialrun.policies import PolicyContext, build_policy

ENV_ID = "Pendulum-v1"
NUM_ENVS = 16
POLICY = "pendulum-swingup"
SEED = 0


def run(
    envs: gym.vector.VectorEnv[Any, Any, Any], act: Callable[[Any], Any], steps: int
) -> tuple[float, Any]:
    """Steps per second of ``steps`` steps from a fixed seed, and the last actions."""
    obs, _ = envs.reset(seed=SEED)
    actions = None
    start = time.perf_counter()
    for _ in range(steps):
        actions = act(obs)
        obs, *_ = envs.step(actions)
    return steps / (time.perf_counter() - start), actions


def start_server() -> tuple[subprocess.Popen[str], str]:
    cli = [sys.executable, "-m", "trialrun.cli", "serve-policy", POLICY, "--protocol", "openpi"]
    proc = subprocess.Popen(
        [*cli, "--env", ENV_ID, "--port", "0", "--max-connections", "64"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )
    assert proc.stdout is not None
    found = re.search(r"on (ws://\S+)", proc.stdout.readline())
    if not found:
        proc.kill()
        raise SystemExit("the server did not start")
    return proc, found.group(1)


ECHO_SERVER = """
import selectors, socket, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
selector = selectors.DefaultSelector()
for _ in range(int(sys.argv[1])):
    conn = listener.accept()[0]
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    selector.register(conn, selectors.EVENT_READ)
while True:
    for key, _ in selector.select():
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit(0)
        key.fileobj.send(data)
"""


def socket_floor(steps: int) -> float:
    """Microseconds per step of ``NUM_ENVS`` bare loopback round trips (60 bytes each way, no protocol)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(NUM_ENVS)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(NUM_ENVS):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(conn, selectors.EVENT_READ)
        conns.append(conn)
    message = b"x" * 60

    def step() -> None:
        for conn in conns:
            conn.send(message)
        answered = 0
        while answered < NUM_ENVS:
            for key, _ in selector.select():
                key.fileobj.recv(65536)  # type: ignore[union-attr]
                answered += 1

    for _ in range(100):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    proc.wait(10)
    return elapsed * 1e6 / steps


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {load()} at the start")
    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync")
    context = PolicyContext(ENV_ID, NUM_ENVS, envs.single_observation_space, envs.single_action_space, {})
    local = build_policy(POLICY, {}, context)
    proc, url = start_server()
    try:
        remote: Any = build_policy("openpi", {"url": url, "max_connections": NUM_ENVS}, context)
        transport = remote.transport
        trips: list[float] = []
        infer = transport.infer
        infer_ms: list[float] = []
        client_cpu = [0.0]

        def timed(requests: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            replies = infer(requests)
            client_cpu[0] += time.process_time() - cpu
            trips.append((time.perf_counter() - start) * 1000.0)
            infer_ms.extend(r["server_timing"]["infer_ms"] for r in replies)
            return replies

        transport.infer = timed
        run(envs, remote.act, 50)  # warm up: open the 16 connections
        local_rates, remote_rates = [], []
        server_cpu, client_cpu[0] = 0.0, 0.0
        for _ in range(args.rounds):
            trips.clear()
            local_rates.append(run(envs, local.act, args.steps)[0])
            before = process_cpu(proc.pid)
            rate, remote_last = run(envs, remote.act, args.steps)
            server_cpu += process_cpu(proc.pid) - before
            remote_rates.append(rate)
        local_last = run(envs, local.act, args.steps)[1]
        remote.close()
    finally:
        proc.kill()
        proc.wait(10)
    envs.close()
    same = np.array_equal(np.asarray(local_last), np.asarray(remote_last))
    local_rate, remote_rate = statistics.median(local_rates), statistics.median(remote_rates)
    print(f"{ENV_ID}, {NUM_ENVS} sub-envs, {POLICY}, {args.steps} steps x {args.rounds} rounds (medians)")
    print(f"  local                 {local_rate:10.1f} steps/s  ({1000 / local_rate:.3f} ms/step)")
    print(f"  openpi (16 conns)     {remote_rate:10.1f} steps/s  ({1000 / remote_rate:.3f} ms/step)")
    print(f"  ratio openpi / local  {remote_rate / local_rate:10.3f}  (target >= 0.5)")
    trip, trip_p95 = statistics.fmean(trips), float(np.percentile(trips, 95))
    print(
        f"  round trip per step   mean {trip:.3f} ms, p95 {trip_p95:.3f} ms for {NUM_ENVS} requests "
        f"({trip * 1000 / NUM_ENVS:.0f} us per request)"
    )
    print(f"  server infer_ms       mean {statistics.fmean(infer_ms):.3f} ms per request")
    requests = args.rounds * args.steps * NUM_ENVS
    print(
        f"  CPU per request       client {client_cpu[0] * 1e6 / requests:.1f} us (in transport.infer), "
        f"server {server_cpu * 1e6 / requests:.1f} us (its process)"
    )
    floor = socket_floor(args.steps)
    print(
        f"  socket floor          {floor:.0f} us per step for {NUM_ENVS} bare loopback round trips "
        f"(ratio at most {1000 / local_rate / (1000 / local_rate + floor / 1000):.2f} over 16 connections)"
    )
    print(f"  same final actions    {same}")
    print(f"  load average          {load()} (at the end; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
