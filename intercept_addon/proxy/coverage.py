"""Policy keys a server does not have, found where the proxy first sees the server's tools.

The first complete tools/list of each server (origin: scheme, host, port; its pages gathered
until one has no ``nextCursor``) is compared with the policy in force (policy/coverage.py), and
again only when the policy changes: each finding is one warning in the event log, and the
report goes on every tools/list flow of that server (``mcp.unmatched``) and into
``intercept.status``. Later lists of a known server cost a dictionary lookup.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from intercept_addon.policy.coverage import Coverage, compare
from intercept_addon.policy.model import Policy
from intercept_addon.proxy.identity import Origin, origin_of
from intercept_addon.wire import mcp
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")

MAX_SERVERS = 64  # origins remembered, least recently seen dropped first
MAX_TOOLS = 1000  # per server, over all its pages: more are not read


def server_text(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass
class Server:
    tools: dict[str, Any] = field(default_factory=dict)  # name -> tool, over the pages so far
    complete: bool = False  # a page without nextCursor arrived
    report: Coverage | None = None  # against the policy in force


class PolicyCoverage:
    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.servers: OrderedDict[Origin, Server] = OrderedDict()

    def use(self, policy: Policy | None) -> None:
        """A new policy: every server whose list is known is compared again, now."""
        if policy == self.policy:
            return
        self.policy = policy
        for origin, server in self.servers.items():
            server.report = None
            if server.complete:
                self._compare(origin, server)

    def observe(self, flow: http.HTTPFlow, msg: dict[str, Any]) -> None:
        """A tools/list-shaped answer, as the server sent it (before any tool is hidden)."""
        if self.policy is None:
            return
        origin = origin_of(flow.request)
        server = self.servers.get(origin)
        if server is None:
            server = self.servers[origin] = Server()
            if len(self.servers) > MAX_SERVERS:
                self.servers.popitem(last=False)
        else:
            self.servers.move_to_end(origin)
        if not server.complete:
            for tool in mcp.listed_tools(msg)[:MAX_TOOLS - len(server.tools)]:
                name = mcp.tool_name(tool)
                if name is not None:
                    server.tools.setdefault(name, tool)
            if not mcp.has_more_tools(msg) or len(server.tools) >= MAX_TOOLS:
                server.complete = True
                self._compare(origin, server)
        if server.report is not None and server.report.findings:
            _annotate(flow, server.report)

    def _compare(self, origin: Origin, server: Server) -> None:
        if self.policy is None:
            return
        server.report = compare(self.policy, server.tools.values())
        for line in server.report.lines(server_text(origin)):
            log.warning(f"intercept: {line}")

    def status(self) -> list[str]:
        """Lines for ``intercept.status``."""
        known = [(origin, s) for origin, s in self.servers.items() if s.report is not None]
        if not known:
            return ["policy coverage: no complete tools/list seen yet"]
        lines = ["policy coverage (first tools/list of each server):"]
        for origin, server in known:
            where = server_text(origin)
            if not server.report.findings:  # type: ignore[union-attr]
                lines.append(f"  {where}: every policy key and argument matches ({len(server.tools)} tools)")
            lines += [f"  {line}" for line in server.report.lines(where)]  # type: ignore[union-attr]
        return lines


def _annotate(flow: http.HTTPFlow, report: Coverage) -> None:
    if "mcp.unmatched" in flow.metadata:
        return  # another list on the same flow (a stream): noted once
    keys = [u.key for u in report.unmatched]
    flow.metadata["mcp.unmatched"] = report.lines(server_text(origin_of(flow.request)))
    summary = (f"POLICY KEYS MATCH NO TOOL: {', '.join(shown(k) for k in keys)}" if keys
               else f"POLICY ARGUMENTS THE TOOLS DO NOT HAVE: {len(report.findings)}")
    flow.comment = f"{flow.comment}; {summary}" if flow.comment else summary
