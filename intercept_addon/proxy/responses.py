"""The answer path: what comes back for a forwarded request, and GET event streams.

* A tracked flow (it awaits tools/list answers, owes counters, or the policy hides or pins
  tools, since any answer may carry a tools/list): a non-2xx status settles
  its calls at once (a redirect or 4xx refunds them, anything else keeps them); an event
  stream is judged event by event as it streams; a JSON (or buffered) body in ``response``.
* A GET event stream may be a legacy HTTP+SSE stream (its first event announces an endpoint)
  or a Streamable HTTP stream (resumed ones replay old answers): either way every message on
  it is read, whenever the policy hides or pins tools or the stream owes answers.
Whatever a flow still owes when it ends, errors or is cut is kept: the server may have run it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mitmproxy import http

from intercept_addon.proxy.answers import looks_like_json
from intercept_addon.proxy.legacy_streams import LegacyStream
from intercept_addon.proxy.pending import Pending
from intercept_addon.proxy.streams import event_stream, fail_response, reframed
from intercept_addon.state.ledger import refundable_status
from intercept_addon.wire import encodings, jsonrpc
from intercept_addon.wire.media import readings
from intercept_addon.wire.sse import SseEvent, SseRewriter

if TYPE_CHECKING:
    from intercept_addon.proxy.addon import InterceptAddon

log = logging.getLogger("intercept")


def _events_asked(flow: http.HTTPFlow, status: int) -> bool:
    """A 2xx answer to a GET that asked for an event stream: the TypeScript SDK reads it as one
    whatever its Content-Type."""
    return 200 <= status < 300 and "text/event-stream" in flow.request.headers.get("accept", "").lower()


class ResponseJudge:
    def __init__(self, core: InterceptAddon) -> None:
        self.core = core

    # -- responseheaders --------------------------------------------------------------------

    def headers(self, flow: http.HTTPFlow) -> None:
        core, resp = self.core, flow.response
        assert resp is not None
        core.identities.note_issued(flow)
        pending = core.flows.get(flow.id)
        found = readings(resp.headers.get("content-type"))
        if pending is not None:
            self._tracked(flow, pending, found)
        elif flow.request.method == "GET" and ("sse" in found or _events_asked(flow, resp.status_code)):
            self._get_stream(flow)  # no client reads a GET's answer as JSON
        elif "sse" in found:
            resp.stream = True  # not ours to inspect, but never buffer an event stream

    def _tracked(self, flow: http.HTTPFlow, pending: Pending, found: frozenset[str]) -> None:
        core, resp = self.core, flow.response
        assert resp is not None
        if not 200 <= resp.status_code < 300:
            self._settle_status(pending, resp.status_code)
            core.flows.pop(flow.id, None)
        elif found == {"sse"}:  # some client may read it as JSON too: then it is buffered, judged both ways
            decode = encodings.stream_decoder(resp.headers)
            if decode is None:
                return  # br/zstd despite our Accept-Encoding: identity: buffered, judged in `response`
            resp.headers.pop("content-length", None)  # events may be rewritten: their length changes
            resp.stream = event_stream(self._transform(flow, pending, own_stream=True), lambda: self.end(flow),
                                       must_inspect=lambda: core.answers.must_judge(pending),
                                       owed=pending.owed_ids, decode=decode)

    def _get_stream(self, flow: http.HTTPFlow) -> None:
        core, resp = self.core, flow.response
        assert resp is not None
        decode = encodings.stream_decoder(resp.headers)
        if decode is None:  # a GET stream is never passed on unread
            log.warning(f"intercept: event stream {flow.request.pretty_url} has Content-Encoding "
                        f"{resp.headers['content-encoding']!r}, which cannot be inspected: refused")
            fail_response(flow, body_to_come=True)
            return
        caller = core.stream_callers.pop(flow.id, None)
        if caller is None and core.toollists.per_caller:  # a GET that never asked for events
            log.warning(f"intercept: event stream {flow.request.pretty_url} answers a GET whose caller is unknown "
                        "(it did not ask for text/event-stream), so its tool lists cannot be filtered: refused")
            fail_response(flow, body_to_come=True)
            return
        resp.headers.pop("content-length", None)  # events may be rewritten: their length changes
        stream = core.legacy.opened(flow)
        stream.pending.caller = caller
        messages = self._transform(flow, stream.pending, own_stream=False)

        def transform(event: SseEvent) -> bytes | None:
            if event.data is None:
                return None
            stream.events += 1
            if event.event == "endpoint":
                if stream.events == 1:
                    core.legacy.announce(stream, event.data)
                return None
            return messages(event)

        resp.stream = event_stream(transform, lambda: self.get_stream_end(flow),
                                   must_inspect=lambda: core.answers.must_judge(stream.pending) or bool(stream.pending),
                                   owed=stream.pending.owed_ids, decode=decode)

    def _transform(self, flow: http.HTTPFlow, pending: Pending, *, own_stream: bool):  # type: ignore[no-untyped-def]
        answers = self.core.answers

        def transform(event: SseEvent) -> bytes | None:
            if event.data is None or event.event not in (None, "message"):
                return None  # clients read only message events
            replacement = answers.payload(flow, pending, event.data.encode("utf-8"), own_stream=own_stream)
            return None if replacement is None else reframed(event, replacement)

        return transform

    # -- response ---------------------------------------------------------------------------

    async def body(self, flow: http.HTTPFlow, pending: Pending) -> None:
        """A buffered answer to a tracked request."""
        core, resp = self.core, flow.response
        assert resp is not None
        if not 200 <= resp.status_code < 300:
            self._settle_status(pending, resp.status_code)
            return
        found = readings(resp.headers.get("content-type"))
        if not found and not core.answers.must_judge(pending):
            return  # no client reads it as MCP
        content = encodings.decoded_response(resp.headers, resp.raw_content or b"")
        if looks_like_json(content) or "sse" not in found:
            # A body the strict parser takes for JSON holds no event for a stream reader, and
            # anything else that looks like JSON must parse wherever a list is judged.
            replacement = core.answers.payload(flow, pending, content, own_stream=True)
            if replacement is not None:
                resp.content = jsonrpc.dumps(replacement)
        else:  # an event stream we had to buffer (compressed, or typed so some client reads it as JSON)
            rewriter = SseRewriter(self._transform(flow, pending, own_stream=True))
            resp.content = rewriter.feed(content) + rewriter.feed(b"")

    def legacy_post_done(self, flow: http.HTTPFlow, stream: LegacyStream, key: object) -> None:
        """A legacy POST not accepted (non-2xx): nothing will answer its id on the stream."""
        resp = flow.response
        if resp is None or 200 <= resp.status_code < 300:
            return
        stream.pending.lists.pop(key, None)
        stream.pending.denials.pop(key, None)
        call = stream.pending.calls.pop(key, None)
        if call is not None and call.ticket is not None:
            self.core.counters.ledger.settle(call.ticket, refund=refundable_status(resp.status_code))

    def _settle_status(self, pending: Pending, status: int) -> None:
        ledger, refund = self.core.counters.ledger, refundable_status(status)
        for ticket in pending.tickets():
            ledger.settle(ticket, refund=refund)
        pending.clear()

    # -- ends -------------------------------------------------------------------------------

    def end(self, flow: http.HTTPFlow) -> None:
        """A tracked flow is over (answered, cut or errored): keep what it still owes."""
        pending = self.core.flows.pop(flow.id, None)
        if pending is not None:
            self.core.counters.ledger.keep_all(pending.tickets())

    def get_stream_end(self, flow: http.HTTPFlow) -> None:
        stream = self.core.legacy.closed(flow)
        if stream is not None:
            self.core.counters.ledger.keep_all(stream.pending.tickets())
            stream.pending.clear()
