"""The addon's fine cases, in-process with mitmproxy's own test tools (taddons, tflow): identity
chain, per-revision denial replies, batches, monitor and inspect-only modes, exact forwarding,
counter settlement, and fail-closed internal errors. The e2e files prove the same paths with
real processes; these pin the details each of those depends on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow

from conftest import TEST_POLICY
from intercept_addon.wire import jsonrpc
from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.calls import header_map

REV_2025 = "2025-11-25"
REV_2026 = "2026-07-28"


def request_flow(body: Any, *, revision: str | None = REV_2025, headers: dict[str, str] | None = None,
                 path: str = "/mcp", raw: bytes | None = None) -> http.HTTPFlow:
    flow = tflow.tflow()
    hdrs = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if revision:
        hdrs["mcp-protocol-version"] = revision
    hdrs.update(headers or {})
    content = raw if raw is not None else json.dumps(body).encode()
    flow.request = http.Request.make("POST", f"http://127.0.0.1:9/{path.lstrip('/')}", content, hdrs)
    flow.response = None
    return flow


def call(tool: str, args: dict[str, Any] | None = None, msg_id: int | str = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {"name": tool, "arguments": args or {}}}


def reply(flow: http.HTTPFlow) -> Any:
    assert flow.response is not None, "expected a local answer"
    return json.loads(flow.response.content)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(TEST_POLICY)
    return path


@pytest.fixture
def addon_ctx(policy: Path, tmp_path: Path):
    addon = InterceptAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, confdir=str(tmp_path), intercept_policy=str(policy), intercept_state="memory")
        yield addon, tctx


def test_header_map_joins_repeats_like_headers_get():
    headers = http.Headers([(b"Mcp-Method", b"tools/call"), (b"mcp-method", b"tools/list"), (b"X-A", b"1")])
    assert header_map(headers) == {"mcp-method": "tools/call, tools/list", "x-a": "1"}
    assert header_map(headers)["mcp-method"] == headers.get("mcp-method")


async def test_repeated_routing_header_is_refused(addon_ctx):
    addon, _ = addon_ctx
    flow = request_flow(call("echo", {"text": "x"}), revision=REV_2026)
    flow.request.headers.add("Mcp-Method", "tools/call")
    flow.request.headers.add("Mcp-Method", "tools/list")
    await addon.request(flow)
    assert flow.response.status_code == 400
    assert reply(flow)["error"]["code"] == jsonrpc.HEADER_MISMATCH


def issue(addon: InterceptAddon, url: str, session: str) -> None:
    """An answer from ``url`` issuing ``session``, as the addon sees it in responseheaders."""
    flow = tflow.tflow()
    flow.request = http.Request.make("POST", url, b"{}", {"content-type": "application/json"})
    flow.response = http.Response.make(200, b"", {"mcp-session-id": session, "content-type": "application/json"})
    addon.identities.note_issued(flow)


class TestIdentityChain:
    async def who(self, addon: InterceptAddon, flow: http.HTTPFlow):  # type: ignore[no-untyped-def]
        s = addon.settings
        return await addon.identities.of(flow, header_map(flow.request.headers), s.identity, s.agent_header, None)

    async def agent(self, addon: InterceptAddon, flow: http.HTTPFlow) -> str:
        return (await self.who(addon, flow)).agent

    async def test_a_session_counts_only_on_the_origin_that_issued_it(self, addon_ctx):
        addon, tctx = addon_ctx
        flow = request_flow({}, headers={"mcp-session-id": "s-1", "x-agent-id": "bot"})
        assert (await self.who(addon, flow)).mcp_session is None
        issue(addon, "http://127.0.0.1:10/mcp", "s-1")  # another port: another origin
        issue(addon, "https://127.0.0.1:9/mcp", "s-1")  # another scheme
        assert (await self.who(addon, flow)).mcp_session is None
        issue(addon, "http://127.0.0.1:9/other", "s-1")  # the origin that issued it, any path
        who = await self.who(addon, flow)
        assert (who.agent, who.mcp_session) == ("agent-header:bot", "s-1")  # a session inside the agent
        tctx.configure(addon, intercept_identity="mcp-session,agent-header")  # the old behaviour, on request
        assert await self.agent(addon, flow) == "mcp-session:s-1"

    async def test_default_order_header_authorization_client_and_no_query_session(self, addon_ctx):
        addon, _ = addon_ctx
        assert addon.settings.identity == ("agent-header", "authorization", "process", "client")
        assert tflow.tclient_conn().peername[0] == "127.0.0.1"  # a test connection has no local process
        client = "client:this-machine"
        assert await self.agent(addon, request_flow({}, path="/messages/?session_id=abc")) == client
        assert await self.agent(addon, request_flow({}, path="/message?sessionId=xyz")) == client
        flow = request_flow({}, headers={"authorization": "Bearer t0ken"})
        assert await self.agent(addon, flow) == "authorization:" + hashlib.sha256(b"Bearer t0ken").hexdigest()[:16]
        flow = request_flow({}, headers={"authorization": "Bearer t0ken", "x-agent-id": "bot"})
        assert await self.agent(addon, flow) == "agent-header:bot"
        assert await self.agent(addon, request_flow({})) == client

    async def test_configured_order_and_header_name(self, addon_ctx):
        addon, tctx = addon_ctx
        tctx.configure(addon, intercept_identity="authorization,agent-header", intercept_agent_header="X-Team")
        flow = request_flow({}, headers={"x-team": "red", "authorization": "k"})
        assert (await self.agent(addon, flow)).startswith("authorization:")
        del flow.request.headers["authorization"]
        assert await self.agent(addon, flow) == "agent-header:red"

    async def test_long_client_chosen_values_are_hashed(self, addon_ctx):
        addon, _ = addon_ctx
        long = "a" * 500
        assert await self.agent(addon, request_flow({}, headers={"x-agent-id": long})) == \
            "agent-header:" + hashlib.sha256(long.encode()).hexdigest()


@pytest.mark.parametrize(("revision", "status"), [(REV_2025, 200), ("2025-03-26", 200), (REV_2026, 400)])
async def test_denial_status_per_revision(addon_ctx, revision, status):
    addon, _ = addon_ctx
    flow = request_flow(call("delete_everything", msg_id="req-7"), revision=revision)
    await addon.request(flow)
    body = reply(flow)
    assert flow.response.status_code == status
    assert body["id"] == "req-7" and body["error"]["code"] == -32600
    assert body["error"]["message"] == "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
    assert body["error"]["data"] == {"reason": "policy_denied", "tool": "delete_everything", "rule": "no deletes",
                                     "kind": "deny"}
    assert flow.marked and flow.metadata["mcp.decision"] == "deny" and "no deletes" in flow.comment


@pytest.mark.parametrize(("revision", "complete"), [(REV_2025, False), (REV_2026, True)])
async def test_deny_as_result(addon_ctx, revision, complete):
    addon, tctx = addon_ctx
    tctx.configure(addon, intercept_deny_as="result")
    flow = request_flow(call("charge", {"amount": 900}), revision=revision)
    await addon.request(flow)
    result = reply(flow)["result"]
    assert flow.response.status_code == 200 and result["isError"] is True
    assert result["content"][0]["text"] == "[INTERCEPT POLICY DENIED] Charges above 500 are not allowed"
    assert ("resultType" in result) == complete and result.get("resultType", "complete") == "complete"


async def test_rate_limit_denial_carries_retry_after(addon_ctx):
    addon, _ = addon_ctx
    for i in range(3):
        flow = request_flow(call("generate", {"prompt": "p"}, msg_id=i), headers={"x-agent-id": "r"})
        await addon.request(flow)
        assert flow.response is None
    flow = request_flow(call("generate", {"prompt": "p"}, msg_id=9), headers={"x-agent-id": "r"})
    await addon.request(flow)
    data = reply(flow)["error"]["data"]
    assert data["kind"] == "rate_limit" and 1 <= data["retry_after"] <= 60
    assert flow.metadata["mcp.retry_after"] == data["retry_after"]


async def test_hidden_tool_looks_absent(addon_ctx):
    addon, tctx = addon_ctx
    flow = request_flow(call("secret_admin"))
    await addon.request(flow)
    error = reply(flow)["error"]
    assert error == {"code": -32602, "message": "Unknown tool: secret_admin"}  # the spec's protocol error
    tctx.configure(addon, intercept_deny_as="result")  # as the Python SDK's servers answer an absent tool
    flow = request_flow(call("secret_admin"))
    await addon.request(flow)
    assert reply(flow)["result"] == {"content": [{"type": "text", "text": "Unknown tool: secret_admin"}],
                                     "isError": True}


async def test_batch_with_one_denied_call_forwards_nothing(addon_ctx):
    addon, _ = addon_ctx
    batch = [call("echo", {"text": "a"}, 1), call("delete_everything", msg_id=2),
             {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}]
    flow = request_flow(batch, revision="2025-03-26")
    await addon.request(flow)
    answers = reply(flow)
    assert [a["id"] for a in answers] == [1, 2]  # the notification needs no answer
    assert "another call in this batch was denied" in answers[0]["error"]["message"]
    assert answers[1]["error"]["data"]["rule"] == "no deletes"
    # The flow shows the batch's denial, and every tool it called, though the denied call was not last.
    batch.append(call("echo", {"text": "b"}, 4))
    flow = request_flow(batch, revision="2025-03-26")
    await addon.request(flow)
    meta = flow.metadata
    assert (meta["mcp.decision"], meta["mcp.rule"]) == ("deny", "no deletes")
    assert meta["mcp.tool"] == "echo, delete_everything"


async def test_batches_are_refused_outside_2025_03_26(addon_ctx):
    addon, _ = addon_ctx
    flow = request_flow([call("echo", {"text": "a"})], revision=REV_2025)
    await addon.request(flow)
    assert flow.response.status_code == 400 and "batches are not allowed" in reply(flow)["error"]["message"]


async def test_monitor_mode_marks_but_forwards(addon_ctx):
    addon, tctx = addon_ctx
    tctx.configure(addon, intercept_mode="monitor")
    flow = request_flow(call("delete_everything"))
    await addon.request(flow)
    assert flow.response is None
    assert flow.metadata["mcp.decision"] == "deny" and "(monitor: forwarded)" in flow.comment


async def test_inspect_only_without_policy(tmp_path):
    addon = InterceptAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, confdir=str(tmp_path), intercept_state="memory")
        flow = request_flow(call("delete_everything"))
        await addon.request(flow)
        assert flow.response is None
        assert flow.metadata["mcp.tool"] == "delete_everything" and flow.metadata["mcp.decision"] == "inspect"


async def test_forwards_exactly_what_was_evaluated(addon_ctx):
    addon, _ = addon_ctx
    compact = jsonrpc.dumps(call("echo", {"text": "h\u00e9"}))
    flow = request_flow(None, raw=compact)
    await addon.request(flow)
    assert flow.response is None and flow.request.content == compact

    spaced = b'{ "jsonrpc" : "2.0", "id" : 1, "method" : "tools/call",\n "params" : {"name": "ech\\u006f",' \
             b' "arguments": {"text": "\\u0068i", "n": 1.50}}}'
    flow = request_flow(None, raw=spaced)
    await addon.request(flow)
    assert flow.response is None
    assert flow.request.content == b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",' \
                                   b'"arguments":{"text":"hi","n":1.50}}}'
    assert flow.request.headers["content-length"] == str(len(flow.request.content))


@pytest.mark.parametrize(("answer", "status", "refunded"), [
    ({"error": {"code": -32602, "message": "bad params"}}, 200, True),  # turned away before running
    ({"error": {"code": -32601, "message": "no such method"}}, 200, True),
    ({"error": {"code": -32603, "message": "boom"}}, 200, False),  # may have run
    ({"error": {"code": -32800, "message": "Request cancelled"}}, 200, False),
    ({"result": {"content": [], "isError": False}}, 200, False),
    ({"result": {"content": [], "isError": True}}, 200, False),
    ({"error": {"code": -32602, "message": "x"}}, 404, True),  # a 4xx refunds, whatever the body
    ({"error": {"code": -32602, "message": "x"}}, 500, False),  # a 5xx keeps, whatever the body
])
async def test_answers_settle_counters(addon_ctx, answer, status, refunded):
    """Once forwarded, a call's quota is spent unless its answer proves it never ran."""
    addon, _ = addon_ctx
    ledger = addon.counters.ledger
    flow = request_flow(call("generate", {"prompt": "p"}, 1), headers={"x-agent-id": "s"})
    await addon.request(flow)
    assert flow.id in addon.flows and ledger.pending == 1
    flow.response = http.Response.make(status, json.dumps({"jsonrpc": "2.0", "id": 1, **answer}).encode(),
                                       {"content-type": "application/json"})
    addon.responseheaders(flow)
    await addon.response(flow)
    assert flow.id not in addon.flows and ledger.pending == 0
    assert (ledger.refunded, ledger.kept) == ((1, 0) if refunded else (0, 1))
    for i in range(2 + refunded):  # 3 per minute: what is left of it
        nxt = request_flow(call("generate", {"prompt": "p"}, 10 + i), headers={"x-agent-id": "s"})
        await addon.request(nxt)
        assert nxt.response is None
    nxt = request_flow(call("generate", {"prompt": "p"}, 20), headers={"x-agent-id": "s"})
    await addon.request(nxt)
    assert reply(nxt)["error"]["data"]["kind"] == "rate_limit"


async def test_tools_list_answer_is_filtered(addon_ctx):
    addon, _ = addon_ctx
    flow = request_flow({"jsonrpc": "2.0", "id": "l1", "method": "tools/list"})
    await addon.request(flow)
    tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "secret_admin", "charge")]
    flow.response = http.Response.make(200, json.dumps({"jsonrpc": "2.0", "id": "l1", "result": {"tools": tools}}),
                                       {"content-type": "application/json"})
    addon.responseheaders(flow)
    await addon.response(flow)
    assert [t["name"] for t in reply(flow)["result"]["tools"]] == ["echo", "charge"]


class BrokenStore:
    """A state backend failing in a way no store is meant to (not a StoreError)."""

    async def reserve(self, *_: Any) -> Any:
        raise RuntimeError("bug")

    async def close(self) -> None:
        pass


async def test_internal_error_refuses_the_call(addon_ctx):
    addon, _ = addon_ctx
    addon.counters.store = BrokenStore()  # type: ignore[assignment]
    flow = request_flow(call("generate", {"prompt": "p"}))
    await addon.request(flow)
    assert flow.response.status_code == 500
    assert reply(flow)["error"]["code"] == jsonrpc.INTERNAL_ERROR
    assert flow.metadata["mcp.decision"] == "refused"


@pytest.mark.parametrize(("option", "value"), [
    ("intercept_mode", "block"), ("intercept_deny_as", "text"), ("intercept_max_body", 0),
    ("intercept_max_depth", 0), ("intercept_identity", "cookie"), ("intercept_tool_names", "("),
    ("intercept_state", "redis-ish://x"),
])
def test_invalid_options_are_refused(addon_ctx, option, value):
    addon, tctx = addon_ctx
    with pytest.raises(exceptions.OptionsError):
        tctx.configure(addon, **{option: value})


def sse_get_flow(headers: dict[str, str]) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make("GET", "http://127.0.0.1:9/mcp", b"", {"accept": "text/event-stream", **headers})
    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    return flow


async def test_resumed_stream_cannot_replay_hidden_tools(addon_ctx):
    """GET + Last-Event-ID replays answers to earlier POSTs: a tools/list answer among them is
    filtered although its id is no longer tracked; everything else passes byte for byte."""
    addon, _ = addon_ctx
    flow = sse_get_flow({"last-event-id": "stream-1_4", "mcp-session-id": "s"})
    addon.responseheaders(flow)
    assert callable(flow.response.stream)

    def stream(chunk: bytes) -> bytes:  # the callable returns a list of pieces, [] when holding back
        return b"".join(flow.response.stream(chunk))

    tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "secret_admin")]
    listed = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools}})
    other = 'id: stream-1_6\r\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\r\n\r\n'
    out = stream(f"id: stream-1_5\r\ndata: {listed[:30]}".encode()) + stream(f"{listed[30:]}\r\n\r\n".encode())
    out += stream(other.encode()) + stream(b"")
    first, second = out.split(b"\r\n\r\n", 1)
    assert first.startswith(b"id: stream-1_5\r\n")
    replayed = json.loads(first.split(b"data: ", 1)[1])
    assert [t["name"] for t in replayed["result"]["tools"]] == ["echo"]
    assert second == other.encode()


def test_failure_on_response_headers_swallows_the_upstream_body(addon_ctx):
    """mitmproxy reads the upstream body into whatever response stands after responseheaders:
    the 502 put there must stream, so no upstream byte replaces or follows its body."""
    addon, _ = addon_ctx
    flow = sse_get_flow({})
    flow.response.headers["content-encoding"] = "br"  # a stream it cannot decode
    addon.responseheaders(flow)
    assert flow.response.status_code == 502 and callable(flow.response.stream)
    first = flow.response.stream(b"event: endpoint\ndata: /messages/?session_id=1\n\n")
    assert json.loads(b"".join(first))["error"]["message"].endswith("the proxy could not inspect the response")
    assert flow.response.stream(b"data: more\n\n") == [] and flow.response.stream(b"") == []


async def test_event_log_lines_for_denials_always_for_allowed_calls_on_request(addon_ctx, caplog):
    addon, tctx = addon_ctx
    caplog.set_level("INFO", logger="intercept")
    await addon.request(request_flow(call("echo", {"text": "a"})))
    await addon.request(request_flow(call("delete_everything")))
    lines = [r.getMessage() for r in caplog.records if r.name == "intercept"]
    assert not any(line.startswith("intercept: allow") for line in lines)
    assert any(line.startswith("intercept: deny tool=delete_everything") and "rule=no deletes" in line
               for line in lines)
    tctx.configure(addon, intercept_log_allowed=True)
    await addon.request(request_flow(call("echo", {"text": "b"})))
    assert any(r.getMessage().startswith("intercept: allow tool=echo") for r in caplog.records)


@pytest.mark.parametrize(("mode", "limit"), [(["reverse:http://127.0.0.1:9"], "33554432"), (["regular"], None),
                                             (["transparent"], None)])
def test_body_size_limit_defaults_only_in_front_of_a_server(tmp_path, mode, limit):
    """Reverse mode: every body is MCP, so mitmproxy refuses oversized ones unread. Regular and
    transparent mode carry the machine's other traffic too: its large downloads must still work."""
    addon = InterceptAddon()
    with taddons.context(addon, Proxyserver()) as tctx:  # Proxyserver declares body_size_limit
        tctx.configure(addon, mode=mode, confdir=str(tmp_path), intercept_state="memory")
        assert tctx.options.body_size_limit == limit


@pytest.mark.parametrize(("ctype", "lead"), [("application/json-rpc", b""), ("text/plain", b" \t\r\n" * 8),
                                             ("application/octet-stream", b"\n" * 100)])
async def test_json_behind_any_type_or_whitespace_run_is_judged(addon_ctx, ctype, lead):
    """No Mcp-* header, a content type that is not exactly application/json, a long run of
    whitespace before the body: lenient servers still parse it, so the proxy judges it."""
    addon, _ = addon_ctx
    flow = request_flow(None, revision=None, raw=lead + json.dumps(call("delete_everything")).encode(),
                        headers={"content-type": ctype})
    await addon.request(flow)
    assert reply(flow)["error"]["data"]["rule"] == "no deletes"


async def test_a_failing_decision_hook_changes_no_decision(addon_ctx):
    addon, _ = addon_ctx

    def broken(*_: Any) -> None:
        raise RuntimeError("hook bug")

    addon.decision_hooks.append(broken)
    flow = request_flow(call("generate", {"prompt": "p"}), headers={"x-agent-id": "h"})
    await addon.request(flow)
    assert flow.response is None and addon.flows[flow.id].tickets()  # allowed, its count awaits the answer
    flow = request_flow(call("delete_everything"))
    await addon.request(flow)
    assert reply(flow)["error"]["data"]["rule"] == "no deletes"
    flow = request_flow(None, raw=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}')
    await addon.request(flow)
    assert flow.response.status_code == 400  # refused, the hook's failure notwithstanding


async def test_changing_the_fail_mode_keeps_the_counters(addon_ctx):
    addon, tctx = addon_ctx
    store = addon.store
    for i in range(3):
        await addon.request(request_flow(call("generate", {"prompt": "p"}, i), headers={"x-agent-id": "f"}))
    tctx.configure(addon, intercept_state_fail="open")
    assert addon.store is store and store.mode == "open"
    flow = request_flow(call("generate", {"prompt": "p"}, 9), headers={"x-agent-id": "f"})
    await addon.request(flow)
    assert reply(flow)["error"]["data"]["kind"] == "rate_limit"


def test_an_oversized_replayed_event_is_cut_when_tools_can_be_hidden(addon_ctx):
    """A replayed tools/list too large to filter must not pass: it could list hidden tools."""
    addon, _ = addon_ctx
    flow = sse_get_flow({"last-event-id": "s_1"})
    addon.responseheaders(flow)
    tools = [{"name": "secret_admin", "description": "x" * (5 * 1024 * 1024)}]
    listed = json.dumps({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools}})
    out = b"".join(b"".join(flow.response.stream(f"data: {listed}\n\n".encode()[i:i + 65536]))
                   for i in range(0, len(listed) + 8, 65536))
    out += b"".join(flow.response.stream(b""))
    assert b"secret_admin" not in out


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
async def test_a_call_under_any_method_is_judged(addon_ctx, method):
    """Servers route differently: a lenient one may hand a PUT's body to its JSON-RPC handler."""
    addon, _ = addon_ctx
    flow = request_flow(call("delete_everything"))
    flow.request.method = method
    await addon.request(flow)
    assert reply(flow)["error"]["data"]["rule"] == "no deletes"


async def test_bodiless_requests_pass_untouched(addon_ctx):
    addon, _ = addon_ctx
    for method in ("GET", "DELETE", "OPTIONS"):
        flow = request_flow(None, raw=b"")
        flow.request.method = method
        await addon.request(flow)
        assert flow.response is None and "mcp.decision" not in flow.metadata


@pytest.mark.parametrize("method", ["Tools/Call", "TOOLS/LIST", "tools/list\t", " tools/call", "\uff54ools/call"])
async def test_method_variants_a_lenient_server_might_accept_are_refused(addon_ctx, method):
    addon, _ = addon_ctx
    flow = request_flow({**call("delete_everything"), "method": method})
    await addon.request(flow)
    assert flow.response.status_code == 400 and "ambiguous method" in reply(flow)["error"]["message"]


async def test_a_streamed_answer_that_is_no_event_stream_leaves_nothing_tracked(addon_ctx):
    """Another addon (or a user option) may stream an answer the proxy would have buffered: the
    flow must still be forgotten and its counters settled when it ends (it leaked before)."""
    addon, _ = addon_ctx
    flow = request_flow(call("generate", {"prompt": "p"}), headers={"x-agent-id": "stream"})
    await addon.request(flow)
    assert addon.flows and addon.counters.ledger.pending == 1
    flow.response = http.Response.make(200, b"", {"content-type": "application/octet-stream"})
    addon.responseheaders(flow)
    flow.response.stream = True
    await addon.response(flow)
    assert not addon.flows and addon.counters.ledger.pending == 0 and addon.counters.ledger.kept == 1


async def test_a_policy_chooses_its_denial_form(tmp_path):
    """Some clients show the model only a tool result's text (the OpenAI Agents SDK replaces a
    JSON-RPC error's with a generic message): a policy can ask for results, whatever the option."""
    path = tmp_path / "policy.yaml"
    path.write_text('deny_as: result\n' + TEST_POLICY.replace('version: "1"\n', ""))
    addon = InterceptAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, confdir=str(tmp_path), intercept_policy=str(path), intercept_state="memory",
                       intercept_deny_as="error")
        flow = request_flow(call("delete_everything"))
        await addon.request(flow)
        result = reply(flow)["result"]
        assert result["isError"] is True and result["content"][0]["text"].endswith("Deleting everything is not allowed")
        path.write_text(TEST_POLICY)  # no deny_as: the option decides again
        assert addon.reload_policy()
        flow = request_flow(call("delete_everything"))
        await addon.request(flow)
        assert reply(flow)["error"]["code"] == -32600
