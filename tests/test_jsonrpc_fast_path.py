"""The strict parser's C fast path (wire/jsonrpc.py ``_plain``) against the reference reading
(``_strict``, every object and number through hooks): whenever the fast path answers, the
reference reads the same text without error and to the same value, types and key order
included; ``loads`` as a whole reads every text exactly as the reference does. The texts are
built to hit what the fast path must not miss: duplicate keys at any depth, keys that collide
after folding, whitespace around colons, quotes and colons inside strings (also escaped as
``\\u0022``), fractions, exponents, NaN, long integers, deep nesting."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intercept_addon.wire import jsonrpc
from intercept_addon.wire.jsonrpc import ProtocolError

KEYS = st.sampled_from(["a", "A", "name", "NAME", "ﬁ", "fi", "_meta", "x\":", "x\\\":", "\\u0061", "K", "k",
                        "arguments", "Arguments", "ǅ", "ǆ", "1", "", " "])
WS = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])
SCALARS = st.sampled_from(["1", "-0", "0", "12345678901234567890", "9" * 64, "9" * 65, "-" + "9" * 65, "1.5",
                           "1e5", "1E400", "-1.0e-3", "NaN", "Infinity", "-Infinity", "true", "false", "null",
                           '"s"', '"a\\":"', '"\\u0022:"', '"\\ud800"', '"é"', '"x\\"  :"'])


def _value(depth: int) -> st.SearchStrategy[str]:
    if depth <= 0:
        return SCALARS
    inner = st.deferred(lambda: _value(depth - 1))
    pair = st.tuples(WS, KEYS, WS, WS, inner)
    obj = st.lists(pair, max_size=4).map(
        lambda ps: "{" + ",".join(f'{a}"{k}"{b}:{c}{v}' for a, k, b, c, v in ps) + "}")
    arr = st.lists(st.tuples(WS, inner), max_size=4).map(lambda vs: "[" + ",".join(w + v for w, v in vs) + "]")
    return st.one_of(SCALARS, obj, arr)


TEXTS = st.one_of(_value(4), st.text(alphabet='{}[]":, \\ua0A1.e-', max_size=30))


def same(a: object, b: object) -> bool:
    """Equal values of the same types, dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    return a == b


def reference(text: str, max_depth: int) -> object:
    try:
        return jsonrpc._strict(text, max_depth)
    except ProtocolError as exc:
        return ("refused", exc.message)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.sampled_from([2, 3, 64]))
def test_the_fast_path_answers_only_what_the_reference_reads_alike(text: str, max_depth: int):
    fast = jsonrpc._plain(text, max_depth)
    if fast is not jsonrpc._DOUBT:
        assert same(fast, jsonrpc._strict(text, max_depth))  # raising here fails the test too
    try:
        got: object = jsonrpc.loads(text.encode(), max_depth=max_depth)
    except ProtocolError as exc:
        got = ("refused", exc.message)
    assert same(got, reference(text, max_depth))


@pytest.mark.parametrize("text", [
    '{"a":1,"a":2}', '{"a":{"b":1},"a":2}', '{"x":{"a":1, "a" :1}}', '{"a":1,"A":1}', '{"fi":1,"ﬁ":1}',
    '{"a" \n: 1, "a"\t:2}', '[{"k":1},{"k":1,"k":1}]', '{"s":"\\u0022:","a":1,"a":1}',
])
def test_duplicates_and_folded_keys_always_go_to_the_reference(text: str):
    assert jsonrpc._plain(text, 64) is jsonrpc._DOUBT
    with pytest.raises(ProtocolError):
        jsonrpc.loads(text.encode())


def test_an_ordinary_call_is_read_by_the_fast_path():
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": 'say "hi" now: ok', "n": [1, 2]}}})
    value = jsonrpc._plain(body, 64)
    assert value is not jsonrpc._DOUBT and same(value, jsonrpc._strict(body, 64))
