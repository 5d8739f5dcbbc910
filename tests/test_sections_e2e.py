"""Rules beyond tools/call through a real mitmdump in front of the official SDK's test server
(``--content``: two resources, a resource template, two prompts, completion), driven by the
SDK's client: a denied ``resources/read`` URI, a hidden resource and prompt, a denied prompt
argument and a completion rate limit hold, never reaching the server (its side-effect log is
the proof), and everything allowed still works."""

from __future__ import annotations

from pathlib import Path

import mcp
import pytest

from harness import ran, start_mcp_server, start_mitmdump
from test_addon_e2e import client

pytestmark = pytest.mark.e2e

POLICY = """\
tools: {}
resources:
  hide: ["secret://*"]
  match:
    "notes://private*":
      rules:
        - {action: deny, reason: "private notes stay private"}
prompts:
  hide: [admin_prompt]
  match:
    review:
      rules:
        - name: no secrets in reviews
          conditions: [{path: args.code, op: regex, value: "^[^=]*$"}]
          on_deny: "code under review must not carry assignments"
completion:
  rules:
    - {action: allow, rate_limit: {max: 2, window: 60}}
"""


def lines(side: Path) -> list[str]:
    return [line for line in side.read_text().splitlines() if line]


async def test_resources_prompts_and_completion_follow_their_sections(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server, port, side = start_mcp_server(tmp_path, "--content")
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy)
    try:
        async with client(f"http://127.0.0.1:{proxy_port}/mcp", "auto", agent="a1") as c:
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert uris == {"docs://readme"}  # secret://keys is hidden
            assert [t.uri_template for t in (await c.list_resource_templates()).resource_templates] == ["notes://{name}"]
            assert {p.name for p in (await c.list_prompts()).prompts} == {"review"}
            assert (await c.read_resource("docs://readme")).contents[0].text == "read me"
            assert (await c.read_resource("notes://public")).contents[0].text == "note public"
            for uri, why in (("notes://private-diary", "private notes stay private"), ("secret://keys", "Unknown resource")):
                with pytest.raises(mcp.MCPError) as info:
                    await c.read_resource(uri)
                assert why in str(info.value), uri
            assert "Review this: x + 1" in (await c.get_prompt("review", {"code": "x + 1"})).messages[0].content.text
            for name, args, why in (("review", {"code": "key = 'abc'"}, "must not carry assignments"),
                                    ("admin_prompt", {}, "Unknown prompt")):
                with pytest.raises(mcp.MCPError) as info:
                    await c.get_prompt(name, args)
                assert why in str(info.value), name
            ref = mcp.types.PromptReference(type="ref/prompt", name="review")
            for value in ("a", "b"):
                assert (await c.complete(ref, {"name": "code", "value": value})).completion.values[0] == f"{value}1"
            with pytest.raises(mcp.MCPError) as info:
                await c.complete(ref, {"name": "code", "value": "c"})
            assert "Rate limit" in str(info.value)
    finally:
        proxy.stop()
        server.stop()
    seen = lines(side)
    assert not any("private" in line or "secret" in line or "admin_prompt" in line for line in seen)
    assert not any("key = " in line for line in seen) and sum(line.startswith("complete ") for line in seen) == 2
    assert ran(side).count("read") == 2 and ran(side).count("prompt") == 1
