"""The rule engine end to end, with an injected clock (never a sleep), on both stores."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from intercept_addon.policy.engine import Call, Decision, Engine
from intercept_addon.policy.file import load_policy, parse_policy
from intercept_addon.state import StoreError
from intercept_addon.state.memory import MemoryStore
from intercept_addon.state.sqlite import SqliteStore

FIXTURES = Path(__file__).resolve().parent / "fixtures"

DAY0 = 1_700_000_000 // 86400 * 86400  # midnight UTC
HOUR0 = DAY0 + 10 * 3600  # 10:00:00 UTC


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = float(t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "counters.db")
    yield s
    await s.close()


def make(text: str, clock: Clock) -> Engine:
    return Engine(parse_policy(textwrap.dedent(text), "policy.yaml"), clock=clock)


async def call(engine: Engine, store: Any, tool: str, args: dict[str, Any] | None = None,
               session: str = "s1", *, commit: bool = True) -> Decision:
    decision = await engine.evaluate(Call(session, tool, args or {}), store)
    if decision.allowed and decision.reservation is not None and commit:
        await store.commit(decision.reservation)
    return decision


async def value(engine: Engine, store: Any, namespace: str, counter: str, session: str = "s1") -> Decimal:
    spec = engine.counter(namespace, counter)
    assert spec is not None, f"no counter {namespace}.{counter}"
    return await store.value(spec.key(Call(session, "", {})), spec.window, engine.clock())


def retry_in(decision: Decision) -> int:
    """The retry_after a rate-limit denial reports, checked against its message."""
    assert not decision.allowed and decision.kind == "rate_limit", decision
    assert decision.retry_after is not None and decision.retry_after > 0
    assert decision.message.endswith(f"Retry after {decision.retry_after} s."), decision.message
    return decision.retry_after


# -- the catalogue's sliding window ----------------------------------------------------------

SORA = """\
    version: "1"
    tools:
      sora_generate_video_from_image:
        rules:
          - name: image-to-video rate limit
            action: allow
            rate_limit: {max: 30, window: 60}
            reason: "Image-to-video is limited to 30 calls per minute per session"
    """


async def test_catalogue_30_per_60_seconds(store):
    clock = Clock(HOUR0 + 7.25)
    engine = make(SORA, clock)
    tool = "sora_generate_video_from_image"
    for _ in range(30):
        d = await call(engine, store, tool)
        assert d.allowed and d.kind == "allow" and d.reservation is not None
        clock.advance(0.125)  # binary-exact steps: 30 calls over 3.75 s

    denied = await call(engine, store, tool)
    assert denied.rule == "image-to-video rate limit"
    assert 0 < denied.retry_after <= 60
    assert retry_in(denied) == 57  # the first call (3.75 s ago) leaves the window in 56.25 s
    assert denied.message == (
        "Image-to-video is limited to 30 calls per minute per session. Retry after 57 s."
    )

    # Another agent session has its own window.
    for _ in range(30):
        assert (await call(engine, store, tool, session="s2")).allowed
    assert not (await call(engine, store, tool, session="s2")).allowed

    # 60 s after the first call it has left the window: exactly one call fits again.
    clock.set(HOUR0 + 7.25 + 60)
    assert (await call(engine, store, tool)).allowed
    again = await call(engine, store, tool)
    assert retry_in(again) == 1  # the second call leaves at +60.125 s


async def test_catalogue_default_message(store):
    clock = Clock(HOUR0)
    engine = make("""\
        version: "1"
        tools:
          t:
            rules:
              - {action: allow, rate_limit: {max: 1, window: 90s}}
        """, clock)
    assert (await call(engine, store, "t")).allowed
    d = await call(engine, store, "t")
    assert d.rule == "t.rules[0]"
    assert d.message == "Rate limit of 1 calls per 90 s reached for t. Retry after 90 s."


async def test_sliding_window_frees_calls_one_by_one(store):
    clock = Clock(HOUR0 + 1800)  # the middle of an hour: nothing calendar-aligned about it
    t0 = clock.t
    engine = make("""\
        version: "1"
        tools:
          t:
            rules:
              - {name: three a minute, action: allow, rate_limit: {max: 3, window: 60}}
        """, clock)

    async def at(offset: float) -> Decision:
        clock.set(t0 + offset)
        return await call(engine, store, "t")

    for offset in (0, 10, 20):
        assert (await at(offset)).allowed
    assert retry_in(await at(30)) == 30
    assert retry_in(await at(59.5)) == 1
    assert (await at(60)).allowed  # the call at 0 left
    assert retry_in(await at(61)) == 9  # the call at 10 leaves at 70
    assert (await at(70)).allowed
    assert (await at(80)).allowed
    assert retry_in(await at(81)) == 39  # window now holds 60, 70, 80
    assert (await at(120)).allowed  # denied calls consumed nothing
    assert retry_in(await at(121)) == 9


# -- Intercept's calendar windows -------------------------------------------------------------


async def test_intercept_rate_limit_3_per_hour_is_calendar_aligned(store):
    clock = Clock(HOUR0 + 1000)
    engine = Engine(load_policy(FIXTURES / "valid_policy.yaml"), clock=clock)
    for i in range(3):
        assert (await call(engine, store, "open_ticket", session=f"agent-{i}")).allowed
        clock.advance(1)
    denied = await call(engine, store, "open_ticket")
    # Intercept's counters belong to the tool, not to a session; the window ends at 11:00 UTC.
    assert denied.rule == "tickets per hour"
    assert retry_in(denied) == 3600 - 1003
    assert denied.message == f"At most 3 tickets an hour. Retry after {3600 - 1003} s."
    assert not (await call(engine, store, "open_ticket", session="another")).allowed

    clock.set(HOUR0 + 3599)
    assert retry_in(await call(engine, store, "open_ticket")) == 1

    clock.set(HOUR0 + 3600)  # top of the hour: a fresh bucket, not a sliding window
    for _ in range(3):
        assert (await call(engine, store, "open_ticket")).allowed
    assert retry_in(await call(engine, store, "open_ticket")) == 3600


async def test_intercept_rate_limit_default_message(store):
    clock = Clock(HOUR0 + 59 * 60)
    engine = make("""\
        version: "1"
        tools:
          t:
            rules:
              - {name: per minute, rate_limit: 2/minute}
        """, clock)
    assert (await call(engine, store, "t")).allowed
    assert (await call(engine, store, "t")).allowed
    d = await call(engine, store, "t")
    assert d.message == "Rate limit of 2 calls per minute reached for t. Retry after 60 s."
    clock.advance(59.999)
    assert retry_in(await call(engine, store, "t")) == 1
    clock.advance(0.001)
    assert (await call(engine, store, "t")).allowed


@pytest.mark.parametrize(("op", "allowed"), [("lt", 59), ("lte", 60)])
async def test_star_rule_with_global_counter_across_tools(store, op: str, allowed: int):
    clock = Clock(HOUR0 + 5)
    engine = make(f"""\
        version: "1"
        tools:
          "*":
            rules:
              - name: global rate limit
                conditions:
                  - {{path: state._global.calls_per_minute, op: {op}, value: 60}}
                on_deny: "Rate limit: maximum 60 tool calls per minute"
                state: {{counter: calls_per_minute, window: minute}}
        """, clock)
    tools = ["list_issues", "get_issue", "create_issue"]
    for i in range(allowed):
        assert (await call(engine, store, tools[i % 3], session=f"s{i % 7}")).allowed, i
    denied = await call(engine, store, "brand_new_tool")
    assert denied.rule == "global rate limit"
    assert retry_in(denied) == 55
    assert denied.message == "Rate limit: maximum 60 tool calls per minute. Retry after 55 s."
    assert await value(engine, store, "_global", "calls_per_minute") == allowed
    clock.set(HOUR0 + 60)
    assert (await call(engine, store, "list_issues")).allowed


async def test_valid_fixture_star_counter(store):
    clock = Clock(HOUR0)
    engine = Engine(load_policy(FIXTURES / "valid_policy.yaml"), clock=clock)
    for i in range(39):  # lt 40: the total after the call must stay below 40
        assert (await call(engine, store, f"tool_{i}")).allowed
    denied = await call(engine, store, "tool_x")
    assert denied.rule == "calls per minute, all tools"
    assert denied.message == "At most 40 tool calls a minute. Retry after 60 s."


async def test_valid_fixture_regex_then_daily_count(store):
    engine = Engine(load_policy(FIXTURES / "valid_policy.yaml"), clock=Clock(DAY0 + 60))
    refused = await call(engine, store, "refund_order", {"order": "ord_12345"})
    assert (refused.rule, refused.message) == ("order reference", "Refunds name an order like ord_123456")
    for _ in range(4):  # lte 4: the total after the call may reach 4
        assert (await call(engine, store, "refund_order", {"order": "ord_123456"})).allowed
    denied = await call(engine, store, "refund_order", {"order": "ord_654321"})
    assert denied.rule == "refunds per day" and retry_in(denied) == 86400 - 60
    assert await value(engine, store, "refund_order", "refunds_today") == 4


# -- scopes ----------------------------------------------------------------------------------

SCOPES = """\
    version: "1"
    tools:
      per_session:
        rules: [{action: allow, rate_limit: {max: 2, window: 60}}]
      per_tool:
        rules: [{action: allow, rate_limit: {max: 2, window: 60}, scope: tool}]
      other_tool:
        rules: [{action: allow, rate_limit: {max: 2, window: 60}, scope: tool}]
      shared_a:
        rules: [{action: allow, rate_limit: {max: 3, window: 60}, scope: global}]
      shared_b:
        rules: [{action: allow, rate_limit: {max: 3, window: 60}, scope: global}]
      send_email:
        rules:
          - name: outbound budget
            conditions: [{path: state._global.outbound, op: lte, value: 3}]
            state: {counter: outbound, window: hour}
            scope: global
      send_sms:
        rules:
          - name: outbound budget
            conditions: [{path: state._global.outbound, op: lte, value: 3}]
            state: {counter: outbound, window: hour}
            scope: global
    """


async def test_scope_session(store):
    engine = make(SCOPES, Clock(HOUR0))
    assert (await call(engine, store, "per_session", session="a")).allowed
    assert (await call(engine, store, "per_session", session="a")).allowed
    assert not (await call(engine, store, "per_session", session="a")).allowed
    assert (await call(engine, store, "per_session", session="b")).allowed


async def test_scope_tool(store):
    engine = make(SCOPES, Clock(HOUR0))
    assert (await call(engine, store, "per_tool", session="a")).allowed
    assert (await call(engine, store, "per_tool", session="b")).allowed
    assert not (await call(engine, store, "per_tool", session="c")).allowed
    # Same counter name, other tool: its own counter.
    assert (await call(engine, store, "other_tool", session="c")).allowed


async def test_scope_global_shared_across_tools(store):
    engine = make(SCOPES, Clock(HOUR0))
    assert (await call(engine, store, "shared_a", session="a")).allowed
    assert (await call(engine, store, "shared_b", session="b")).allowed
    assert (await call(engine, store, "shared_a", session="c")).allowed
    d = await call(engine, store, "shared_b", session="d")
    assert not d.allowed and d.kind == "rate_limit"
    # Tool-scoped counters of the same name are untouched.
    assert (await call(engine, store, "per_tool")).allowed


async def test_scope_global_intercept_state_counter(store):
    engine = make(SCOPES, Clock(HOUR0 + 600))
    for tool in ("send_email", "send_sms", "send_email"):
        assert (await call(engine, store, tool)).allowed
    d = await call(engine, store, "send_sms", session="elsewhere")
    assert d.rule == "outbound budget" and retry_in(d) == 3000
    assert await value(engine, store, "_global", "outbound") == 3


# -- increment_from spend caps ---------------------------------------------------------------


async def test_spend_cap_lt_exactly_as_intercept(store):
    clock = Clock(DAY0 + 3600)
    engine = Engine(load_policy(FIXTURES / "valid_policy.yaml"), clock=clock)

    async def pay(cents: Any, currency: str = "chf") -> Decision:
        return await call(engine, store, "send_payment", {"cents": cents, "currency": currency})

    for _ in range(15):
        assert (await pay(25000)).allowed
    assert (await pay(24999)).allowed  # total 399,999 < 400,000
    assert await value(engine, store, "send_payment", "cents_today") == 399_999
    denied = await pay(1)  # total would be 400,000: not < 400,000
    assert denied.rule == "daily payment budget"
    assert retry_in(denied) == 86400 - 3600  # midnight UTC
    assert denied.message == "The daily payment budget of 4,000.00 is spent. Retry after 82800 s."
    assert (await pay(0)).allowed

    # Calls denied by another rule consume nothing.
    assert (await pay(30000)).rule == "single payment ceiling"
    assert (await pay(1, "gbp")).rule == "payment currencies"
    assert await value(engine, store, "send_payment", "cents_today") == 399_999

    clock.set(DAY0 + 86400)  # the next UTC day
    assert (await pay(25000)).allowed
    assert await value(engine, store, "send_payment", "cents_today") == 25000


SPEND = """\
    version: "1"
    tools:
      pay:
        rules:
          - name: cap
            conditions: [{{path: state.pay.spent, op: {op}, value: {limit}}}]
            state: {{counter: spent, window: day, increment_from: {source}}}
    """


def spend_engine(op: str, limit: Any, clock: Clock, source: str = "args.amount") -> Engine:
    return make(SPEND.format(op=op, limit=limit, source=source), clock)


async def test_spend_cap_lte_reaches_the_limit(store):
    engine = spend_engine("lte", 1000, Clock(DAY0))
    assert (await call(engine, store, "pay", {"amount": 1000})).allowed
    assert (await call(engine, store, "pay", {"amount": 0})).allowed
    assert not (await call(engine, store, "pay", {"amount": 1})).allowed
    assert await value(engine, store, "pay", "spent") == 1000


async def test_spend_cap_single_amount_over_the_limit(store):
    engine = spend_engine("lt", 100, Clock(DAY0 + 10))
    d = await call(engine, store, "pay", {"amount": 100})
    assert d.kind == "rate_limit" and retry_in(d) == 86390
    assert (await call(engine, store, "pay", {"amount": 99})).allowed


@pytest.mark.parametrize(
    "args",
    [{"amount": -1}, {"amount": -0.01}, {}, {"amount": None}, {"amount": "10"}, {"amount": True},
     {"amount": [10]}, {"amount": {"value": 10}}, {"amount": float("nan")}, {"amount": float("inf")},
     {"amount": Decimal("NaN")}, {"amount": Decimal("Infinity")}, {"other": 5}],
    ids=repr,
)
async def test_spend_cap_refuses_bad_amounts(store, args: dict[str, Any]):
    engine = spend_engine("lt", 100, Clock(DAY0))
    d = await call(engine, store, "pay", args)
    assert (d.allowed, d.kind, d.rule) == (False, "condition", "cap")
    assert d.message == "Invalid arguments for pay: args.amount must be a non-negative number"
    assert await value(engine, store, "pay", "spent") == 0
    assert (await call(engine, store, "pay", {"amount": 10})).allowed
    assert await value(engine, store, "pay", "spent") == 10


async def test_spend_cap_nested_increment_path(store):
    engine = spend_engine("lte", 10, Clock(DAY0), source="args.charge.lines.0.amount")
    assert (await call(engine, store, "pay", {"charge": {"lines": [{"amount": 7}]}})).allowed
    assert not (await call(engine, store, "pay", {"charge": {"lines": [{"amount": 4}]}})).allowed
    d = await call(engine, store, "pay", {"charge": {"lines": []}})
    assert d.message == "Invalid arguments for pay: args.charge.lines.0.amount must be a non-negative number"


@pytest.mark.parametrize("parse", ["decimal", "float"])
async def test_spend_cap_has_no_binary_fraction_surprises(store, parse: str):
    engine = spend_engine("lte", 0.3, Clock(DAY0))

    def args(amount: str) -> dict[str, Any]:
        text = f'{{"amount": {amount}}}'
        return json.loads(text, parse_float=Decimal) if parse == "decimal" else json.loads(text)

    assert (await call(engine, store, "pay", args("0.1"))).allowed
    assert (await call(engine, store, "pay", args("0.2"))).allowed  # 0.1 + 0.2 <= 0.3, exactly
    assert await value(engine, store, "pay", "spent") == Decimal("0.3")
    assert not (await call(engine, store, "pay", args("0.000001"))).allowed


async def test_spend_cap_counts_large_amounts_exactly(store):
    """Token base units overflow Decimal's default 28 digits: a rounded sum would stop counting
    and let spending past the cap."""
    limit = 10**29
    engine = spend_engine("lte", limit, Clock(DAY0))
    assert (await call(engine, store, "pay", {"amount": limit - 1})).allowed
    assert (await call(engine, store, "pay", {"amount": 1})).allowed
    assert await value(engine, store, "pay", "spent") == limit
    assert not (await call(engine, store, "pay", {"amount": 1})).allowed
    assert await value(engine, store, "pay", "spent") == limit


# -- reserve, commit, rollback ---------------------------------------------------------------


async def test_rollback_returns_quota_and_commit_keeps_it(store):
    engine = make("""\
        version: "1"
        tools:
          gen:
            rules: [{action: allow, rate_limit: {max: 1, window: 60}}]
        """, Clock(HOUR0))
    first = await call(engine, store, "gen", commit=False)
    assert first.allowed and first.reservation is not None
    assert not (await call(engine, store, "gen")).allowed  # reserved, not yet settled
    await store.rollback(first.reservation)  # the server provably did not run it

    second = await call(engine, store, "gen", commit=False)
    assert second.allowed
    await store.commit(second.reservation)
    assert not (await call(engine, store, "gen")).allowed


async def test_rollback_of_a_spend(store):
    engine = spend_engine("lt", 1000, Clock(DAY0 + 50))
    big = await call(engine, store, "pay", {"amount": 600}, commit=False)
    assert big.allowed
    assert not (await call(engine, store, "pay", {"amount": 500})).allowed
    await store.rollback(big.reservation)
    assert await value(engine, store, "pay", "spent") == 0
    assert (await call(engine, store, "pay", {"amount": 900})).allowed
    assert await value(engine, store, "pay", "spent") == 900


async def test_counters_of_one_call_are_reserved_atomically(store):
    engine = make("""\
        version: "1"
        tools:
          transfer:
            rules:
              - name: count
                conditions: [{path: state.transfer.calls, op: lte, value: 100}]
                state: {counter: calls, window: day}
              - name: volume
                conditions: [{path: state.transfer.volume, op: lte, value: 10}]
                state: {counter: volume, window: day, increment_from: args.amount}
        """, Clock(DAY0))
    assert (await call(engine, store, "transfer", {"amount": 6})).allowed
    d = await call(engine, store, "transfer", {"amount": 5})
    assert (d.allowed, d.kind, d.rule) == (False, "rate_limit", "volume")
    assert await value(engine, store, "transfer", "calls") == 1  # not incremented by the denied call
    assert await value(engine, store, "transfer", "volume") == 6
    assert (await call(engine, store, "transfer", {"amount": 4})).allowed
    assert await value(engine, store, "transfer", "calls") == 2


async def test_star_counter_full_leaves_tool_counter_untouched(store):
    engine = make("""\
        version: "1"
        tools:
          a:
            rules: [{name: hourly, rate_limit: 5/hour}]
          "*":
            rules: [{name: global, rate_limit: 2/minute}]
        """, Clock(HOUR0))
    assert (await call(engine, store, "a")).allowed
    assert (await call(engine, store, "b")).allowed
    d = await call(engine, store, "a")
    assert d.rule == "global"
    assert await value(engine, store, "a", "_rate_hour") == 1
    assert await value(engine, store, "_global", "_rate_minute") == 2


async def test_allowed_call_without_counters_has_no_reservation(store):
    engine = make('version: "1"\ntools: {}\n', Clock(0))
    d = await call(engine, store, "anything")
    assert (d.allowed, d.kind, d.reservation) == (True, "allow", None)


# -- hide, default deny, precedence ----------------------------------------------------------

HIDE = """\
    version: "1"
    hide:
      - delete_repository
      - "*_webhook*"
    tools:
      delete_repository:
        rules: []
    """


@pytest.mark.parametrize("tool", ["delete_repository", "create_webhook", "delete_webhook_secret", "a_webhook",
                                  "Delete_Repository", "create_WEBHOOK", "ｄelete_repository"])
async def test_hidden_tools_are_unknown(store, tool: str):
    d = await call(make(HIDE, Clock(0)), store, tool)
    assert (d.allowed, d.kind, d.rule) == (False, "hidden", "(hidden)")
    assert d.message == f"Unknown tool: {tool}"


@pytest.mark.parametrize("tool", ["webhook", "webhooks_list", "delete_repository2", "webhook_x"])
async def test_not_hidden(store, tool: str):
    assert (await call(make(HIDE, Clock(0)), store, tool)).allowed


async def test_hide_star_hides_everything(store):
    engine = make('version: "1"\nhide: ["*"]\ntools:\n  read_file: {rules: []}\n', Clock(0))
    for tool in ("read_file", "x", ""):
        assert (await call(engine, store, tool)).kind == "hidden"


async def test_hidden_before_default_deny(store):
    engine = make('version: "1"\ndefault: deny\nhide: [secret]\ntools: {}\n', Clock(0))
    assert (await call(engine, store, "secret")).kind == "hidden"
    assert (await call(engine, store, "other")).kind == "default_deny"


async def test_default_deny_fixture(store):
    clock = Clock(HOUR0)
    engine = Engine(load_policy(FIXTURES / "default_deny_policy.yaml"), clock=clock)
    assert (await call(engine, store, "read_notes")).allowed
    assert (await call(engine, store, "open_ticket")).allowed
    d = await call(engine, store, "purge_account")
    assert (d.kind, d.rule, d.message) == ("deny", "no purges", "Accounts are never purged by an agent")
    d = await call(engine, store, "write_notes")
    assert (d.allowed, d.kind, d.rule) == (False, "default_deny", "(default deny)")
    assert d.message == 'Tool "write_notes" is not permitted by policy'
    # "*" rules apply to listed tools (30/minute, lte) but do not rescue unlisted ones.
    for _ in range(28):
        assert (await call(engine, store, "read_notes")).allowed
    d = await call(engine, store, "read_notes")
    assert d.rule == "calls per minute, all tools" and retry_in(d) == 60
    assert (await call(engine, store, "write_notes")).kind == "default_deny"


async def test_default_deny_with_globs(store):
    engine = make("""\
        version: "1"
        default: deny
        tools:
          get_*: {rules: []}
          list_?: {rules: []}
          "*": {rules: []}
        """, Clock(0))
    for tool in ("get_issue", "get_", "list_a"):
        assert (await call(engine, store, tool)).allowed, tool
    for tool in ("getx", "list_ab", "GET_issue", "Get_issue", "list_", "x_get_issue"):
        assert (await call(engine, store, tool)).kind == "default_deny", tool


PRECEDENCE = """\
    version: "1"
    tools:
      "*":
        rules:
          - {name: star needs org, conditions: [{path: args.org, op: exists, value: true}]}
      "c*":
        rules:
          - {name: broad glob needs repo, conditions: [{path: args.repo, op: exists, value: true}]}
      "create_*":
        rules:
          - {name: glob needs title, conditions: [{path: args.title, op: exists, value: true}]}
      create_issue:
        rules:
          - {name: exact needs body, conditions: [{path: args.body, op: exists, value: true}]}
      "a_*":
        rules: [{action: deny, reason: "a_* first in the file"}]
      "*_b":
        rules: [{action: deny, reason: "*_b second"}]
      "*_repo":
        rules: [{action: deny, reason: "glob says no"}]
      delete_repo:
        rules: [{name: exact no, action: deny, on_deny: "exact says no"}]
    """


@pytest.mark.parametrize(
    ("tool", "args", "rule"),
    [
        ("create_issue", {}, "exact needs body"),
        ("create_issue", {"body": 1}, "glob needs title"),  # more specific glob first, whatever the file order
        ("create_issue", {"body": 1, "title": 1}, "broad glob needs repo"),
        ("create_issue", {"body": 1, "title": 1, "repo": 1}, "star needs org"),
        ("create_issue", {"body": 1, "title": 1, "repo": 1, "org": 1}, None),
        ("create_pr", {}, "glob needs title"),
        ("create_pr", {"title": 1, "repo": 1, "org": 1}, None),
        ("close_issue", {}, "broad glob needs repo"),
        ("delete_issue", {}, "star needs org"),
        ("delete_issue", {"org": 1}, None),
        ("a_b", {"org": 1}, "a_*.rules[0]"),  # equally specific globs: file order
        ("x_b", {"org": 1}, "*_b.rules[0]"),
        ("delete_repo", {"org": 1}, "exact no"),
        ("archive_repo", {"org": 1}, "*_repo.rules[0]"),
    ],
)
async def test_exact_glob_and_star_all_apply_in_precedence(store, tool: str, args: dict, rule: str | None):
    d = await call(make(PRECEDENCE, Clock(0)), store, tool, args)
    assert d.rule == rule
    assert d.allowed is (rule is None)


async def test_deny_messages(store):
    engine = make(PRECEDENCE, Clock(0))
    assert (await call(engine, store, "delete_repo")).message == "exact says no"
    assert (await call(engine, store, "archive_repo", {"org": 1})).message == "glob says no"
    engine = make("""\
        version: "1"
        tools:
          drop_table:
            rules: [{name: block, action: deny}]
        """, Clock(0))
    d = await call(engine, store, "drop_table")
    assert (d.kind, d.rule) == ("deny", "block")
    assert d.message == 'Tool "drop_table" is blocked by policy (rule "block")'


async def test_deny_rule_stops_before_counters(store):
    engine = make("""\
        version: "1"
        tools:
          t:
            rules:
              - {name: hourly, rate_limit: 5/hour}
              - {name: block, action: deny}
        """, Clock(HOUR0))
    assert (await call(engine, store, "t")).rule == "block"
    assert await value(engine, store, "t", "_rate_hour") == 0


async def test_tool_names_are_compared_exactly_and_case_variants_are_denied(store):
    allow = make("""\
        version: "1"
        tools:
          create_issue:
            rules: [{name: block, action: deny}]
          "delete_*":
            rules: [{name: no deletes, action: deny}]
        """, Clock(0))
    assert not (await call(allow, store, "create_issue")).allowed
    # A lenient server may bind these to the governed tool: never judged as some other tool.
    for tool in ("Create_Issue", "CREATE_ISSUE", "ｃreate_issue", "DELETE_repo"):
        d = await call(allow, store, tool)
        assert (d.allowed, d.rule) == (False, "(ambiguous name)"), tool
    for tool in ("create_issue ", " create_issue", "create-issue", "create_issuе"):
        assert (await call(allow, store, tool)).allowed, tool  # other names (the last one has a Cyrillic e)
    deny = make('version: "1"\ndefault: deny\ntools:\n  read_file: {rules: []}\n', Clock(0))
    assert (await call(deny, store, "read_file")).allowed
    assert (await call(deny, store, "Read_File")).kind == "default_deny"


# -- hot reload, errors ----------------------------------------------------------------------

RELOAD = """\
    version: "1"
    description: {description}
    tools:
      gen:
        rules: [{{action: allow, rate_limit: {{max: {max}, window: 60}}}}]
      create_issue:
        rules: [{{name: hourly, rate_limit: {hourly}/hour}}]
    """


async def test_new_engine_from_changed_policy_keeps_counters(store):
    clock = Clock(HOUR0 + 30)
    old = make(RELOAD.format(description="v1", max=3, hourly=5), clock)
    for _ in range(3):
        assert (await call(old, store, "gen")).allowed
    for _ in range(5):
        assert (await call(old, store, "create_issue")).allowed
    assert not (await call(old, store, "gen")).allowed

    raised = make(RELOAD.format(description="v2", max=5, hourly=7), clock)
    assert (await call(raised, store, "gen")).allowed
    assert (await call(raised, store, "gen")).allowed
    assert not (await call(raised, store, "gen")).allowed  # 5 in the window: the 3 from before count
    assert (await call(raised, store, "create_issue")).allowed
    assert (await call(raised, store, "create_issue")).allowed
    assert not (await call(raised, store, "create_issue")).allowed

    lowered = make(RELOAD.format(description="v3", max=2, hourly=1), clock)
    assert not (await call(lowered, store, "gen")).allowed
    assert not (await call(lowered, store, "create_issue")).allowed
    assert (await call(lowered, store, "gen", session="fresh")).allowed


class BrokenStore(MemoryStore):
    async def reserve(self, requests, now):  # type: ignore[override]
        raise StoreError("disk on fire")

    async def value(self, key, window, now):  # type: ignore[override]
        raise StoreError("disk on fire")


async def test_unavailable_state_fails_closed():
    engine = make("""\
        version: "1"
        tools:
          a:
            rules: [{name: hourly, rate_limit: 5/hour}]
          b:
            rules:
              - name: reads a counter
                conditions: [{path: state.a._rate_hour, op: lt, value: 3}]
          c:
            rules: []
        """, Clock(HOUR0))
    for tool in ("a", "b"):
        d = await engine.evaluate(Call("s", tool, {}), BrokenStore())
        assert (d.allowed, d.kind) == (False, "error")
        assert "disk on fire" in d.message
    assert (await engine.evaluate(Call("s", "c", {}), BrokenStore())).allowed  # no state needed


async def test_condition_reading_another_tools_counter(store):
    engine = make("""\
        version: "1"
        tools:
          write:
            rules: [{name: hourly writes, rate_limit: 10/hour}]
          publish:
            rules:
              - name: only after a few writes
                conditions: [{path: state.write._rate_hour, op: gte, value: 2}]
        """, Clock(HOUR0))
    assert (await call(engine, store, "publish")).rule == "only after a few writes"
    await call(engine, store, "write")
    await call(engine, store, "write")
    assert (await call(engine, store, "publish")).allowed
    assert await value(engine, store, "write", "_rate_hour") == 2  # reading does not count


# -- identity: scopes, identity paths, when, hide_denied ------------------------------------

IDENTITY_POLICY = """\
    version: "1"
    hide_denied: true
    tools:
      admin_tool:
        rules:
          - name: admins only
            conditions: [{path: identity.claims.role, op: in, value: [admin]}]
      gen:
        rules:
          - action: allow
            rate_limit: {max: 2, window: 60}
            scope: user
      per_session:
        rules:
          - action: allow
            rate_limit: {max: 1, window: 60}
            scope: mcp-session
      big:
        rules:
          - action: allow
            rate_limit: {max: 1, window: 60}
            when: [{path: args.size, op: gt, value: 10}]
      interns_blocked:
        rules:
          - action: deny
            reason: not for interns
            when: [{path: identity.claims.team, op: eq, value: interns}]
    """


def who(agent: str, tool: str, args: dict[str, Any] | None = None, *, user: str | None = None,
        claims: dict[str, Any] | None = None, session: str | None = None) -> Call:
    return Call(agent, tool, args or {}, user, claims, session)


async def test_identity_claims_decide_per_user(store):
    engine = make(IDENTITY_POLICY, Clock(HOUR0))
    assert (await engine.evaluate(who("a", "admin_tool", user="ann", claims={"role": "admin"}), store)).allowed
    d = await engine.evaluate(who("a", "admin_tool", user="bob", claims={"role": "dev"}), store)
    assert (d.allowed, d.rule) == (False, "admins only")
    d = await engine.evaluate(who("a", "admin_tool"), store)  # no verified user: no claims to trust
    assert not d.allowed


async def test_user_scope_counts_per_verified_user_across_agents(store):
    engine = make(IDENTITY_POLICY, Clock(HOUR0))
    for agent in ("proc-1", "proc-2"):
        assert (await call_with(engine, store, who(agent, "gen", user="ann"))).allowed
    assert not (await call_with(engine, store, who("proc-3", "gen", user="ann"))).allowed
    assert (await call_with(engine, store, who("proc-3", "gen", user="bob"))).allowed
    d = await engine.evaluate(who("proc-4", "gen"), store)
    assert not d.allowed and "per verified user" in d.message


async def test_mcp_session_scope_counts_inside_an_agent(store):
    engine = make(IDENTITY_POLICY, Clock(HOUR0))
    assert (await call_with(engine, store, who("a", "per_session", session="s1"))).allowed
    assert not (await call_with(engine, store, who("a", "per_session", session="s1"))).allowed
    assert (await call_with(engine, store, who("a", "per_session", session="s2"))).allowed
    assert (await call_with(engine, store, who("b", "per_session", session="s1"))).allowed  # another agent


async def test_when_selects_the_calls_a_rule_applies_to(store):
    engine = make(IDENTITY_POLICY, Clock(HOUR0))
    for _ in range(3):
        assert (await call_with(engine, store, who("a", "big", {"size": 5}))).allowed  # rule does not apply
    assert (await call_with(engine, store, who("a", "big", {"size": 50}))).allowed
    assert not (await call_with(engine, store, who("a", "big", {"size": 50}))).allowed
    d = await engine.evaluate(who("a", "interns_blocked", user="ivy", claims={"team": "interns"}), store)
    assert (d.allowed, d.message) == (False, "not for interns")
    assert (await engine.evaluate(who("a", "interns_blocked", user="ann", claims={"team": "core"}), store)).allowed


def test_denied_outright_is_per_caller():
    engine = make(IDENTITY_POLICY, Clock(HOUR0))
    intern = who("a", "", user="ivy", claims={"team": "interns", "role": "dev"})
    admin = who("a", "", user="ann", claims={"role": "admin", "team": "core"})

    def outright(caller: Call, tool: str) -> bool:
        return engine.denied_outright(Call(caller.agent, tool, {}, caller.user, caller.claims))

    assert outright(intern, "interns_blocked") and not outright(admin, "interns_blocked")
    assert outright(intern, "admin_tool") and not outright(admin, "admin_tool")
    assert not outright(intern, "gen") and not outright(intern, "big")  # limits and argument rules: not outright


async def call_with(engine: Engine, store: Any, c: Call) -> Decision:
    decision = await engine.evaluate(c, store)
    if decision.allowed and decision.reservation is not None:
        await store.commit(decision.reservation)
    return decision
