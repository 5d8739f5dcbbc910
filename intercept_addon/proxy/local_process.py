"""The local process that opened a client connection: the agent, when it runs on this machine.

Looked up once per client connection (cached by ``client.id``; ``forget`` on disconnect), from
the connection's two addresses: the agent's socket is the one whose own address is the client's
``peername`` and whose peer is ``client.sockname``. That holds in every mode: in transparent
mode mitmproxy sets ``sockname`` to the original destination, which is what the agent's socket
is connected to. See socket_owner for how the socket and its process are found (Linux only;
elsewhere the answer is None).

Without root, only the proxy user's own processes can be found: another user's fd table is
unreadable, so a connection from their process gives None (as does a peer on another machine,
in another network namespace such as a container, or one that has exited).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil
from mitmproxy import connection

from intercept_addon.proxy import socket_owner

logger = logging.getLogger(__name__)

MAX_CLIENTS = 10_000  # connections remembered if forget is never called
MAX_OWNERS = 64  # recent owner pids, tried first: an agent opens many connections
MAX_NAME = 64
COMMAND_WORDS = 4
MAX_COMMAND = 120


@dataclass(frozen=True, slots=True)
class LocalProcess:
    pid: int
    started: float  # psutil create_time(), seconds since the epoch: with the pid, one process life
    name: str  # process name ("python3", "node"): the process can change it, so not in the key
    command: str  # the command line's first words, cut short, for a person to read

    @property
    def key(self) -> str:
        """Stable for the process's life, new when it restarts (even with the same pid)."""
        return f"{self.pid}@{round(self.started * 1000)}"


def on_this_machine(host: str) -> bool:
    """The address is loopback or one of this host's own."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return True
    own = (a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values() for a in addrs
           if a.family in (socket.AF_INET, socket.AF_INET6))
    return any(ipaddress.ip_address(a) == ip for a in own)


def _short(cmdline: Sequence[str]) -> str:
    words = " ".join(cmdline[:COMMAND_WORDS]) + (" …" if len(cmdline) > COMMAND_WORDS else "")
    return words if len(words) <= MAX_COMMAND else words[:MAX_COMMAND - 1] + "…"


def find_process(peer: socket_owner.Address, proxy: socket_owner.Address,
                 first: Sequence[int] = ()) -> LocalProcess | None:
    """The process holding the socket ``peer`` -> ``proxy``, or None. May raise."""
    if sys.platform != "linux" or not on_this_machine(peer[0]):
        return None
    inode = socket_owner.socket_inode(peer, proxy)
    # inode 0: a socket no process holds any more (TIME_WAIT, orphaned after close)
    found = socket_owner.owner(inode, first) if inode else None
    if found is None:
        return None
    pid, fd = found
    proc = psutil.Process(pid)
    with proc.oneshot():
        started, name, cmdline = proc.create_time(), proc.name(), proc.cmdline()
    if not socket_owner.holds(pid, fd, inode):  # exited, and its pid may be another's already
        return None
    return LocalProcess(pid, started, name[:MAX_NAME], _short(cmdline))


class LocalProcesses:
    """The local process behind each client connection, looked up once per connection."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self._max_clients = max_clients
        self._by_client: OrderedDict[str, LocalProcess | None] = OrderedDict()  # least recent first
        self._owners: OrderedDict[int, None] = OrderedDict()  # newest last
        self._owners_lock = threading.Lock()  # the worker adds owners while the loop reads them
        self._pending: dict[str, asyncio.Future[LocalProcess | None]] = {}  # lookups in the worker
        # One lookup at a time, each trying first the owners the ones before it found: the
        # connections an agent opens together cost one scan of /proc, not one scan each.
        self._worker: ThreadPoolExecutor | None = None
        self._failures_logged: set[str] = set()

    def of(self, client: connection.Client) -> LocalProcess | None:
        """The cached answer, else a lookup now, on the calling thread (the event loop)."""
        if client.id in self._by_client:
            self._by_client.move_to_end(client.id)
            return self._by_client[client.id]
        return self._remember(client.id, self._lookup(client.peername, client.sockname, self._recent_owners()))

    async def resolve(self, client: connection.Client) -> LocalProcess | None:
        """``of`` with the lookup in a worker thread, so the event loop never waits on a /proc
        scan; concurrent requests of one connection share one lookup. Await it from a request
        hook, not from ``client_connected``: mitmproxy 12 logs "mitmproxy has crashed!" (and
        mitmdump exits, during startup) for a client that closes while that hook awaits."""
        if client.id in self._by_client:
            return self.of(client)
        pending = self._pending.get(client.id)
        if pending is None:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="intercept-process")
            pending = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(
                self._worker, self._lookup_in_turn, client.peername, client.sockname))
            self._pending[client.id] = pending
            pending.add_done_callback(lambda done, cid=client.id: self._settle(cid, done))
        return await asyncio.shield(pending)  # one request cancelled: the others still get it

    def forget(self, client: connection.Client) -> None:
        self._by_client.pop(client.id, None)
        self._pending.pop(client.id, None)  # a lookup still running is not remembered

    def __len__(self) -> int:
        return len(self._by_client)

    def _recent_owners(self) -> tuple[int, ...]:
        with self._owners_lock:
            return tuple(reversed(self._owners))

    def _note_owner(self, pid: int) -> None:
        with self._owners_lock:
            self._owners[pid] = None
            self._owners.move_to_end(pid)
            if len(self._owners) > MAX_OWNERS:
                self._owners.popitem(last=False)

    def _lookup_in_turn(self, peer: socket_owner.Address | None,
                        proxy: socket_owner.Address | None) -> LocalProcess | None:
        """In the worker: the owners are read now, after every lookup queued before this one."""
        found = self._lookup(peer, proxy, self._recent_owners())
        if found is not None:
            self._note_owner(found.pid)
        return found

    def _lookup(self, peer: socket_owner.Address | None, proxy: socket_owner.Address | None,
                first: Sequence[int]) -> LocalProcess | None:
        if not peer or not proxy:
            return None
        try:
            return find_process(peer, proxy, first)
        except Exception as exc:  # never into the caller; each kind of failure logged once
            kind = type(exc).__name__
            if kind not in self._failures_logged:
                self._failures_logged.add(kind)
                logger.debug("local process of %s: %r (further %s failures not logged)", peer, exc, kind)
            return None

    def _settle(self, client_id: str, done: asyncio.Future[LocalProcess | None]) -> None:
        if self._pending.get(client_id) is done:  # not forgotten meanwhile
            del self._pending[client_id]
            if not done.cancelled():
                self._remember(client_id, done.result())

    def _remember(self, client_id: str, found: LocalProcess | None) -> LocalProcess | None:
        self._by_client[client_id] = found
        if len(self._by_client) > self._max_clients:
            self._by_client.popitem(last=False)
        if found is not None:
            self._note_owner(found.pid)
        return found
