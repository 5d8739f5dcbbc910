"""The addon in a real mitmdump in front of a real MCP server (official SDK), driven by the
real SDK client in every protocol era it speaks. Each denial is proven by the server's
side-effect log: a denied tool never ran."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from conftest import TEST_POLICY
from harness import ran, start_mitmdump

pytestmark = pytest.mark.e2e

SERVER_MODES = {"sse-stateful": (), "json": ("--json-response",), "stateless": ("--stateless", "--json-response")}
CLIENT_MODES = ("auto", "legacy")  # auto = 2026-07-28 first; legacy = initialize + 2025-11-25


@contextlib.asynccontextmanager
async def client(url: str, mode: str, agent: str | None = None, proxy: str | None = None):
    headers = {"x-agent-id": agent} if agent else {}
    http = httpx2.AsyncClient(headers=headers, proxy=proxy, trust_env=False,
                              timeout=httpx2.Timeout(30, read=60))
    async with http, mcp.Client(streamable_http_client(url, http_client=http), mode=mode) as c:
        yield c


async def call_denied(c, tool: str, args: dict) -> mcp.MCPError:
    with pytest.raises(mcp.MCPError) as info:
        await c.call_tool(tool, args)
    return info.value


@pytest.mark.parametrize("server_mode", SERVER_MODES)
@pytest.mark.parametrize("client_mode", CLIENT_MODES)
async def test_policy_holds_in_every_era(stack_factory, server_mode, client_mode):
    stack = stack_factory(*SERVER_MODES[server_mode])
    async with client(stack.url, client_mode, agent="a1") as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "secret_admin" not in tools and {"echo", "charge", "delete_everything"} <= tools

        result = await c.call_tool("echo", {"text": "hello"})
        assert result.content[0].text == "hello"

        err = await call_denied(c, "delete_everything", {})
        assert err.message == "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
        assert err.data["rule"] == "no deletes" and err.data["tool"] == "delete_everything"
        assert err.code not in (-32000, -32001) and not -32099 <= err.code <= -32020

        err = await call_denied(c, "secret_admin", {})
        assert err.message == "Unknown tool: secret_admin" and err.code == -32602

        assert (await c.call_tool("charge", {"amount": 500})).content[0].text == "charged 500 usd"
        err = await call_denied(c, "charge", {"amount": 501})
        assert "Charges above 500" in err.message

        for i in range(3):
            assert (await c.call_tool("generate", {"prompt": f"p{i}"})).content[0].text == f"generated p{i}"
        err = await call_denied(c, "generate", {"prompt": "p3"})
        assert err.data["rule"] == "generate limit"
        assert 0 < err.data["retry_after"] <= 60 and "Retry after" in err.message

    # Another agent session is not limited by the first one's calls.
    async with client(stack.url, client_mode, agent="a2") as c:
        assert (await c.call_tool("generate", {"prompt": "other"})).content[0].text == "generated other"

    side = ran(stack.side_log)
    assert "delete_everything" not in side and "secret_admin" not in side
    assert side.count("generate") == 4 and side.count("charge") == 1


async def test_sse_response_streams_through(stack_factory):
    """A tools/call answered as an event stream (progress notifications first)."""
    stack = stack_factory()
    seen = []

    async def on_progress(progress, total, message):
        seen.append(message)

    async with client(stack.url, "legacy") as c:
        result = await c.call_tool("progress", {"n": 3}, progress_callback=on_progress)
    assert result.content[0].text == "counted to 3"
    assert seen == ["step 1", "step 2", "step 3"]


def test_failed_call_returns_its_quota(stack_factory):
    """Upstream refused the call (404: unknown session): the counter is rolled back, so the
    next call is forwarded again instead of being rate limited by the proxy."""
    stack = stack_factory()
    headers = {"mcp-session-id": "no-such-session", "mcp-protocol-version": "2025-11-25",
               "accept": "application/json, text/event-stream", "content-type": "application/json"}
    for i in range(3):  # the policy allows one missing_* call per minute
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "missing_tool"}}
        resp = httpx2.post(stack.url, json=body, headers=headers, trust_env=False)
        assert resp.status_code == 404, resp.text
        assert "INTERCEPT" not in resp.text


async def test_monitor_mode_forwards_and_marks(stack_factory):
    stack = stack_factory(options=("intercept_state=memory", "intercept_mode=monitor"))
    async with client(stack.url, "legacy") as c:
        assert (await c.call_tool("delete_everything", {})).content[0].text == "deleted"
    assert "delete_everything" in ran(stack.side_log)
    assert "deny tool=delete_everything" in stack.proxy.output()


async def test_deny_as_result(stack_factory):
    stack = stack_factory(options=("intercept_state=memory", "intercept_deny_as=result"))
    for mode in CLIENT_MODES:  # 2026 needs resultType: complete, else the SDK rejects the result
        async with client(stack.url, mode) as c:
            result = await c.call_tool("delete_everything", {})
            assert result.is_error
            assert result.content[0].text == "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
            # A hidden tool gets exactly what this server answers for a tool it does not have.
            hidden, absent = await c.call_tool("secret_admin", {}), await c.call_tool("no_such_tool", {})
            assert absent.is_error and absent.content[0].text == "Unknown tool: no_such_tool"  # the server's own
            assert hidden.is_error and hidden.content[0].text == "Unknown tool: secret_admin"
            # (On 2026-07-28 the server's own results also carry its serverInfo in _meta.)
            assert hidden.model_dump(exclude={"content", "meta"}) == absent.model_dump(exclude={"content", "meta"})
    assert ran(stack.side_log) == []


async def test_regular_proxy_mode(tmp_path, policy_file, stack_factory):
    stack = stack_factory()
    proxy, port = start_mitmdump(tmp_path, None, "intercept_state=memory", policy=policy_file, mode="regular")
    try:
        url = f"http://127.0.0.1:{stack.server_port}/mcp"
        async with client(url, "auto", proxy=f"http://127.0.0.1:{port}") as c:
            assert (await c.call_tool("echo", {"text": "via proxy"})).content[0].text == "via proxy"
            err = await call_denied(c, "delete_everything", {})
            assert err.data["rule"] == "no deletes"
    finally:
        proxy.stop()
    assert "delete_everything" not in ran(stack.side_log)


async def test_hot_reload_keeps_counters_and_rejects_bad_edits(stack_factory, policy_file):
    stack = stack_factory()
    async with client(stack.url, "legacy") as c:
        for i in range(2):
            await c.call_tool("generate", {"prompt": str(i)})
        # A valid edit: echo becomes denied; generate's counter (2 of 3 used) survives.
        policy_file.write_text(TEST_POLICY + "  echo:\n    rules:\n      - {name: no echo, action: deny}\n")
        await wait_for_log(stack, "loaded")
        err = await call_denied(c, "echo", {"text": "x"})
        assert err.data["rule"] == "no echo"
        await c.call_tool("generate", {"prompt": "2"})
        err = await call_denied(c, "generate", {"prompt": "3"})
        assert err.data["kind"] == "rate_limit"
        # An invalid edit is refused with its location; the previous policy stays in force.
        policy_file.write_text(TEST_POLICY.replace("op: lte", "op: lessthan"))
        await wait_for_log(stack, "NOT reloaded")
        assert 'unknown operator "lessthan"' in stack.proxy.output()
        err = await call_denied(c, "echo", {"text": "x"})
        assert err.data["rule"] == "no echo"


async def wait_for_log(stack, text: str, timeout: float = 10) -> None:
    import asyncio

    start = stack.proxy.output().count(text)
    deadline = time.monotonic() + timeout
    while stack.proxy.output().count(text) <= start and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert stack.proxy.output().count(text) > start, f"no {text!r} in the proxy log"


@pytest.mark.parametrize("option, message", [
    ("intercept_mode=bogus", "intercept_mode must be one of"),
    ("intercept_deny_as=maybe", "intercept_deny_as must be one of"),
    ("stream_large_bodies=1k", "stream_large_bodies"),
    ("intercept_identity=nobody", "intercept_identity"),
    ("intercept_state=redis-ish://x", "intercept_state"),
])
def test_bad_options_stop_mitmdump(tmp_path, option, message):
    import subprocess
    from harness import BIN, ROOT, clean_env, free_port

    proc = subprocess.run(
        [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "-p", str(free_port()), "-s",
         str(ROOT / "intercept_addon.py"), "--set", f"confdir={tmp_path}", "--set", option],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_invalid_policy_stops_mitmdump_with_location(tmp_path):
    import subprocess
    from harness import BIN, ROOT, clean_env, free_port

    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\ntools:\n  x:\n    rules:\n      - name: r\n        on_deney: typo\n        action: deny\n')
    proc = subprocess.run(
        [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "-p", str(free_port()), "-s",
         str(ROOT / "intercept_addon.py"), "--set", f"confdir={tmp_path}", "--set", f"intercept_policy={bad}"],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode != 0
    assert f"{bad}:6:9: tools.x.rules[0].on_deney: unknown key" in proc.stdout + proc.stderr


def test_made_up_session_ids_do_not_reset_limits(stack_factory):
    """A stateless server issues no Mcp-Session-Id; a client rotating a made-up one per call
    stays one session for the proxy (here: its agent header)."""
    stack = stack_factory("--stateless", "--json-response")
    statuses = []
    for i in range(5):
        headers = {"mcp-session-id": f"made-up-{i}", "x-agent-id": "rotator", "mcp-protocol-version": "2025-11-25",
                   "accept": "application/json, text/event-stream"}
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "generate", "arguments": {"prompt": str(i)}}}
        statuses.append("INTERCEPT" in httpx2.post(stack.url, json=body, headers=headers, trust_env=False).text)
    assert statuses == [False, False, False, True, True]
    assert ran(stack.side_log).count("generate") == 3


async def test_compressed_event_stream_answer_is_streamed_and_enforced(stack_factory, policy_file, tmp_path):
    """A server that gzips its event streams despite the proxy's Accept-Encoding: identity. A
    tracked answer (a counted call, a tools/list) is decoded as it streams and still enforced:
    the client gets a tools/list without the hidden tool, and a progress step before the server
    finishes (the server waits for the gate the client opens on that first step; had the proxy
    buffered the stream, the gate would never open)."""
    policy_file.write_text(TEST_POLICY + "  progress:\n    rules:\n      - name: progress budget\n"
                           "        action: allow\n        rate_limit: {max: 2, window: 60}\n")
    stack = stack_factory("--compress-sse", "gzip")
    gate = tmp_path / "first-step-seen"
    seen = []

    async def on_progress(progress, total, message):
        seen.append(message)
        gate.touch()

    async with client(stack.url, "legacy", agent="gz") as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "echo" in tools and "secret_admin" not in tools
        result = await c.call_tool("progress", {"n": 2, "gate": str(gate)}, progress_callback=on_progress,
                                   read_timeout_seconds=30)
        assert result.content[0].text == "counted to 2" and seen == ["step 1", "step 2"]
        assert (await call_denied(c, "delete_everything", {})).data["rule"] == "no deletes"
        await c.call_tool("progress", {"n": 1})
        # The streamed answers committed their counts: a third call is over the limit of 2.
        assert (await call_denied(c, "progress", {"n": 1})).data["rule"] == "progress budget"
    assert ran(stack.side_log) == ["progress", "progress"]


def _events(resp) -> Iterator[tuple[str | None, str]]:
    """(id, data) of each event of an SSE response, as they arrive."""
    event_id, data = None, []
    for line in resp.iter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "":
            yield event_id, "\n".join(data)
            event_id, data = None, []


def _replayed_tools(base: str) -> tuple[set[str], set[str]]:
    """tools/list on a resumable server, then a GET with Last-Event-ID = the stream's priming
    event: the server replays the answer. Returns (names in the answer, names in the replay)."""
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "replay", "version": "1"}}}
    with httpx2.Client(base_url=base, headers=headers, trust_env=False, timeout=20) as http:
        resp = http.post("/mcp", json=init)
        headers["mcp-session-id"] = resp.headers["mcp-session-id"]
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        with http.stream("POST", "/mcp", json=listing, headers=headers) as resp:
            events = [e for e in _events(resp)]
        priming = events[0][0]
        answered = {t["name"] for t in json.loads(events[-1][1])["result"]["tools"]}
        with http.stream("GET", "/mcp", headers={**headers, "last-event-id": priming}) as resp:
            replay = next(data for _, data in _events(resp) if data)
        return answered, {t["name"] for t in json.loads(replay)["result"]["tools"]}


def test_resumed_stream_cannot_replay_hidden_tools(stack_factory):
    """Resuming with Last-Event-ID (2025-11-25) replays answers to earlier POSTs on a GET stream,
    where the proxy no longer tracks their ids: the replayed tools/list is filtered too."""
    stack = stack_factory("--resumable")
    answered, replayed = _replayed_tools(f"http://127.0.0.1:{stack.server_port}")
    assert "secret_admin" in answered and "secret_admin" in replayed  # control: the server replays it
    answered, replayed = _replayed_tools(f"http://127.0.0.1:{stack.proxy_port}")
    assert "echo" in replayed and "secret_admin" not in answered | replayed
