"""mitmproxy script for bench_cost.py's ``parse-floor`` configuration: the least any addon that
judges JSON-RPC must do per call, without the addon. It reads the request body and parses it
with C json, takes the method and tool name, asks the upstream for an identity-encoded answer,
and parses the answer's body the same way. It does no strictness checks, no counting and no
logging. The gap between ``bare`` and this config is what reading the traffic costs at all.
"""

from __future__ import annotations

import json
from typing import Any


class ParseFloor:
    def request(self, flow: Any) -> None:
        body = json.loads(flow.request.raw_content or b"null")
        if isinstance(body, dict) and body.get("method") == "tools/call":
            flow.metadata["mcp.tool"] = (body.get("params") or {}).get("name")
            flow.request.headers["accept-encoding"] = "identity"

    def response(self, flow: Any) -> None:
        if flow.response is not None and "mcp.tool" in flow.metadata:
            json.loads(flow.response.raw_content or b"null")


addons = [ParseFloor()]
