"""A 2026-07-28 input_required retry is one logical call only while it is the SAME call: through a
real mitmdump with the addon in front of a server that does not bind ``requestState`` to the
arguments (tests/servers/hostile_upstream.py, scripted), and of the real SDK test server.

Bug: a retry echoing the interim answer's ``requestState`` was judged without counting, whatever
its arguments. The interim round spent the first call's amount on a spend cap; the agent then
retried with a far larger amount, uncounted: with a budget of 100, 10 on the books and 1000
forwarded. (The Python SDK 2.3 server seals ``requestState`` to the arguments digest and refuses
such a retry itself; a server that does not is charged.) Now a retry counts as its own call
unless it repeats the arguments of the call that was answered ``input_required``.
"""

from __future__ import annotations

import httpx2
import pytest

from harness import ran
from hostile import Hostile
from raw_mcp import REVISION_2026, call_2026, headers, is_denial, messages

pytestmark = pytest.mark.e2e

POLICY = """\
version: "1"
description: retries keep their arguments
tools:
  confirm_charge:
    rules:
      - name: charge budget
        conditions:
          - {path: state.confirm_charge.spent, op: lte, value: 100}
        state: {counter: spent, window: day, increment_from: args.amount}
        on_deny: "The charge budget is spent"
"""
ANSWERS = {"confirm": {"action": "accept", "content": {"ok": True}}}


async def charge_after_confirming(url: str, agent: str, first: int, retried: int) -> dict:
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        async def post(body: dict) -> dict:
            resp = await http.post(url, json=body, headers=headers(revision=REVISION_2026, agent=agent, body=body))
            return messages(resp)[0]

        interim = await post(call_2026(1, "confirm_charge", {"amount": first}))
        assert interim.get("result", {}).get("resultType") == "input_required", interim
        state = interim["result"]["requestState"]
        return await post(call_2026(2, "confirm_charge", {"amount": retried}, inputResponses=ANSWERS,
                                    requestState=state))


INTERIM = ('{"jsonrpc":"2.0","id":$id,"result":{"resultType":"input_required","requestState":"s",'
           '"inputRequests":{"confirm":{"method":"elicitation/create","params":{"message":"ok?",'
           '"requestedSchema":{"type":"object","properties":{}}}}}}}')
CHARGED = '{"jsonrpc":"2.0","id":$id,"result":{"resultType":"complete","content":[{"type":"text","text":"charged"}]}}'


@pytest.fixture
def naive(tmp_path):
    hostile = Hostile(tmp_path, POLICY)
    yield hostile
    hostile.stop()


async def test_retry_with_other_arguments_is_counted(naive):
    for answer in (INTERIM, CHARGED):
        naive.answer("tools/call", answer, headers={"content-type": "application/json"})
    answer = await charge_after_confirming(naive.url, "a1", 10, 1000)
    assert is_denial(answer) and "charge budget is spent" in answer["error"]["message"], answer
    calls = [b["params"]["arguments"]["amount"] for b in naive.received() if b.get("method") == "tools/call"]
    assert calls == [10]  # the retry for 1000 never reached the server


async def test_control_retry_with_the_same_arguments_is_not_counted_again(naive):
    for answer in (INTERIM, CHARGED):
        naive.answer("tools/call", answer, headers={"content-type": "application/json"})
    answer = await charge_after_confirming(naive.url, "a1", 60, 60)  # counted twice it would pass 100
    assert answer["result"]["content"][0]["text"] == "charged", answer


async def test_control_sdk_server_one_logical_call(stack_factory, policy_file):
    policy_file.write_text(POLICY)
    stack = stack_factory("--counting-tools")
    answer = await charge_after_confirming(stack.url, "b1", 60, 60)  # counted twice it would pass 100
    assert answer["result"]["content"][0]["text"] == "charged 60", answer
    assert ran(stack.side_log) == ["confirm_charge"]
