"""Request admission: raw body + headers -> the MCP messages to judge, or a refusal.

Pure (no mitmproxy, no policy), so the addon, the fuzzer and the property tests run the one
pipeline. Everything a lenient server could read differently from the proxy is refused here,
before any policy decision or counter: an ambiguous body never reaches the engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intercept_addon.wire import encodings, jsonrpc, mcp
from intercept_addon.wire.jsonrpc import INVALID_REQUEST, PARSE_ERROR, Message, ProtocolError
from intercept_addon.wire.text import shown

MCP_HEADERS = ("mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name")
BATCH_REVISIONS = (None, "2025-03-26")  # batching was added in 2025-03-26 and removed in 2025-06-18
_JSON_SPACE = re.compile(rb"[ \t\r\n]*")
_CHARSET = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.I)
# Encodings and byte order marks servers auto-detect: such a body may be JSON to them.
_SNIFFED = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int
    max_depth: int
    tool_name: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request body the policy can judge."""

    value: Any  # the parsed body: one message, or a batch (list)
    messages: tuple[Message, ...]
    calls: Mapping[int, mcp.ToolCall]  # index into messages -> its tools/call
    revision: str | None  # MCP-Protocol-Version
    forwarded: bytes  # exactly what was judged, re-serialised: what the server will parse
    guarded: Mapping[int, mcp.GuardedRequest] = field(default_factory=dict)  # resources/read, prompts/get, ...

    @property
    def batch(self) -> bool:
        return isinstance(self.value, list)


def looks_like_mcp(headers: Mapping[str, str], raw: bytes) -> bool:
    """Could a server take this body for JSON-RPC? (MCP headers, any JSON-ish content type, or a
    JSON-looking body under any type.) ``headers``: lower-cased names."""
    if any(h in headers for h in MCP_HEADERS):
        return True
    if "json" in headers.get("content-type", "").lower():  # application/json, +json, json-rpc, ...
        return True
    start = _JSON_SPACE.match(raw).end()  # type: ignore[union-attr]
    return raw[start:start + 1] in (b"{", b"[") or raw.startswith(_SNIFFED) or b"\x00" in raw[:4]


def decoded_body(headers: Mapping[str, str], raw: bytes, limit: int) -> bytes:
    """The body within ``limit`` bytes, decoded only to learn whether it is MCP."""
    if len(raw) > limit:
        raise ProtocolError(INVALID_REQUEST, f"request body larger than {limit} bytes", status=413)
    enc = headers.get("content-encoding", "").strip().lower()
    if not enc or enc == "identity":
        return raw
    if enc not in encodings.KNOWN:
        raise ProtocolError(INVALID_REQUEST, f"unsupported Content-Encoding {shown(enc)}", status=415)
    try:
        decoded = encodings.decode_capped(raw, enc, limit + 1)
    except encodings.DecodeError as exc:
        raise ProtocolError(PARSE_ERROR, f"request body: {exc}", status=400) from None
    if len(decoded) > limit:
        raise ProtocolError(INVALID_REQUEST, f"request body larger than {limit} bytes", status=413)
    return decoded


def admit(raw: bytes, headers: Mapping[str, str], limits: Limits) -> Admitted | None:
    """Judge-ready messages of a request body; None if it is not MCP (forward it untouched).
    ``headers``: lower-cased names, repeats joined. Raises ProtocolError to refuse."""
    if not looks_like_mcp(headers, raw):
        return None
    body = decoded_body(headers, raw, limits.max_body)
    charset = _CHARSET.search(headers.get("content-type", ""))
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise ProtocolError(PARSE_ERROR, f"charset {shown(charset.group(1))} is not UTF-8", status=415)
    value = jsonrpc.loads(body, max_depth=limits.max_depth)
    if not jsonrpc.looks_like_jsonrpc(value):
        return None  # JSON, but not JSON-RPC: not ours
    if body is not raw:  # MCP servers do not accept compressed requests
        raise ProtocolError(INVALID_REQUEST, "compressed MCP requests are not accepted", status=415)
    revision = headers.get("mcp-protocol-version")
    messages = tuple(_messages(value, revision))
    if not isinstance(value, list):
        mcp.check_routing_headers(messages[0], headers.get, revision)
    calls: dict[int, mcp.ToolCall] = {}
    guarded: dict[int, mcp.GuardedRequest] = {}
    for i, msg in enumerate(messages):
        mcp.check_method(msg)
        if msg.method == "tools/call" or msg.method in mcp.SECTION_METHODS:
            if msg.kind == "notification":
                raise ProtocolError(INVALID_REQUEST, f"{msg.method} must be a request with an id, not a notification")
            if msg.method == "tools/call":
                calls[i] = mcp.tool_call(msg, limits.tool_name)
            else:
                guarded[i] = mcp.guarded_request(msg)
    _check_ids(messages)
    return Admitted(value, messages, calls, revision, jsonrpc.dumps(value), guarded)


def _messages(value: Any, revision: str | None) -> list[Message]:
    if not isinstance(value, list):
        return [jsonrpc.classify(value)]
    if revision not in BATCH_REVISIONS:
        raise ProtocolError(INVALID_REQUEST, f"batches are not allowed in MCP {shown(revision or '')}")
    if not value:
        raise ProtocolError(INVALID_REQUEST, "empty batch")
    return [jsonrpc.classify(item) for item in value]


def _check_ids(messages: tuple[Message, ...]) -> None:
    """Two requests of one batch whose ids a client could confuse: their answers could be too."""
    seen: set[Any] = set()
    for msg in messages:
        if msg.kind != "request":
            continue
        key = jsonrpc.id_key(msg.id)
        if key in seen:
            raise ProtocolError(INVALID_REQUEST, f"request id {shown(str(msg.id))} is used twice in this batch")
        seen.add(key)
