"""What the addon's hooks cost per call, in-process: a real mitmproxy master dispatches the
events of one allowed tools/call (requestheaders, request, responseheaders, response) to the
script's addons, nested as mitmdump's script loader nests them, with the default SQLite store
and the decision log on. No network and no other process, so the figure is steady enough to
compare one change with the next; bench_cost.py gives the figure that counts (mitmdump's CPU).

    .venv/bin/python bench/bench_hooks.py [--calls 3000] [--rounds 5] [--profile out.prof] [--set opt=value]

Printed: CPU microseconds per call for the addon, for an empty master (the flows alone), and
the difference, the minimum over rounds (noise only ever adds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import runpy
import socket
import sys
import tempfile
import time
from pathlib import Path

from mitmproxy import hooks, options
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import (HttpRequestHeadersHook, HttpRequestHook, HttpResponseHeadersHook,
                                         HttpResponseHook)
from mitmproxy.test import taddons, tflow, tutils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_cost import policy  # noqa: E402  the same 50-tool policy

ANSWER = b'{"jsonrpc": "2.0", "id": %d, "result": {"content": [{"type": "text", "text": "hello from upstream"}]}}'


class Nest:
    """Stands for mitmproxy's ScriptLoader and Script: the script's addons sit two levels down."""

    def __init__(self, addons: list) -> None:
        self.addons = addons


def flow(n: int, client) -> tflow.HTTPFlow:  # type: ignore[no-untyped-def]
    body = json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": f"hello {n}"}}},
                      separators=(",", ":")).encode()  # compact, as wrk sends it
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/mcp", content=body, headers=(
        (b"content-type", b"application/json"), (b"accept", b"application/json, text/event-stream"),
        (b"mcp-protocol-version", b"2025-06-18"))))
    f.client_conn = client  # one keep-alive connection, as wrk's: what is known of a connection is kept
    f.response = tutils.tresp(content=ANSWER % n, headers=((b"content-type", b"application/json"),))
    return f


def keep_alive_client():  # type: ignore[no-untyped-def]
    """A client connection as wrk's: a real loopback socket, so its process is found (once)."""
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    KEPT.extend([server, sock, server.accept()[0]])
    client = tflow.tclient_conn()
    client.peername, client.sockname = sock.getsockname(), server.getsockname()
    return client


KEPT: list[socket.socket] = []


async def calls(master, count: int, start: int) -> float:  # type: ignore[no-untyped-def]
    client = keep_alive_client()
    flows = [flow(start + i, client) for i in range(count)]
    began = time.process_time()
    for f in flows:
        resp, f.response = f.response, None
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(f))
        await master.addons.handle_lifecycle(HttpRequestHook(f))
        if f.response is not None:
            raise SystemExit(f"the call was not allowed: {f.response.content[:200]!r}")
        f.response = resp
        await master.addons.handle_lifecycle(HttpResponseHeadersHook(f))
        await master.addons.handle_lifecycle(HttpResponseHook(f))
    return (time.process_time() - began) / count * 1e6


async def run(args: argparse.Namespace, tmp: Path) -> None:
    pol = tmp / "policy.yaml"
    pol.write_text(policy(50))
    empty = Master(options.Options())  # first: a master sets mitmproxy's ctx, and ours must be the last
    empty.addons.add(Proxyserver())
    addons = runpy.run_path(str(ROOT / "intercept_addon.py"))["addons"]
    with taddons.context(Proxyserver(), Nest([Nest(addons)])) as tctx:
        tctx.options.update(confdir=str(tmp), intercept_policy=str(pol),
                            **dict(kv.split("=", 1) for kv in args.set))
        for addon in addons:
            tctx.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(tctx.options.keys())))
        await tctx.master.addons.trigger_event(hooks.RunningHook())
        mine, bare = [], []
        n = 0
        await calls(tctx.master, 200, n)  # warm: caches, the SQLite file
        for _ in range(args.rounds):
            n += args.calls
            bare.append(await calls(empty, args.calls, n))
            n += args.calls
            mine.append(await calls(tctx.master, args.calls, n))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await calls(tctx.master, args.calls, n + args.calls)
            prof.disable()
            prof.dump_stats(args.profile)
        await tctx.master.addons.trigger_event(hooks.DoneHook())
    print(f"addon {min(mine):7.1f} us/call   empty master {min(bare):7.1f}   addon's own {min(mine) - min(bare):7.1f}"
          f"   rounds {[round(x) for x in mine]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", help="write a cProfile of one more round here")
    p.add_argument("--set", action="append", default=[], help="an addon option, e.g. intercept_state=memory")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
