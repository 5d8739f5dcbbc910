"""Policy keys a server does not have, found where the proxy first sees the server's tools.

The first complete tools/list of each server (as proxy/servers.py names it: the pattern that
matched, else its origin; its pages gathered until one has no ``nextCursor``) is compared with
the policy that governs it (policy/coverage.py), and again only when that policy changes: each finding is one warning in the event log, and the
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
from intercept_addon.proxy.servers import Binding, ServerBindings, server_key
from intercept_addon.wire import mcp
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")

MAX_SERVERS = 64  # servers remembered, least recently seen dropped first
MAX_TOOLS = 1000  # per server, over all its pages: more are not read


@dataclass
class Server:
    policy: Policy | None = None  # the policy its report is against
    tools: dict[str, Any] = field(default_factory=dict)  # name -> tool, over the pages so far
    complete: bool = False  # a page without nextCursor arrived
    report: Coverage | None = None


class PolicyCoverage:
    def __init__(self) -> None:
        self.servers: OrderedDict[str, Server] = OrderedDict()  # by server name (an origin when unbound)

    def use(self, bindings: ServerBindings) -> None:
        """New policies: every server whose list is known and whose policy changed is compared again, now."""
        for name, server in self.servers.items():
            engine = bindings.governing(name)
            policy = engine.policy if engine is not None else None
            if policy != server.policy:
                server.policy, server.report = policy, None
                if server.complete:
                    self._compare(name, server)

    def observe(self, flow: http.HTTPFlow, msg: dict[str, Any], binding: Binding) -> None:
        """A tools/list-shaped answer, as the server sent it (before any tool is hidden)."""
        if binding.engine is None:
            return
        name = server_key(flow, binding)  # one policy for every server: still a report per server
        server = self.servers.get(name)
        if server is None:
            server = self.servers[name] = Server(binding.engine.policy)
            if len(self.servers) > MAX_SERVERS:
                self.servers.popitem(last=False)
        else:
            self.servers.move_to_end(name)
        if not server.complete:
            for tool in mcp.listed_tools(msg)[:MAX_TOOLS - len(server.tools)]:
                tool_name = mcp.tool_name(tool)
                if tool_name is not None:
                    server.tools.setdefault(tool_name, tool)
            if not mcp.has_more_tools(msg) or len(server.tools) >= MAX_TOOLS:
                server.complete = True
                self._compare(name, server)
        if server.report is not None and server.report.findings:
            _annotate(flow, server.report, name)

    def _compare(self, name: str, server: Server) -> None:
        if server.policy is None:
            return
        server.report = compare(server.policy, server.tools.values())
        for line in server.report.lines(name):
            log.warning(f"intercept: {line}")

    def status(self) -> list[str]:
        """Lines for ``intercept.status``."""
        known = [(name, s) for name, s in self.servers.items() if s.report is not None]
        if not known:
            return ["policy coverage: no complete tools/list seen yet"]
        lines = ["policy coverage (first tools/list of each server):"]
        for name, server in known:
            if not server.report.findings:  # type: ignore[union-attr]
                lines.append(f"  {name}: every policy key and argument matches ({len(server.tools)} tools)")
            lines += [f"  {line}" for line in server.report.lines(name)]  # type: ignore[union-attr]
        return lines


def _annotate(flow: http.HTTPFlow, report: Coverage, where: str) -> None:
    if "mcp.unmatched" in flow.metadata:
        return  # another list on the same flow (a stream): noted once
    keys = [u.key for u in report.unmatched]
    flow.metadata["mcp.unmatched"] = report.lines(where)
    summary = (f"POLICY KEYS MATCH NO TOOL: {', '.join(shown(k) for k in keys)}" if keys
               else f"POLICY ARGUMENTS THE TOOLS DO NOT HAVE: {len(report.findings)}")
    flow.comment = f"{flow.comment}; {summary}" if flow.comment else summary
