"""The flow list as a timeline of MCP calls: every MCP flow gets a short comment.

mitmweb's and the console's rows otherwise all read ``POST /mcp``. A decision's own comment
(``DENY ...``, ``ASK ...``, ``REFUSED ...``) is kept; any other MCP flow says what it carried::

    tools/call sora_generate_video_from_image: allow (agent-header:agent-1)
    tools/list: 2 hidden (agent-header:agent-1)
    initialize (agent-header:agent-1)

Every comment ends with the agent, so ``~comment`` finds one agent's flows in mitmweb's search
box, which knows no ``~meta`` (the console and mitmdump know both). Marks stay for denials
(⛔) and held calls (✋). The InterceptAddon's hooks call it once the decision is made; it is
no addon of its own, so mitmproxy dispatches no hook of its.
"""

from __future__ import annotations

from mitmproxy import http

from intercept_addon.wire.text import escaped

LIST = "tools/list"


def summary(meta: dict) -> str:
    """What the flow carried: its method, the tool or target, the decision."""
    method = meta["mcp.method"]
    what = meta.get("mcp.tool") if method == "tools/call" else meta.get("mcp.target")
    decision = meta.get("mcp.decision")
    return f"{method} {escaped(what)}: {decision}" if what and decision else method


class Timeline:
    def requested(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata
        if "mcp.method" not in meta:
            return  # not MCP, or refused before it was read (its comment says so)
        if not flow.comment:
            flow.comment = summary(meta)
        agent = meta.get("mcp.agent")
        if agent and escaped(agent) not in flow.comment:
            flow.comment += f" ({escaped(agent)})"

    def answered(self, flow: http.HTTPFlow) -> None:
        hidden = flow.metadata.get("mcp.hidden")
        if hidden and flow.comment.startswith(LIST) and not flow.comment.startswith(f"{LIST}:"):
            flow.comment = f"{LIST}: {hidden} hidden{flow.comment[len(LIST):]}"
