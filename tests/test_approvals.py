"""action: ask: the engine's ask decisions, and the held call in mitmproxy's test context (the
script's own addons; the commands by their methods: the test context has no flow view to
resolve @ids): a viewer's resume and kill, the commands, the deadline, approvals for a
while, counters reserved while held, the fallback without a viewer, monitor mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import flow as mflow
from mitmproxy import flowfilter
from mitmproxy.connection import ConnectionState

from addon_context import Proxy, proxy_context
from intercept_addon.policy.engine import Call, Engine
from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy.approvals import Approvals, describe
from intercept_addon.state.memory import MemoryStore

POLICY = """
version: "1"
tools:
  pay:
    rules:
      - name: "big payments"
        action: ask
        conditions:
          - path: args.amount
            op: gt
            value: 100
        on_deny: "Payments over 100 need a person"
      - name: "payments per minute"
        rate_limit: 2/minute
  wipe:
    rules:
      - action: ask
      - name: "no wipes on prod"
        action: deny
        when:
          - path: args.env
            op: eq
            value: prod
        reason: "never on prod"
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def proxy(tmp_path: Path, policy: Path):
    with proxy_context(tmp_path, policy, intercept_ask_timeout=5) as p:
        approvals(p).viewer = "mitmweb"  # as if running in mitmweb: a person can answer
        yield p


def approvals(p: Proxy) -> Approvals:
    return p.intercept.approvals


async def held(p: Proxy, tool: str, arguments: dict, agent: str = "a1") -> tuple[asyncio.Task, mflow.Flow]:
    """Send a call and wait until it is held for an answer."""
    task = asyncio.create_task(p.call(tool, arguments, agent))
    for _ in range(200):
        await asyncio.sleep(0.01)
        waiting = [h.flow for h in approvals(p).held.values() if h.key[0].endswith(agent) and h.flow.id not in
                   {f.id for f in getattr(p, "seen", [])}]
        if waiting:
            p.seen = [*getattr(p, "seen", []), waiting[0]]
            return task, waiting[0]
        assert not task.done(), "the call was not held"
    raise AssertionError("no call was held")


def error_of(flow: mflow.Flow) -> dict | None:
    return json.loads(flow.response.content)["error"] if flow.response is not None else None


async def evaluate(tool: str, arguments: dict) -> object:
    engine = Engine(parse_policy(POLICY))
    return await engine.evaluate(Call("a", tool, arguments), MemoryStore())


async def test_engine_asks_only_where_the_conditions_hold():
    big = await evaluate("pay", {"amount": 500})
    assert (big.allowed, big.kind, big.rule, big.message) == (True, "ask", "big payments", "Payments over 100 need a person")
    assert big.reservation is not None  # the rate limit's unit is reserved before anyone is asked
    cheap = await evaluate("pay", {"amount": 5})
    assert (cheap.allowed, cheap.kind) == (True, "allow")
    prod = await evaluate("wipe", {"env": "prod"})  # the other rules still judge: a deny is not asked about
    assert (prod.allowed, prod.kind, prod.message) == (False, "deny", "never on prod")
    assert (await evaluate("wipe", {"env": "dev"})).kind == "ask"


async def test_a_viewers_resume_approves(proxy):
    task, flow = await held(proxy, "pay", {"amount": 500})
    assert flow.intercepted and flow.marked == ":raised_hand:"
    assert flow.comment.startswith("ASK pay [big payments] agent agent-header:a1: until ")
    assert describe(flow.metadata["mcp.ask"]).startswith("waiting for a person, ")
    flow.resume()  # what mitmweb's and the console's resume do
    await task
    assert flow.response is None and not flow.intercepted  # forwarded
    assert flow.comment.startswith("ASK pay [big payments]: approved by mitmweb after ")
    [entry] = proxy.log_lines()
    assert (entry["decision"], entry["kind"], entry["asked"]["state"], entry["asked"]["by"]) == \
        ("allow", "ask", "approved", "mitmweb")
    assert entry["asked"]["waited_s"] >= 0 and entry["asked"]["at"]


async def test_a_viewers_kill_rejects_with_a_reason(proxy):
    task, flow = await held(proxy, "pay", {"amount": 500})
    flow.kill()  # mitmweb's and the console's kill: no event is set, the connection would be reset
    await task
    assert flow.error is None  # the agent gets a JSON-RPC answer, not a reset stream
    assert "pay was rejected by a person" in error_of(flow)["message"]
    assert flow.marked == ":no_entry:"
    assert proxy.log_lines()[0]["asked"]["state"] == "rejected"


async def test_commands_answer_and_say_who(proxy):
    task, flow = await held(proxy, "pay", {"amount": 500})
    assert proxy.command("intercept.pending")[0].startswith(f"{flow.id}  agent-header:a1  pay  big payments  ")
    assert approvals(proxy).reject([flow], "too much", "cli:alice") == "rejected 1 call(s)"
    await task
    assert error_of(flow)["message"].endswith("too much")
    assert proxy.log_lines()[0]["asked"]["by"] == "cli:alice"
    with pytest.raises(Exception, match="no call waiting"):
        approvals(proxy).approve([flow])


async def test_nobody_answers(tmp_path, policy):
    with proxy_context(tmp_path, policy, intercept_ask_timeout=1) as p:
        approvals(p).viewer = "mitmweb"
        flow = await p.call("pay", {"amount": 500})
        assert "Nobody approved this call of pay within 1 s" in error_of(flow)["message"]
        assert not flow.intercepted
        assert p.log_lines()[0]["asked"]["by"] == "nobody (timeout)"


async def test_approve_for_a_while_lets_the_same_call_through(proxy):
    task, flow = await held(proxy, "wipe", {"env": "dev"})
    assert approvals(proxy).approve([flow], "10m").endswith("for 10m")
    await task
    again = await proxy.call("wipe", {"env": "dev"})  # not held: it returns at once
    assert again.response is None and again.metadata["mcp.ask"]["by"].startswith("intercept.approve (earlier, until ")
    task, other = await held(proxy, "wipe", {"env": "test"})  # other arguments: asked again
    other.kill()
    await task
    task, elsewhere = await held(proxy, "wipe", {"env": "dev"}, agent="a2")  # another agent: asked again
    elsewhere.kill()
    await task


async def test_held_calls_keep_their_counters(proxy):
    one, first = await held(proxy, "pay", {"amount": 500})
    two, second = await held(proxy, "pay", {"amount": 600})
    third = await proxy.call("pay", {"amount": 700})  # 2 per minute: both units are held
    assert "Rate limit" in error_of(third)["message"]
    first.kill()  # a rejection gives its unit back
    await one
    four, fourth = await held(proxy, "pay", {"amount": 800})
    second.resume()
    fourth.resume()
    await asyncio.gather(two, four)


async def test_cheap_calls_are_not_held(proxy):
    flow = await proxy.call("pay", {"amount": 5})
    assert flow.response is None and "mcp.ask" not in flow.metadata and not flow.marked


async def test_without_a_viewer_the_fallback_decides(tmp_path, policy):
    for fallback, allowed in (("deny", False), ("allow", True)):
        with proxy_context(tmp_path / fallback, policy, intercept_ask_fallback=fallback) as p:
            assert approvals(p).viewer is None  # the test master is no viewer
            flow = await p.call("pay", {"amount": 500})
            assert (flow.response is None) is allowed
            if not allowed:
                assert "nobody can answer here" in error_of(flow)["message"]
            assert p.log_lines()[0]["asked"]["by"] == "intercept_ask_fallback (no interactive viewer)"


async def test_monitor_mode_never_holds(tmp_path, policy):
    with proxy_context(tmp_path, policy, intercept_mode="monitor") as p:
        approvals(p).viewer = "mitmweb"
        flow = await p.call("pay", {"amount": 500})
        assert flow.response is None and not flow.intercepted and "mcp.ask" not in flow.metadata


def test_options_are_checked(tmp_path, policy):
    with pytest.raises(Exception, match="intercept_ask_fallback"):
        with proxy_context(tmp_path, policy, intercept_ask_fallback="maybe"):
            pass


async def test_filters_a_person_types(proxy):
    """The console's and mitmdump's filters over the flows' notes (mitmweb's search box knows
    ~comment and ~marker, not ~meta)."""
    task, flow = await held(proxy, "pay", {"amount": 500})
    for expr in ("~meta 'mcp.tool: pay'", "~meta 'mcp.agent: agent-header:a1'", "~marker raised_hand",
                 "~comment '^ASK pay'", "~meta 'mcp.decision: ask'"):
        assert flowfilter.parse(expr)(flow), expr
    flow.kill()
    await task
    assert flowfilter.parse("~marker no_entry")(flow) and flowfilter.parse("~meta 'mcp.decision: deny'")(flow)
    assert not flowfilter.parse("~meta 'mcp.agent: agent-header:a2'")(flow)


def test_start_up_says_who_can_answer(tmp_path, policy, caplog):
    caplog.set_level("INFO", logger="intercept")
    with proxy_context(tmp_path, policy) as p:
        approvals(p).running()  # the test master is no interactive viewer, as mitmdump is not
        assert "no interactive viewer: calls of ask rules are denied (intercept_ask_fallback)" in caplog.text


async def test_an_agent_that_leaves_frees_its_units(proxy):
    one, first = await held(proxy, "pay", {"amount": 500})
    two, second = await held(proxy, "pay", {"amount": 600})
    first.client_conn.state = ConnectionState.CLOSED  # the agent gave up waiting and hung up
    await one
    assert proxy.log_lines()[0]["asked"]["by"] == "the agent (it disconnected)"
    three, third = await held(proxy, "pay", {"amount": 700})  # its unit is free again: held, not rate limited
    second.kill()
    third.kill()
    await asyncio.gather(two, three)
