"""Red-team review of server bindings (issue #15): what the proxy does to a request's names must
not break a client that speaks HTTP/2. In reverse mode mitmproxy gives an HTTP/2 request the
upstream's name as :authority, and makes it the Host field when it speaks HTTP/1 upstream; a
request stripped of both reaches an HTTP/1.1 server without Host (a 400)."""

from __future__ import annotations

import httpx2
import pytest

from harness import ran, start_mcp_server, start_mitmdump
from raw_mcp import ACCEPT, call, messages

pytestmark = pytest.mark.e2e


async def test_reverse_mode_serves_http2_clients(tmp_path):
    server, port, side = start_mcp_server(tmp_path, "--stateless", "--json-response")
    policy = tmp_path / "policy.yaml"
    policy.write_text('tools:\n  delete_everything:\n    rules:\n      - {action: deny, reason: "kept"}\n')
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy)
    try:
        async with httpx2.AsyncClient(http2=True, verify=False, trust_env=False, timeout=20) as http:
            url = f"https://127.0.0.1:{proxy_port}/mcp"
            allowed = await http.post(url, json=call(1, "echo", {"text": "x"}), headers={"accept": ACCEPT})
            denied = await http.post(url, json=call(2, "delete_everything", {}), headers={"accept": ACCEPT})
        assert allowed.http_version == "HTTP/2" and allowed.status_code == 200, allowed.text
        assert messages(allowed)[0]["result"]["content"][0]["text"] == "x"
        assert "kept" in messages(denied)[0]["error"]["message"]
        assert ran(side) == ["echo"]
    finally:
        proxy.stop()
        server.stop()
