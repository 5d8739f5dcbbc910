"""Lookups of several new connections of one agent, started together, run one at a time, and
each after the first tries first the owner the first found: one scan of /proc, not one scan per
connection (a full scan costs tens of milliseconds on a busy machine). Real sockets: this test
process is the agent, its listening socket stands in for the proxy."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from mitmproxy import connection

from intercept_addon.proxy import socket_owner
from intercept_addon.proxy.local_process import LocalProcesses


async def test_connections_opened_together_cost_one_scan(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        agent_side = [socket.create_connection(listener.getsockname()) for _ in range(4)]
        proxy_side = [listener.accept()[0] for _ in agent_side]
        try:
            clients = [connection.Client(peername=s.getpeername(), sockname=s.getsockname(),
                                         timestamp_start=time.time()) for s in proxy_side]
            hints: list[tuple[int, ...]] = []
            real = socket_owner.owner
            monkeypatch.setattr(socket_owner, "owner",
                                lambda inode, first=(): hints.append(tuple(first)) or real(inode, first))
            processes = LocalProcesses()
            found = await asyncio.gather(*(processes.resolve(c) for c in clients))
            assert {p.pid for p in found} == {os.getpid()}  # type: ignore[union-attr]
            assert hints[0] == ()  # the first scanned
            assert all(h[:1] == (os.getpid(),) for h in hints[1:]), hints  # the others knew where to look
        finally:
            for s in agent_side + proxy_side:
                s.close()
