"""What the addon knows of MCP itself, kept free of mitmproxy: tools/call parameters, the
2026-07-28 routing headers, denial replies per revision, and tools/list filtering."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Callable

from intercept_addon.wire.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    Message,
    ProtocolError,
    error_body,
    fold,
)
from intercept_addon.wire.text import shown

REVISION_2026 = "2026-07-28"
DENIED_PREFIX = "[INTERCEPT POLICY DENIED]"
# Policy denials use the standard "invalid request" code: no SDK reads it as a timeout or
# connection loss (-32000/-32001) and it is outside the range 2026-07-28 reserves.
DENIED_CODE = INVALID_REQUEST
# A hidden tool must look exactly like an absent one.
UNKNOWN_TOOL_CODE = INVALID_PARAMS
CALL_PARAMS = ("name", "arguments", "_meta")
# The spec's SHOULD charset for tool names (plus "/"): anything else could be a lookalike of
# a governed name that a lenient server normalises.
DEFAULT_TOOL_NAME = r"[A-Za-z0-9_.\-/]{1,128}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


def tool_call(message: Message, name_pattern: re.Pattern[str]) -> ToolCall:
    """The tool and arguments of a tools/call request, refusing ambiguous parameters."""
    params = message.params
    if params is None:
        raise ProtocolError(INVALID_PARAMS, "tools/call needs params", id=message.id)
    for key in params:
        if key not in CALL_PARAMS and fold(key) in CALL_PARAMS:
            raise ProtocolError(INVALID_PARAMS, f"ambiguous parameter {shown(key)}", id=message.id)
    name = params.get("name")
    if not isinstance(name, str):
        raise ProtocolError(INVALID_PARAMS, "tools/call params.name must be a string", id=message.id)
    if not name_pattern.fullmatch(name):
        raise ProtocolError(INVALID_PARAMS, f"tool name {shown(name)} has characters outside {name_pattern.pattern}",
                            id=message.id)
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "tools/call params.arguments must be an object", id=message.id)
    return ToolCall(name, arguments)


@dataclass(frozen=True, slots=True)
class GuardedRequest:
    """A request other than tools/call that a policy section judges (policy/sections.py)."""

    section: str  # resources, prompts, completion
    key: str  # what its keys match: the URI, the prompt's name; "*" for completion
    arguments: dict[str, Any]  # what args.* conditions read


# Section, the parameter its keys match (None: every request), and the parameters a call has.
SECTION_METHODS = {"resources/read": ("resources", "uri", ("uri", "_meta")),
                   "prompts/get": ("prompts", "name", ("name", "arguments", "_meta")),
                   "completion/complete": ("completion", None, ("ref", "argument", "context", "_meta"))}


def guarded_request(message: Message) -> GuardedRequest:
    """The section, key and arguments of a resources/read, prompts/get or completion/complete
    request, refusing ambiguous parameters as tool_call does."""
    section, key_param, known = SECTION_METHODS[message.method]  # type: ignore[index]
    params = message.params
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, f"{message.method} needs params", id=message.id)
    for name in params:
        if name not in known and fold(name) in known:
            raise ProtocolError(INVALID_PARAMS, f"ambiguous parameter {shown(name)}", id=message.id)
    if key_param is None:
        return GuardedRequest(section, "*", dict(params))
    key = params.get(key_param)
    if not isinstance(key, str):
        raise ProtocolError(INVALID_PARAMS, f"{message.method} params.{key_param} must be a string", id=message.id)
    if section == "resources":
        return GuardedRequest(section, key, {"uri": key})
    arguments = params.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "prompts/get params.arguments must be an object", id=message.id)
    return GuardedRequest(section, key, arguments)


# Methods the policy acts on. A variant that a lenient server might read as one of them (case,
# Unicode compatibility forms, surrounding whitespace) is refused, never forwarded.
GUARDED_METHODS = ("tools/call", "tools/list", *SECTION_METHODS, "resources/list", "resources/templates/list",
                   "prompts/list")


def check_method(message: Message) -> None:
    method = message.method
    if method is not None and method not in GUARDED_METHODS and fold(method).strip() in GUARDED_METHODS:
        raise ProtocolError(INVALID_REQUEST, f"ambiguous method {shown(method)}", id=message.id)


def decode_header_value(value: str) -> str:
    """2026-07-28 header values that are not header-safe arrive as ``=?base64?...?=``."""
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError(INVALID_REQUEST, "malformed base64 header value") from None
    return value


def check_routing_headers(message: Message, headers: Callable[[str], str | None], revision: str | None) -> None:
    """Mcp-Method / Mcp-Name must agree with the body the decision is made on."""
    code = HEADER_MISMATCH if revision == REVISION_2026 else INVALID_REQUEST
    method_header = headers("mcp-method")
    if method_header is not None and decode_header_value(method_header) != message.method:
        raise ProtocolError(code, "Mcp-Method header does not match the body's method", id=message.id)
    name_header = headers("mcp-name")
    if name_header is not None:
        params = message.params or {}
        target = params.get("name", params.get("uri"))
        if decode_header_value(name_header) != target:
            raise ProtocolError(code, "Mcp-Name header does not match the body", id=message.id)


def status_for(code: int, revision: str | None) -> int:
    """HTTP status of a locally answered error: 200 up to 2025-11-25; 2026-07-28 maps codes."""
    if revision != REVISION_2026:
        return 200
    if code == -32601:
        return 404
    if code in (-32700, -32600, -32602) or -32099 <= code <= -32020:
        return 400
    return 500


def denial(message_id: str | int | None, *, text: str, code: int, data: dict[str, Any],
           as_result: bool, revision: str | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON-RPC body) for a denied tools/call."""
    if as_result:
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
        if revision == REVISION_2026:
            result["resultType"] = "complete"
        return 200, {"jsonrpc": "2.0", "id": message_id, "result": result}
    return status_for(code, revision), error_body(message_id, code, text, data)


def member_key(obj: dict[str, Any], name: str) -> str | None:
    """The key a lenient client reads as ``name``: itself, else one equal to it ignoring case and
    Unicode form (the strict parser lets at most one such key into an object)."""
    if name in obj:
        return name
    return next((k for k in obj if fold(k) == name), None)


def _member(obj: Any, name: str) -> Any:
    key = member_key(obj, name) if isinstance(obj, dict) else None
    return None if key is None else obj[key]


def listed_tools(body: dict[str, Any]) -> list[Any]:
    """The ``tools`` array of anything shaped like a tools/list result, whatever its id ([] for
    anything else)."""
    tools = _member(_member(body, "result"), "tools")
    return tools if isinstance(tools, list) else []


def has_more_tools(body: dict[str, Any]) -> bool:
    """Does a tools/list-shaped result name a next page (``nextCursor``, in any case)?"""
    return _member(_member(body, "result"), "nextcursor") is not None


def tool_name(tool: Any) -> str | None:
    name = _member(tool, "name")
    return name if isinstance(name, str) else None


# Lists other than tools/list that hide entries: result member -> the field naming an entry
# (folded, as member_key compares), and the policy section whose ``hide`` applies.
OTHER_LISTS = {"resources": ("uri", "resources"), "resourcetemplates": ("uritemplate", "resources"),
               "prompts": ("name", "prompts")}


def filter_listed(body: dict[str, Any], hidden: Callable[[str, str], bool]) -> bool:
    """Drop hidden entries from anything shaped like a resources/list, resources/templates/list
    or prompts/list result, in place; ``hidden(section, name)``. True if anything changed."""
    result = _member(body, "result")
    if not isinstance(result, dict):
        return False
    changed = False
    for member, (field_name, section) in OTHER_LISTS.items():
        key = member_key(result, member)
        entries = result.get(key) if key is not None else None
        if not isinstance(entries, list):
            continue
        kept = [e for e in entries if not isinstance(n := _member(e, field_name), str) or not hidden(section, n)]
        if len(kept) != len(entries):
            result[key] = kept  # type: ignore[index]
            changed = True
    if changed and "cacheScope" in result:
        result["cacheScope"] = "private"
    return changed


def filter_tools(body: dict[str, Any], hidden: Callable[[str], bool]) -> bool:
    """Drop hidden tools from a tools/list-shaped result in place; True if anything changed."""
    tools = listed_tools(body)
    kept = [t for t in tools if (name := tool_name(t)) is None or not hidden(name)]
    if len(kept) == len(tools):
        return False
    result = _member(body, "result")
    result[member_key(result, "tools")] = kept  # type: ignore[index]
    if "cacheScope" in result:  # 2026: a per-agent view must not be shared by caches
        result["cacheScope"] = "private"
    return True
