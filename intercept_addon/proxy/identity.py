"""Who is calling: the agent a call is counted for, its verified user, its MCP session.

The agent comes from the first of the configured sources (``intercept_identity``) present:
* ``agent-header``: the agent names itself (``X-Agent-Id``);
* ``authorization``: the verified user's subject when JWT verification is configured (proxy/
  tokens.py; an unverifiable token never gets this far), else a hash of the header;
* ``process``: the local process that opened the client's connection (pid and start time, so a
  restarted agent is a new agent), when the client is on this machine;
* ``client``: the peer address (an IPv6 client by its /64; a client on this machine is
  ``this-machine``, whichever of its loopback or own addresses it connects from);
* ``mcp-session`` / ``legacy-session`` (not in the default order): the MCP session itself, as
  before, for users who want a budget per session.
The MCP session is always known too, as a scope inside the agent (``scope: mcp-session``): an
``Mcp-Session-Id`` the same origin (scheme, host, port) issued, or the legacy stream whose
announced endpoint the POST went to. A made-up id, or one another server issued, is no session.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from intercept_addon.proxy.local_process import LocalProcess, LocalProcesses, on_this_machine

MAX_ISSUED_SESSIONS = 100_000
MAX_VALUE_LENGTH = 128  # client-chosen: keep counter keys small
THIS_MACHINE = "this-machine"

Origin = tuple[str, str, int]


def origin_of(request: http.Request) -> Origin:
    return request.scheme, request.host.lower(), request.port


@dataclass(frozen=True, slots=True)
class Who:
    agent: str
    user: str | None = None  # the verified subject
    claims: Mapping[str, Any] | None = None
    mcp_session: str | None = None
    process: LocalProcess | None = None  # shown on the flow, whatever the agent source


def client_address(peer: str) -> str:
    """The peer as one client: an IPv6 client picks any address in its /64 (privacy addresses),
    so the /64 is the client; an IPv4-mapped address is the IPv4 client. A local process picks
    any source address of this machine (all of 127/8, ::1, each interface's), so they are one."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])  # a scoped link-local address: zone dropped
    except ValueError:
        return peer
    if on_this_machine(str(ip)):
        return THIS_MACHINE
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _bounded(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest() if len(value) > MAX_VALUE_LENGTH else value


class Identities:
    def __init__(self) -> None:
        self._issued: OrderedDict[tuple[Origin, str], None] = OrderedDict()  # oldest first, bounded
        self.processes = LocalProcesses()

    def note_issued(self, flow: http.HTTPFlow) -> None:
        """A 2xx answer carrying ``Mcp-Session-Id``: that origin issued the session."""
        resp = flow.response
        assert resp is not None
        issued = resp.headers.get("mcp-session-id")
        if not issued or not 200 <= resp.status_code < 300:
            return
        key = (origin_of(flow.request), issued)
        self._issued[key] = None
        self._issued.move_to_end(key)
        if len(self._issued) > MAX_ISSUED_SESSIONS:
            self._issued.popitem(last=False)

    async def of(self, flow: http.HTTPFlow, headers: dict[str, str], sources: tuple[str, ...], agent_header: str,
                 legacy_key: str | None, user: Any = None) -> Who:
        """Who sent this request. ``legacy_key``: the live legacy stream its POST goes to;
        ``user``: the VerifiedUser of its token, when verification is configured."""
        session = self._session(flow, headers, legacy_key)
        process = await self.processes.resolve(flow.client_conn) if "process" in sources else None
        agent = next((a for s in sources if (a := _agent(s, flow, headers, agent_header, session, user, process))),
                     "anonymous")
        return Who(agent, user.sub if user is not None else None, user.claims if user is not None else None,
                   session, process)

    def _session(self, flow: http.HTTPFlow, headers: dict[str, str], legacy_key: str | None) -> str | None:
        if legacy_key is not None:
            return f"legacy:{legacy_key}"
        value = headers.get("mcp-session-id")
        if value is not None and (origin_of(flow.request), value) in self._issued:
            return _bounded(value)
        return None


def _agent(source: str, flow: http.HTTPFlow, headers: dict[str, str], agent_header: str, session: str | None,
           user: Any, process: LocalProcess | None) -> str | None:
    """The agent as ``source`` names it (``source:value``), None if it does not apply."""
    value: str | None = None
    if source == "agent-header":
        value = headers.get(agent_header)
    elif source == "authorization":
        if user is not None:
            return f"user:{_bounded(user.sub)}"
        auth = headers.get("authorization")
        value = hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else None
    elif source == "process":
        value = process.key if process is not None else None
    elif source == "client":
        value = client_address(flow.client_conn.peername[0]) if flow.client_conn.peername else None
    elif source == "mcp-session":
        value = session if session is not None and not session.startswith("legacy:") else None
    elif source == "legacy-session":
        value = session[len("legacy:"):] if session is not None and session.startswith("legacy:") else None
    return f"{source}:{_bounded(value)}" if value else None
