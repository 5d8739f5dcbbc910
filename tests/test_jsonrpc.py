"""jsonrpc.dumps: the C-encoder fast path writes exactly what the exact pure-Python encoder writes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intercept_addon.wire import jsonrpc

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**60), max_value=10**60),
    st.text(),  # includes control characters, quotes, backslashes, astral and lone surrogates
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=30)


def reference(value: object, sort_keys: bool) -> bytes:
    out: list[str] = []
    jsonrpc._encode(value, out, sort_keys)
    return "".join(out).encode("utf-8")


@settings(max_examples=400)
@given(values, st.booleans())
def test_fast_path_equals_reference_encoder(value: object, sort_keys: bool) -> None:
    try:
        expected = reference(value, sort_keys)
    except UnicodeEncodeError:
        with pytest.raises(jsonrpc.ProtocolError):
            jsonrpc.dumps(value, sort_keys=sort_keys)
        return
    assert jsonrpc.dumps(value, sort_keys=sort_keys) == expected
    assert jsonrpc.loads(expected, max_depth=512) == value


def test_sorted_keys_at_every_depth_also_with_fractions() -> None:
    value = {"b": [{"z": 1, "a": Decimal("1.50")}], "a": {"y": None, "x": True}}
    assert jsonrpc.dumps(value, sort_keys=True) == b'{"a":{"x":true,"y":null},"b":[{"a":1.50,"z":1}]}'


@pytest.mark.parametrize("text", ["0.1", "-1.50", "1E+400", "123456789012345678901234567890.000001"])
def test_fractions_keep_their_exact_digits(text: str) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"amount":%s,"n":[1,%s]}}}' % (
        text.encode(), text.encode())
    value = jsonrpc.loads(body)
    assert isinstance(value["params"]["arguments"]["amount"], Decimal)
    assert jsonrpc.dumps(value) == body.replace(text.encode(), str(Decimal(text)).encode())


def test_a_fraction_whose_forwarded_form_is_too_long_is_refused() -> None:
    """Found by the fuzzer: 128 characters of text whose exact form, as dumps forwards it,
    is 131: the proxy would forward a number it refuses itself."""
    number = "9" * 72 + "0" * 32 + "9223372031e9996854775806"
    with pytest.raises(jsonrpc.ProtocolError, match="too long"):
        jsonrpc.loads(b'{"x":%s}' % number.encode())
