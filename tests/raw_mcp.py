"""Raw JSON-RPC over HTTP for tests that must send what no SDK client sends (made-up session ids,
crafted retries, a hang-up mid-call) and read exactly what came back."""

from __future__ import annotations

import json
from typing import Any

import httpx2

DENIED_PREFIX = "[INTERCEPT POLICY DENIED]"
ACCEPT = "application/json, text/event-stream"
REVISION_2026 = "2026-07-28"
# The per-request envelope a 2026-07-28 server requires (what the SDK client sends).
META_2026 = {"io.modelcontextprotocol/protocolVersion": REVISION_2026,
             "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
             "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}


def call(msg_id: int | str | None, name: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    """A tools/call request (a notification when ``msg_id`` is None)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": "tools/call",
                            "params": {"name": name, "arguments": arguments, **params}}
    if msg_id is not None:
        body["id"] = msg_id
    return body


def initialize(msg_id: int, revision: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize",
            "params": {"protocolVersion": revision, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


def headers(*, revision: str | None = None, session: str | None = None, agent: str | None = None,
            body: dict[str, Any] | None = None) -> dict[str, str]:
    """POST headers; on 2026-07-28 the routing headers are taken from ``body``."""
    out = {"content-type": "application/json", "accept": ACCEPT}
    if revision:
        out["mcp-protocol-version"] = revision
    if session:
        out["mcp-session-id"] = session
    if agent:
        out["x-agent-id"] = agent
    if revision == REVISION_2026 and body is not None:
        out["mcp-method"] = body["method"]
        name = (body.get("params") or {}).get("name")
        if name is not None:
            out["mcp-name"] = name
    return out


def call_2026(msg_id: int, name: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    return call(msg_id, name, arguments, _meta=META_2026, **params)


def sse_data(text: str) -> list[str]:
    """The data of each event of an event-stream body."""
    events, data = [], []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            events.append("\n".join(data))
            data = []
    if data:
        events.append("\n".join(data))
    return events


def messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, whether JSON (one or a batch) or an event stream."""
    if "text/event-stream" in resp.headers.get("content-type", ""):
        return [json.loads(d) for d in sse_data(resp.text) if d.strip()]
    if not resp.content.strip():
        return []
    value = resp.json()
    return value if isinstance(value, list) else [value]


def is_denial(msg: dict[str, Any]) -> bool:
    """Our policy denial (or refusal), as a JSON-RPC error."""
    error = msg.get("error")
    return isinstance(error, dict) and str(error.get("message", "")).startswith(DENIED_PREFIX)


def result_text(msg: dict[str, Any]) -> str | None:
    """The text of a successful tool result (None for an error or an isError result)."""
    result = msg.get("result")
    if not isinstance(result, dict) or result.get("isError"):
        return None
    content = result.get("content") or [{}]
    return content[0].get("text")
