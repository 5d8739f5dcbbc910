"""Memory on a long-lived legacy HTTP+SSE stream (bounded soak): one connection carries up to
2,000 allowed, denied, rate-limited and tools/list calls in at most ~30 s.

Three checks, through tests/servers/pending_probe.py (a test-only script in the same mitmdump):
* the addon's per-stream tables (reservations, tools/list ids, pending denials) and per-flow
  table are empty once every answer has arrived, and the stream's entries go when it closes;
* the number of live Python container objects in mitmdump (after a gc.collect) grows by less
  than OBJECTS_BOUND from the end of a warm-up to the end of the run: measured +5 over 4,800
  calls, while anything kept per call (a flow, a dict entry, a closure) adds at least one per call;
* mitmdump's resident memory (VmRSS), for what the object count cannot see (bytes buffers),
  grows by less than 2 MiB plus 1 KiB per call. Measured: +0.4 to +1.9 MiB for 1,800 calls
  (allocator arenas, not live objects: see the object count), while keeping every flow costs
  about 4 KiB per call, +7 MiB for the same run. The allowance per call keeps the bound that
  tight if a loaded machine cuts the run short.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import anyio
import httpx2
import mcp
import pytest

from harness import ROOT, ran, start_mcp_server, start_mitmdump
from test_legacy_sse import DENIED, session

pytestmark = pytest.mark.e2e

MAX_CALLS = 2_000
MAX_SECONDS = 30.0
WARM_UP = 200
WORKERS = 4
OBJECTS_BOUND = 500
RSS_NOISE_KIB = 2048
RSS_PER_CALL_KIB = 1  # a quarter of what retaining each flow costs


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pending(port: int) -> dict[str, int]:
    resp = httpx2.get(f"http://127.0.0.1:{port}/__intercept_pending", trust_env=False)
    resp.raise_for_status()
    return resp.json()


async def one_call(s: mcp.ClientSession, n: int, seen: dict[str, int]) -> None:
    kind = ("echo", "denied", "echo", "limited", "list")[n % 5]
    if kind == "echo":
        assert (await s.call_tool("echo", {"text": f"m{n}"})).content[0].text == f"m{n}"
    elif kind == "list":
        assert "secret_admin" not in {t.name for t in (await s.list_tools()).tools}
    else:
        tool, args = ("delete_everything", {}) if kind == "denied" else ("generate", {"prompt": str(n)})
        try:
            await s.call_tool(tool, args)
            assert kind == "limited"  # the first 3 generate calls are within the limit
        except mcp.MCPError as err:
            assert err.message == DENIED if kind == "denied" else err.data["kind"] == "rate_limit"
    seen[kind] += 1


async def test_long_lived_stream_stays_bounded(tmp_path, policy_file):
    server, server_port, side_log = start_mcp_server(tmp_path, transport="sse")
    procs = [server]
    try:
        proxy, port = start_mitmdump(tmp_path, server_port, "intercept_state=memory", policy=policy_file,
                                     scripts=[ROOT / "tests/servers/pending_probe.py"])
        procs.append(proxy)
        counter = itertools.count()
        seen = dict.fromkeys(("echo", "denied", "limited", "list"), 0)
        async with session(f"http://127.0.0.1:{port}/sse") as s:

            async def run(until: int, deadline: float) -> None:
                async def worker() -> None:
                    while (n := next(counter)) < until and time.monotonic() < deadline:
                        with anyio.fail_after(10):
                            await one_call(s, n, seen)

                async with anyio.create_task_group() as tg:
                    for _ in range(WORKERS):
                        tg.start_soon(worker)

            started = time.monotonic()
            await run(WARM_UP, started + MAX_SECONDS)
            rss_start, warm = rss_kib(proxy.proc.pid), pending(port)
            await run(MAX_CALLS, started + MAX_SECONDS)
            rss_end = rss_kib(proxy.proc.pid)
            elapsed = time.monotonic() - started
            open_stream = pending(port)

        calls = sum(seen.values())
        print(f"\nsoak: {calls} calls in {elapsed:.1f} s over one legacy stream {seen}; mitmdump VmRSS "
              f"{rss_start} KiB after {WARM_UP} calls -> {rss_end} KiB (+{rss_end - rss_start} KiB)")
        assert calls >= 1_000, "too few calls to say anything about growth"
        assert min(seen.values()) > 0
        objects = open_stream.pop("objects") - warm["objects"]
        print(f"live objects in mitmdump: {objects:+d}")
        assert open_stream == {"flows": 0, "legacy_streams": 1, "legacy_endpoints": 1,
                               "calls": 0, "lists": 0, "denials": 0, "tickets": 0}
        assert objects < OBJECTS_BOUND
        assert rss_end - rss_start < RSS_NOISE_KIB + RSS_PER_CALL_KIB * (calls - WARM_UP)

        # The stream is closed: its entries go (the response hook runs when the connection ends).
        with anyio.fail_after(10):
            while (after := pending(port))["legacy_streams"]:
                await anyio.sleep(0.1)
        del after["objects"]
        assert after == dict.fromkeys(open_stream, 0)
        assert ran(side_log).count("generate") == 3 and "delete_everything" not in ran(side_log)
    finally:
        for proc in reversed(procs):
            proc.stop()
