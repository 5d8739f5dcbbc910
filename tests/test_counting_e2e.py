"""Regression tests for the ledger: once a call has been forwarded its quota is spent, and a
refused request releases everything it reserved. A real mitmdump with the addon in front of the
real SDK test server (``--counting-tools``), or an upstream whose answers say nothing
(tests/servers/unclear_answers.py); the server's side-effect log counts what ran."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

from harness import ROOT, Process, free_port, ran, start_mitmdump, wait_for_port
from raw_mcp import (DENIED_PREFIX, REVISION_2026, call, call_2026, headers, initialize, is_denial, messages,
                     result_text)

pytestmark = pytest.mark.e2e

STATELESS = ("--counting-tools", "--stateless", "--json-response")


def policy(generate_scope: str = "") -> str:
    scope = f"\n        scope: {generate_scope}" if generate_scope else ""
    return f"""\
version: "1"
description: counting tests
hide: [secret_admin]
tools:
  generate:
    rules:
      - name: generate limit
        action: allow
        rate_limit: {{max: 3, window: 60}}{scope}
  slow:
    rules:
      - name: slow limit
        action: allow
        rate_limit: {{max: 3, window: 60}}
  confirm_generate:
    rules:
      - name: confirmed generate limit
        action: allow
        rate_limit: {{max: 3, window: 60}}
  confirm_charge:
    rules:
      - name: max confirmed charge
        conditions:
          - {{path: args.amount, op: lte, value: 500}}
        on_deny: "Charges above 500 are not allowed"
"""


def counting_stack(stack_factory, policy_file: Path, *server_args: str, text: str | None = None):
    policy_file.write_text(text or policy())
    return stack_factory(*server_args)


async def grown(side_log: Path, before: int, timeout: float = 5.0) -> bool:
    """Wait until the side-effect log has more than ``before`` lines (a tool started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(ran(side_log)) > before:
            return True
        await asyncio.sleep(0.02)
    return False


async def read_http_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = int(next((v for k, v in fields.items() if k.strip().lower() == "content-length"), "0"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


async def post_then_hang_up(port: int, body: dict, side_log: Path) -> dict | None:
    """POST ``body`` on a raw connection; hang up once the tool has started. Returns the answer if
    one came first (a local denial), else None (the client hung up)."""
    before = len(ran(side_log))
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
                 b"accept: application/json, text/event-stream\r\ncontent-length: %d\r\n\r\n%s"
                 % (port, len(payload), payload))
    await writer.drain()
    answer = asyncio.ensure_future(read_http_answer(reader))
    started = asyncio.ensure_future(grown(side_log, before))
    done, _ = await asyncio.wait({answer, started}, timeout=6, return_when=asyncio.FIRST_COMPLETED)
    for task in (answer, started):
        task.cancel()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    if answer in done:
        return json.loads(answer.result()[1])
    assert started in done and started.result(), "the call was neither answered nor started"
    return None


async def post_then_time_out(url: str, body: dict, side_log: Path) -> dict | None:
    """POST ``body`` with a client that gives up after 1 s (an agent's tool-call timeout)."""
    before = len(ran(side_log))
    async with httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(5, read=1.0)) as http:
        try:
            resp = await http.post(url, json=body, headers=headers())
        except httpx2.ReadTimeout:
            assert await grown(side_log, before), "timed out, yet the tool never started"
            return None
    return messages(resp)[0]


async def test_hang_up_after_forward_keeps_the_quota(stack_factory, policy_file):
    """Bug: a client that hangs up (or times out) once a call is forwarded got its quota back:
    the ``error`` hook rolled the reservation back, though the tool was already running. So an
    agent could run a 3-per-minute tool without limit by never waiting for the answer (8 of 8
    ran). Now: a forwarded call is spent, whatever happens to the connection."""
    stack = counting_stack(stack_factory, policy_file, *STATELESS)
    answers = []
    for i in range(8):
        body = call(i + 1, "slow", {"seconds": 2, "tag": f"t{i}"})  # outlives the client
        if i % 2 == 0:
            answers.append(await post_then_hang_up(stack.proxy_port, body, stack.side_log))
        else:
            answers.append(await post_then_time_out(stack.url, body, stack.side_log))
        await asyncio.sleep(0.1)  # the proxy has seen the hang-up before the next attempt

    assert ran(stack.side_log).count("slow") == 3
    denials = [a for a in answers if a is not None]
    assert len(denials) == 5 and all(is_denial(a) and a["error"]["data"]["rule"] == "slow limit" for a in denials)


async def test_cancelled_after_forward_keeps_the_quota(stack_factory, policy_file):
    """Bug: ``notifications/cancelled`` after the call was forwarded refunded it: the SDK server
    answers the cancelled request with -32800 "Request cancelled", and any error answer rolled
    the reservation back, though the tool had started (8 of 8 ran). Now -32800 keeps the quota:
    only errors proving the tool never ran (-32700/-32600/-32601/-32602, 4xx) refund."""
    stack = counting_stack(stack_factory, policy_file, "--counting-tools")
    async with httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(10)) as http:
        resp = await http.post(stack.url, json=initialize(0, "2025-11-25"), headers=headers())
        assert resp.status_code == 200, resp.text
        h = headers(revision="2025-11-25", session=resp.headers["mcp-session-id"])
        resp = await http.post(stack.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
        assert resp.status_code == 202

        answers = []
        for i in range(8):
            msg_id, before = i + 1, len(ran(stack.side_log))
            async with http.stream("POST", stack.url, json=call(msg_id, "slow", {"seconds": 20, "tag": f"c{i}"}),
                                   headers=h) as resp:
                if "text/event-stream" in resp.headers.get("content-type", ""):
                    assert await grown(stack.side_log, before), "the forwarded call never started"
                    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                              "params": {"requestId": msg_id, "reason": "the agent gave up"}}
                    assert (await http.post(stack.url, json=cancel, headers=h)).status_code == 202
                await asyncio.wait_for(resp.aread(), 10)
            answers.append(messages(resp)[-1])

    cancelled = [a for a in answers if a.get("error", {}).get("code") == -32800]
    denials = [a for a in answers if is_denial(a)]
    assert ran(stack.side_log).count("slow") == 3
    assert len(cancelled) == 3 and all(a["error"]["message"] == "Request cancelled" for a in cancelled)
    assert len(denials) == 5 and all(a["error"]["data"]["rule"] == "slow limit" for a in denials)


@pytest.mark.parametrize("answer", ["500", "drop", "internal-error", "server-error"])
async def test_answer_of_unknown_meaning_keeps_the_quota(tmp_path, policy_file, answer):
    """Bug: a forwarded call answered with a 5xx, a dropped connection, or a JSON-RPC error that
    does not prove the tool never ran (-32603, -32000) got its quota back, though this upstream
    ran every call it received: 5 of 5 ran under a 3 limit. Now only -32700/-32600/-32601/-32602
    or a 4xx refund; anything else keeps the quota."""
    policy_file.write_text(policy())
    port, side = free_port(), tmp_path / "side-effects.log"
    side.touch()
    upstream = Process([sys.executable, str(ROOT / "tests/servers/unclear_answers.py"), "--port", str(port),
                        "--log", str(side), "--answer", answer], tmp_path / "upstream.log")
    try:
        wait_for_port(port, upstream.proc)
        proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
        try:
            async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
                answers = [await http.post(f"http://127.0.0.1:{proxy_port}/mcp", headers=headers(),
                                           json=call(i + 1, "generate", {"prompt": f"p{i}"})) for i in range(5)]
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    assert ran(side) == ["generate"] * 3
    denials = [messages(a)[0] for a in answers[3:]]
    assert all(is_denial(d) and d["error"]["data"]["rule"] == "generate limit" for d in denials), denials


async def ordinary_calls(url: str, agent: str, n: int) -> list[dict]:
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        return [messages(await http.post(url, json=call(100 + i, "generate", {"prompt": f"{agent}-{i}"}),
                                         headers=headers(agent=agent)))[0] for i in range(n)]


async def test_refused_batch_releases_its_reservations(stack_factory, policy_file):
    """Bug: a 2025-03-26 batch whose first element is an allowed rate-limited call and whose
    later element is refused (a tools/call sent as a notification) was answered locally, but the
    first element's reservation was never given back: 3 such refused batches drained the
    3-per-minute budget, so the agent's next ordinary calls were denied though nothing ran. Now
    a refused request releases everything it reserved."""
    stack = counting_stack(stack_factory, policy_file, *STATELESS)
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        for i in range(5):
            batch = [call(i + 1, "generate", {"prompt": f"batch {i}"}),
                     call(None, "generate", {"prompt": "as a notification"})]
            resp = await http.post(stack.url, json=batch, headers=headers(revision="2025-03-26", agent="a1"))
            assert 400 <= resp.status_code < 500 and any(is_denial(m) for m in messages(resp)), resp.text
    assert ran(stack.side_log) == []  # nothing of a refused batch went upstream

    answers = await ordinary_calls(stack.url, "a1", 4)
    assert [result_text(a) for a in answers[:3]] == ["generated a1-0", "generated a1-1", "generated a1-2"]
    assert is_denial(answers[3]) and answers[3]["error"]["data"]["rule"] == "generate limit"
    assert ran(stack.side_log).count("generate") == 3


async def test_refused_lone_surrogate_releases_its_reservation(stack_factory, policy_file):
    """Bug: a tools/call whose argument holds a lone surrogate (``"\\ud800"`` as a JSON escape)
    passed the policy and reserved the counter, then was refused when the proxy re-serialised
    it (``jsonrpc.dumps`` raises); the reservation stayed. Under a global limit one agent thereby
    drained everyone's budget with requests that never ran: another agent's calls were denied.
    Now the refusal releases it."""
    stack = counting_stack(stack_factory, policy_file, *STATELESS, text=policy(generate_scope="global"))
    raw = (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call",'
           b'"params":{"name":"generate","arguments":{"prompt":"\\ud800"}}}')
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        for i in range(3):
            resp = await http.post(stack.url, content=raw % (i + 1), headers=headers(agent="mallory"))
            assert 400 <= resp.status_code < 500 and is_denial(messages(resp)[0]), resp.text
    assert ran(stack.side_log) == []

    answers = await ordinary_calls(stack.url, "alice", 4)
    assert [result_text(a) for a in answers[:3]] == ["generated alice-0", "generated alice-1", "generated alice-2"]
    assert is_denial(answers[3]) and answers[3]["error"]["data"]["rule"] == "generate limit"
    assert ran(stack.side_log).count("generate") == 3


@contextlib.asynccontextmanager
async def client_2026(url: str, agent: str):
    async def confirm(ctx, params) -> ElicitResult:
        return ElicitResult(action="accept", content={"ok": True})

    http = httpx2.AsyncClient(headers={"x-agent-id": agent}, trust_env=False, timeout=httpx2.Timeout(10))
    async with http, mcp.Client(streamable_http_client(url, http_client=http), mode=REVISION_2026,
                                elicitation_callback=confirm) as c:
        yield c


async def test_input_required_retry_is_the_same_call(stack_factory, policy_file):
    """Bug (2026-07-28 multi-round-trip): a tools/call answered ``input_required`` and retried by
    the client (new id, same name and arguments, ``inputResponses`` and the echoed
    ``requestState``) was counted twice: the interim answer committed the first round and the
    retry reserved again, so under 3-per-minute the second logical call's retry was already
    denied. Now one logical call counts once: three succeed, the fourth is denied. The retry is
    still judged on its own arguments: a retry that breaks a condition is denied."""
    stack = counting_stack(stack_factory, policy_file, "--counting-tools")
    outcomes = []
    async with client_2026(stack.url, "a1") as c:  # the SDK client retries with the answers itself
        for i in range(4):
            try:
                result = await c.call_tool("confirm_generate", {"prompt": f"p{i}"})
                outcomes.append(result.content[0].text)
            except mcp.MCPError as exc:
                outcomes.append(exc.message if exc.message.startswith(DENIED_PREFIX) else f"other error: {exc}")
    assert outcomes[:3] == ["generated p0", "generated p1", "generated p2"]
    assert outcomes[3].startswith(DENIED_PREFIX) and "Retry after" in outcomes[3]
    assert ran(stack.side_log) == ["confirm_generate"] * 3

    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        async def post(body: dict) -> dict:
            resp = await http.post(stack.url, json=body, headers=headers(revision=REVISION_2026, agent="a2", body=body))
            return messages(resp)[0]

        interim = await post(call_2026(1, "confirm_charge", {"amount": 100}))
        assert interim.get("result", {}).get("resultType") == "input_required", interim
        state = interim["result"]["requestState"]
        answers = {"confirm": {"action": "accept", "content": {"ok": True}}}
        # The retry with other arguments is judged on them, whatever requestState it echoes.
        over = await post(call_2026(2, "confirm_charge", {"amount": 900}, inputResponses=answers, requestState=state))
        assert is_denial(over) and "Charges above 500" in over["error"]["message"]
        done = await post(call_2026(3, "confirm_charge", {"amount": 100}, inputResponses=answers, requestState=state))
        assert done["result"]["content"][0]["text"] == "charged 100"
    assert ran(stack.side_log)[3:] == ["confirm_charge"]
