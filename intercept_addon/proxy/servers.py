"""Which policy governs a flow's server, and under what name that server is counted.

With one policy that names no servers, that policy governs every server, as one (the classic
setup: server name "", counters keyed as they always were). Once any policy names servers:

- every name the request gives its server counts: the host the proxy connects to, the request
  target's authority, the Host field and the TLS SNI (a server routes by them), the addresses
  they resolve to, and the host names of patterns that resolve to one of those addresses
  (``localhost`` is 127.0.0.1, and a pattern naming ``localhost`` governs 127.0.0.1). One policy
  named by any of them governs; two are a conflict and the request is refused, so no choice of
  Host field or spelling moves a call from a stricter policy to a laxer one;
- a server no policy names gets ``intercept_unnamed_server``: inspect (annotated, nothing
  blocked, one warning per server), fallback (the policy without ``servers``), or deny. In
  reverse mode the policy without ``servers`` governs the upstream whatever the option;
- a server is named, in decisions and counters, by the pattern that matched; an unnamed one by
  its origin at its lowest address (scheme://address:port). An agent cannot mint fresh counters
  by varying the path, the query or the spelling of one server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import exceptions, http

from intercept_addon.policy.engine import Engine
from intercept_addon.policy.file import PolicyError, PolicyIssue
from intercept_addon.policy.model import Policy
from intercept_addon.policy.sections import NOUNS, SECTIONS
from intercept_addon.policy.servers import (Named, ServerPattern, canonical_host, governing, is_ip, path_refusal,
                                            server_url)
from intercept_addon.proxy.resolver import Resolver
from intercept_addon.wire.jsonrpc import INVALID_REQUEST, ProtocolError
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")

UNNAMED = ("inspect", "fallback", "deny")
MAX_UNNAMED = 1024  # unnamed servers remembered (warned about once each)


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
        self.insecure = False
        self._named: list[Named] = []
        self._by_pattern: dict[str, Governed] = {}
        self._pattern_hosts: set[str] = set()  # literal host names of patterns, resolved to match addresses
        self._by_source: dict[str, list[ServerPattern]] = {}  # a policy's patterns, in its order
        self._warned: OrderedDict[str, None] = OrderedDict()
        self.resolver = Resolver()

    def use(self, policies: list[Governed]) -> None:
        """Put a set in force; raises PolicyError if a policy in it would silently govern nothing."""
        problem = _idle_fallback(policies, self.unnamed, self.reverse)
        if problem is not None:
            raise PolicyError([PolicyIssue(problem[0], 1, 1, "servers", problem[1])])
        self.policies = policies
        self.bound = any(g.policy.servers is not None for g in policies)
        self.fallback = next((g for g in policies if g.policy.servers is None), None)
        self._named = [Named(g.source, tuple(g.policy.servers)) for g in policies if g.policy.servers is not None]
        self._by_pattern = {p.text: g for g in policies for p in g.policy.servers or ()}
        self._by_source = {g.source: list(g.policy.servers or ()) for g in policies}
        self._pattern_hosts = {p.host_text for named in self._named for p in named.servers or ()
                               if "*" not in p.host_text and not p.names_address}

    def configure(self, unnamed: str, reverse: bool, insecure: bool = False) -> None:
        """``insecure``: mitmproxy's ssl_insecure (upstream certificates are not checked)."""
        problem = _idle_fallback(self.policies, unnamed, reverse)
        if problem is not None:
            raise exceptions.OptionsError(f"intercept: {problem[0]}: {problem[1]}")
        self.unnamed, self.reverse, self.insecure = unnamed, reverse, insecure

    @property
    def engines(self) -> list[Engine]:
        return [g.engine for g in self.policies]

    def governing(self, server: str) -> Engine | None:
        """The engine that governs a server known by its name (a pattern or an origin)."""
        governed = self._by_pattern.get(server) or (self._unnamed_policy() if self.bound else self._classic().governed)
        return governed.engine if governed is not None else None

    def of_stream(self, flow: http.HTTPFlow, server: str) -> Binding:
        """A legacy POST: the server its event stream was bound to (the endpoint it was told to
        post to is the server's choice, and may be a path another policy names, or none)."""
        governed = self._by_pattern.get(server) or self._unnamed_policy()
        flow.metadata["mcp.server"] = server
        return Binding(server, governed)

    def of_answer(self, flow: http.HTTPFlow) -> Binding:
        """The binding an answer is read under: the one its request was judged under (by the
        name the flow noted), else found now from the request (host addresses as last resolved)."""
        if not self.bound:
            return self._classic()
        server = flow.metadata.get("mcp.server")
        governed = self._by_pattern.get(server) if isinstance(server, str) else None
        if governed is not None:
            return Binding(server, governed)  # type: ignore[arg-type]
        return self._match(flow, self._claims(flow), self.resolver.cached([flow.request.host]))

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

    async def pin(self, server: Any) -> None:
        """Before mitmproxy connects (``server_connect``): connect to an address the binding judged,
        not to whatever a second lookup of the name gives (a rebinding DNS name answers each
        lookup differently). The name stays the TLS SNI."""
        if not self.bound or server.address is None:
            return
        host, port = server.address
        if is_ip(canonical_host(host)):
            return
        judged = await self.resolver.resolve(canonical_host(host))
        if judged:
            if server.sni is None:
                server.sni = host
            server.address = (preferred(judged), port)

    async def _bind(self, flow: http.HTTPFlow) -> Binding:
        claims = self._claims(flow)
        conn, req = flow.server_conn, flow.request
        peer = conn.peername if conn is not None and conn.address == (req.host, req.port) else None
        if peer:  # a connection to this host already open: the address it goes to, not a new lookup
            target = frozenset([canonical_host(str(peer[0]))])
        else:
            target = await self.resolver.addresses([req.host])
        await asyncio.gather(*(self.resolver.resolve(canonical_host(c)) for c in claims if not is_ip(canonical_host(c))),
                             *(self.resolver.resolve(host) for host in self._pattern_hosts))
        return self._match(flow, claims, target)

    def _match(self, flow: http.HTTPFlow, claims: set[str], target: frozenset[str]) -> Binding:
        """``claims``: the names the request gives besides the host it connects to; ``target``:
        that host's addresses."""
        req = flow.request
        why = path_refusal(req.path)
        if why is not None:
            raise _refused(f"{why}: {shown(req.path)}", 400)
        connect = canonical_host(req.host)
        for claim in claims:  # a name the agent wrote counts only if it names where the call goes
            host = canonical_host(claim)
            if host != connect and not (self.resolver.cached([host]) & target) and host != self._verified_sni(flow):
                raise _refused(f"the request names {shown(claim)}, which is not the server it is sent to "
                               f"({shown(req.host)})", 400)
        # A pattern host names the addresses it resolves to, on this machine and networks only:
        # public servers share addresses (a CDN), and there the name (its certificate) is the server.
        local = {a for a in target if not ipaddress.ip_address(a).is_global}
        aliases = {h for h in self._pattern_hosts if self.resolver.known(h) & local}
        urls = {server_url(req.scheme, host, req.port, req.path) for host in {connect, *claims, *target, *aliases}}
        found = {(named.source, pattern.text) for url in urls for named, pattern in governing(self._named, url)}
        sources = sorted({source for source, _ in found})
        if len(sources) > 1:
            raise _refused(f"the server's names ({', '.join(sorted(shown(str(u)) for u in urls))}) are governed "
                           f"by different policies ({', '.join(sources)}); send every name of one server", 403)
        if found:
            return Binding(self._name(req, found, sources[0]), self._by_pattern[next(iter(found))[1]])
        # An unnamed server is counted under one name however it is spelled: the lowest address of
        # the host the proxy connects to (never a claimed name).
        origin = server_url(req.scheme, preferred(target) if target else req.host, req.port, "/").origin
        governed = self._unnamed_policy()
        if governed is None and self.unnamed == "deny":
            raise _refused(f"server {shown(origin)} is named by no policy (intercept_unnamed_server=deny)", 403)
        self._warn_once(origin, governed)
        return Binding(origin, governed)

    def _verified_sni(self, flow: http.HTTPFlow) -> str | None:
        """The client's SNI, when mitmproxy checks the upstream's certificate against it (HTTPS
        without ssl_insecure): then it names the server even at a public address shared by many."""
        sni = flow.client_conn.sni
        return canonical_host(sni) if sni and flow.request.scheme == "https" and not self.insecure else None

    def _name(self, req: http.Request, found: set[tuple[str, str]], source: str) -> str:
        """Which of the policy's matching patterns names the server (and keys its counters): the
        first, in the policy's order, that the host the proxy connects to matches (by name, by
        address, or through a pattern host resolving to its address); only when none does, the
        first that a claimed name (Host, SNI, authority) matches. So a Host field cannot pick
        another pattern's counters for the server the call really goes to."""
        texts = {text for _, text in found}
        target = self.resolver.cached([req.host])
        target_names = {req.host} | target | {h for h in self._pattern_hosts if self.resolver.known(h) & target}
        target_urls = {server_url(req.scheme, host, req.port, req.path) for host in target_names}
        patterns = [p for p in self._by_source[source] if p.text in texts]
        by_target = [p for p in patterns if any(p.matches(url) for url in target_urls)]
        return (by_target or patterns)[0].text

    def _unnamed_policy(self) -> Governed | None:
        if self.reverse or self.unnamed == "fallback":
            return self.fallback
        return None

    def _claims(self, flow: http.HTTPFlow) -> set[str]:
        """The names the request gives its server besides the host it connects to: the request
        target's authority, the Host field, the SNI. More than one Host field is refused."""
        req = flow.request
        hosts = req.headers.get_all("host")
        if len(hosts) > 1:
            raise _refused("more than one Host header field", 400)
        claims = {_host_of(a) for a in (req.authority, *hosts) if a}
        sni = flow.client_conn.sni
        if sni and not self.reverse:  # in reverse mode it names the proxy, not the server
            claims.add(sni)
        return claims

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


def preferred(addresses: frozenset[str]) -> str:
    """The address to connect to, and to name an unnamed server by: IPv4 first, then the lowest."""
    return min(addresses, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


def _idle_fallback(policies: list[Governed], unnamed: str, reverse: bool) -> tuple[str, str] | None:
    """A policy without servers next to policies that name theirs governs only what no policy
    names, and under ``inspect`` nothing at all: refused, so that adding a file with servers to
    a directory never silently lifts the policy that governed every server until then."""
    if reverse or unnamed != "inspect" or not any(g.policy.servers is not None for g in policies):
        return None
    idle = next((g.source for g in policies if g.policy.servers is None), None)
    if idle is None:
        return None
    return idle, ("this policy names no servers while others do, so it would govern only servers no policy "
                  "names, and intercept_unnamed_server=inspect governs those by no policy: give it a servers: "
                  "list, or set intercept_unnamed_server=fallback (it then governs them) or deny")


def _host_of(authority: str) -> str:
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _refused(message: str, status: int) -> ProtocolError:
    return ProtocolError(INVALID_REQUEST, message, status=status)
