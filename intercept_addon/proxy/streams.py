"""Event streams through the proxy, and the answers given in place of what cannot be inspected.

mitmproxy hands a response's ``stream`` callable arbitrary chunks and finally ``b""``. The
callable here decodes them, cuts them into events, lets a transform replace an event, and
fails closed: once anything goes wrong nothing more of the stream reaches the client, which
gets an error event for every id it still waits for instead of waiting forever.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable

from mitmproxy import http

from intercept_addon.proxy.local_reply import local_response
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import INTERNAL_ERROR
from intercept_addon.wire.sse import SseEvent, SseRewriter, detect_newline, format_event

log = logging.getLogger("intercept")

StreamFn = Callable[[bytes], list[bytes]]


def reframed(event: SseEvent, msg: object) -> bytes:
    """``event`` carrying ``msg`` instead, in the stream's own line endings, id kept."""
    return format_event(jsonrpc.dumps(msg).decode("utf-8"), event=event.event, id=event.id,
                        newline=detect_newline(event.raw))


def unanswered(ids: Iterable[str | int]) -> bytes:
    """Error events for the ids a cut stream still owes its client. Starts with a blank line: it
    ends whatever uninspected event was being passed through."""
    text = f"{mcp.DENIED_PREFIX} the response stream could not be inspected and was cut"
    return b"\n\n" + b"".join(format_event(jsonrpc.dumps(jsonrpc.error_body(i, INTERNAL_ERROR, text)).decode("utf-8"))
                              for i in ids)


def event_stream(transform: Callable[[SseEvent], bytes | None], end: Callable[[], None], *,
                 must_inspect: Callable[[], bool], owed: Callable[[], list[str | int]],
                 decode: Callable[[bytes], bytes]) -> StreamFn:
    """A stream callable. ``end()`` runs once, when the stream is over or cut; an event too large
    to inspect cuts the stream while ``must_inspect()``; ``owed()`` are the ids a cut answers."""
    rewriter = SseRewriter(transform)
    failed = False

    def feed(chunk: bytes) -> bytes:
        nonlocal failed
        if failed:
            return b""
        try:
            data = decode(chunk)
            out = rewriter.feed(data) if data else b""  # feed(b"") means end of stream
            if chunk == b"":
                out += rewriter.feed(b"")
            if rewriter.oversized_events and must_inspect():
                raise ValueError("an event too large to inspect")
            if chunk == b"":
                end()
            return out
        except Exception:
            failed = True
            log.error(f"intercept: an event stream could not be inspected, stream cut:\n{traceback.format_exc()}")
            answers = unanswered(owed())
            end()
            return answers

    def stream(chunk: bytes) -> list[bytes]:
        # Never b"" for a chunk: over HTTP/1 chunked, mitmproxy writes it as the zero-length
        # chunk that ENDS the body, so holding back half an event would truncate the stream.
        out = feed(chunk)
        return [out] if out else []

    return stream


def fail_response(flow: http.HTTPFlow, *, body_to_come: bool = False) -> None:
    """Answer 502 in place of a response the proxy could not inspect. ``body_to_come`` (from
    ``responseheaders``): mitmproxy still reads the upstream body into whatever response stands
    then, so this one is streamed and swallows every upstream byte."""
    body = jsonrpc.dumps(jsonrpc.error_body(None, INTERNAL_ERROR,
                                            f"{mcp.DENIED_PREFIX} the proxy could not inspect the response"))
    flow.response = local_response(502, body)
    if body_to_come:
        pending = [body]

        def swallow(chunk: bytes) -> list[bytes]:
            return [pending.pop()] if pending else []  # [] rather than b"": see event_stream

        flow.response.stream = swallow
