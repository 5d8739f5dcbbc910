"""What a server asks of the client, judged by the policy's ``sampling:`` section, through a real
mitmdump in front of the official SDK's test server (its ``ask_model`` tool samples the
client's model) and the SDK's client with a sampling callback: allowed requests reach the
callback, up to the section's rate limit; a denied one never reaches it, the server gets the
denial as the answer to its request (the tool reports it), and the client is told in a log
notification. The 2026-07-28 form (an ``input_required`` result carrying the request) is
judged the same way, through a scripted upstream."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CreateMessageResult, TextContent

from harness import ran, start_mcp_server, start_mitmdump
from hostile import hostile_fixtures

pytestmark = pytest.mark.e2e

POLICY = """\
tools: {}
sampling:
  rules:
    - name: two samplings a minute
      action: allow
      rate_limit: {max: 2, window: 60}
"""


@contextlib.asynccontextmanager
async def sampling_client(url: str, asked: list[str], logs: list[str]):
    async def sample(context, params):  # type: ignore[no-untyped-def]
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="42"), model="test")

    async def log(params):  # type: ignore[no-untyped-def]
        logs.append(str(params.data))

    http = httpx2.AsyncClient(headers={"x-agent-id": "sampler"}, trust_env=False, timeout=httpx2.Timeout(30, read=60))
    async with http, mcp.Client(streamable_http_client(url, http_client=http), mode="legacy",
                                sampling_callback=sample, logging_callback=log) as client:
        yield client


async def test_sampling_is_rate_limited_and_a_denied_request_never_reaches_the_client(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server, port, side = start_mcp_server(tmp_path, "--content")
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy)
    asked: list[str] = []
    logs: list[str] = []
    try:
        async with sampling_client(f"http://127.0.0.1:{proxy_port}/mcp", asked, logs) as c:
            for i in range(2):
                result = await c.call_tool("ask_model", {"question": f"q{i}"})
                assert result.content[0].text == "the model said: 42"
            try:
                result = await c.call_tool("ask_model", {"question": "q2"})
                denied = result.content[0].text if result.is_error else ""
            except mcp.MCPError as exc:  # the server passes our error on as the call's
                denied = str(exc)
    finally:
        proxy.stop()
        server.stop()
    assert asked == ["q0", "q1"]  # the third never reached the client's model
    assert "[INTERCEPT POLICY DENIED] Rate limit" in denied and "sampling/createMessage" in denied  # the server got it
    assert any("sampling/createMessage was denied" in line for line in logs)
    assert ran(side).count("ask_model") == 3


INTERIM_POLICY = "tools: {}\nsampling:\n  rules:\n    - {action: deny, reason: no sampling here}\n"
stack, hostile = hostile_fixtures(INTERIM_POLICY, "interim")


def test_an_input_required_result_asking_for_sampling_is_a_denied_call(hostile):
    interim = ('{"jsonrpc":"2.0","id":$id,"result":{"resultType":"input_required","requestState":"s1",'
               '"inputRequests":{"a":{"method":"sampling/createMessage","params":{"messages":[],"maxTokens":9}}}}}')
    hostile.answer("tools/call", interim, headers={"content-type": "application/json"})
    body = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {}}})
    answer = hostile.post(body).json()
    assert answer["id"] == 5 and "no sampling here" in answer["error"]["message"] and "result" not in answer
    roots = interim.replace("sampling/createMessage", "roots/list")  # not governed: passes
    hostile.answer("tools/call", roots, headers={"content-type": "application/json"})
    assert hostile.post(body).json()["result"]["resultType"] == "input_required"
