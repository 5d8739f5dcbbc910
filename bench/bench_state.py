"""Benchmark the counter stores side by side: memory vs SQLite vs Redis, in one run (not a test).

    .venv/bin/python bench/bench_state.py [--calls 2000] [--rounds 5] [--samples 600]

1. Engine.evaluate of one tools/call and its commit, on bench_engine.py's 50-tool policy
   (argument conditions, a sliding-window limit per session and a calendar day counter: two
   counters reserved per call), on each store in interleaved rounds, a fresh store per round.
   Redis runs twice: without persistence, and with ``appendonly yes`` + ``appendfsync always``
   (the setting under which a Redis restart loses no committed count).
2. The latency of an allowed tools/call through a real mitmdump with the addon on memory,
   SQLite and Redis state, and through a bare mitmdump, sequential keep-alive requests
   interleaved by proxy; the latency the addon adds per allowed call (addon - bare) per store.

Ratios are taken against memory within this run. Results go to bench/results/bench_state.json.
Every process is started here, on 127.0.0.1, and stopped by its PID; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_engine import build_policy, measure, summary  # noqa: E402
from bench_proxy import POLICY, Conn, addon_args, allowed_ok, pct, start_proxy  # noqa: E402
from harness import Process, free_port, wait_for_port  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from intercept_addon.state.memory import MemoryStore  # noqa: E402
from intercept_addon.state.redis import RedisStore  # noqa: E402
from intercept_addon.state.sqlite import SqliteStore  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_state.json"
HARD_LIMIT_SECONDS = 240.0
TOOLS = 50


async def engine_rounds(urls: dict[str, str], tmp: Path, args: argparse.Namespace, deadline: float) -> dict:
    policy = build_policy(TOOLS, 0)
    samples: dict[str, list[float]] = {name: [] for name in ("memory", "sqlite", *urls)}
    names = list(samples)

    def fresh(name: str, r: int):  # type: ignore[no-untyped-def]
        if name == "memory":
            return MemoryStore()
        if name == "sqlite":
            return SqliteStore(tmp / f"round-{r}.db")
        return RedisStore(urls[name], prefix=f"bench-{uuid.uuid4().hex}:")

    for r in range(args.rounds):
        if time.monotonic() > deadline:
            print(f"  (time budget reached after {r} rounds)")
            break
        for name in names if r % 2 == 0 else names[::-1]:  # drift hits every store alike
            store = fresh(name, r)
            samples[name] += await measure(policy, TOOLS, store, args.calls, args.warmup)
            await store.close()
    return samples


async def proxy_latency(ports: dict[str, int], samples: int, budget: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in ports}
    conns = {name: Conn(port, f"lat-{name}") for name, port in ports.items()}
    for conn in conns.values():
        await conn.__aenter__()
    try:
        end = time.monotonic() + budget
        for i in range(samples):  # one call through each proxy per iteration
            if time.monotonic() > end:
                break
            for name, conn in conns.items():
                t0 = time.perf_counter()
                status, body = await asyncio.wait_for(conn.call(i + 1, "echo", {"text": "hi"}), 10)
                elapsed = time.perf_counter() - t0
                if not allowed_ok(status, body):
                    raise RuntimeError(f"{name}: unexpected answer {status} {body[:200]!r}")
                times[name].append(elapsed * 1e3)
    finally:
        for conn in conns.values():
            await conn.__aexit__()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured evaluate calls per store and round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=600, help="allowed calls through each proxy")
    args = parser.parse_args()
    began = time.monotonic()
    deadline = began + HARD_LIMIT_SECONDS
    procs: list[Process] = []
    servers: list[RedisServer] = []
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            plain = RedisServer(tmp / "redis")
            servers.append(plain)
            durable = RedisServer(tmp / "redis-aof", durable=True)
            servers.append(durable)
            urls = {"redis": plain.url, "redis-aof-always": durable.url}

            engine = asyncio.run(engine_rounds(urls, tmp, args, deadline - 90))

            policy = tmp / "policy.yaml"
            policy.write_text(POLICY)
            up_port = free_port()
            upstream = Process([sys.executable, str(ROOT / "bench" / "bench_proxy.py"), "--serve-upstream",
                                str(up_port), "--lifetime", str(HARD_LIMIT_SECONDS + 30)], tmp / "upstream.log")
            procs.append(upstream)
            wait_for_port(up_port, upstream.proc)
            ports: dict[str, int] = {}
            for name, extra in (("bare", []),
                                ("memory", addon_args(policy, "intercept_state=memory")),
                                ("sqlite", addon_args(policy)),
                                ("redis", addon_args(policy, f"intercept_state={plain.url}",
                                                     f"intercept_state_prefix=bench-{uuid.uuid4().hex}:"))):
                proc, ports[name] = start_proxy(tmp, name, up_port, *extra)
                procs.append(proc)
            asyncio.run(proxy_latency(ports, 100, 30))  # warm-up: connections, caches, files
            latency = asyncio.run(proxy_latency(ports, args.samples, max(10.0, deadline - time.monotonic() - 10)))
        finally:
            for proc in reversed(procs):
                proc.stop()
            for server in servers:
                server.stop()

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, redis-server {plain.binary}")
    print(f"\n1. Engine.evaluate + commit, {TOOLS}-tool policy, two counters per call, "
          f"{args.calls} calls x {args.rounds} interleaved rounds per store")
    print(f"   {'store':<18}{'median µs':>10}{'p99 µs':>10}{'/ memory':>10}")
    engine_out = {}
    base = summary(engine["memory"])[0]
    for name, values in engine.items():
        median, p99 = summary(values)
        engine_out[name] = {"n": len(values), "median_us": median, "p99_us": p99, "ratio_to_memory": median / base}
        print(f"   {name:<18}{median:>10.1f}{p99:>10.1f}{median / base:>10.2f}")

    print(f"\n2. Allowed tools/call through mitmdump, sequential keep-alive, interleaved by proxy "
          f"({len(latency['bare'])} each)")
    print(f"   {'proxy':<10}{'median ms':>10}{'p90 ms':>9}{'added µs':>10}{'added / memory':>16}")
    bare = statistics.median(latency["bare"])
    added_memory = statistics.median(latency["memory"]) - bare
    proxy_out = {}
    for name, values in latency.items():
        median = statistics.median(values)
        added = median - bare
        ratio = added / added_memory if name != "bare" and added_memory > 0 else None
        proxy_out[name] = {"n": len(values), "median_ms": median, "p90_ms": pct(values, 0.9),
                           "added_ms": None if name == "bare" else added, "added_ratio_to_memory": ratio}
        shown = "-" if ratio is None else f"{ratio:.2f}"
        added_shown = "-" if name == "bare" else f"{added * 1e3:.0f}"
        print(f"   {name:<10}{median:>10.3f}{pct(values, 0.9):>9.3f}{added_shown:>10}{shown:>16}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": vars(args),
        "engine_evaluate": engine_out,
        "proxy_allowed_call": proxy_out,
        "seconds": time.monotonic() - began,
    }, indent=2) + "\n")
    print(f"\nwritten {RESULTS.relative_to(ROOT)}; total {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
