"""policy/readings.py and the conditions that use it, with the servers' own readers as oracles:
the official Python SDK's argument binding (its JSON pre-parse, then pydantic in lax mode) and
Python's ``float`` (a reader of doubles: JavaScript, Go's float64, Python's json)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver.utilities.func_metadata import func_metadata

from intercept_addon.policy.arguments import ArgumentSchemas
from intercept_addon.policy.conditions import CompiledCondition
from intercept_addon.policy.engine import Call, Engine
from intercept_addon.policy.file import parse_policy
from intercept_addon.policy.readings import as_double, coerced
from intercept_addon.policy.rules import Condition
from intercept_addon.state.memory import MemoryStore
from intercept_addon.wire.jsonrpc import loads

def _bind_as(kind: Any):
    """The official Python SDK's own argument binding (pre-parse, then pydantic, lax) for a tool
    whose one parameter ``x`` has type ``kind``."""
    def tool(x): ...  # noqa: ANN001, ANN202

    tool.__annotations__ = {"x": kind}
    return func_metadata(tool)


BINDERS = {kind: _bind_as(kind) for kind in (int, float, bool, Decimal, str, list[int], list[str], dict[str, int])}


def condition(op: str, value: Any) -> CompiledCondition:
    return CompiledCondition.build(Condition(path="args.x", op=op, value=value))


def sdk_readings(value: Any) -> list[Any]:
    """What the SDK's server hands a tool for ``value`` under each parameter type it accepts it for."""
    found = []
    for binder in BINDERS.values():
        try:
            found.append(binder.validate_arguments({"x": value})["x"])
        except (pydantic.ValidationError, ValueError):
            pass
    return [plain(r) for r in found]


def plain(value: Any) -> Any:
    """A bound value as JSON-like data (Decimal stays exact; NaN is dropped by the callers)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def is_nan(value: Any) -> bool:
    return isinstance(value, (float, Decimal)) and value != value


def test_as_double_keeps_what_a_double_holds_and_rounds_the_rest():
    unchanged = {"a": [1, "x", True, None, 2**53], "b": 0.5}
    assert as_double(unchanged) is unchanged
    assert as_double(Decimal("0.09999999999999999999")) == 0.1
    assert as_double(2**53 + 1) == float(2**53)
    assert as_double({"n": [Decimal("1e-400")]}) == {"n": [0.0]}
    assert as_double(Decimal("1e400")) == float("inf")


@pytest.mark.parametrize(("value", "readings"), [
    ("13", (13,)), (" 13 ", (13,)), ("1_3", (13,)), ("1.3e1", (13,)), ("0x0d", (13,)),
    ("_13", (Decimal(13),)), ("\x1f13\x1c", (Decimal(13),)),
    ("yes", (True,)), ("1", (1, True)), ("Off", (False,)), ("inf", (float("inf"),)),
    ("[13]", ([13],)), (' {"a": 1}', ({"a": 1},)), ("null", (None,)),
    ("abc", ()), (True, (1, "true")), (0, (False, "0")), (13, ("13",)), (Decimal("13.0"), ("13",)),
    (None, ("null", 0)), ([], ("", 0)), ([" 13 "], (" 13 ", 13)), ({"a": 1}, ()),
])
def test_coerced_readings(value, readings):
    assert coerced(value) == readings


strings_like_numbers = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, width=64).map(repr),
    st.builds(lambda pad, n: f"{pad}{n}{pad}", st.sampled_from(["", " ", "\t", "\n "]), st.integers(-999, 999)),
    st.builds(lambda a, b: f"{a}_{b}", st.integers(1, 99), st.integers(0, 999)),
    st.sampled_from(["yes", "No", "ON", "off", "t", "F", "true", "False", "y", "n", "1", "0", "1.0", "-0", "+5"]),
    st.text(max_size=8),
)


json_texts = st.recursive(st.integers(-20, 20) | st.sampled_from(["13", " 1_3", "x", "yes"]) | st.none(),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner, max_size=2),
                          max_leaves=6)
values = st.one_of(strings_like_numbers, st.integers(-2, 2), st.booleans(), st.none(),
                   json_texts, json_texts.map(json.dumps))


@settings(max_examples=800, deadline=None)
@given(values)
def test_whatever_the_sdk_binds_a_value_to_is_judged(value):
    # Forbidding the bound value forbids this argument; a trigger on it fires for this argument.
    for read in sdk_readings(value):
        if is_nan(read):  # NaN equals nothing, on the server as well
            continue
        assert not condition("neq", read).passes(value), (value, read)
        assert not condition("not_in", [7, read]).passes(value), (value, read)
        assert condition("eq", read).triggers(value), (value, read)
        assert condition("in", [7, read]).triggers(value), (value, read)
        if isinstance(read, (int, float, Decimal)) and not isinstance(read, bool) and abs(read) != float("inf"):
            assert condition("gte", read).triggers(value) and condition("lte", read).triggers(value), (value, read)
        if isinstance(read, list) and read and read[0] is not None:
            assert condition("contains", read[0]).triggers(value), (value, read)


fractions = st.decimals(allow_nan=False, allow_infinity=False, places=25, min_value=-1000, max_value=1000)


@settings(max_examples=600, deadline=None)
@given(fractions, st.floats(-1000, 1000, width=64), st.sampled_from(["lt", "lte", "gt", "gte"]))
def test_an_ordering_that_holds_holds_for_the_double_too(actual, limit, op):
    compare = {"lt": float.__lt__, "lte": float.__le__, "gt": float.__gt__, "gte": float.__ge__}[op]
    exact = {"lt": Decimal.__lt__, "lte": Decimal.__le__, "gt": Decimal.__gt__, "gte": Decimal.__ge__}[op]
    limit_literal = Decimal(repr(limit))
    expected = exact(actual, limit_literal) and compare(float(actual), limit)
    assert condition(op, limit).passes(actual) is expected


@pytest.mark.parametrize(("op", "forbidden", "value"), [
    ("neq", 0, None), ("neq", 0, []), ("not_in", [13], [13]), ("not_in", [13], [[" 13 "]]),
    ("not_in", ["13"], Decimal("13.0")), ("not_in", ["13"], Decimal("130e-1")), ("neq", {"a": 13}, {"a": "13"}),
    ("not_in", [[13, 14]], ["13", 14.0]), ("neq", True, "yes"), ("neq", 1, True),
])
def test_javascript_and_elementwise_readings_are_forbidden_too(op, forbidden, value):
    # Number(null), Number([]), Number([13]), String(13.0) (zod's z.coerce); pydantic's list[int].
    assert not condition(op, forbidden).passes(value)
    assert condition(op, forbidden).holds_for(value)  # as parsed it is allowed: the readings decide


def test_schema_bounds_hold_for_the_double_too():
    schema = {"type": "object", "properties": {"n": {"type": "number", "exclusiveMaximum": 100},
                                               "k": {"not": {"const": 13}}}}
    check = ArgumentSchemas()
    near_100 = loads(b'{"n": 99.99999999999999999}')
    assert check.problem(schema, near_100) == ("args.n: 100.0 is greater than or equal to the maximum of 100"
                                               " (as a server reading numbers as doubles sees it)")
    assert "should not be valid" in check.problem(schema, loads(b'{"k": 13.000000000000000001}'))
    assert check.problem(schema, loads(b'{"n": 99.9999, "k": 12.5}')) is None  # control
    assert json.loads('{"n": 99.99999999999999999}')["n"] == 100.0  # the server's own reading


TRANSFER = """\
version: "1"
tools:
  transfer:
    rules:
      - name: big transfers need a person
        action: ask
        conditions: [{path: args.amount, op: gt, value: 1000}]
      - name: big transfers are limited
        rate_limit: {max: 1, window: 3600}
        when: [{path: args.amount, op: gte, value: 500}]
      - name: order cap
        conditions: [{path: args.order.amount, op: lte, value: 100, optional: true}]
"""


async def test_rules_that_trigger_fire_for_what_the_server_reads():
    # An ask rule, and a limit that applies "when", fire for "5000", which the SDK binds to 5000.
    engine, store = Engine(parse_policy(TRANSFER, "transfer.yaml"), clock=lambda: 0.0), MemoryStore()
    asked = await engine.evaluate(Call("s", "transfer", {"amount": "5000"}), store)
    assert asked.kind == "ask" and asked.rule == "big transfers need a person"
    await store.commit(asked.reservation)
    limited = await engine.evaluate(Call("s", "transfer", {"amount": " 5_000 "}), store)
    assert limited.kind == "rate_limit" and limited.rule == "big transfers are limited"
    assert (await engine.evaluate(Call("s", "transfer", {"amount": "499"}), store)).allowed  # control


async def test_a_path_into_a_string_holding_json_is_refused():
    # The SDK parses {"order": "{\"amount\": 1000000}"} into an object before binding it.
    engine, store = Engine(parse_policy(TRANSFER, "transfer.yaml"), clock=lambda: 0.0), MemoryStore()
    denied = await engine.evaluate(Call("s", "transfer", {"amount": 1, "order": '{"amount": 1000000}'}), store)
    assert not denied.allowed and "args.order is a string holding JSON" in denied.message
    for plain in ("plain", "[draft] notes"):  # not JSON: no server reads an object in it
        assert (await engine.evaluate(Call("s", "transfer", {"amount": 1, "order": plain}), store)).allowed
    assert (await engine.evaluate(Call("s", "transfer", {"amount": 1, "order": {"amount": 5}}), store)).allowed


@pytest.mark.parametrize(("op", "value", "argument"), [
    ("regex", "^[^;&|`$]*$", '["ls\\u003b id"]'),  # an untyped parameter gets ["ls; id"]
    ("contains", "audit@corp.com", '["noaudit@corp.com"]'),  # a list[str] gets ["noaudit@corp.com"]
    ("exists", True, "null"),  # an Optional[int] gets None
])
def test_a_string_holding_json_must_pass_as_the_server_parses_it(op, value, argument):
    assert condition(op, value).holds_for(argument)  # as parsed by the proxy it passes
    assert not condition(op, value).passes(argument)


def test_json_text_with_harmless_strings_passes_a_pattern():
    # A JSON document as a string argument: each string in it passes the pattern, so it is allowed.
    assert condition("regex", "^[ -~]{1,200}$").passes('{"name": "report", "rows": [1, 2]}')


@pytest.mark.parametrize("pad", [" " * 10_001, "0" * 10_001, "\t" * 10_001, "\u00a0" * 10_001])
def test_padding_does_not_hide_a_number(pad):
    assert condition("eq", 13).triggers(pad + "13")
    assert condition("gt", 1000).triggers(pad + "5000")
    assert not condition("not_in", [0]).passes(pad + "0")


@pytest.mark.parametrize("argument", ["1" * 400, "0x" + "f" * 400, ["1" * 400], "[" * 3000 + "]" * 3000,
                                      "[" * 100 + "]" * 100, ["[" * 3000 + "]" * 3000]])
@pytest.mark.parametrize(("op", "value"), [("neq", 5), ("not_in", [5]), ("eq", 5), ("gte", 5), ("contains", "a"),
                                           ("regex", "zz")])
def test_unreadable_readings_fail_closed_and_never_raise(argument, op, value):
    cond = condition(op, value)
    cond.passes(argument)  # no OverflowError, RecursionError
    assert cond.triggers(argument) or not cond.holds_for(argument) or op in ("neq", "not_in")
    if isinstance(argument, str) and argument.startswith("[" * 100):  # deeper than 64: not judged
        assert not cond.passes(argument) and (cond.triggers(argument) or op in ("neq", "not_in"))


def test_large_json_in_a_string_is_refused_without_reading_it():
    big = "[" + ",".join(["0"] * 500_000) + "]"
    assert not condition("neq", 5).passes(big) and condition("contains", 5).triggers(big)
    assert condition("neq", 5).passes([0] * 500_000)  # a real array is judged as it is


@pytest.mark.parametrize(("op", "value", "argument"), [
    ("contains", "admin", ["administrator-guide"]), ("contains", "ceo@corp.com", ["not-ceo@corp.com"]),
    ("lte", 0, None), ("lte", 0, []), ("lte", 0, ""), ("eq", 0, None),
])
def test_a_rule_does_not_fire_on_far_fetched_readings(op, value, argument):
    assert not condition(op, value).triggers(argument)
