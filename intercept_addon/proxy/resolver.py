"""Host names to addresses, for binding servers: cached, bounded, never long on the request path.

A server answers to every name that resolves to its address, so the proxy compares addresses
as well as names (proxy/servers.py). Lookups go through the event loop's resolver (a thread),
are kept RESOLVE_SECONDS, and give up after LOOKUP_TIMEOUT (a failed lookup is remembered as no
addresses for as long). The answer path reads the cache only.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable

from intercept_addon.policy.servers import canonical_host, is_ip

RESOLVE_SECONDS = 30.0
LOOKUP_TIMEOUT = 2.0
MAX_RESOLVED = 1024


class Resolver:
    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()

    async def addresses(self, names: Iterable[str]) -> frozenset[str]:
        """The canonical addresses of ``names``: IP literals as they are, host names looked up."""
        found: set[str] = set()
        lookups = []
        for name in names:
            host = canonical_host(name)
            if is_ip(host):
                found.add(host)
            else:
                lookups.append(self.resolve(host))
        for addresses in await asyncio.gather(*lookups):
            found.update(addresses)
        return frozenset(found)

    def cached(self, names: Iterable[str]) -> frozenset[str]:
        """As ``addresses``, from what is already known (no lookup)."""
        found: set[str] = set()
        for name in names:
            host = canonical_host(name)
            known = self._known.get(host)
            found.update([host] if is_ip(host) else known[1] if known is not None else ())
        return frozenset(found)

    async def resolve(self, host: str) -> frozenset[str]:
        now = time.monotonic()
        known = self._known.get(host)
        if known is not None and known[0] > now:
            return known[1]
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                                           LOOKUP_TIMEOUT)
            addresses = frozenset(canonical_host(str(info[4][0])) for info in infos)
        except (OSError, TimeoutError, UnicodeError):
            addresses = frozenset()  # the proxy will not reach it either
        self._known[host] = (now + RESOLVE_SECONDS, addresses)
        self._known.move_to_end(host)
        if len(self._known) > MAX_RESOLVED:
            self._known.popitem(last=False)
        return addresses

    def known(self, host: str) -> frozenset[str]:
        entry = self._known.get(host)
        return entry[1] if entry is not None else frozenset()
