"""``intercept-addon stdio``: one wrapped server's life, from the agent's first line to its EOF.

    agent --stdio--> agent side --HTTP--> mitmdump + addon --HTTP + secret--> bridge --stdio--> server

The agent side and the bridge run in this process, the proxy and the server are children. The
proxy starts first (its startup is the longest), forwarding to a port bound here in advance;
the server next, then the bridge; the agent's lines wait in a queue until the proxy is ready.
With ``shared`` (``--proxy URL``) no proxy is started: the agent side sends through that one.
The run ends when the agent closes stdin (the server's stdin is closed in turn, as MCP's stdio
shutdown asks, then it is stopped), when the server or the proxy exits, or on SIGTERM, SIGINT
or SIGHUP; every child is stopped then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from intercept_addon.stdio import children, proxy
from intercept_addon.stdio.router import MAX_MESSAGE
from intercept_addon.stdio.stdin import read_lines

EXIT_GRACE = 1.0  # seconds a server gets to exit by itself once its stdin is closed
LAUNCHERS = frozenset({"npx", "uvx", "pipx", "bunx", "pnpx", "uv", "node", "deno", "bun",
                       "python", "python3", "sh", "bash"})


def server_name(command: Sequence[str]) -> str:
    """The name in the bridge's path, ``/stdio/NAME/mcp``, for policies' ``servers:`` patterns:
    the command's basename, or for a launcher (npx, uvx, python, ...) its first argument that is
    not an option (``npx -y @scope/server-x`` is ``server-x``)."""
    name = os.path.basename(command[0])
    if re.sub(r"[\d.]+$", "", name) in LAUNCHERS:
        first = next((os.path.basename(a.rstrip("/")) for a in command[1:] if not a.startswith("-")), "")
        name = first if re.fullmatch(r"@?[\w.@/-]{1,64}", first) else name  # not `python -c CODE`
    name = re.sub(r"@[^@/]*$", "", name) if not name.startswith("@") else name  # pkg@1.2 -> pkg
    name = re.sub(r"\.(py|js|mjs|cjs|ts)$", "", name)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "server"


async def _first(*aws: asyncio.Future[object] | asyncio.Task[object]) -> None:
    await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)


async def run(command: Sequence[str], *, policy: str | None, web: bool, options: Sequence[str],
              name: str | None = None, shared: str | None = None) -> int:
    """Serve one wrapped server; ``shared`` is the URL of an ``intercept-addon stdio --serve``
    proxy to go through instead of starting one."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(128 + s))
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    read_lines(loop, lines)  # the agent may write before we are ready: its lines wait here

    secret = secrets.token_urlsafe(32)
    listener = _listener()  # the bridge's port, known before the proxy starts
    bridge_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    mitm = server = None
    proxy_stopped: asyncio.Future[None] | None = None
    try:
        if shared is None:
            mitm = await proxy.start(bridge_url, secret, policy=policy, web=web, options=options)
            relay = asyncio.create_task(mitm.relay_output())
            ready = asyncio.create_task(mitm.ready.wait())
            proxy_exited: asyncio.Future[int] = asyncio.ensure_future(mitm.process.wait())
        else:  # the shared proxy is up already; it cannot add our secret, so the agent side does
            ready = asyncio.ensure_future(asyncio.sleep(0))
            proxy_exited = loop.create_future()
        try:
            server = await children.spawn(command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                          stderr=None, limit=MAX_MESSAGE)
        except OSError as exc:
            print(f"intercept-addon stdio: cannot start {command[0]}: {exc}", file=sys.stderr)
            return 127
        assert server.stdin is not None and server.stdout is not None
        # Imported while the proxy and the server start: uvicorn and httpx2 take a third of a second.
        from intercept_addon.stdio import agent, bridge

        app = bridge.Bridge(f"/stdio/{name or server_name(command)}/mcp", secret, server.stdin)
        pump = asyncio.create_task(app.pump(server.stdout))
        http_server, _ = await bridge.serve(app, listener)
        exited = asyncio.create_task(server.wait())
        first_line = asyncio.create_task(lines.get())
        await _first(ready, exited, proxy_exited, stop, first_line)
        if not ready.done() and first_line.done():
            if first_line.result() == b"":
                return 0  # the agent left before anything was ready
            await _first(ready, exited, proxy_exited, stop)
        if not ready.done():
            if proxy_exited.done():
                await relay
                print(f"intercept-addon stdio: the proxy exited ({proxy_exited.result()}) before it was ready",
                      file=sys.stderr)
                return 1
            if exited.done():
                print(f"intercept-addon stdio: {command[0]} exited ({exited.result()}) before the proxy was ready",
                      file=sys.stderr)
                return _status(exited.result())
            return stop.result()
        if mitm is not None:
            url, headers = f"http://127.0.0.1:{mitm.port}{app.path}", {}
        else:
            url, headers = f"{bridge_url}{app.path}", {proxy.SECRET_HEADER: secret}
        print(f"intercept-addon stdio: {command[0]} (pid {server.pid}) behind {url}"
              + (f" through {shared}" if shared else ""), file=sys.stderr, flush=True)
        async with agent.client(shared) as client:
            side = agent.AgentSide(url, client, headers=headers)
            eof = asyncio.create_task(_forward(first_line, lines, side))
            await _first(eof, exited, proxy_exited, stop)
            await side.close()
            eof.cancel()
        if stop.done():
            return stop.result()
        if exited.done():
            print(f"intercept-addon stdio: {command[0]} exited ({exited.result()})", file=sys.stderr)
            return _status(exited.result())
        if proxy_exited.done():
            print(f"intercept-addon stdio: the proxy exited ({proxy_exited.result()})", file=sys.stderr)
            return 1
        server.stdin.close()  # the agent is done: MCP's stdio shutdown, the proxy stopping meanwhile
        if mitm is not None:
            proxy_stopped = asyncio.ensure_future(children.stop(mitm.process))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(server.wait()), EXIT_GRACE)
        http_server.should_exit = http_server.force_exit = True
        pump.cancel()
        return 0
    finally:
        # Both at once: an agent's client waits about 2 s after closing our stdin, then kills us.
        await asyncio.gather(*(children.stop(child) for child in (server, mitm.process if mitm else None)
                               if child is not None), *([proxy_stopped] if proxy_stopped else []))
        listener.close()


def _listener() -> socket.socket:
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on such sockets' connections (without
    # it, Nagle and delayed ACKs held every event-stream answer about 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by a signal: as a shell says


async def _forward(first_line: asyncio.Task[bytes], lines: asyncio.Queue[bytes], side: Any) -> None:
    line = await first_line
    while line:
        await side.send(line)
        line = await lines.get()
