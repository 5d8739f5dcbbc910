"""Which policy governs a flow's server, and under what name that server is counted.

With one policy that names no servers, that policy governs every server, as one (the classic
setup: server name "", counters keyed as they always were). Once any policy names servers:

- every name the request gives its server counts: the host the proxy connects to, the Host
  header's and the TLS SNI's (a server routes by them), and, when some pattern names an IP
  address, the addresses the host resolves to (``localhost`` is 127.0.0.1). One policy named
  by any of them governs; two are a conflict and the request is refused, so no choice of
  Host header or spelling moves a call from a stricter policy to a laxer one;
- a server no policy names gets ``intercept_unnamed_server``: inspect (annotated, nothing
  blocked, one warning per server), fallback (the policy without ``servers``), or deny. In
  reverse mode the policy without ``servers`` governs the upstream whatever the option;
- a server is named, in decisions and counters, by the pattern that matched; an unnamed one by
  its origin (scheme://host:port). An agent cannot mint fresh counters by varying the path or
  the query of one server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from mitmproxy import http

from intercept_addon.policy.engine import Engine
from intercept_addon.policy.model import Policy
from intercept_addon.policy.sections import NOUNS, SECTIONS
from intercept_addon.policy.servers import Named, canonical_host, governing, is_ip, path_refusal, server_url
from intercept_addon.wire.jsonrpc import INVALID_REQUEST, ProtocolError
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")

UNNAMED = ("inspect", "fallback", "deny")
MAX_UNNAMED = 1024  # unnamed servers remembered (warned about once each)
RESOLVE_SECONDS = 30.0  # how long a host's addresses are trusted
MAX_RESOLVED = 1024


@dataclass(frozen=True, slots=True)
class Governed:
    source: str  # the policy file
    policy: Policy
    engine: Engine
    sections: Mapping[str, Engine] = field(default_factory=dict)  # resources, prompts, completion


def governed(source: str, policy: Policy) -> Governed:
    """A policy compiled: its tools' engine and one engine per section it writes."""
    sections = {name: Engine(section.policy, section=name, noun=NOUNS[name])
                for name in SECTIONS if (section := getattr(policy, name)) is not None}
    return Governed(source, policy, Engine(policy), sections)


@dataclass(frozen=True, slots=True)
class Binding:
    server: str  # the server's name in decisions and counters ("" for the classic setup)
    governed: Governed | None  # None: inspect only

    @property
    def engine(self) -> Engine | None:
        return self.governed.engine if self.governed is not None else None


CLASSIC_NONE = Binding("", None)


def server_key(flow: http.HTTPFlow, binding: Binding) -> str:
    """What keeps one server's tools apart from another's: its name, or its origin when one
    policy governs every server."""
    if binding.server:
        return binding.server
    req = flow.request
    return server_url(req.scheme, req.host, req.port, "/").origin


class ServerBindings:
    def __init__(self) -> None:
        self.policies: list[Governed] = []
        self.fallback: Governed | None = None
        self.bound = False  # does any policy name servers?
        self.unnamed = "inspect"
        self.reverse = False
        self._named: list[Named] = []
        self._by_pattern: dict[str, Governed] = {}
        self._by_ip_pattern = False
        self._warned: OrderedDict[str, None] = OrderedDict()
        self._resolved: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()

    def use(self, policies: list[Governed]) -> None:
        self.policies = policies
        self.bound = any(g.policy.servers is not None for g in policies)
        self.fallback = next((g for g in policies if g.policy.servers is None), None)
        self._named = [Named(g.source, tuple(g.policy.servers)) for g in policies if g.policy.servers is not None]
        self._by_pattern = {p.text: g for g in policies for p in g.policy.servers or ()}
        self._by_ip_pattern = any(p.names_address for named in self._named for p in named.servers or ())

    def configure(self, unnamed: str, reverse: bool) -> None:
        self.unnamed, self.reverse = unnamed, reverse

    @property
    def engines(self) -> list[Engine]:
        return [g.engine for g in self.policies]

    def governing(self, server: str) -> Engine | None:
        """The engine that governs a server known by its name (a pattern or an origin)."""
        governed = self._by_pattern.get(server) or (self._unnamed_policy() if self.bound else self._classic().governed)
        return governed.engine if governed is not None else None

    def of_answer(self, flow: http.HTTPFlow) -> Binding:
        """The binding an answer is read under: the one its request was judged under (by the
        name the flow noted), else found now from the request (host addresses as last resolved)."""
        if not self.bound:
            return self._classic()
        server = flow.metadata.get("mcp.server")
        governed = self._by_pattern.get(server) if isinstance(server, str) else None
        if governed is not None:
            return Binding(server, governed)  # type: ignore[arg-type]
        names = self._names_now(flow)
        return self._match(flow, names | self._cached_addresses(flow.request.host))

    async def of(self, flow: http.HTTPFlow) -> Binding:
        """The binding of a flow's server; raises ProtocolError (the request is refused) for a
        path that could be read as another, a conflict, or an unnamed server under ``deny``."""
        if not self.bound:
            binding = self._classic()
        else:
            binding = await self._bind(flow)
        if binding.server:
            flow.metadata["mcp.server"] = binding.server
        return binding

    def _classic(self) -> Binding:
        return Binding("", self.policies[0]) if self.policies else CLASSIC_NONE

    async def _bind(self, flow: http.HTTPFlow) -> Binding:
        names = self._names_now(flow)
        host = flow.request.host
        if self._by_ip_pattern and not is_ip(canonical_host(host)):
            names.update(await self._addresses(host))
        return self._match(flow, names)

    def _match(self, flow: http.HTTPFlow, names: set[str]) -> Binding:
        req = flow.request
        why = path_refusal(req.path)
        if why is not None:
            raise _refused(f"{why}: {shown(req.path)}", 400)
        urls = {server_url(req.scheme, host, req.port, req.path) for host in names}
        found = {(named.source, pattern.text) for url in urls for named, pattern in governing(self._named, url)}
        sources = sorted({source for source, _ in found})
        if len(sources) > 1:
            raise _refused(f"the server's names ({', '.join(sorted(shown(str(u)) for u in urls))}) are governed "
                           f"by different policies ({', '.join(sources)}); send every name of one server", 403)
        if found:
            pattern = min(text for _, text in found)  # one policy: its first matching pattern by name
            return Binding(pattern, self._by_pattern[pattern])
        origin = server_url(req.scheme, req.host, req.port, "/").origin
        governed = self._unnamed_policy()
        if governed is None and self.unnamed == "deny":
            raise _refused(f"server {shown(origin)} is named by no policy (intercept_unnamed_server=deny)", 403)
        self._warn_once(origin, governed)
        return Binding(origin, governed)

    def _unnamed_policy(self) -> Governed | None:
        if self.reverse or self.unnamed == "fallback":
            return self.fallback
        return None

    def _names_now(self, flow: http.HTTPFlow) -> set[str]:
        req = flow.request
        names = {req.host}
        header = req.host_header
        if header:
            names.add(_host_of(header))
        sni = flow.client_conn.sni
        if sni and not self.reverse:  # in reverse mode it names the proxy, not the server
            names.add(sni)
        return names

    def _cached_addresses(self, host: str) -> set[str]:
        known = self._resolved.get(host) if self._by_ip_pattern else None
        return set(known[1]) if known is not None else set()

    async def _addresses(self, host: str) -> tuple[str, ...]:
        now = time.monotonic()
        known = self._resolved.get(host)
        if known is not None and known[0] > now:
            return known[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
            addresses = tuple(sorted({str(info[4][0]) for info in infos}))
        except OSError:
            addresses = ()  # the proxy will not reach it either
        self._resolved[host] = (now + RESOLVE_SECONDS, addresses)
        self._resolved.move_to_end(host)
        if len(self._resolved) > MAX_RESOLVED:
            self._resolved.popitem(last=False)
        return addresses

    def _warn_once(self, origin: str, governed: Governed | None) -> None:
        if origin in self._warned:
            self._warned.move_to_end(origin)
            return
        self._warned[origin] = None
        if len(self._warned) > MAX_UNNAMED:
            self._warned.popitem(last=False)
        if governed is None:
            log.warning(f"intercept: server {shown(origin)} is named by no policy: inspect only, nothing blocked "
                        "(intercept_unnamed_server=fallback or deny to change that)")
        else:
            log.info(f"intercept: server {shown(origin)} is named by no policy: the fallback {governed.source} governs it")

    def status(self) -> list[str]:
        if not self.bound:
            return []
        lines = []
        for g in self.policies:
            names = ", ".join(p.text for p in g.policy.servers) if g.policy.servers else "(fallback)"
            lines.append(f"  {g.source}: {names}")
        mode = "the fallback policy (reverse mode)" if self.reverse else self.unnamed
        return ["servers:", *lines, f"  unnamed servers: {mode}; seen: {', '.join(self._warned) or 'none'}"]


def _host_of(authority: str) -> str:
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _refused(message: str, status: int) -> ProtocolError:
    return ProtocolError(INVALID_REQUEST, message, status=status)
