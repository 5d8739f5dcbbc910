"""policy/readings.py and the conditions that use it, with the servers' own readers as oracles:
pydantic in lax mode (what the official Python SDK validates arguments with) and Python's
``float`` (a reader of doubles: JavaScript, Go's float64, Python's json)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intercept_addon.policy.arguments import ArgumentSchemas
from intercept_addon.policy.conditions import CompiledCondition
from intercept_addon.policy.readings import as_double, coerced
from intercept_addon.policy.rules import Condition
from intercept_addon.wire.jsonrpc import loads

LAX = {kind: pydantic.TypeAdapter(kind) for kind in (int, float, bool, str)}


def condition(op: str, value: Any) -> CompiledCondition:
    return CompiledCondition.build(Condition(path="args.x", op=op, value=value))


def lax_readings(value: Any) -> list[Any]:
    """What the Python SDK's server hands a tool whose parameter is int, float, bool or str."""
    found = []
    for adapter in LAX.values():
        try:
            found.append(adapter.validate_python(value))
        except pydantic.ValidationError:
            pass
    return found


def test_as_double_keeps_what_a_double_holds_and_rounds_the_rest():
    unchanged = {"a": [1, "x", True, None, 2**53], "b": 0.5}
    assert as_double(unchanged) is unchanged
    assert as_double(Decimal("0.09999999999999999999")) == 0.1
    assert as_double(2**53 + 1) == float(2**53)
    assert as_double({"n": [Decimal("1e-400")]}) == {"n": [0.0]}
    assert as_double(Decimal("1e400")) == float("inf")


@pytest.mark.parametrize(("value", "readings"), [
    ("13", (13,)), (" 13 ", (13,)), ("1_3", (13,)), ("1.3e1", (13,)), ("0x0d", (13,)),
    ("yes", (True,)), ("1", (1, True)), ("Off", (False,)), ("inf", (float("inf"),)),
    ("abc", ()), (True, (1,)), (0, (False, "0")), (13, ("13",)), (None, ()),
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


@settings(max_examples=600, deadline=None)
@given(strings_like_numbers | st.integers(-2, 2) | st.booleans())
def test_whatever_pydantic_reads_a_value_as_a_negated_condition_forbids(value):
    # For each value the server could bind, forbidding that value forbids this argument too.
    for read in lax_readings(value):
        if read != read:  # NaN equals nothing, on the server as well
            continue
        assert not condition("neq", read).holds_for(value), (value, read)
        assert not condition("not_in", [7, read]).holds_for(value), (value, read)


fractions = st.decimals(allow_nan=False, allow_infinity=False, places=25, min_value=-1000, max_value=1000)


@settings(max_examples=600, deadline=None)
@given(fractions, st.floats(-1000, 1000, width=64), st.sampled_from(["lt", "lte", "gt", "gte"]))
def test_an_ordering_that_holds_holds_for_the_double_too(actual, limit, op):
    compare = {"lt": float.__lt__, "lte": float.__le__, "gt": float.__gt__, "gte": float.__ge__}[op]
    exact = {"lt": Decimal.__lt__, "lte": Decimal.__le__, "gt": Decimal.__gt__, "gte": Decimal.__ge__}[op]
    limit_literal = Decimal(repr(limit))
    expected = exact(actual, limit_literal) and compare(float(actual), limit)
    assert condition(op, limit).holds_for(actual) is expected


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
