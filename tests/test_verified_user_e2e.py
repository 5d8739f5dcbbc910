"""Verified users, end to end: JWT bearer tokens signed in the test with keys made in the test,
checked by a real mitmdump (``intercept_jwt_key=<PEM>``) in front of the real SDK test server.
A budget per user across agent processes, refusals of bad tokens before anything is forwarded,
and claims read by rules and by ``hide_denied``. The side-effect log counts what ran."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx2
import jwt
import mcp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.client.streamable_http import streamable_http_client

from agent_processes import run_agents, sdk_agent
from harness import ran
from raw_mcp import DENIED_PREFIX, REVISION_2026, call_2026, headers, messages, result_text

pytestmark = pytest.mark.e2e

USER_LIMIT_POLICY = """\
version: "1"
description: a budget per verified user
tools:
  generate:
    rules:
      - name: generate limit
        action: allow
        rate_limit: {max: 3, window: 60}
        scope: user
"""

ROLE_POLICY = """\
version: "1"
description: an admin-only tool
hide_denied: {hide_denied}
tools:
  secret_admin:
    rules:
      - name: admins only
        conditions:
          - {{path: identity.claims.role, op: in, value: [admin]}}
        on_deny: "Only admins may run secret_admin"
"""


class Issuer:
    """An ES256 signing key made for the test; its public half in a PEM file for the proxy."""

    def __init__(self, directory: Path):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = directory / f"issuer-{id(self)}.pem"
        self.public_pem.write_bytes(self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def token(self, sub: str, lifetime: float = 600, **claims: object) -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "iat": now, "exp": now + lifetime, **claims}, self.key, algorithm="ES256")


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer(tmp_path)


def jwt_stack(stack_factory, policy_file: Path, issuer: Issuer, policy: str, *options: str):
    policy_file.write_text(policy)
    return stack_factory(options=("intercept_state=memory", f"intercept_jwt_key={issuer.public_pem}", *options))


def bearer(token: str) -> str:
    return f"authorization=Bearer {token}"


async def test_one_user_has_one_budget_across_processes(stack_factory, policy_file, issuer):
    """``scope: user``: two agent processes (each naming itself with its own X-Agent-Id) sending
    the same user's token share that user's 3 calls: 3 of their 6 run. Another user's token
    has its own budget."""
    stack = jwt_stack(stack_factory, policy_file, issuer, USER_LIMIT_POLICY)
    alice = issuer.token("alice")
    first, second = await run_agents(sdk_agent(stack.url, "generate", 3, "--header", bearer(alice),
                                               "--header", "x-agent-id=agent-1"),
                                     sdk_agent(stack.url, "generate", 3, "--header", bearer(alice),
                                               "--header", "x-agent-id=agent-2"))
    assert len(first.ok) + len(second.ok) == 3, (first.outcomes, second.outcomes)
    denied = first.denied + second.denied
    assert len(denied) == 3 and all("Rate limit" in d for d in denied), denied
    assert ran(stack.side_log) == ["generate"] * 3

    (bob,) = await run_agents(sdk_agent(stack.url, "generate", 1, "--header", bearer(issuer.token("bob"))))
    assert bob.ok == [f"generated sdk-{bob.pid}-0"]
    assert ran(stack.side_log) == ["generate"] * 4


def none_token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600}, None, algorithm="none")


async def post_call(url: str, msg_id: int, authorization: str | None) -> httpx2.Response:
    """A 2026-07-28 tools/call of ``generate`` (no session needed) with this Authorization."""
    body = call_2026(msg_id, "generate", {"prompt": f"p{msg_id}"})
    h = headers(revision=REVISION_2026, body=body)
    if authorization is not None:
        h["authorization"] = authorization
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(url, json=body, headers=h)


def assert_refused(resp: httpx2.Response, msg_id: int, why: str) -> None:
    """401 with our JSON-RPC error, answering the request by its id (it was read: it has one)."""
    assert resp.status_code == 401, f"{why}: {resp.status_code} {resp.text}"
    (msg,) = messages(resp)
    assert msg.get("jsonrpc") == "2.0" and "result" not in msg and isinstance(msg.get("error"), dict), f"{why}: {msg}"
    assert isinstance(msg["error"].get("code"), int), f"{why}: {msg}"
    assert msg["error"]["message"].startswith(f"{DENIED_PREFIX} authorization refused"), f"{why}: {msg}"
    assert msg.get("id") == msg_id, f"{why}: the refusal does not answer request {msg_id}: {msg}"


async def test_bad_tokens_are_refused_before_the_server(stack_factory, policy_file, issuer, tmp_path):
    """A token signed by another key, one with ``alg: none``, an expired one, a malformed one and
    none at all: each answered 401 with a JSON-RPC error, never forwarded. The same call with a
    valid token runs."""
    stack = jwt_stack(stack_factory, policy_file, issuer, USER_LIMIT_POLICY)
    forger = Issuer(tmp_path)
    bad = {
        "forged (another key)": f"Bearer {forger.token('alice')}",
        "alg none": f"Bearer {none_token('alice')}",
        "expired": f"Bearer {issuer.token('alice', lifetime=-3600)}",
        "malformed": "Bearer not.a.jwt",
        "not a bearer token": f"Basic {issuer.token('alice')}",
        "no Authorization": None,
    }
    answers = [await post_call(stack.url, msg_id, authorization)
               for msg_id, authorization in enumerate(bad.values(), start=1)]
    assert ran(stack.side_log) == []
    assert [a.status_code for a in answers] == [401] * len(bad), [a.text for a in answers]

    ok = messages(await post_call(stack.url, 99, f"Bearer {issuer.token('alice')}"))[0]
    assert result_text(ok) == "generated p99", ok
    assert ran(stack.side_log) == ["generate"]
    for msg_id, (why, answer) in enumerate(zip(bad, answers), start=1):
        assert_refused(answer, msg_id, why)


async def test_token_is_refused_once_it_expires(stack_factory, policy_file, issuer):
    """A token verified while valid is refused once its ``exp`` passes (leeway 0): remembering a
    verified token must not outlive its expiry."""
    stack = jwt_stack(stack_factory, policy_file, issuer, USER_LIMIT_POLICY, "intercept_jwt_leeway=0")
    token = issuer.token("alice", lifetime=2)
    ok = messages(await post_call(stack.url, 1, f"Bearer {token}"))[0]
    assert result_text(ok) == "generated p1", ok
    await asyncio.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 1.2)
    assert_refused(await post_call(stack.url, 2, f"Bearer {token}"), 2, "expired since its first use")
    assert ran(stack.side_log) == ["generate"]


@contextlib.asynccontextmanager
async def client(url: str, token: str):
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, trust_env=False,
                              timeout=httpx2.Timeout(30, read=60))
    async with http, mcp.Client(streamable_http_client(url, http_client=http)) as c:
        yield c


async def test_role_claim_decides_the_call(stack_factory, policy_file, issuer):
    """``conditions: [{path: identity.claims.role, op: in, value: [admin]}]``: the admin's call
    runs, the dev's is denied with the rule's reason and never runs."""
    stack = jwt_stack(stack_factory, policy_file, issuer, ROLE_POLICY.format(hide_denied="false"))
    async with client(stack.url, issuer.token("ann", role="admin")) as admin:
        assert (await admin.call_tool("secret_admin", {})).content[0].text == "admin"
    async with client(stack.url, issuer.token("dave", role="dev")) as dev:
        with pytest.raises(mcp.MCPError) as info:
            await dev.call_tool("secret_admin", {})
        assert info.value.message == f"{DENIED_PREFIX} Only admins may run secret_admin"
        assert info.value.data["rule"] == "admins only"
    assert ran(stack.side_log) == ["secret_admin"]


async def test_hide_denied_lists_tools_per_user(stack_factory, policy_file, issuer):
    """``hide_denied: true``: the dev user's tools/list lacks the admin-only tool (denied to it
    outright by its role), the admin's lists it; the other tools show for both."""
    stack = jwt_stack(stack_factory, policy_file, issuer, ROLE_POLICY.format(hide_denied="true"))
    listed = {}
    for sub, role in (("ann", "admin"), ("dave", "dev")):
        async with client(stack.url, issuer.token(sub, role=role)) as c:
            listed[role] = {t.name for t in (await c.list_tools()).tools}
    assert "secret_admin" in listed["admin"]
    assert "secret_admin" not in listed["dev"]
    assert {"echo", "generate", "charge"} <= listed["dev"] and listed["admin"] - listed["dev"] == {"secret_admin"}
    assert ran(stack.side_log) == []
