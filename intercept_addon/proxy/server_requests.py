"""What a server asks of the client: ``sampling/createMessage`` (the agent's model generates, at
the user's cost) and ``elicitation/create``, judged by the policy's ``sampling:`` and
``elicitation:`` sections.

Up to 2025-11-25 they are JSON-RPC requests on an event stream. A denied one never reaches the
client: in its place the client gets a log notification saying so, and the server gets a
JSON-RPC error answering its request, POSTed by the proxy to the endpoint the stream belongs to
(the legacy HTTP+SSE transport posts elsewhere: there the request is dropped, and the server's
own timeout ends it). On 2026-07-28 they ride in an ``input_required`` result's
``inputRequests``: a denied one turns that result into a denial of the call itself.

The answer path cannot wait, so the section is evaluated at once: with the memory and SQLite
stores nothing waits; a store that would (Redis, or SQLite behind another process's lock)
makes the request denied rather than passed unjudged. A unit of a counter is spent as soon as a
request is let through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import http

from intercept_addon.policy.engine import Call, Decision
from intercept_addon.proxy.toollists import ToolLists
from intercept_addon.state.ledger import Ledger
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import Message


SECTION_OF = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation"}


def run_now(work: Coroutine[Any, Any, Decision]) -> Decision | None:
    """The coroutine's result if it finishes without waiting, else None (it is closed)."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value
    work.close()
    return None


class ServerRequests:
    def __init__(self, ledger: Ledger, toollists: ToolLists, store: Callable[[], Any],
                 notify: Callable[..., None], line: Callable[[str], None],
                 reply: Callable[[http.HTTPFlow, dict[str, Any]], None]) -> None:
        self.ledger = ledger
        self.toollists = toollists
        self.store = store  # the counter store in force
        self.notify = notify  # the decision hooks
        self.line = line  # the event log's line per decision, within its budget (log_budget.py)
        self.reply = reply  # POSTs a JSON-RPC message to the flow's server

    def request(self, flow: http.HTTPFlow, msg: Message, caller: Any) -> dict[str, Any] | None:
        """A server→client request on a stream: the message the client gets instead, or None."""
        section = SECTION_OF.get(msg.method or "")
        if section is None or msg.kind != "request":
            return None
        decision = self._judge(flow, section, msg.method, msg.params or {}, caller)  # type: ignore[arg-type]
        if decision is None or decision.allowed:
            return None
        self.reply(flow, jsonrpc.error_body(msg.id, mcp.DENIED_CODE, f"{mcp.DENIED_PREFIX} {decision.message}"))
        return {"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "warning", "logger": "intercept",
                           "data": f"{mcp.DENIED_PREFIX} the server's {msg.method} was denied: {decision.message}"}}

    def interim(self, flow: http.HTTPFlow, item: dict[str, Any], caller: Any) -> dict[str, Any] | None:
        """A 2026-07-28 ``input_required`` result: a denial of the call if one of its input
        requests is denied, else None."""
        result = item.get("result")
        requests = result.get("inputRequests") if isinstance(result, dict) else None
        if not isinstance(requests, dict):
            return None
        for embedded in requests.values():
            method = embedded.get("method") if isinstance(embedded, dict) else None
            section = SECTION_OF.get(method) if isinstance(method, str) else None
            if section is None:
                continue
            params = embedded.get("params")
            decision = self._judge(flow, section, method, params if isinstance(params, dict) else {}, caller)
            if decision is not None and not decision.allowed:
                text = f"{mcp.DENIED_PREFIX} the server asked for {method}, denied: {decision.message}"
                return jsonrpc.error_body(item.get("id"), mcp.DENIED_CODE, text)
        return None

    def _judge(self, flow: http.HTTPFlow, section: str, method: str, params: dict[str, Any],
               caller: Any) -> Decision | None:
        binding = self.toollists.servers.of_answer(flow)
        engine = binding.governed.sections.get(section) if binding.governed is not None else None
        if engine is None:
            return None  # no section written: as before
        store = self.store()
        agent = caller.agent if caller is not None else "(unknown)"
        call = Call(agent, method, params, getattr(caller, "user", None), getattr(caller, "claims", None),
                    getattr(caller, "mcp_session", None), binding.server)
        decision = run_now(engine.evaluate(call, store))
        if decision is None:
            decision = Decision(False, method, "error", "(state would wait)",
                                f"{method} needs a counter the store cannot answer at once; denied")
        decision = Decision(decision.allowed, method, decision.kind, decision.rule,
                            decision.message, decision.retry_after, decision.reservation)
        if decision.reservation is not None and decision.reservation.applied:
            ticket = self.ledger.open(store, decision.reservation)
            self.ledger.forwarded([ticket])
            self.ledger.settle(ticket)  # let through: spent
        if not decision.allowed:
            flow.comment = f"DENY {method} [{decision.rule}]: {decision.message}"
            flow.marked = ":no_entry:"
            self.line(f"intercept: deny {method} agent={agent} rule={decision.rule}")
        self.notify(flow, decision, params)
        return decision


def post_to_server(flow: http.HTTPFlow, message: dict[str, Any]) -> None:
    """POST ``message`` to the MCP endpoint ``flow`` belongs to (the same URL, session and
    protocol version), through mitmproxy's own client replay: it goes out as a flow of its own,
    seen in the viewer and judged by this addon like any request."""
    from mitmproxy import ctx

    answer = flow.copy()
    answer.request.method = "POST"
    answer.request.content = jsonrpc.dumps(message)
    answer.request.headers["content-type"] = "application/json"
    answer.request.headers["accept"] = "application/json, text/event-stream"
    answer.request.headers.pop("last-event-id", None)
    answer.response = None
    answer.comment = "the proxy's answer to a denied server request"
    answer.metadata = {}
    ctx.master.commands.call("replay.client", [answer])
