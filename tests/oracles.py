"""The oracles that make a fuzz input a bug, around the addon's REAL pipeline.

Shared by tests/test_properties.py (hypothesis) and bench/fuzz.py (atheris): a request body
goes through ``wire.admission.admit`` (exactly what the addon runs), an event stream through
the addon's own answer transform; no copy of either lives here.
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal
from typing import Any

from mitmproxy.test import tflow

from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.pending import Pending
from intercept_addon.wire import admission, jsonrpc, mcp
from intercept_addon.wire.jsonrpc import ProtocolError, fold, id_key

TOOL_NAME = re.compile(mcp.DEFAULT_TOOL_NAME)
LIMITS = admission.Limits(max_body=4 * 1024 * 1024, max_depth=64, tool_name=TOOL_NAME)
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
    """Run ``admission.admit`` on a body. Raises AssertionError (a bug) if anything but
    ProtocolError escapes, if the forwarded bytes do not read back as what was judged, if a
    lenient JSON parser reads the original body differently, or if a lenient server would run
    another tool than the one judged."""
    try:
        admitted = admission.admit(body, {k.lower(): v for k, v in headers.items()}, LIMITS)
    except ProtocolError as exc:
        assert isinstance(exc.code, int) and exc.message and 400 <= exc.status < 600
        return
    if admitted is None:
        return
    value = admitted.value
    assert jsonrpc.loads(admitted.forwarded, max_depth=512) == value, "forwarded bytes read back differently"
    # The stdlib parser keeps the last of duplicate keys and never refuses one: if it reads the
    # original body differently, a server could too.
    assert json.loads(body.decode("utf-8"), parse_float=Decimal) == value, "a lenient parser disagrees"
    judged = [admitted.calls[i].name for i in sorted(admitted.calls)]
    served = json.loads(admitted.forwarded, parse_float=Decimal)
    ran = [lenient_get(lenient_get(m, "params"), "name") for m in (served if isinstance(served, list) else [served])
           if isinstance(lenient_get(m, "method"), str) and fold(lenient_get(m, "method")).strip() == "tools/call"]
    assert ran == judged, f"judged {judged}, a lenient server runs {ran}"


@functools.cache
def _hiding_addon() -> InterceptAddon:
    addon = InterceptAddon()
    addon.toollists.use({"<test>": parse_policy(HIDING_POLICY)})
    return addon


def addon_sse_transform(list_ids: set[Any]):  # type: ignore[no-untyped-def]
    """The addon's own per-event transform for a POST stream answering tools/list ``list_ids``.
    It raises ProtocolError where the stream must be cut (the caller answers the owed ids)."""
    pending = Pending(lists={id_key(i): i for i in list_ids})
    return _hiding_addon().responses._transform(tflow.tflow(), pending, own_stream=True)
