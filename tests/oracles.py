"""The addon's parsing path as plain functions, with the oracles that make a fuzz input a bug.

Shared by tests/test_properties.py (hypothesis) and bench/fuzz.py (atheris): what a POST body
and its routing headers go through before any policy decision, and the per-event transform of
an event stream, all without mitmproxy running.
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal
from typing import Any

from mitmproxy.test import tflow

from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.proxy.addon import InterceptAddon, Tracked
from intercept_addon.policy.engine import Engine
from intercept_addon.wire.jsonrpc import ProtocolError, fold
from intercept_addon.policy.file import parse_policy

TOOL_NAME = re.compile(mcp.DEFAULT_TOOL_NAME)
HIDING_POLICY = """\
version: "1"
hide: [secret_admin]
tools:
  delete_everything:
    rules:
      - {name: no deletes, action: deny}
"""


def lenient_get(obj: Any, key: str) -> Any:
    """What a lenient server reads for ``key``: the exact key, else any key equal to it ignoring
    case and Unicode form (Go's encoding/json, CVE-2026-27896)."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    return next((v for k, v in obj.items() if fold(k) == key), None)


def check_request(body: bytes, headers: dict[str, str]) -> None:
    """jsonrpc.loads -> classify -> check_method -> mcp.tool_call -> check_routing_headers, as the addon runs them.

    Raises AssertionError (a bug) if anything but ProtocolError escapes, if a parsed body does not
    survive ``dumps``/``loads`` unchanged, if a lenient JSON parser reads the original body
    differently, or if a lenient server would run another tool than the one judged."""
    revision = headers.get("mcp-protocol-version")
    try:
        value = jsonrpc.loads(body)
        if not jsonrpc.looks_like_jsonrpc(value):
            return
        items = value if isinstance(value, list) else [value]
        messages = [jsonrpc.classify(item) for item in items]
        if not isinstance(value, list):
            mcp.check_routing_headers(messages[0], headers.get, revision)
        judged = []
        for m in messages:
            mcp.check_method(m)
            if m.method == "tools/call":
                if m.kind == "notification":  # refused by the addon: a server would run it unanswered
                    raise ProtocolError(jsonrpc.INVALID_REQUEST, "tools/call notification")
                judged.append(mcp.tool_call(m, TOOL_NAME).name)
        forwarded = jsonrpc.dumps(value)
    except ProtocolError as exc:
        assert isinstance(exc.code, int) and exc.message and 400 <= exc.status < 600
        return
    assert jsonrpc.loads(forwarded, max_depth=512) == value, "forwarded bytes read back differently"
    # The stdlib parser keeps the last of duplicate keys and never refuses one: if it reads the
    # original body differently, a server could too.
    assert json.loads(body.decode("utf-8"), parse_float=Decimal) == value, "a lenient parser disagrees"
    served = json.loads(forwarded, parse_float=Decimal)
    ran = [lenient_get(lenient_get(m, "params"), "name") for m in (served if isinstance(served, list) else [served])
           if isinstance(lenient_get(m, "method"), str) and jsonrpc.fold(lenient_get(m, "method")).strip() == "tools/call"]
    assert ran == judged, f"judged {judged}, a lenient server runs {ran}"


@functools.cache
def _hiding_addon() -> InterceptAddon:
    addon = InterceptAddon()
    addon.engine = Engine(parse_policy(HIDING_POLICY))
    return addon


def addon_sse_transform(list_ids: set[Any]):  # type: ignore[no-untyped-def]
    """The addon's own per-event transform for a stream answering tools/list ``list_ids``."""
    return _hiding_addon()._sse_transform(tflow.tflow(), Tracked(list_ids=set(list_ids)))
