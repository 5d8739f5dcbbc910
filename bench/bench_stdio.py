"""Benchmark ``intercept-addon stdio``: what the wrapper adds to a stdio MCP server.

    .venv/bin/python bench/bench_stdio.py [--runs 5] [--calls 50]

For each server (server-everything on node; the real mcp-sora from .venv-sora, when present) and
each way of starting it (``direct``: the server's own command; ``wrapped``: under
``intercept-addon stdio`` with a policy, its own mitmdump in between; ``shared``: under
``intercept-addon stdio --proxy`` through one ``--serve`` proxy started beforehand):

* startup: from spawning the command to the answer of the first message (initialize), median and
  max over ``runs`` fresh starts; what an agent waits for when it starts the server;
* per call: ``calls`` sequential requests after that (tools/list; ping for mcp-sora), median
  and p95 round trip in ms;
* phases (wrapped, one more start): when each step of the startup showed in the wrapper's
  stderr, in seconds from the spawn.

Raw pipes, no SDK: the clock covers only the processes. Results go to
bench/results/bench_stdio.json. Everything runs on 127.0.0.1; every process is started here and
stopped by its PID (stdin closed, then SIGKILL if it lingers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVERYTHING = ROOT / "tests/ts/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
MCP_SORA = ROOT / ".venv-sora/bin/mcp-sora"
INITIALIZE = (b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
              b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n')
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
POLICY = """\
version: "1"
description: bench
hide: [get-env]
tools:
  echo:
    rules:
      - {name: echo limit, action: allow, rate_limit: {max: 100000, window: 60}}
"""


def session(command: list[str], calls: int, method: str, env: dict[str, str], cwd: str) -> tuple[float, list[float]]:
    """(seconds to the initialize answer, round trips of ``calls`` requests in seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=cwd)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(INITIALIZE)
        proc.stdin.flush()
        answer = proc.stdout.readline()
        startup = time.perf_counter() - start
        if b'"id":0' not in answer.replace(b" ", b""):
            raise RuntimeError(f"{command[0]}: no initialize answer: {answer[:200]!r}")
        proc.stdin.write(INITIALIZED)
        trips = []
        for i in range(1, calls + 1):
            sent = time.perf_counter()
            proc.stdin.write(b'{"jsonrpc":"2.0","id":%d,"method":"%s"}\n' % (i, method.encode()))
            proc.stdin.flush()
            while b'"id":%d' % i not in proc.stdout.readline().replace(b" ", b""):
                pass
            trips.append(time.perf_counter() - sent)
        return startup, trips
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


PHASES = (("bridge bound", b"intercept-addon stdio: bridge on"), ("mitmdump loads the addon", b"Loading script"),
          ("policy loaded", b"intercept: policy"), ("proxy listening", b"listening at"),
          ("relay open", b"behind http://"))


def phases(command: list[str], env: dict[str, str], cwd: str) -> dict[str, float]:
    """One wrapped start, its stderr lines timed as they arrive: where the startup goes."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    seen: dict[str, float] = {}

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            for name, marker in PHASES:
                if marker in line and name not in seen:
                    seen[name] = round(time.perf_counter() - start, 3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc.stdin.write(INITIALIZE)
    proc.stdin.flush()
    proc.stdout.readline()
    seen["first answer"] = round(time.perf_counter() - start, 3)
    proc.stdin.close()
    proc.wait(10)
    watcher.join(5)
    return dict(sorted(seen.items(), key=lambda item: item[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-stdio-")
    policy = Path(work) / "policy.yaml"
    policy.write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(ACEDATACLOUD_API_BASE_URL="http://127.0.0.1:9", ACEDATACLOUD_API_TOKEN="bench")  # never called
    wrap = [sys.executable, "-m", "intercept_addon", "stdio", "--policy", str(policy),
            "--set", f"confdir={work}/mitmproxy", "--set", "intercept_state=memory", "--"]
    servers = {}
    node = shutil.which("node")
    if node and EVERYTHING.is_file():
        servers["server-everything"] = ([node, str(EVERYTHING), "stdio"], "tools/list")
    if MCP_SORA.exists():
        servers["mcp-sora"] = ([str(MCP_SORA)], "ping")
    port = free_port()  # the shared proxy (--serve) of the "shared" rows, started once
    shared = subprocess.Popen([sys.executable, "-m", "intercept_addon", "stdio", "--serve", "--port", str(port),
                               "--policy", str(policy), "--set", f"confdir={work}/shared",
                               "--set", "intercept_state=memory"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work)
    via_shared = [sys.executable, "-m", "intercept_addon", "stdio", "--proxy", f"http://127.0.0.1:{port}", "--"]
    try:
        wait_for_port(port)
        results = measure(servers, {"direct": [], "wrapped": wrap, "shared": via_shared}, args, env, work)
    finally:
        shared.terminate()
        shared.wait(10)
    shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench/results/bench_stdio.json"
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_average": os.getloadavg()}, "results": results}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(servers: dict[str, tuple[list[str], str]], ways: dict[str, list[str]], args: argparse.Namespace,
            env: dict[str, str], work: str) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for name, (command, method) in servers.items():
        for how, prefix in ways.items():
            argv = prefix + command
            startups, trips = [], []
            for _ in range(args.runs):
                startup, run_trips = session(argv, args.calls, method, env, work)
                startups.append(startup)
                trips += run_trips
            trips.sort()
            row = {"server": name, "how": how, "runs": args.runs, "calls": len(trips),
                   "startup_median_s": round(statistics.median(startups), 3), "startup_max_s": round(max(startups), 3),
                   f"{method}_median_ms": round(statistics.median(trips) * 1000, 2),
                   f"{method}_p95_ms": round(trips[int(0.95 * (len(trips) - 1))] * 1000, 2)}
            if how != "direct":
                row["phases_s"] = phases(argv, env, work)
            results.append(row)
            print(json.dumps(row), flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
