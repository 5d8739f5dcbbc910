"""The "MCP" content view and the bounded copy of streamed event streams it reads.

Bodies are real: captured through the proxy from the test MCP server (official SDK) and from
the addon's own denial replies. The last test runs a real mitmdump and renders the flows it saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import contentviews, io
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from harness import start_mcp_server, start_mitmdump
from intercept_addon.proxy.contentview import STREAM_CUT_KEY, McpViewer
from test_addon_e2e import client

DENIED_REQUEST = b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_everything","arguments":{}}}'
DENIED_REPLY = (b'{"jsonrpc":"2.0","id":4,"error":{"code":-32600,"message":"[INTERCEPT POLICY DENIED] Deleting '
                b'everything is not allowed","data":{"reason":"policy_denied","tool":"delete_everything",'
                b'"rule":"no deletes","kind":"deny"}}}')
DENIED_META = {"mcp.method": "tools/call", "mcp.tool": "delete_everything", "mcp.decision": "deny",
               "mcp.rule": "no deletes", "mcp.reason": "Deleting everything is not allowed",
               "mcp.session": "mcp-session:9de7353467574565b92e987edd2452fe"}
# The SDK server's answer to a tools/call with a progress token: two notifications, then the result.
PROGRESS_STREAM = (
    b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2,'
    b'"progress":1,"total":2,"message":"step 1"}}\r\n\r\n'
    b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2,'
    b'"progress":2,"total":2,"message":"step 2"}}\r\n\r\n'
    b'event: message\r\ndata: {"jsonrpc":"2.0","id":2,"result":{"content":[{"text":"counted to 2","type":"text"}],'
    b'"isError":false,"structuredContent":{"result":"counted to 2"}}}\r\n\r\n'
)
ALLOWED_META = {"mcp.method": "tools/call", "mcp.tool": "progress", "mcp.decision": "allow",
                "mcp.session": "mcp-session:9de7353467574565b92e987edd2452fe"}


@pytest.fixture
def viewer():
    addon = McpViewer()
    with taddons.context(addon, Proxyserver()) as tctx:  # Proxyserver: store_streamed_bodies
        yield addon, tctx


def mcp_flow(request_body: bytes, response_body: bytes, response_type: str, meta: dict) -> tflow.HTTPFlow:
    flow = tflow.tflow(
        req=tutils.treq(method=b"POST", path=b"/mcp", content=request_body,
                        headers=((b"content-type", b"application/json"),)),
        resp=tutils.tresp(content=response_body, headers=((b"content-type", response_type.encode()),)))
    flow.metadata.update(meta)
    return flow


def test_denied_call_shows_tool_rule_and_message_above_the_json(viewer):
    flow = mcp_flow(DENIED_REQUEST, DENIED_REPLY, "application/json", DENIED_META)
    request = contentviews.prettify_message(flow.request, flow)
    assert request.view_name == "MCP"  # outranks mitmproxy's JSON view
    header, body = request.text.split("\n\n", 1)
    assert header.splitlines() == [
        "method: tools/call", "tool: delete_everything", "id: 4", "decision: deny", "rule: no deletes",
        "message: Deleting everything is not allowed", f"session: {DENIED_META['mcp.session']}"]
    assert '    "params": {\n        "name": "delete_everything",' in body
    reply = contentviews.prettify_message(flow.response, flow)
    assert reply.view_name == "MCP"
    assert "tool: delete_everything" in reply.text and "rule: no deletes" in reply.text
    assert '"message": "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"' in reply.text


def test_event_stream_is_a_list_of_frames(viewer):
    flow = mcp_flow(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{"n":2},'
                    b'"_meta":{"progressToken":2}}}', PROGRESS_STREAM, "text/event-stream", ALLOWED_META)
    result = contentviews.prettify_message(flow.response, flow)
    assert result.view_name == "MCP"
    header, *frames = result.text.split("\n\n")
    # The response carries only the id: method and tool come from what the addon recorded.
    assert header.splitlines()[:4] == ["method: tools/call", "tool: progress", "id: 2", "decision: allow"]
    assert [f.splitlines()[0] for f in frames] == ["--- event 1: message", "--- event 2: message",
                                                   "--- event 3: message"]
    assert '"method": "notifications/progress"' in frames[0] and '"message": "step 2"' in frames[1]
    assert '"text": "counted to 2"' in frames[2]


def test_frames_with_ids_comments_and_text_data(viewer):
    stream = (b': keep-alive\n\nid: 7\nevent: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
              b'event: endpoint\ndata: /messages/?session_id=abc\n\nid: 8\ndata:\n\n')
    flow = mcp_flow(b"", stream, "text/event-stream", {"mcp.method": "tools/list"})
    text = contentviews.prettify_message(flow.response, flow).text
    assert "--- event 1: message  id: 7\n{\n    \"jsonrpc\": \"2.0\"," in text
    assert "--- event 2: endpoint\n/messages/?session_id=abc" in text  # not JSON: shown as sent
    assert "--- event 3: message  id: 8\n(no data)" in text
    assert "keep-alive" not in text  # a comment-only block is no frame


def test_plain_json_is_left_to_the_json_view(viewer):
    flow = mcp_flow(b'{"name": "not json-rpc"}', b'{"ok": true}', "application/json", {})
    assert contentviews.prettify_message(flow.request, flow).view_name == "JSON"
    assert contentviews.prettify_message(flow.response, flow).view_name == "JSON"


def test_batch_header_names_the_first_request(viewer):
    batch = (b'[{"jsonrpc":"2.0","method":"notifications/initialized"},'
             b'{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}]')
    flow = mcp_flow(batch, b"", "application/json", {})
    text = contentviews.prettify_message(flow.request, flow).text
    assert text.startswith("method: tools/call\ntool: echo\nid: \"a\"\n\n[\n")


def streamed(flow: tflow.HTTPFlow, addon: McpViewer, chunks: list[bytes], inner=True) -> list[bytes]:
    """Run the stream the way mitmproxy's HTTP layer does: each chunk, then b"" at the end."""
    flow.response.stream = inner
    flow.response.data.content = None  # a streamed response has no body of its own
    addon.streaming(flow)
    out = [flow.response.stream(c) for c in [*chunks, b""]]
    return [piece for o in out for piece in ([o] if isinstance(o, bytes) else o)]


def test_streamed_event_stream_is_kept_for_the_viewer(viewer):
    addon, _ = viewer
    flow = mcp_flow(b"", b"", "text/event-stream", ALLOWED_META)
    chunks = [PROGRESS_STREAM[:50], PROGRESS_STREAM[50:300], PROGRESS_STREAM[300:]]
    assert b"".join(streamed(flow, addon, chunks)) == PROGRESS_STREAM  # the client gets every byte
    assert flow.response.raw_content == PROGRESS_STREAM and STREAM_CUT_KEY not in flow.metadata
    assert contentviews.prettify_message(flow.response, flow).text.count("--- event") == 3


def test_kept_copy_is_what_the_client_was_sent(viewer):
    """InterceptAddon's stream callables rewrite events: the viewer shows their output."""
    addon, _ = viewer
    flow = mcp_flow(b"", b"", "text/event-stream", ALLOWED_META)
    sent = streamed(flow, addon, [b"data: 1\n\n", b"data: 2\n\n"], inner=lambda chunk: [chunk.upper(), b""])
    assert flow.response.raw_content == b"".join(sent) == b"DATA: 1\n\nDATA: 2\n\n"


def test_kept_copy_is_capped(viewer):
    addon, tctx = viewer
    tctx.configure(addon, intercept_view_stream_bytes=100)
    flow = mcp_flow(b"", b"", "text/event-stream", ALLOWED_META)
    assert b"".join(streamed(flow, addon, [PROGRESS_STREAM])) == PROGRESS_STREAM
    assert flow.response.raw_content == PROGRESS_STREAM[:100]
    assert flow.metadata[STREAM_CUT_KEY] == len(PROGRESS_STREAM)
    text = contentviews.prettify_message(flow.response, flow).text
    assert f"(stream cut: the first 100 of {len(PROGRESS_STREAM)} bytes are kept)" in text


def test_a_stream_cut_by_an_error_keeps_what_arrived(viewer):
    addon, _ = viewer
    flow = mcp_flow(b"", b"", "text/event-stream", ALLOWED_META)
    flow.response.stream = True
    addon.streaming(flow)
    flow.response.stream(PROGRESS_STREAM[:120])
    addon.cut(flow)
    assert flow.response.raw_content == PROGRESS_STREAM[:120]


@pytest.mark.parametrize("why", ["store_streamed_bodies", "disabled", "not an event stream"])
def test_streams_left_alone(viewer, why):
    addon, tctx = viewer
    if why == "store_streamed_bodies":
        tctx.options.store_streamed_bodies = True  # mitmproxy keeps its own, complete copy
    elif why == "disabled":
        tctx.configure(addon, intercept_view_stream_bytes=0)
    flow = mcp_flow(b"", b"", "application/octet-stream" if why == "not an event stream" else "text/event-stream", {})
    flow.response.stream = True
    addon.streaming(flow)
    assert flow.response.stream is True


def test_negative_cap_is_refused(viewer):
    addon, tctx = viewer
    with pytest.raises(Exception, match="intercept_view_stream_bytes"):
        tctx.configure(addon, intercept_view_stream_bytes=-1)


@pytest.mark.e2e
async def test_real_streams_are_viewable_in_saved_flows(tmp_path: Path, policy_file: Path):
    """A real mitmdump saves the flows (-w); the event-stream answers are in them, as frames."""
    server, server_port, _ = start_mcp_server(tmp_path)
    saved = tmp_path / "flows.mitm"
    proxy, port = start_mitmdump(tmp_path, server_port, "intercept_state=memory", f"save_stream_file={saved}",
                                 policy=policy_file)
    try:
        async with client(f"http://127.0.0.1:{port}/mcp", "legacy", agent="a1") as c:
            async def on_progress(progress, total, message):
                pass

            await c.call_tool("progress", {"n": 2}, progress_callback=on_progress)
    finally:
        proxy.stop()
        server.stop()
    with open(saved, "rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream() if fl.metadata.get("mcp.tool") == "progress"]
    assert len(flows) == 1 and flows[0].response.headers["content-type"] == "text/event-stream"
    with taddons.context(McpViewer()):
        text = contentviews.prettify_message(flows[0].response, flows[0]).text
    assert text.startswith("method: tools/call\ntool: progress\nid: ")
    assert text.count('"method": "notifications/progress"') == 2 and '"text": "counted to 2"' in text


def test_a_body_the_strict_parser_refuses_is_shown_raw_with_the_reason(viewer):
    """A lenient parser keeps the last of two "name"s: the view must not show that guess."""
    smuggled = b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"delete_everything"}}'
    flow = mcp_flow(smuggled, b"", "application/json", {"mcp.decision": "refused"})
    result = contentviews.prettify_message(flow.request, flow)
    assert result.view_name == "MCP"
    header, body = result.text.split("\n\n", 1)
    assert header == "decision: refused"
    assert body == f'refused: duplicate key "name"\n\n{smuggled.decode()}'


def test_refused_frames_in_an_event_stream(viewer):
    stream = (b'data: {"jsonrpc":"2.0","id":1,"result":{"a":NaN}}\n\n'
              b'data: {"jsonrpc":"2.0","id":2,"result":{"text":"\\ud800"}}\n\n'
              b'data: {"jsonrpc":"2.0","id":3,"result":{}}\n\n')
    flow = mcp_flow(b"", stream, "text/event-stream", {"mcp.method": "tools/call"})
    frames = contentviews.prettify_message(flow.response, flow).text.split("\n\n")
    assert frames[1] == "--- event 1: message\nrefused: NaN is not valid JSON"
    assert frames[2] == '{"jsonrpc":"2.0","id":1,"result":{"a":NaN}}'
    assert frames[3] == "--- event 2: message\nrefused: string with an unpaired surrogate escape"
    assert frames[5].startswith("--- event 3: message\n{\n")
    assert frames[0] == "method: tools/call\nid: 3"  # the header names the message that was read


def test_numbers_are_shown_exactly(viewer):
    body = (b'{"jsonrpc":"2.0","id":6,"method":"tools/call",'
            b'"params":{"name":"charge","arguments":{"amount":500.00000000000000000001}}}')
    flow = mcp_flow(body, b"", "application/json", {})
    text = contentviews.prettify_message(flow.request, flow).text
    assert '"amount": 500.00000000000000000001' in text
