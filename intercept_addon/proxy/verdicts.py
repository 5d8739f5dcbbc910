"""Decisions made visible: flow notes (metadata, comment, mark), the agent's reply, the event
log line, and the decision hooks (the decision log, the status tally)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from mitmproxy import http

from intercept_addon.policy.engine import Decision
from intercept_addon.proxy.local_reply import local_response
from intercept_addon.proxy.log_budget import LogBudget
from intercept_addon.proxy.settings import Settings
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import ProtocolError
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")

# Called once per decision: (flow, decision, arguments), or (flow, None, None) for a request
# refused as malformed. Must not raise.
DecisionHook = Callable[[http.HTTPFlow, Decision | None, Mapping[str, Any] | None], None]


def reply(flow: http.HTTPFlow, status: int, body: Any) -> None:
    flow.response = local_response(status, jsonrpc.dumps(body))


class Verdicts:
    def __init__(self) -> None:
        self.hooks: list[DecisionHook] = []
        self.lines = LogBudget()  # the event log's lines per decision, at most 20 a second

    def refuse(self, flow: http.HTTPFlow, exc: ProtocolError, settings: Settings) -> None:
        """A request that cannot be judged: answered here, never forwarded (unless monitoring)."""
        flow.metadata["mcp.decision"] = "refused"
        flow.metadata["mcp.reason"] = exc.message
        flow.comment = f"REFUSED: {exc.message}"
        flow.marked = ":no_entry:"
        self.lines.info(f"intercept: refused {flow.request.method} {flow.request.pretty_url}: {exc.message}")
        if settings.enforcing:
            reply(flow, exc.status, jsonrpc.error_body(exc.id, exc.code, f"{mcp.DENIED_PREFIX} {exc.message}"))
            if exc.status == 401:
                flow.response.headers["www-authenticate"] = 'Bearer error="invalid_token"'  # type: ignore[union-attr]
        self.notify(flow, None, None)  # last: the reply above is in place whatever they do

    def denial(self, msg_id: str | int | None, decision: Decision, settings: Settings,
               revision: str | None, deny_as: str | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON-RPC body) the agent gets for a denied call; ``deny_as``: the
        policy's own form, over the option's."""
        hidden = decision.kind == "hidden"
        code = mcp.UNKNOWN_TOOL_CODE if hidden else mcp.DENIED_CODE
        text = decision.message if hidden else f"{mcp.DENIED_PREFIX} {decision.message}"
        data: dict[str, Any] | None = None
        if not hidden:  # a hidden tool must be indistinguishable from an absent one
            data = {"reason": "policy_denied", "tool": decision.tool, "rule": decision.rule, "kind": decision.kind}
            if decision.retry_after is not None:
                data["retry_after"] = decision.retry_after
        return mcp.denial(msg_id, text=text or "", code=code, data=data,  # type: ignore[arg-type]
                          as_result=(deny_as or settings.deny_as) == "result", revision=revision)

    def annotate(self, flow: http.HTTPFlow, decision: Decision, arguments: Mapping[str, Any],
                 settings: Settings) -> None:
        verdict = "allow" if decision.allowed else "deny"
        if flow.metadata.get("mcp.decision") != "deny":  # a batch's flow shows its denial, wherever it was
            flow.metadata["mcp.decision"] = verdict
            if decision.rule:
                flow.metadata["mcp.rule"] = decision.rule
        if not decision.allowed:
            flow.metadata["mcp.reason"] = decision.message
            if decision.retry_after is not None:
                flow.metadata["mcp.retry_after"] = decision.retry_after
            flow.marked = ":no_entry:"
            enforced = "" if settings.enforcing else " (monitor: forwarded)"
            flow.comment = f"DENY {decision.tool} [{decision.rule}]: {decision.message}{enforced}"
        # Every log record is dispatched to every loaded addon, which costs more than the policy
        # check: allowed calls get an event-log line only on request (the decision log has them).
        if not decision.allowed or settings.log_allowed:
            server = flow.metadata.get("mcp.server")
            self.lines.info(f"intercept: {verdict} tool={decision.tool} agent={shown(str(flow.metadata.get('mcp.agent')))} "
                     + (f"server={shown(server)} " if server else "")
                     + f"rule={decision.rule or '-'}" + (f" reason={shown(decision.message or '')}" if not decision.allowed else ""))
        self.notify(flow, decision, arguments)

    def notify(self, flow: http.HTTPFlow, decision: Decision | None, arguments: Mapping[str, Any] | None) -> None:
        """Tell the decision hooks; a failing one must not change the decision."""
        for hook in self.hooks:
            try:
                hook(flow, decision, arguments)
            except Exception:
                log.error(f"intercept: decision hook {hook!r} failed:\n{traceback.format_exc()}")
