"""Proxy benchmark: what the intercept addon costs inside a real mitmdump, measured side by side.

    .venv/bin/python bench/bench_proxy.py [--requests 1500] [--rounds 5] [--clients 4]

One run measures, on 127.0.0.1 only:

1. throughput of allowed tools/call (echo) through ``mitmdump -q`` in reverse mode, bare (no
   addon) vs with the addon (memory state) vs with the addon (default SQLite state in its
   confdir) vs "lean" (memory, decision log off), all in front
   of one tiny upstream so the proxy is the bottleneck. Rounds are
   interleaved (bare, memory, sqlite, then the reverse order, ...) and ratios are taken per
   round, so machine noise hits both sides of a ratio alike;
2. sequential latency (median, p90) of a denied call answered by the proxy vs an allowed
   round trip, with the upstream directly and through the bare proxy for reference;
3. time to the first SSE frame of a tools/call answered with text/event-stream (first event
   at once, second after 1 s) through the proxy with the addon vs directly.

Results are printed as tables and written to bench/results/bench_proxy.json.

Every process here is started by this script and stopped by its PID; every loop is bounded in
count and in time. The upstream is this same file run with ``--serve-upstream``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import BIN, Process, free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_proxy.json"
HARD_LIMIT_SECONDS = 170.0  # the whole run; every phase also has its own budget
SSE_SECOND_EVENT_DELAY = 1.0
PROTOCOL_VERSION = "2025-06-18"

POLICY = """\
version: "1"
description: proxy benchmark policy (realistic shape, limits far above what the bench sends)
default: allow
hide: [secret_admin, "internal_*"]
tools:
  echo:
    rules:
      - name: printable short text
        conditions:
          - {path: args.text, op: regex, value: "^[ -~]{1,200}$"}
        on_deny: "echo takes printable text of at most 200 characters"
      - name: echo budget
        action: allow
        rate_limit: "10000000/minute"
  charge:
    rules:
      - name: max charge
        conditions:
          - {path: args.amount, op: lte, value: 500}
          - {path: args.currency, op: in, value: [usd, eur]}
        on_deny: "Charges above 500 are not allowed"
      - name: daily spend
        conditions:
          - {path: state.charge.spend, op: lt, value: 100000000}
        state: {counter: spend, window: day, increment_from: args.amount}
  delete_everything:
    rules:
      - name: no deletes
        action: deny
        on_deny: "Deleting everything is not allowed"
  "generate*":
    rules:
      - name: generation limit
        action: allow
        rate_limit: {max: 3, window: 60}
"""


# -- the upstream (a separate process) -------------------------------------------------------

def serve_upstream(port: int, lifetime: float) -> None:
    """Answer any POST: JSON-RPC result as JSON, or as SSE on paths starting with /sse."""

    async def sse(writer: asyncio.StreamWriter, msg_id: object) -> None:
        first = {"jsonrpc": "2.0", "method": "notifications/progress",
                 "params": {"progressToken": 1, "progress": 1, "total": 2, "message": "started"}}
        last = {"jsonrpc": "2.0", "id": msg_id,
                "result": {"content": [{"type": "text", "text": "done"}], "isError": False}}

        def chunk(event: dict) -> bytes:
            data = b"event: message\r\ndata: " + json.dumps(event).encode() + b"\r\n\r\n"
            return b"%x\r\n%s\r\n" % (len(data), data)

        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\n\r\n" + chunk(first))
        await writer.drain()
        await asyncio.sleep(SSE_SECOND_EVENT_DELAY)
        writer.write(chunk(last) + b"0\r\n\r\n")
        await writer.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(10_000_000):  # requests per connection (keep-alive)
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                body = await reader.readexactly(int(m.group(1))) if m else b""
                try:
                    msg_id = json.loads(body).get("id")
                except (ValueError, AttributeError):
                    msg_id = None
                if path.startswith(b"/sse"):
                    await sse(writer, msg_id)
                    continue
                out = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": {
                    "content": [{"type": "text", "text": "hello from upstream"}], "isError": False}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(out), out))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
        async with server:
            await asyncio.sleep(lifetime)  # bounded: the upstream never outlives the benchmark

    asyncio.run(main())


# -- a raw keep-alive HTTP/1.1 client -----------------------------------------------------------

def call_body(msg_id: int, tool: str, arguments: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments}}, separators=(",", ":")).encode()


def post(path: str, body: bytes, session: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"accept: application/json, text/event-stream\r\nmcp-protocol-version: {PROTOCOL_VERSION}\r\n"
            f"mcp-session-id: {session}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if m:
        return status, await reader.readexactly(int(m.group(1)))
    if re.search(rb"\r\ntransfer-encoding:\s*chunked", head, re.I):
        parts = []
        for _ in range(100_000):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, b"".join(parts)
    raise RuntimeError(f"response without a length: {head[:200]!r}")


class Conn:
    """One keep-alive connection, used sequentially."""

    def __init__(self, port: int, session: str):
        self.port, self.session = port, session
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "Conn":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError):
            pass

    async def call(self, msg_id: int, tool: str, arguments: dict, path: str = "/mcp") -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(post(path, call_body(msg_id, tool, arguments), self.session))
        return await read_response(self.reader)


def allowed_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"result"' in body and b"hello from upstream" in body


def denied_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"error"' in body and b"INTERCEPT POLICY DENIED" in body


# -- 1. throughput ----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (Linux /proc), or None where that is unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def load_round(port: int, pid: int, total: int, clients: int, budget: float, tag: str) -> dict:
    """``total`` echo calls over ``clients`` keep-alive connections; req/s over the whole round,
    and the proxy's own CPU time per call (robust to other load on the machine)."""
    remaining = total
    ok = bad = 0

    async def worker(n: int) -> None:
        nonlocal remaining, ok, bad
        async with Conn(port, f"bench-{tag}-{n}") as conn:
            msg_id = 0
            while remaining > 0:  # bounded by total; the round also has a time budget
                remaining -= 1
                msg_id += 1
                status, body = await conn.call(msg_id, "echo", {"text": f"hello {n} {msg_id}"})
                if allowed_ok(status, body):
                    ok += 1
                else:
                    bad += 1

    cpu0 = cpu_seconds(pid)
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(clients))), budget)
    elapsed = time.perf_counter() - start
    cpu1 = cpu_seconds(pid)
    cpu_ms = None if cpu0 is None or cpu1 is None or not ok else (cpu1 - cpu0) / ok * 1e3
    return {"ok": ok, "bad": bad, "seconds": elapsed, "rps": ok / elapsed, "proxy_cpu_ms_per_call": cpu_ms}


async def throughput(ports: dict[str, int], pids: dict[str, int], args: argparse.Namespace,
                     deadline: float) -> dict:
    names = list(ports)
    for name in names:  # warm up every proxy: connections, caches, the SQLite file
        await load_round(ports[name], pids[name], args.warmup, args.clients, 30, "warm")
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        if time.monotonic() > deadline:
            print(f"  (time budget reached after {r} rounds)")
            break
        order = names if r % 2 == 0 else names[::-1]  # A/B/C, C/B/A, ...: drift hits all alike
        for name in order:
            res = await load_round(ports[name], pids[name], args.requests, args.clients, 60, f"{name}-{r}")
            if res["bad"]:
                raise RuntimeError(f"{name}: {res['bad']} unexpected answers in round {r + 1}")
            rounds[name].append(res)
    return rounds


# -- 2. latency ---------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def latency(upstream: int, bare: int, addon: int, samples: int, budget: float) -> dict:
    kinds = {  # name -> (port, tool, arguments, check)
        "direct upstream, allowed": (upstream, "echo", {"text": "hi"}, allowed_ok),
        "bare mitmdump, allowed": (bare, "echo", {"text": "hi"}, allowed_ok),
        "addon, allowed (round trip)": (addon, "echo", {"text": "hi"}, allowed_ok),
        "addon, denied by rule": (addon, "delete_everything", {}, denied_ok),
        "addon, denied by condition": (addon, "charge", {"amount": 9999, "currency": "usd"}, denied_ok),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    conns = {k: Conn(port, f"lat-{i}") for i, (k, (port, *_)) in enumerate(kinds.items())}
    for conn in conns.values():
        await conn.__aenter__()
    try:
        end = time.monotonic() + budget
        for i in range(samples):  # interleaved: one of each kind per iteration
            if time.monotonic() > end:
                break
            for k, (_, tool, arguments, check) in kinds.items():
                t0 = time.perf_counter()
                status, body = await asyncio.wait_for(conns[k].call(i + 1, tool, arguments), 10)
                dt = time.perf_counter() - t0
                if not check(status, body):
                    raise RuntimeError(f"{k}: unexpected answer {status} {body[:200]!r}")
                times[k].append(dt)
    finally:
        for conn in conns.values():
            await conn.__aexit__()
    return {k: {"n": len(v), "median_ms": statistics.median(v) * 1e3, "p90_ms": pct(v, 0.9) * 1e3}
            for k, v in times.items()}


# -- 3. time to first SSE frame ---------------------------------------------------------------------

async def sse_probe(port: int, msg_id: int, full: bool) -> dict:
    """Seconds from sending the request to the first event's bytes (and to the second, if full)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        writer.write(post("/sse", call_body(msg_id, "echo", {"text": "stream please"}), f"sse-{port}"))
        seen = b""
        first = second = None
        for _ in range(10_000):  # bounded reads; each read also has a timeout
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                break
            seen += data
            body = seen.partition(b"\r\n\r\n")[2]
            if first is None and b"data:" in body:
                first = time.perf_counter() - t0
                if b"notifications/progress" not in body:
                    raise RuntimeError(f"first event is not the progress notification: {body[:200]!r}")
                if not full:
                    break
            if first is not None and b'"result"' in body:
                second = time.perf_counter() - t0
                break
        if first is None:
            raise RuntimeError(f"no SSE event arrived: {seen[:300]!r}")
        return {"first": first, "second": second}
    finally:
        writer.close()


async def sse_first_frame(ports: dict[str, int], samples: int, budget: float) -> dict:
    firsts: dict[str, list[float]] = {k: [] for k in ports}
    full = {k: await sse_probe(p, 1, full=True) for k, p in ports.items()}  # proves streaming
    end = time.monotonic() + budget
    for i in range(samples):
        if time.monotonic() > end:
            break
        for k, p in ports.items():
            firsts[k].append((await sse_probe(p, i + 2, full=False))["first"])
    return {k: {"n": len(v), "median_ms": statistics.median(v) * 1e3, "p90_ms": pct(v, 0.9) * 1e3,
                "full_stream_first_ms": full[k]["first"] * 1e3,
                "full_stream_second_ms": None if full[k]["second"] is None else full[k]["second"] * 1e3}
            for k, v in firsts.items()}


# -- processes ---------------------------------------------------------------------------------------

def start_proxy(tmp: Path, name: str, upstream: int, *extra: str) -> tuple[Process, int]:
    port = free_port()
    args = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
            "--mode", f"reverse:http://127.0.0.1:{upstream}",
            "--set", f"confdir={tmp / ('conf-' + name)}", "--set", "connection_strategy=lazy", *extra]
    proc = Process(args, tmp / f"mitmdump-{name}.log")
    wait_for_port(port, proc.proc, timeout=40)
    return proc, port


def addon_args(policy: Path, *options: str) -> list[str]:
    args = ["-s", str(ROOT / "intercept_addon.py"), "--set", f"intercept_policy={policy}"]
    for opt in options:
        args += ["--set", opt]
    return args


# -- report -------------------------------------------------------------------------------------------

def ratio_rows(rounds: dict[str, list[dict]], a: str, b: str) -> tuple[list[float], float, float]:
    per_round = [x["rps"] / y["rps"] for x, y in zip(rounds[a], rounds[b])]
    medians = statistics.median(x["rps"] for x in rounds[a]) / statistics.median(y["rps"] for y in rounds[b])
    return per_round, statistics.median(per_round), medians


def cpu_median(res: list[dict]) -> float | None:
    values = [x["proxy_cpu_ms_per_call"] for x in res if x["proxy_cpu_ms_per_call"] is not None]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="tools/call per throughput round")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per configuration")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls per proxy first")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--sse-samples", type=int, default=20)
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=HARD_LIMIT_SECONDS + 30, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.lifetime)
        return 0
    for n in (args.requests, args.rounds, args.clients, args.latency_samples, args.sse_samples):
        if n < 1:
            parser.error("counts must be positive")

    began = time.monotonic()
    deadline = began + HARD_LIMIT_SECONDS
    procs: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            policy = tmp / "policy.yaml"
            policy.write_text(POLICY)
            up_port = free_port()
            upstream = Process([sys.executable, str(Path(__file__).resolve()), "--serve-upstream", str(up_port),
                                "--lifetime", str(HARD_LIMIT_SECONDS + 30)], tmp / "upstream.log")
            procs.append(upstream)
            wait_for_port(up_port, upstream.proc)
            ports: dict[str, int] = {}
            pids: dict[str, int] = {}
            for name, extra in (("bare", []),
                                ("addon-memory", addon_args(policy, "intercept_state=memory")),
                                ("addon-sqlite", addon_args(policy)),
                                # enforcement alone: no decision log (and no event-log line per allowed call)
                                ("addon-lean", addon_args(policy, "intercept_state=memory",
                                                          "intercept_log=off"))):
                proc, ports[name] = start_proxy(tmp, name, up_port, *extra)
                pids[name] = proc.proc.pid
                procs.append(proc)
            sqlite_file = tmp / "conf-addon-sqlite" / "intercept-state.sqlite"
            print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, upstream :{up_port}, "
                  f"proxies {ports}, started in {time.monotonic() - began:.1f} s")

            t = time.monotonic()
            rounds = asyncio.run(throughput(ports, pids, args, deadline - 75))
            t_tp = time.monotonic() - t
            t = time.monotonic()
            lat = asyncio.run(latency(up_port, ports["bare"], ports["addon-memory"], args.latency_samples,
                                      min(20.0, max(5.0, deadline - time.monotonic() - 45))))
            t_lat = time.monotonic() - t
            t = time.monotonic()
            sse = asyncio.run(sse_first_frame({"addon (memory)": ports["addon-memory"], "direct": up_port},
                                              args.sse_samples, min(30.0, max(5.0, deadline - time.monotonic() - 10))))
            t_sse = time.monotonic() - t
            sqlite_used = sqlite_file.exists()
        finally:
            for proc in reversed(procs):
                proc.stop()
            logs = {p.log_path.name: p.log_path.read_text(errors="replace") for p in procs if p.log_path.exists()}

    # -- print ------------------------------------------------------------------------------------
    n_rounds = len(rounds["bare"])
    print(f"\n1. Throughput: allowed tools/call echo, {args.clients} keep-alive clients, {args.requests} calls "
          f"per round, {n_rounds} interleaved rounds ({t_tp:.0f} s)")
    print(f"   {'config':<16}" + "".join(f"{'r' + str(i + 1):>9}" for i in range(n_rounds))
          + f"{'median':>10}  req/s {'proxy CPU ms/call':>19}")
    summary: dict[str, float] = {}
    cpu: dict[str, float | None] = {}
    for name, res in rounds.items():
        summary[name] = statistics.median(x["rps"] for x in res)
        cpu[name] = cpu_median(res)
        shown = "n/a" if cpu[name] is None else f"{cpu[name]:.3f}"
        print(f"   {name:<16}" + "".join(f"{x['rps']:>9.0f}" for x in res) + f"{summary[name]:>10.0f}"
              + f"{shown:>25}")
    ratios = {}
    for label, a, b, target in (("addon(memory)/bare", "addon-memory", "bare", 0.95),
                                ("addon(sqlite)/bare", "addon-sqlite", "bare", 0.95),
                                ("addon(lean)/bare", "addon-lean", "bare", 0.95),
                                ("sqlite/memory", "addon-sqlite", "addon-memory", None)):
        per, med, of_medians = ratio_rows(rounds, a, b)
        ratios[label] = {"per_round": per, "median_of_round_ratios": med, "ratio_of_medians": of_medians,
                         "target": target, "meets_target": None if target is None else med >= target}
        verdict = "" if target is None else (f"  (target >= {target}: " + ("met" if med >= target else "NOT met") + ")")
        print(f"   ratio {label:<19}" + " ".join(f"{r:.3f}" for r in per)
              + f"  -> median {med:.3f}, of medians {of_medians:.3f}{verdict}")
        if cpu[a] is not None and cpu[b] is not None:
            # CPU per call, inverted: the throughput ratio a CPU-bound proxy would reach on an idle machine.
            ratios[label]["cpu_based"] = cpu[b] / cpu[a]
    print("   CPU-based (proxy CPU per call, inverted; insensitive to other load): "
          + ", ".join(f"{k} {v['cpu_based']:.3f}" for k, v in ratios.items() if "cpu_based" in v))

    print(f"\n2. Latency, sequential keep-alive requests interleaved by kind ({t_lat:.0f} s)")
    print(f"   {'request':<30}{'n':>6}{'median ms':>11}{'p90 ms':>9}")
    for k, v in lat.items():
        print(f"   {k:<30}{v['n']:>6}{v['median_ms']:>11.3f}{v['p90_ms']:>9.3f}")
    lat_ratio = lat["addon, denied by rule"]["median_ms"] / lat["addon, allowed (round trip)"]["median_ms"]
    over = lat["addon, allowed (round trip)"]["median_ms"] - lat["bare mitmdump, allowed"]["median_ms"]
    print(f"   denied/allowed median ratio {lat_ratio:.3f}; addon adds {over * 1e3:.0f} us per allowed call vs bare")

    print(f"\n3. Time to first SSE frame (first event at once, second after {SSE_SECOND_EVENT_DELAY:.0f} s), "
          f"new connection per request ({t_sse:.0f} s)")
    print(f"   {'path':<16}{'n':>4}{'median ms':>11}{'p90 ms':>9}   one full stream: 1st / 2nd event ms")
    for k, v in sse.items():
        second = "-" if v["full_stream_second_ms"] is None else f"{v['full_stream_second_ms']:.1f}"
        print(f"   {k:<16}{v['n']:>4}{v['median_ms']:>11.3f}{v['p90_ms']:>9.3f}   "
              f"{v['full_stream_first_ms']:.1f} / {second}")
    sse_ratio = sse["addon (memory)"]["median_ms"] / sse["direct"]["median_ms"]
    streamed = all(v["full_stream_second_ms"] is not None and v["full_stream_first_ms"] < 500
                   and v["full_stream_second_ms"] >= SSE_SECOND_EVENT_DELAY * 1e3 * 0.9 for v in sse.values())
    print(f"   addon/direct median ratio {sse_ratio:.2f} "
          f"(+{sse['addon (memory)']['median_ms'] - sse['direct']['median_ms']:.2f} ms); "
          f"first frame streamed before the second: {'yes' if streamed else 'NO'}")

    errors = {name: [line for line in text.splitlines() if "error" in line.lower() or "Traceback" in line][:5]
              for name, text in logs.items()}
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        print("\nerror lines in process logs:")
        for name, lines in errors.items():
            for line in lines:
                print(f"   {name}: {line}")
    if not sqlite_used:
        print("\nWARNING: the sqlite proxy left no state file; it may not have used SQLite")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"requests_per_round": args.requests, "rounds": n_rounds, "clients": args.clients,
                     "warmup": args.warmup, "latency_samples": args.latency_samples,
                     "sse_samples": args.sse_samples},
        "throughput": {name: {"median_rps": summary[name], "median_proxy_cpu_ms_per_call": cpu[name],
                              "rounds": res} for name, res in rounds.items()},
        "throughput_ratios": ratios,
        "latency": lat,
        "latency_denied_over_allowed": lat_ratio,
        "sse_first_frame": sse,
        "sse_addon_over_direct": sse_ratio,
        "sse_streamed": streamed,
        "sqlite_state_file_used": sqlite_used,
        "log_errors": errors,
        "seconds": time.monotonic() - began,
    }, indent=2) + "\n")
    print(f"\nwritten {RESULTS.relative_to(ROOT)}; total {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
