"""``arguments: schema`` in front of the real mcp-sora (its own pydantic-built inputSchemas), with
no hand-written condition: a bad enum value and a missing required argument are denied by the
proxy, naming the path and what the schema expects, and the fake Sora API never sees them; a
valid call goes through. A call before any tools/list is denied with a message that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from intercept_addon.demo import run as demo
from test_scan_e2e import sora_python

pytestmark = pytest.mark.e2e

POLICY = "arguments: schema\ntools: {}\n"


async def test_mcp_sora_schemas_are_enforced_without_a_condition(tmp_path: Path) -> None:
    policy = tmp_path / "schema.yaml"
    policy.write_text(POLICY)
    stack = demo.Stack(tmp_path)
    try:
        fake_url = demo.wait_fake(stack, demo.start_fake(stack))
        sora_url = demo.wait_sora(stack, demo.start_sora(stack, sora_python(), fake_url))
        proxy = demo.start_proxy(stack, sora_url, policy=policy)
        demo.wait_proxy(stack, proxy)
        async with demo.agent_client(stack.proxy_url, "early") as client:  # no tools/list yet
            early = await demo.call_tool(client, 1, "s", "sora_generate_video", {"prompt": "a cat"})
        async with demo.agent_client(stack.proxy_url, "schema-agent") as client:
            await demo.list_tool_names(client)
            bad_enum = await demo.call_tool(client, 2, "s", "sora_generate_video", {"prompt": "a cat", "duration": 7})
            missing = await demo.call_tool(client, 3, "s", "sora_generate_video", {"duration": 10})
            unknown = await demo.call_tool(client, 4, "s", "sora_generate_everything", {"prompt": "x"})
            before = demo.videos_count(fake_url)
            good = await demo.call_tool(client, 5, "s", "sora_generate_video", {"prompt": "a cat", "duration": 10})
            after = demo.videos_count(fake_url)
    finally:
        stack.close()
    assert not early.allowed and "has not seen this server's tools/list yet" in early.message
    assert not bad_enum.allowed and bad_enum.kind == "schema"
    assert "args.duration: 7 is not one of [10, 15, 25]" in bad_enum.message
    assert not missing.allowed and "args: 'prompt' is a required property" in missing.message
    assert not unknown.allowed and "unknown tool" in unknown.message
    assert before == 0  # none of the denied calls reached the fake API
    assert good.allowed and after == 1
