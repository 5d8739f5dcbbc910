"""The legacy HTTP+SSE transport (2024-11-05) through the addon: a real server with GET /sse and
POST /messages/?session_id=…, driven by the SDK's sse_client. Denials must arrive on the event
stream (the client ignores POST bodies), quickly, and the side-effect log proves nothing ran."""

from __future__ import annotations

import contextlib
import time

import anyio
import httpx2
import mcp
import pytest
from mcp.client.sse import sse_client

from harness import ran
from intercept_addon.wire import legacy

pytestmark = pytest.mark.e2e

DENIED = "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"


def http_client(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers=headers, timeout=timeout or httpx2.Timeout(30, read=60), auth=auth,
                              trust_env=False)


@contextlib.asynccontextmanager
async def session(url: str):
    async with sse_client(url, timeout=10, httpx_client_factory=http_client) as (read, write):
        async with mcp.ClientSession(read, write) as s:
            await s.initialize()
            yield s


async def denied(s: mcp.ClientSession, tool: str, args: dict) -> mcp.MCPError:
    started = time.monotonic()
    with anyio.fail_after(10), pytest.raises(mcp.MCPError) as info:
        await s.call_tool(tool, args)
    assert time.monotonic() - started < 5  # answered on the stream, not a timeout
    return info.value


def legacy_stack(stack_factory, *options: str):
    stack = stack_factory(options=("intercept_state=memory", *options), transport="sse")
    return stack, f"http://127.0.0.1:{stack.proxy_port}/sse"


async def test_denial_arrives_on_the_stream(stack_factory):
    stack, url = legacy_stack(stack_factory)
    async with session(url) as s:
        assert (await s.call_tool("echo", {"text": "hello"})).content[0].text == "hello"

        err = await denied(s, "delete_everything", {})
        assert err.message == DENIED
        assert err.data["rule"] == "no deletes" and err.data["tool"] == "delete_everything"

        # The connection survives the denial.
        assert (await s.call_tool("echo", {"text": "again"})).content[0].text == "again"
        assert (await s.call_tool("charge", {"amount": 500})).content[0].text == "charged 500 usd"
        err = await denied(s, "charge", {"amount": 501})
        assert "Charges above 500" in err.message

    side = ran(stack.side_log)
    assert "delete_everything" not in side
    assert side == ["echo", "echo", "charge"]


async def test_hidden_tool_is_absent(stack_factory):
    stack, url = legacy_stack(stack_factory)
    async with session(url) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        assert "secret_admin" not in tools and {"echo", "charge", "delete_everything"} <= tools

        err = await denied(s, "secret_admin", {})
        assert err.message == "Unknown tool: secret_admin" and err.code == -32602 and err.data is None
        assert (await s.call_tool("echo", {"text": "still here"})).content[0].text == "still here"
    assert "secret_admin" not in ran(stack.side_log)


async def test_rate_limit_per_legacy_session(stack_factory):
    stack, url = legacy_stack(stack_factory)
    async with session(url) as s:
        for i in range(3):
            assert (await s.call_tool("generate", {"prompt": f"p{i}"})).content[0].text == f"generated p{i}"
        err = await denied(s, "generate", {"prompt": "p3"})
        assert err.data["rule"] == "generate limit"
        assert 0 < err.data["retry_after"] <= 60 and "Retry after" in err.message

    # A new SSE connection of the same agent (this process) shares the agent's budget.
    async with session(url) as s:
        err = await denied(s, "generate", {"prompt": "other"})
        assert err.data["rule"] == "generate limit"

    assert ran(stack.side_log).count("generate") == 3


async def test_deny_as_result(stack_factory):
    stack, url = legacy_stack(stack_factory, "intercept_deny_as=result")
    async with session(url) as s:
        with anyio.fail_after(10):
            result = await s.call_tool("delete_everything", {})
        assert result.is_error and result.content[0].text == DENIED
        assert (await s.call_tool("echo", {"text": "ok"})).content[0].text == "ok"
    assert "delete_everything" not in ran(stack.side_log)


async def test_sessions_one_after_another(stack_factory):
    """Each new stream announces a new endpoint; denials follow the stream they belong to."""
    stack, url = legacy_stack(stack_factory)
    for _ in range(2):
        async with session(url) as s:
            err = await denied(s, "delete_everything", {})
            assert err.message == DENIED
    assert "internal error" not in stack.proxy.output()
    assert "delete_everything" not in ran(stack.side_log)


@pytest.mark.parametrize("base, data, key", [
    ("http://h:1/sse", "/messages/?session_id=abc", "/messages/?session_id=abc"),
    ("http://h:1/a/sse", "message?sessionId=u-1", "/a/message?sessionId=u-1"),
    ("http://h:1/sse", " http://h:1/m?x=1&session_id=s \n", "/m?session_id=s"),
    ("http://h:1/sse", "/messages/abc", "/messages/abc"),
])
def test_announced_key(base, data, key):
    assert legacy.announced_key(base, data) == key
    assert legacy.endpoint_key("http://other:2" + key) == key  # what the POST to it is looked up by


def test_repeated_session_param_is_refused():
    with pytest.raises(legacy.RepeatedSessionParam):
        legacy.endpoint_key("http://h/messages/?session_id=a&session_id=b")
