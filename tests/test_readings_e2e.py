"""Conditions hold under the server's reading of an argument, not only the proxy's: through a
real mitmdump with the addon, in front of the official Python SDK server, whose ``charge(amount:
int)`` validates with pydantic in lax mode and reads JSON fractions as doubles.

Bug: the proxy compared numbers exactly and never coerced, so ``not_in: [13]`` let ``"13"`` and
``13.000000000000000001`` through, ``lt: 100`` let ``99.99999999999999999`` through, and a deny
rule ``when: amount gte 500`` never fired for ``"5000"``; the server read each as the number the
policy forbids and charged it. Each call below is proven by
the server's side-effect log.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from raw_mcp import REVISION_2026, call_2026, headers, is_denial, messages

pytestmark = pytest.mark.e2e

NOT_IN = "conditions: [{path: args.amount, op: not_in, value: [13, 666]}]"
LESS_THAN = "conditions: [{path: args.amount, op: lt, value: 100}]"
DENY_WHEN = "action: deny\n        when: [{path: args.amount, op: gte, value: 500}]"  # the condition triggers a denial


def policy(rule: str) -> str:
    return ('version: "1"\ntools:\n  charge:\n    rules:\n      - name: amounts\n'
            f'        {rule}\n        on_deny: "That amount is not allowed"\n')


@pytest.fixture
def stack_for(policy_file, stack_factory):
    def make(condition: str):
        policy_file.write_text(policy(condition))
        return stack_factory("--stateless", "--json-response")

    return make


async def charge(url: str, amount_json: str) -> dict:
    """A tools/call of charge whose amount is the literal JSON text ``amount_json``."""
    body = call_2026(1, "charge", {"amount": "AMOUNT"})
    text = json.dumps(body).replace('"AMOUNT"', amount_json)
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        resp = await http.post(url, content=text, headers=headers(revision=REVISION_2026, agent="a1", body=body))
    return messages(resp)[0]


def charged(stack) -> list[int]:
    lines = stack.side_log.read_text().splitlines()
    return [json.loads(line.split(" ", 1)[1])["amount"] for line in lines if line.startswith("charge ")]


@pytest.mark.parametrize(("condition", "forbidden", "allowed"), [
    (NOT_IN, ['"13"', '" 13 "', '"1_3"', '"13.0"', "13.000000000000000001", '"666"'], ["12", '"14"', "14.0"]),
    (LESS_THAN, ["99.99999999999999999", "100", '"99"'], ["99", "99.0"]),
    (DENY_WHEN, ['"5000"', '" 5_000 "', '"5e3"', "499.99999999999999999", "500"], ["499", '"499"']),
], ids=["not_in", "lt", "deny-when"])
async def test_a_value_the_server_reads_as_forbidden_is_denied(stack_for, condition, forbidden, allowed):
    stack = stack_for(condition)
    for amount_json in forbidden:
        answer = await charge(stack.url, amount_json)
        assert is_denial(answer) and "not allowed" in answer["error"]["message"], (amount_json, answer)
    assert charged(stack) == []
    for amount_json in allowed:  # control: the same server charges what the policy allows
        answer = await charge(stack.url, amount_json)
        assert not is_denial(answer), (amount_json, answer)
    assert charged(stack) == [json.loads(a) if a[0] != '"' else int(json.loads(a)) for a in allowed]
