"""Benchmark LocalProcesses: the cost of finding the local process behind a client connection.

    .venv/bin/python bench/bench_local_process.py [--idle 190] [--holders 10] [--pairs 100] [--samples 200]

The machine is loaded first: ``idle`` sleeping processes and ``holders`` Python processes each
holding ``pairs`` loopback connections (both ends: 2 sockets a pair), 200 extra processes and
2,000 sockets by default. Two agents then open ``samples`` connections each to a listener here
(the stand-in proxy): one started before the load (the oldest pid: a scan newest-first reaches
it last, the worst case), one after it (the newest pid, as a freshly started tool is).

Reported, median and p99 in µs, one lookup each:
* cold, new process / cold, old process: a fresh LocalProcesses, the first connection of an
  agent it has never seen;
* known owner: another connection of an agent seen before (its pid is tried first);
* cached: ``of`` again for the same connection;
* the parts: sock_diag's socket lookup, /proc/net/tcp's (the fallback), and for comparison
  psutil.net_connections() matched in Python (what this replaces).

Results go to bench/results/bench_local_process.json. Everything is on 127.0.0.1; every child
is started here, ends by itself after ``--life`` seconds and is stopped here by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from mitmproxy import connection  # noqa: E402

from intercept_addon.proxy import socket_owner  # noqa: E402
from intercept_addon.proxy.local_process import LocalProcesses  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_local_process.json"
HOLDER = """
import socket, sys, time
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(256)
pairs = []
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(listener.getsockname()); a, _ = listener.accept(); pairs.append((c, a))
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""
AGENT = """
import socket, sys, time
conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
"""


def start(args: list[str], ready: bool) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE if ready else subprocess.DEVNULL, text=True)
    if ready:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", "child did not start"
    return proc


def agent(listener: socket.socket, samples: int, life: float,
          held: list[socket.socket]) -> tuple[subprocess.Popen, list[connection.Client]]:
    proc = start([sys.executable, "-c", AGENT, str(listener.getsockname()[1]), str(samples), str(life)], True)
    clients = []
    for _ in range(samples):
        conn, peer = listener.accept()
        held.append(conn)
        clients.append(connection.Client(peername=peer, sockname=conn.getsockname(), timestamp_start=time.time()))
    return proc, clients


def timed(fn: Callable[[], object], expect: object = None) -> float:
    t = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - t
    if expect is not None:
        assert got == expect, (got, expect)
    return elapsed * 1e6


def summary(us: list[float]) -> dict:
    us = sorted(us)
    return {"n": len(us), "median_us": round(statistics.median(us), 1),
            "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1)}


def pid_of(process: object) -> int | None:
    return getattr(process, "pid", None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=190)
    parser.add_argument("--holders", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--life", type=float, default=240.0, help="children end by themselves after this")
    args = parser.parse_args()
    assert sys.platform == "linux", "the lookup is Linux only"

    children: list[subprocess.Popen] = []
    held: list[socket.socket] = []  # the proxy side of the agents' connections
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    try:
        old, old_clients = agent(listener, args.samples, args.life, held)
        children.append(old)
        children += [start(["sleep", str(args.life)], False) for _ in range(args.idle)]
        children += [start([sys.executable, "-c", HOLDER, str(args.pairs), str(args.life)], True)
                     for _ in range(args.holders)]
        new, new_clients = agent(listener, args.samples, args.life, held)
        children.append(new)
        time.sleep(0.2)
        load = {"processes": len(psutil.pids()), "tcp_sockets": len(psutil.net_connections("tcp")),
                "fds": sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in psutil.pids()
                           if os.path.isdir(f"/proc/{pid}/fd") and os.access(f"/proc/{pid}/fd", os.R_OK)),
                "agent_fds": len(os.listdir(f"/proc/{old.pid}/fd")), "loadavg": os.getloadavg()[0]}

        def lookup(clients: list[connection.Client], expect: int, fresh: bool) -> list[float]:
            shared = LocalProcesses()
            return [timed(lambda: pid_of((LocalProcesses() if fresh else shared).of(c)), expect) for c in clients]

        known = LocalProcesses()
        known.of(old_clients[0])
        cached = LocalProcesses()
        for c in old_clients:
            cached.of(c)
        peer, proxy = old_clients[0].peername, old_clients[0].sockname
        results = {
            "cold, new process": summary(lookup(new_clients, new.pid, fresh=True)),
            "cold, old process (full scan)": summary(lookup(old_clients, old.pid, fresh=True)),
            "known owner": summary([timed(lambda: pid_of(known.of(c)), old.pid) for c in old_clients[1:]]),
            "cached": summary([timed(lambda: pid_of(cached.of(c)), old.pid) for c in old_clients]),
            "part: sock_diag socket lookup": summary(
                [timed(lambda: socket_owner.diag_inode(c.peername, c.sockname)) for c in old_clients]),
            "part: /proc/net/tcp socket lookup": summary(
                [timed(lambda: socket_owner.proc_net_inode(c.peername, c.sockname)) for c in old_clients[:20]]),
            "baseline: psutil.net_connections()": summary([timed(lambda: next(
                k.pid for k in psutil.net_connections("tcp")
                if k.laddr and k.raddr and (k.laddr.ip, k.laddr.port) == peer and (k.raddr.ip, k.raddr.port) == proxy),
                old.pid) for _ in range(10)]),
        }
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=10)
        for s in (*held, listener):
            s.close()

    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                          "euid": os.geteuid()},
              "load": load, "results": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(load))
    for name, r in results.items():
        print(f"{name:40} median {r['median_us']:>10.1f} µs   p99 {r['p99_us']:>10.1f} µs   (n={r['n']})")


if __name__ == "__main__":
    main()
