"""Reading MCP in mitmproxy's viewers (mitmweb, the console, mitmdump's flow detail).

* :class:`McpContentview` ("MCP"): JSON-RPC bodies pretty-printed, ``text/event-stream``
  bodies as a list of frames (event, id, the JSON-RPC message pretty-printed), under a header
  with the method, tool name, id and the policy decision the addon put in ``flow.metadata``.
  It outranks the JSON view whenever a body is JSON-RPC. Bodies are read by the addon's strict
  parser: one it refuses (duplicate keys, say) is shown raw under ``refused: <reason>``, never
  as a lenient parser would have guessed it.
* :class:`McpViewer`: the addon that registers the view and keeps streamed event-stream
  bodies for it. mitmproxy forgets streamed bodies unless ``store_streamed_bodies`` is set, and
  that option keeps every byte of every stream with no limit (a stream may stay open for
  hours); this addon keeps the first ``intercept_view_stream_bytes`` of each event stream
  instead. With ``store_streamed_bodies`` set, mitmproxy's own copy is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mitmproxy import contentviews, ctx, exceptions, http
from mitmproxy.contentviews import Contentview, Metadata

from intercept_addon.proxy.approvals import describe
from intercept_addon.wire import jsonrpc
from intercept_addon.wire.jsonrpc import ProtocolError
from intercept_addon.wire.sse import SseEvent, SseRewriter
from intercept_addon.wire.text import escaped

VIEW_STREAM_BYTES = 1024 * 1024  # the default of intercept_view_stream_bytes
JSON_PRIORITY = 1  # what mitmproxy's JSON view claims for application/json
MAX_DEPTH = 512  # the nesting the addon accepts in answers
STREAM_CUT_KEY = "mcp.stream_bytes"  # total bytes of a stream whose kept copy was cut short
# flow.metadata keys shown in the header, in this order (set by InterceptAddon).
HEADER_KEYS = (("decision", "mcp.decision"), ("rule", "mcp.rule"), ("message", "mcp.reason"),
               ("retry_after", "mcp.retry_after"), ("agent", "mcp.agent"), ("user", "mcp.user"),
               ("process", "mcp.process"), ("session", "mcp.session"), ("server", "mcp.server"))


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and (content_type == "application/json" or content_type.endswith("+json")
                                         or content_type == "application/json-rpc")


def _indented(value: Any, indent: str = "") -> str:
    """``value`` as ``json.dumps(indent=4)`` would show it, with exact numbers (Decimal)."""
    inner = indent + "    "
    if isinstance(value, dict) and value:
        items = [f"{inner}{jsonrpc.dumps(k).decode()}: {_indented(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(inner + _indented(v, inner) for v in value) + f"\n{indent}]"
    return jsonrpc.dumps(value).decode()


def _strict(data: bytes) -> tuple[Any, str]:
    """(value, pretty text) as the addon reads the body, or (None, a ``refused:`` line and the
    raw text) for a body its strict parser refuses: never what a lenient parser would guess."""
    try:
        value = jsonrpc.loads(data, max_depth=MAX_DEPTH)
        return value, _indented(value)  # raises too: a lone surrogate cannot be forwarded
    except ProtocolError as exc:
        return None, f"refused: {exc.message}\n\n{data.decode('utf-8', errors='replace')}"


def _messages(value: Any) -> list[dict[str, Any]]:
    return [m for m in (value if isinstance(value, list) else [value]) if isinstance(m, dict)]


def _events(data: bytes) -> list[SseEvent]:
    events: list[SseEvent] = []

    def collect(event: SseEvent) -> None:
        events.append(event)

    rewriter = SseRewriter(collect, max_event_bytes=max(len(data), 16))  # type: ignore[arg-type]
    rewriter.feed(data)
    rewriter.feed(b"")
    return events


class McpContentview(Contentview):
    name = "MCP"  # type: ignore[assignment]
    syntax_highlight = "yaml"  # type: ignore[assignment]  # JSON is YAML; the header is YAML too

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        if not data or b'"jsonrpc"' not in data:
            return -1
        if metadata.content_type == "text/event-stream" or _is_json(metadata.content_type):
            return JSON_PRIORITY + 1
        flow = metadata.flow
        if flow is not None and "mcp.method" in flow.metadata:  # the addon judged it as MCP
            return JSON_PRIORITY + 1
        return -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        meta = metadata.flow.metadata if metadata.flow is not None else {}
        if metadata.content_type == "text/event-stream":
            frames = [e for e in _events(data) if e.data is not None or e.event or e.id]
            read = [_strict(e.data.encode("utf-8")) if e.data and e.event != "endpoint" else (None, e.data)
                    for e in frames]
            messages = [m for value, _ in read for m in _messages(value)]
            body = "\n\n".join(self._frame(i, e, text) for i, (e, (_, text)) in enumerate(zip(frames, read), 1))
            body = body or "(no events)"
            if STREAM_CUT_KEY in meta:
                body += f"\n\n(stream cut: the first {len(data)} of {meta[STREAM_CUT_KEY]} bytes are kept)"
        else:
            value, body = _strict(data)
            messages = _messages(value)
        return "\n".join(self._header(messages, meta)) + "\n\n" + body

    @staticmethod
    def _frame(n: int, event: SseEvent, text: str | None) -> str:
        """One event; ``text``: its data as read (an ``endpoint`` event's URL as sent)."""
        title = f"--- event {n}: {event.event or 'message'}" + (f"  id: {event.id}" if event.id is not None else "")
        return title + "\n" + (text or "(no data)")

    @staticmethod
    def _header(messages: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
        # A request names itself; a response (after progress notifications, on a stream) only
        # carries the id, and the flow's metadata says what was asked.
        first = next((m for m in messages if "id" in m), messages[0] if messages else {})
        params = first.get("params") if isinstance(first.get("params"), dict) else {}
        method = first.get("method") or meta.get("mcp.method")
        tool = params.get("name") if method == "tools/call" and "name" in params else meta.get("mcp.tool")
        msg_id = jsonrpc.dumps(first["id"]).decode() if "id" in first else None  # "1" and 1 are different ids
        fields: list[tuple[str, Any]] = [("method", method), ("tool", tool), ("id", msg_id)]
        fields += [(label, meta.get(key)) for label, key in HEADER_KEYS]
        if isinstance(meta.get("mcp.ask"), dict):  # a call held for a person: the time left, or the answer
            fields.append(("ask", describe(meta["mcp.ask"])))
        # Agent-controlled text (a tool name, a session): escaped, so it cannot forge a header line.
        return [f"{label}: {escaped(value if isinstance(value, str) else jsonrpc.dumps(value).decode())}"
                for label, value in fields if value is not None]


class McpViewer:
    """Registers the MCP view and keeps a bounded copy of streamed event streams for it.

    It has no per-flow hooks of its own (each one mitmproxy dispatches costs every call): the
    InterceptAddon's ``responseheaders`` calls :meth:`streaming` once it has installed its own
    stream callable, which this one wraps, so the bytes kept are the bytes the client was sent."""

    name = "intercept_viewer"

    def __init__(self) -> None:
        self.view = McpContentview()
        self._kept: dict[str, bytearray] = {}  # flow id -> bytes kept so far, while it streams
        # intercept_view_stream_bytes, or 0 when mitmproxy keeps streamed bodies itself; read in configure
        self._limit = VIEW_STREAM_BYTES

    def load(self, loader: Any) -> None:
        loader.add_option("intercept_view_stream_bytes", int, VIEW_STREAM_BYTES,
                          "Keep the first N bytes of each streamed event-stream response for the flow viewer; 0: none.")
        contentviews.add(self.view)

    def configure(self, updated: set[str]) -> None:
        if "intercept_view_stream_bytes" in updated and ctx.options.intercept_view_stream_bytes < 0:
            raise exceptions.OptionsError("intercept_view_stream_bytes must be 0 or positive")
        self._limit = 0 if ctx.options.store_streamed_bodies else ctx.options.intercept_view_stream_bytes

    def streaming(self, flow: http.HTTPFlow) -> None:
        """A response's headers are in (and its stream callable installed, if any)."""
        resp, limit = flow.response, self._limit
        if resp is None or not resp.stream or limit <= 0 \
                or "text/event-stream" not in resp.headers.get("content-type", "").lower():
            return
        inner = resp.stream
        kept = self._kept[flow.id] = bytearray()
        total = 0

        def stream(chunk: bytes) -> bytes | Iterable[bytes]:
            nonlocal total
            out = inner(chunk) if callable(inner) else chunk
            for piece in [out] if isinstance(out, bytes) else out:
                total += len(piece)
                kept.extend(piece[: limit - len(kept)])
            if total > limit:
                flow.metadata[STREAM_CUT_KEY] = total
            if chunk == b"":
                self._keep(flow)
            return out

        resp.stream = stream

    def cut(self, flow: http.HTTPFlow) -> None:
        self._keep(flow)  # a stream cut short never sees its final b"" chunk

    def _keep(self, flow: http.HTTPFlow) -> None:
        kept = self._kept.pop(flow.id, None)
        if kept is not None and flow.response is not None:
            flow.response.data.content = bytes(kept)  # the bytes as sent: headers stay as they were
