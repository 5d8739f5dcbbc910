"""Hostile requests sent raw through a real mitmdump with the addon to a real MCP server.

For every case: the denied tool never ran upstream, and the client got an answer that is a
JSON-RPC error or a 4xx (never a hang, never a dropped connection)."""

from __future__ import annotations

import gzip
import json

import httpx2
import pytest
from mitmproxy.net import encoding

from harness import ran

pytestmark = pytest.mark.e2e

CALL = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything","arguments":{}}}'
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
           "mcp-protocol-version": "2025-11-25"}


def deep(n: int) -> str:
    return ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything",'
            '"arguments":{},"_meta":' + '{"a":' * n + "1" + "}" * n + "}}")


def bomb(enc: str) -> bytes:
    return encoding.encode((CALL[:-1] + " " * (16 << 20) + "}").encode(), enc)


CASES: dict[str, tuple[bytes | str, dict[str, str], str]] = {
    # name: (body, extra headers, path)
    "plain denied call": (CALL, {}, "/mcp"),
    "duplicate key, last wins upstream": (CALL.replace('"name":"delete_everything"', '"name":"echo","name":"delete_everything"'), {}, "/mcp"),
    "duplicate key deep in arguments": (CALL.replace('"arguments":{}', '"arguments":{"a":1,"a":2}'), {}, "/mcp"),
    "case variant key Name": (CALL.replace('"name":"delete_everything"', '"name":"echo","Name":"delete_everything"'), {}, "/mcp"),
    "long s variant": (CALL.replace('"params"', '"paramſ":{},"params"'), {}, "/mcp"),
    "escaped key and value": (CALL.replace('"name":"delete_everything"', '"n\\u0061me":"\\u0064elete_everything"'), {}, "/mcp"),
    "method and result together": (CALL[:-1] + ',"result":{}}', {}, "/mcp"),
    "NaN in arguments": (CALL.replace('"arguments":{}', '"arguments":{"x":NaN}'), {}, "/mcp"),
    "Infinity": (CALL.replace('"arguments":{}', '"arguments":{"x":-Infinity}'), {}, "/mcp"),
    "huge number": (CALL.replace('"arguments":{}', '"arguments":{"x":' + "9" * 5000 + "}"), {}, "/mcp"),
    "huge id": (CALL.replace('"id":1', '"id":' + "1" * 40), {}, "/mcp"),
    "null id": (CALL.replace('"id":1', '"id":null'), {}, "/mcp"),
    "bool id": (CALL.replace('"id":1', '"id":true'), {}, "/mcp"),
    "fraction id": (CALL.replace('"id":1', '"id":1.5'), {}, "/mcp"),
    "object id": (CALL.replace('"id":1', '"id":{}'), {}, "/mcp"),
    "notification tools/call": (CALL.replace('"id":1,', ""), {}, "/mcp"),
    "deep nesting 5000": (deep(5000), {}, "/mcp"),
    "nesting 100": (deep(100), {}, "/mcp"),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + CALL.encode(), {}, "/mcp"),
    "UTF-16 body": (CALL.encode("utf-16"), {"content-type": "application/json; charset=utf-16"}, "/mcp"),
    "UTF-16 without charset": (CALL.encode("utf-16-le"), {}, "/mcp"),
    "invalid UTF-8": (CALL.replace("delete_everything", "delete_everything\udcff").encode("utf-8", "surrogateescape"), {}, "/mcp"),
    "lone surrogate escape": (CALL.replace('"arguments":{}', '"arguments":{"x":"\\ud800"}'), {}, "/mcp"),
    "latin-1 charset": (CALL, {"content-type": "application/json; charset=latin-1"}, "/mcp"),
    "gzip body": (gzip.compress(CALL.encode()), {"content-encoding": "gzip"}, "/mcp"),
    "base64 content-encoding": (CALL, {"content-encoding": "base64"}, "/mcp"),
    "rot13 content-encoding": (CALL, {"content-encoding": "rot13"}, "/mcp"),
    "unknown content-encoding": (CALL, {"content-encoding": "x-custom"}, "/mcp"),
    "text/plain content type": (CALL, {"content-type": "text/plain"}, "/mcp"),
    "no content type": (CALL, {"content-type": ""}, "/mcp"),
    "trailing garbage": (CALL + " {}", {}, "/mcp"),
    "batch with a denied call": ("[" + CALL.replace('"id":1', '"id":2').replace("delete_everything", "echo").replace('"arguments":{}', '"arguments":{"text":"x"}') + "," + CALL + "]",
                                 {"mcp-protocol-version": "2025-03-26"}, "/mcp"),
    "batch on 2025-11-25": ("[" + CALL + "]", {}, "/mcp"),
    "batch with a bad element": ('[{"jsonrpc":"2.0","id":3,"method":"ping"}, 42, ' + CALL + "]", {"mcp-protocol-version": "2025-03-26"}, "/mcp"),
    "empty batch": ("[]", {}, "/mcp"),
    "params as array": (CALL.replace('"params":{"name":"delete_everything","arguments":{}}', '"params":["delete_everything"]'), {}, "/mcp"),
    "arguments as string": (CALL.replace('"arguments":{}', '"arguments":"{}"'), {}, "/mcp"),
    "unknown envelope member": (CALL[:-1] + ',"extra":1}', {}, "/mcp"),
    "jsonrpc 1.0": (CALL.replace('"2.0"', '"1.0"'), {}, "/mcp"),
    "Tools/Call method case": (CALL.replace("tools/call", "Tools/Call"), {}, "/mcp"),
    "TOOLS/CALL method case": (CALL.replace("tools/call", "TOOLS/CALL"), {}, "/mcp"),
    "method with trailing space": (CALL.replace("tools/call", "tools/call "), {}, "/mcp"),
    "method in fullwidth forms": (CALL.replace("tools/call", "\uff54\uff4f\uff4f\uff4c\uff53\uff0fcall"), {}, "/mcp"),
    "PUT instead of POST": (CALL, {"x-method": "PUT"}, "/mcp"),
    "lookalike tool name": (CALL.replace("delete_everything", "delete_everythіng"), {}, "/mcp"),
    "fullwidth tool name": (CALL.replace("delete_everything", "ｄelete_everything"), {}, "/mcp"),
    "path /MCP": (CALL, {}, "/MCP"),
    "path /mcp/": (CALL, {}, "/mcp/"),
    "path percent-encoded": (CALL, {}, "/%6dcp"),
    "path with query": (CALL, {}, "/mcp?x=1"),
    "legacy /messages path": (CALL, {}, "/messages/?session_id=abc"),
    "2026 Mcp-Name mismatch": (CALL, {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}, "/mcp"),
    "2026 Mcp-Method mismatch": (CALL, {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}, "/mcp"),
    "protocol downgrade 2024-11-05": (CALL, {"mcp-protocol-version": "2024-11-05"}, "/mcp"),
    "no protocol header": (CALL, {"mcp-protocol-version": ""}, "/mcp"),
    "too big body": (CALL[:-1] + ',"pad":"' + "x" * (5 * 1024 * 1024) + '"}', {}, "/mcp"),
    # Found by the fuzz/resource work (issue 5): a few KB that decode to 16 MiB (the decoder was
    # unbounded: a 1 MB gzip body took the proxy to +2 GB), and an exponent Decimal refuses.
    **{f"{enc} decompression bomb": (bomb(enc), {"content-encoding": enc}, "/mcp") for enc in ("gzip", "br", "zstd")},
    "exponent past Decimal's range": (CALL.replace('"arguments":{}', '"arguments":{"x":1e99999999999999999999}'), {}, "/mcp"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from conftest import Stack, TEST_POLICY

    tmp = tmp_path_factory.mktemp("hostile")
    policy = tmp / "policy.yaml"
    policy.write_text(TEST_POLICY)
    stack = Stack(tmp, policy, ("--json-response", "--stateless"))
    yield stack
    stack.stop()


@pytest.mark.parametrize("name", CASES)
def test_denied_tool_never_runs(stack, name):
    body, extra, path = CASES[name]
    headers = {k: v for k, v in {**HEADERS, **extra}.items() if v}
    method = headers.pop("x-method", "POST")  # a case's own HTTP method, not a header to send
    content = body.encode() if isinstance(body, str) else body
    resp = httpx2.request(method, f"http://127.0.0.1:{stack.proxy_port}{path}", content=content, headers=headers,
                          timeout=30, trust_env=False)
    assert "delete_everything" not in ran(stack.side_log), f"{name}: the denied tool ran"
    if 200 <= resp.status_code < 300:
        answer = json.loads(resp.text)  # a 2xx answer must be JSON-RPC errors only
        for item in answer if isinstance(answer, list) else [answer]:
            assert "error" in item, f"{name}: {resp.text[:300]}"
    else:
        assert 400 <= resp.status_code < 500, f"{name}: status {resp.status_code}"


def test_http2_denied_call(stack):
    # mitmproxy speaks HTTP/2 over TLS (ALPN); its reverse listener accepts TLS too.
    with httpx2.Client(http2=True, http1=False, trust_env=False, verify=False) as c:
        resp = c.post(f"https://127.0.0.1:{stack.proxy_port}/mcp", content=CALL, headers=HEADERS)
        assert resp.http_version == "HTTP/2"
    assert "delete_everything" not in ran(stack.side_log)
    assert resp.json()["error"]["data"]["rule"] == "no deletes"


def test_allowed_call_still_works_after_the_corpus(stack):
    ok = CALL.replace("delete_everything", "echo").replace('"arguments":{}', '"arguments":{"text":"still fine"}')
    resp = httpx2.post(f"http://127.0.0.1:{stack.proxy_port}/mcp", content=ok, headers=HEADERS, trust_env=False)
    assert resp.status_code == 200 and "still fine" in resp.text
