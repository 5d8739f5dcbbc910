"""The tools each server published in its last tools/list, for ``arguments: schema``.

Pages are gathered until one has no ``nextCursor``; that set is then the server's list, and a
later list replaces it the same way (a definition on a newer page wins at once). Until a
server's list has been seen the proxy cannot check a call: it denies it and says to list the
tools first (every MCP client lists tools before calling them; one that skips it, or a proxy
restarted under a running session, gets a clear message instead of an unchecked call).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intercept_addon.policy.arguments import ArgumentSchemas, SchemaUnusable, check
from intercept_addon.policy.engine import Decision
from intercept_addon.wire import mcp

MAX_SERVERS = 64  # servers remembered, least recently seen dropped first
MAX_TOOLS = 1000  # per server and list: more are not kept (and calls to them are denied as unknown)
RULE = "(arguments: schema)"


@dataclass(slots=True)
class Published:
    schema: Any  # the tool's inputSchema as served
    validator: Any = None  # compiled on the first call that needs it


@dataclass
class Listing:
    complete: dict[str, Published] | None = None  # name -> its tool in the last whole list
    gathering: dict[str, Published] = field(default_factory=dict)  # pages of the list under way

    def find(self, tool: str) -> Published | None:
        found = self.gathering.get(tool)
        return found if found is not None or self.complete is None else self.complete.get(tool)


class PublishedTools:
    def __init__(self) -> None:
        self.servers: OrderedDict[str, Listing] = OrderedDict()
        self.schemas = ArgumentSchemas()

    def observe(self, server: str, msg: dict[str, Any]) -> None:
        """A tools/list-shaped answer from ``server``, as served (before any tool is hidden)."""
        listing = self.servers.get(server)
        if listing is None:
            listing = self.servers[server] = Listing()
            if len(self.servers) > MAX_SERVERS:
                self.servers.popitem(last=False)
        self.servers.move_to_end(server)
        for tool in mcp.listed_tools(msg):
            name = mcp.tool_name(tool)
            if name is not None and len(listing.gathering) < MAX_TOOLS:
                listing.gathering[name] = Published(tool.get("inputSchema") if isinstance(tool, dict) else None)
        if not mcp.has_more_tools(msg):
            listing.complete, listing.gathering = listing.gathering, {}

    def decision(self, server: str, tool: str, arguments: Mapping[str, Any]) -> Decision | None:
        """A denial if ``arguments`` do not match the schema ``server`` published for ``tool``."""
        listing = self.servers.get(server)
        published = listing.find(tool) if listing is not None else None
        if published is None:
            if listing is None or listing.complete is None:
                why = ("the proxy has not seen this server's tools/list yet, so it cannot check the arguments "
                       "against the tool's schema; list the tools (tools/list), then call again")
            else:
                why = "unknown tool: the server's last tools/list does not have it"
            return _denied(tool, why)
        try:
            if published.validator is None:
                published.validator = self.schemas.compile(published.schema)
            problem = check(published.validator, arguments)
        except SchemaUnusable as exc:
            return _denied(tool, f"the server's inputSchema for this tool cannot be checked ({exc}); "
                                 "the call is not forwarded unchecked")
        return _denied(tool, f"arguments do not match the server's schema: {problem}") if problem else None


def _denied(tool: str, why: str) -> Decision:
    return Decision(False, tool, "schema", RULE, f"{tool}: {why}")
