"""Reading what a server answers, the way clients read it: settle counters, filter tool lists.

One reading for every path (a JSON body, an event of a call's own stream, of a GET stream, of a
legacy stream). Where the proxy must judge what it reads (a tools/list is awaited, or the policy
hides or pins tools), a payload that looks like JSON but that the strict parser refuses, or a
message that is not a well-formed JSON-RPC message, is not passed on: ``ProtocolError`` makes
the caller cut the stream or answer 502. Anything shaped like a tools/list result is filtered
whatever its id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from intercept_addon.proxy.continuations import Continuations, arguments_key, is_interim
from intercept_addon.proxy.pending import OwedCall, Pending
from intercept_addon.proxy.server_requests import ServerRequests
from intercept_addon.proxy.toollists import ToolLists
from intercept_addon.state.ledger import Ledger, refundable_error
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import Message, ProtocolError, id_key

ANSWER_DEPTH = 512  # answers are the server's: deeper than requests, still bounded
# What a JSON parser would take for a value: after whitespace (and a BOM some parsers skip).
_JSON_START = re.compile(rb"[ \t\r\n]*(?:\xef\xbb\xbf)?[ \t\r\n]*[\[{]")


def looks_like_json(data: bytes) -> bool:
    return _JSON_START.match(data) is not None


class Answers:
    def __init__(self, ledger: Ledger, toollists: ToolLists, continuations: Continuations,
                 notify: Callable[..., None], server_requests: ServerRequests) -> None:
        self.ledger = ledger
        self.toollists = toollists
        self.continuations = continuations
        self.notify = notify  # Verdicts.notify: the decision hooks (the decision log) hear of answer rules
        self.server_requests = server_requests

    def must_judge(self, pending: Pending) -> bool:
        """Must every message be read? While a tools/list is awaited (clients take any answer
        there for theirs), and whenever the policy hides or pins tools: clients match answers by
        id on whatever stream or body they arrive, so any answer may carry another request's
        tools/list (and a resumed GET stream replays old answers). And while a call whose answer
        the policy rules on (``answers:``) is owed: an answer it cannot read could carry a secret."""
        return bool(pending.lists) or self.toollists.watched or any(c.ruled for c in pending.calls.values())

    def payload(self, flow: http.HTTPFlow, pending: Pending, data: bytes, *, own_stream: bool) -> Any | None:
        """One JSON body or event's data. Returns the value to send instead, or None to pass it
        unchanged. ``own_stream``: the answer to this flow's own request, so every notification
        or server request on it belongs to its calls."""
        if not looks_like_json(data):
            return None  # keep-alives, priming events, text: no client reads them as JSON-RPC
        judge = self.must_judge(pending)
        try:
            value = jsonrpc.loads(data, max_depth=ANSWER_DEPTH)
        except ProtocolError:
            if judge:
                raise
            return None  # counters alone: an answer of unknown meaning keeps them (at the end)
        changed = False
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            replacement = self._message(flow, pending, item, judge=judge, own_stream=own_stream)
            if replacement is not None:
                items[i] = replacement
                changed = True
        if not changed:
            return None
        return items if isinstance(value, list) else items[0]

    def _message(self, flow: http.HTTPFlow, pending: Pending, item: Any, *, judge: bool,
                 own_stream: bool) -> Any | None:
        try:
            msg = jsonrpc.classify(item)
        except ProtocolError:
            if judge:
                raise  # not a message a proxy can read; a client may still take it for one
            return None  # it answers nothing: whatever it owes stays owed
        if msg.kind != "response":
            self._began(pending, msg, own_stream)
            return self.server_requests.request(flow, msg, pending.caller)  # sampling, elicitation
        key = id_key(msg.id)
        pending.lists.pop(key, None)
        denial = pending.denials.pop(key, None)
        if denial is not None:  # the answer to a ping sent in place of a denied call
            return denial
        call = pending.calls.pop(key, None)
        if call is not None:
            self._settle(call, msg)
        if is_interim(msg.body.get("result")):  # 2026-07-28: what the server asks the client for
            denied = self.server_requests.interim(flow, item, pending.caller)
            if denied is not None:
                return denied
        ruled = self.toollists.answer_ruled(flow, call, item) if call is not None else None  # answers: rules
        if ruled is not None:
            item = ruled[0]
            self.notify(flow, ruled[1], None)
        served = mcp.listed_tools(item)  # the list object as served: filtering puts a new one in its place
        if not self.toollists.judge(flow, item, pending.caller):
            return item if ruled is not None else None
        hidden = len(served) - len(mcp.listed_tools(item))
        if hidden > 0:  # the flow list's comment says so (proxy/timeline.py)
            flow.metadata["mcp.hidden"] = flow.metadata.get("mcp.hidden", 0) + hidden
        return item

    @staticmethod
    def _began(pending: Pending, msg: Message, own_stream: bool) -> None:
        if msg.method == "notifications/progress":
            token = (msg.params or {}).get("progressToken")
            pending.began(None if own_stream else token)
        elif own_stream or msg.kind == "request":
            pending.began()  # a server request may serve any call still running

    def _settle(self, call: OwedCall, msg: Message) -> None:
        error = msg.body.get("error")
        result = msg.body.get("result")
        if is_interim(result):
            # the unit is spent for the whole call
            self.continuations.grant(call.identity, call.tool, arguments_key(call.arguments or {}), result)
        if call.ticket is None:
            return
        code = error.get("code") if isinstance(error, dict) else None
        self.ledger.settle(call.ticket, refund=error is not None and refundable_error(code))
