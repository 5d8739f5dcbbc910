"""Regression tests: an agent cannot mint identities (fresh per-session budgets). A query
``session_id`` counts only on a legacy stream's announced endpoint; an issued Mcp-Session-Id
only on the origin that issued it; a variant spelling of a live legacy endpoint is refused.
Real mitmdump with the addon, real SDK test servers; side-effect logs count what ran."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx2
import pytest

from conftest import TEST_POLICY
from harness import ran, start_mcp_server, start_mitmdump
from raw_mcp import call, headers, initialize, is_denial, messages, result_text, sse_data

pytestmark = pytest.mark.e2e


async def test_query_session_id_is_not_an_identity_on_streamable_http(stack_factory, policy_file):
    """Bug: a ``?session_id=`` (or ``?sessionId=``) query parameter on any POST was taken as a
    legacy session identity, so an agent with no other identity minted a fresh per-session
    budget per request by making one up: under a 1-per-session limit 5 of 5 calls ran. Now the
    parameter counts only on a live legacy stream's announced endpoint."""
    policy_file.write_text(TEST_POLICY.replace("rate_limit: {max: 3, window: 60}", "rate_limit: {max: 1, window: 60}"))
    stack = stack_factory("--stateless", "--json-response")
    answers = []
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        for i in range(5):
            param = "session_id" if i % 2 == 0 else "sessionId"
            url = f"{stack.url}?{param}={uuid.uuid4().hex}"
            answers.append(messages(await http.post(url, json=call(i + 1, "generate", {"prompt": f"p{i}"}),
                                                    headers=headers()))[0])
    assert ran(stack.side_log) == ["generate"]
    assert result_text(answers[0]) == "generated p0"
    assert all(is_denial(a) and a["error"]["data"]["rule"] == "generate limit" for a in answers[1:]), answers


async def new_session(http: httpx2.AsyncClient, url: str) -> str:
    """A fresh session on ``url``; returns the Mcp-Session-Id the server issued."""
    resp = await http.post(url, json=initialize(0, "2025-11-25"), headers=headers())
    assert resp.status_code == 200 and "result" in messages(resp)[0], resp.text
    return resp.headers["mcp-session-id"]


async def test_issued_session_ids_count_only_on_their_origin(tmp_path, policy_file):
    """Bug: any Mcp-Session-Id some server had issued was trusted as an identity everywhere. An
    agent got fresh ids from a server it controls (B, a new session per initialize) and sent
    each to the rate-limited server A (stateless: it accepts any session header), minting a
    fresh 3-per-session budget each time: 15 of 15 calls ran. Now an issued id identifies a
    session only on the origin (scheme, host, port) that issued it."""
    procs = []
    try:
        server_a, port_a, side_a = start_mcp_server(tmp_path, "--stateless", "--json-response")
        procs.append(server_a)
        server_b, port_b, side_b = start_mcp_server(tmp_path)
        procs.append(server_b)
        proxy, proxy_port = start_mitmdump(tmp_path, None, "intercept_state=memory", policy=policy_file, mode="regular")
        procs.append(proxy)
        answers = []
        async with httpx2.AsyncClient(proxy=f"http://127.0.0.1:{proxy_port}", trust_env=False, timeout=10) as http:
            for i in range(15):
                minted = await new_session(http, f"http://127.0.0.1:{port_b}/mcp")
                resp = await http.post(f"http://127.0.0.1:{port_a}/mcp", json=call(i + 1, "generate", {"prompt": "x"}),
                                       headers=headers(revision="2025-11-25", session=minted))
                answers.append(messages(resp)[0])
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert ran(side_a).count("generate") == 3 and ran(side_b) == []
    assert [result_text(a) for a in answers[:3]] == ["generated x"] * 3
    assert all(is_denial(a) and a["error"]["data"]["rule"] == "generate limit" for a in answers[3:]), answers[3:]


class LegacyStream:
    """One real legacy GET /sse stream, read in the background: its endpoint, then its messages."""

    def __init__(self, http: httpx2.AsyncClient, url: str):
        self.http, self.url = http, url
        self.endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.messages: list[dict] = []
        self.raw = ""  # everything the stream carried, to search for what must never show
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.http.stream("GET", self.url, headers={"accept": "text/event-stream"}) as resp:
            buffer = ""
            async for text in resp.aiter_text():
                self.raw += text
                buffer += text.replace("\r\n", "\n")
                while "\n\n" in buffer:
                    event, buffer = buffer.split("\n\n", 1)
                    data = sse_data(event + "\n\n")
                    if "event: endpoint" in event and not self.endpoint.done():
                        self.endpoint.set_result(data[0].strip())
                    elif data and data[0].strip():
                        self.messages.append(json.loads(data[0]))

    async def answer(self, msg_id: int, timeout: float = 5.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                found = [m for m in self.messages if m.get("id") == msg_id]
                if found:
                    return found[0]
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def variant_endpoints(endpoint: str) -> dict[str, str]:
    """Spellings of a Python SDK endpoint (``/messages/?session_id=<32 hex>``) that the SDK's
    ``UUID(hex=...)`` and uvicorn's path decoding map to the same session."""
    path, sid = endpoint.split("?session_id=")
    dashed = str(uuid.UUID(hex=sid))
    return {
        "upper-case hex": f"{path}?session_id={sid.upper()}",
        "hyphenated": f"{path}?session_id={dashed}",
        "braces": f"{path}?session_id={{{dashed}}}",
        "urn:uuid:": f"{path}?session_id=urn:uuid:{dashed}",
        "percent-encoded path": f"{path.replace('/m', '/%6D', 1)}?session_id={sid}",
    }


async def test_legacy_endpoint_variants_are_refused(stack_factory):
    """Bug: a POST to a variant spelling of a live legacy stream's endpoint (upper-case hex,
    hyphens, braces, ``urn:uuid:``, a percent-encoded path) did not match the announced endpoint,
    so the addon treated it as Streamable HTTP with the query ``session_id`` as a fresh identity:
    each spelling had its own budget (15 of 15 calls ran under a 3 limit), and the answers,
    delivered by the server on the real stream, went unfiltered (the hidden ``secret_admin``
    showed in a tools/list). Now a session parameter that matches no live stream exactly is
    refused (4xx, never forwarded); the percent-encoded path with the exact id may instead count
    as the stream itself."""
    stack = stack_factory(transport="sse")
    base = f"http://127.0.0.1:{stack.proxy_port}"
    async with httpx2.AsyncClient(base_url=base, trust_env=False, timeout=httpx2.Timeout(10, read=30)) as http:
        stream = LegacyStream(http, "/sse")
        try:
            endpoint = await asyncio.wait_for(stream.endpoint, 5)
            assert (await http.post(endpoint, json=initialize(0, "2024-11-05"), headers=headers())).status_code == 202
            assert "result" in await stream.answer(0)
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(endpoint, json=initialized, headers=headers())).status_code == 202

            variants = variant_endpoints(endpoint)
            posts: dict[str, list[httpx2.Response]] = {name: [] for name in variants}
            msg_id = 10
            for name, path in variants.items():
                for _ in range(3):
                    msg_id += 1
                    posts[name].append(await http.post(path, json=call(msg_id, "generate", {"prompt": name}),
                                                       headers=headers()))
                msg_id += 1
                posts[name].append(await http.post(path, json={"jsonrpc": "2.0", "id": msg_id, "method": "tools/list"},
                                                   headers=headers()))
            # The stream still serves its own endpoint.
            real = await http.post(endpoint, json=call(99, "echo", {"text": "real"}), headers=headers())
            assert real.status_code == 202
            assert (await stream.answer(99))["result"]["content"][0]["text"] == "real"
            await asyncio.sleep(0.3)  # anything else the server answered has reached the stream
        finally:
            await stream.close()

    assert ran(stack.side_log).count("generate") <= 3
    assert "secret_admin" not in stream.raw
    for name, responses in posts.items():
        if name == "percent-encoded path" and all(r.status_code == 202 for r in responses):
            continue  # taken as the stream's own endpoint: counted in its budget above
        statuses = [r.status_code for r in responses]
        assert all(400 <= s < 500 for s in statuses), f"{name}: {statuses}"
        assert all(is_denial(messages(r)[0]) for r in responses), f"{name}: {responses[0].text}"
