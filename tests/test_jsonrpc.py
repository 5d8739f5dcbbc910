"""jsonrpc.dumps: the C-encoder fast path writes exactly what the exact pure-Python encoder writes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intercept_addon import jsonrpc

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**60), max_value=10**60),
    st.text(),  # includes control characters, quotes, backslashes, astral and lone surrogates
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=30)


def reference(value: object) -> bytes:
    out: list[str] = []
    jsonrpc._encode(value, out)
    return "".join(out).encode("utf-8")


@settings(max_examples=400)
@given(values)
def test_fast_path_equals_reference_encoder(value: object) -> None:
    try:
        expected = reference(value)
    except UnicodeEncodeError:
        with pytest.raises(jsonrpc.ProtocolError):
            jsonrpc.dumps(value)
        return
    assert jsonrpc.dumps(value) == expected
    assert jsonrpc.loads(expected, max_depth=512) == value


@pytest.mark.parametrize("text", ["0.1", "-1.50", "1E+400", "123456789012345678901234567890.000001"])
def test_fractions_keep_their_exact_digits(text: str) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"amount":%s,"n":[1,%s]}}}' % (
        text.encode(), text.encode())
    value = jsonrpc.loads(body)
    assert isinstance(value["params"]["arguments"]["amount"], Decimal)
    assert jsonrpc.dumps(value) == body.replace(text.encode(), str(Decimal(text)).encode())
