"""Who the agent is, end to end: real agent processes (LangChain's MCP adapters, the official
Python SDK) through a real mitmdump with the addon in front of the real SDK test server. No
agent sends X-Agent-Id unless a test says so: the proxy must tell agents apart by the process
that opened the connection, whatever sessions they open. The side-effect log counts what ran."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import anyio
import httpx2
import mcp
import pytest
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from agent_processes import langchain_agent, langchain_python, run_agents, sdk_agent
from harness import ran
from raw_mcp import DENIED_PREFIX

pytestmark = pytest.mark.e2e


def limit_policy(limit: int, scope: str | None = None) -> str:
    """The reference rule: the catalogue form of a rate limit on ``generate``."""
    scope_line = f"\n        scope: {scope}" if scope else ""
    return f"""\
version: "1"
description: agent identity
tools:
  generate:
    rules:
      - name: generate limit
        action: allow
        rate_limit: {{max: {limit}, window: 60}}{scope_line}
"""


@pytest.fixture(scope="module")
def lc_python() -> Path:
    return langchain_python()


async def test_langchain_agents_are_told_apart_by_process(stack_factory, policy_file, lc_python):
    """LangChain's ``MultiServerMCPClient(...).get_tools()`` opens a new MCP session (and TCP
    connection) for every tool call, so a budget per session never runs out and one per client
    address is shared by every local agent. Counted per process: each of two agent processes
    running the same code gets its own 30 of 35; the other 5 are denied and never run."""
    policy_file.write_text(limit_policy(30))
    stack = stack_factory()
    first, second = await run_agents(langchain_agent(lc_python, stack.url, "generate", 35),
                                     langchain_agent(lc_python, stack.url, "generate", 35))
    for agent in (first, second):
        assert len(agent.ok) == 30 and all(f"generated lc-{agent.pid}-" in text for text in agent.ok), agent
        assert len(agent.denied) == 5 and all("Rate limit" in e for e in agent.denied), agent.outcomes[30:]
        assert agent.outcomes[30:] == [{"error": e, "type": "McpError"} for e in agent.denied]
    prompts = [line for line in stack.side_log.read_text().splitlines() if line.startswith("generate ")]
    for agent in (first, second):
        assert sum(f'"lc-{agent.pid}-' in line for line in prompts) == 30
    assert len(prompts) == 60


async def test_decision_log_names_the_langchain_agent_process(stack_factory, policy_file, lc_python, tmp_path):
    """Each decision line names the agent (from the process), the process (its pid) and the MCP
    session the call came in (a new one per LangChain call)."""
    policy_file.write_text(limit_policy(3))
    log_path = tmp_path / "decisions.jsonl"
    stack = stack_factory(options=("intercept_state=memory", f"intercept_log={log_path}"))
    (agent,) = await run_agents(langchain_agent(lc_python, stack.url, "generate", 4))
    assert len(agent.ok) == 3 and len(agent.denied) == 1, agent.outcomes
    entries = await decision_lines(log_path, 4)
    assert [e["decision"] for e in entries] == ["allow"] * 3 + ["deny"]
    for e in entries:
        assert e["tool"] == "generate" and e["user"] is None
        assert e["process"].endswith(f"(pid {agent.pid})"), e
        assert e["agent"].startswith(f"process:{agent.pid}@"), e
    assert len({e["agent"] for e in entries}) == 1
    sessions = [e["session"] for e in entries]
    assert None not in sessions and len(set(sessions)) == 4, sessions


async def decision_lines(path: Path, count: int, timeout: float = 5) -> list[dict]:
    """The first ``count`` lines of the decision log, once written."""
    with anyio.fail_after(timeout):
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                return [json.loads(line) for line in lines[:count]]
            await asyncio.sleep(0.05)


STATELESS = ("--stateless", "--json-response")


@pytest.mark.parametrize("server_args, mode", [(STATELESS, "auto"), (STATELESS, "legacy"), ((), "legacy")],
                         ids=["stateless-2026", "stateless-initialize", "stateful-initialize"])
async def test_fresh_sessions_in_one_process_share_its_budget(stack_factory, policy_file, server_args, mode):
    """The official SDK client opening a new client (session, TCP connection) per call: against
    a stateless server in the 2026-07-28 era (``auto``: no session at all) and the initialize
    era, and against a stateful one that issues a session per initialize: still one agent, one
    3-per-60 s budget: 3 of 5 run."""
    policy_file.write_text(limit_policy(3))
    stack = stack_factory(*server_args)
    (agent,) = await run_agents(sdk_agent(stack.url, "generate", 5, "--mode", mode, "--per-call-session"))
    assert agent.ok == [f"generated sdk-{agent.pid}-{i}" for i in range(3)]
    assert len(agent.denied) == 2 and all("Rate limit" in e for e in agent.denied), agent.outcomes
    assert ran(stack.side_log) == ["generate"] * 3


@contextlib.asynccontextmanager
async def session(url: str):
    """One MCP session (initialize) with the SDK client in this process."""
    http = httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(30, read=60))
    async with http, mcp.Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
        yield c


async def outcome(c, tool: str, args: dict) -> str:
    try:
        return (await c.call_tool(tool, args)).content[0].text
    except mcp.MCPError as exc:
        return exc.message


async def test_mcp_session_scope_counts_each_session(stack_factory, policy_file):
    """``scope: mcp-session``: a budget per MCP session inside the agent. Two sessions of one
    process (one agent) against a stateful server: each runs 3 of 4."""
    policy_file.write_text(limit_policy(3, scope="mcp-session"))
    stack = stack_factory()
    async with session(stack.url) as a, session(stack.url) as b:
        outcomes = {name: [await outcome(c, "generate", {"prompt": f"{name}{i}"}) for i in range(4)]
                    for name, c in (("a", a), ("b", b))}
    for name, got in outcomes.items():
        assert got[:3] == [f"generated {name}{i}" for i in range(3)], got
        assert got[3].startswith(DENIED_PREFIX) and "Rate limit" in got[3], got
    assert ran(stack.side_log) == ["generate"] * 6


@contextlib.asynccontextmanager
async def legacy_stream(url: str, agent: str):
    """A legacy HTTP+SSE session (GET /sse + POST /messages/) with the SDK's sse_client."""
    def http_client(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers={**(headers or {}), "x-agent-id": agent}, auth=auth, trust_env=False,
                                  timeout=timeout or httpx2.Timeout(30, read=60))

    async with sse_client(url, timeout=10, httpx_client_factory=http_client) as (read, write):
        async with mcp.ClientSession(read, write) as s:
            await s.initialize()
            yield s


@pytest.mark.parametrize("identity, runs", [("agent-header,authorization,process,client", 3),
                                            ("legacy-session,agent-header", 6)])
async def test_legacy_streams_follow_the_configured_order(stack_factory, policy_file, identity, runs):
    """Two legacy streams sending the same X-Agent-Id, 4 calls each under a 3 limit: with the
    agent header first they are one agent (3 run in all); with ``legacy-session`` first each
    stream is its own agent (3 each)."""
    policy_file.write_text(limit_policy(3))
    stack = stack_factory(options=("intercept_state=memory", f"intercept_identity={identity}"), transport="sse")
    url = f"http://127.0.0.1:{stack.proxy_port}/sse"
    async with legacy_stream(url, "agent-7") as a, legacy_stream(url, "agent-7") as b:
        outcomes = []
        for i in range(4):
            for name, s in (("a", a), ("b", b)):
                with anyio.fail_after(10):
                    outcomes.append(await outcome(s, "generate", {"prompt": f"{name}{i}"}))
    assert ran(stack.side_log) == ["generate"] * runs
    denied = [o for o in outcomes if o.startswith(DENIED_PREFIX)]
    assert len(denied) == 8 - runs and all("Rate limit" in d for d in denied), outcomes
