"""Property-based tests of the two parsers every byte from outside goes through.

jsonrpc: whatever arrives, only ProtocolError comes out; every valid message survives
``loads(dumps(x))``; a duplicate or case/Unicode-variant key anywhere is refused; the depth cap
holds. SSE: a stream generated field by field reads back event by event under any chunking,
passes byte-identical when nothing is rewritten, and the held partial event never exceeds the
cap, whatever bytes arrive (the addon's own transform included).

The example counts are fixed, so a run costs the same everywhere; the coverage-guided fuzz run
is tests/test_fuzz.py (bench/fuzz.py for longer runs).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import ProtocolError, fold
from intercept_addon.wire.sse import SseEvent, SseRewriter
from oracles import TOOL_NAME, addon_sse_transform, check_request

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies: JSON values the strict parser accepts -----------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # no lone surrogates
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(10**jsonrpc.MAX_INT_DIGITS) + 1, 10**jsonrpc.MAX_INT_DIGITS - 1),
    st.from_regex(r"-?[0-9]{1,30}\.[0-9]{1,30}([eE][+-]?[0-9]{1,4})?", fullmatch=True).map(Decimal),
    text,
)


def objects(values: st.SearchStrategy) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys stay distinct after NFKC + casefold (others are refused on purpose)."""
    return st.lists(st.tuples(text, values), max_size=5, unique_by=lambda kv: fold(kv[0])).map(dict)


values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | objects(inner), max_leaves=40)
ids = st.one_of(st.integers(-jsonrpc.MAX_ID_INT, jsonrpc.MAX_ID_INT), st.text(max_size=jsonrpc.MAX_ID_LENGTH)
                .filter(lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)))
methods = st.one_of(st.sampled_from(["tools/call", "tools/list", "initialize", "ping", "notifications/progress"]),
                    text.filter(bool))


@st.composite
def messages(draw) -> tuple[str, dict[str, Any]]:
    """(kind, message): requests, notifications, results and errors with arbitrary nested params."""
    kind = draw(st.sampled_from(["request", "notification", "result", "error"]))
    msg: dict[str, Any] = {"jsonrpc": "2.0"}
    if kind != "notification":
        msg["id"] = draw(ids)
    if kind in ("request", "notification"):
        msg["method"] = draw(methods)
        if draw(st.booleans()):
            msg["params"] = draw(objects(values))
    elif kind == "result":
        msg["result"] = draw(values)
    else:
        msg["error"] = {"code": draw(st.integers(-32768, 32767)), "message": draw(text)}
        if draw(st.booleans()):
            msg["error"]["data"] = draw(values)
    keys = draw(st.permutations(list(msg)))  # member order must not matter
    return ("response" if kind in ("result", "error") else kind), {k: msg[k] for k in keys}


tool_calls = st.builds(
    lambda i, name, args: {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}},
    ids, st.from_regex(TOOL_NAME, fullmatch=True), objects(values))


# -- jsonrpc: nothing but ProtocolError ------------------------------------------------------

JSON_TOKENS = ['{', '}', '[', ']', ':', ',', ' ', '"jsonrpc"', '"2.0"', '"id"', '"method"', '"params"', '"result"',
               '"error"', '"name"', '"Name"', '"nam\\u0065"', '"arguments"', '"tools/call"', '"delete_everything"',
               '1', '-0', '1e999', '1.5', '9' * 70, 'NaN', '-Infinity', 'true', 'null', '"\\ud800"', '"\\u0000"',
               '"ſ"', '"\\"', '\ufeff', '\x00', '\xff', '/*', '\t']


@PROPS
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_errors(body):
    check_request(body, {})


@PROPS
@given(st.lists(st.sampled_from(JSON_TOKENS), max_size=60).map("".join),
       st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_json_ish_text_raises_only_protocol_errors(doc, charset):
    check_request(doc.encode(charset, "replace"), {})


@PROPS
@given(tool_calls, st.data())
def test_mutated_tool_calls_raise_only_protocol_errors(call, data):
    body = bytearray(jsonrpc.dumps(call))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        body[at:at + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    headers = data.draw(st.dictionaries(st.sampled_from(["mcp-method", "mcp-name", "mcp-protocol-version"]),
                                        st.one_of(text, st.sampled_from(["=?base64?ZWNobw==?=", "=?base64?%%?=", mcp.REVISION_2026]))))
    check_request(bytes(body), headers)


# -- jsonrpc: valid messages round-trip ------------------------------------------------------

@PROPS
@given(messages())
def test_valid_messages_round_trip(case):
    kind, msg = case
    body = jsonrpc.dumps(msg)
    parsed = jsonrpc.loads(body, max_depth=512)
    assert parsed == msg
    assert list(parsed) == list(msg)  # member order kept, so what is forwarded reads the same
    assert jsonrpc.dumps(parsed) == body  # canonical: a second pass changes nothing
    # Any JSON parser reads the forwarded bytes the same way (numbers exactly, as Decimal).
    assert json.loads(body, parse_float=Decimal) == msg
    classified = jsonrpc.classify(parsed)
    assert (classified.kind, classified.id, classified.method) == (kind, msg.get("id"), msg.get("method"))


@PROPS
@given(tool_calls)
def test_tool_calls_round_trip_to_the_same_call(call):
    parsed = jsonrpc.loads(jsonrpc.dumps(call))
    tool = mcp.tool_call(jsonrpc.classify(parsed), TOOL_NAME)
    assert (tool.name, tool.arguments) == (call["params"]["name"], call["params"]["arguments"])


# -- jsonrpc: duplicate and variant keys are refused at any depth ------------------------------

def variant(key: str, how: str) -> str:
    """A different spelling of ``key`` that a lenient server would take for the same key."""
    if how == "escaped":  # decodes to the very same key
        return key
    if how == "fullwidth":  # NFKC maps U+FF01..FF5E back to ASCII
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key)
    if how == "long-s":
        return key.replace("s", "ſ").replace("k", "\u212a")  # folds to s / k
    return key.swapcase()


def encode_with_duplicate(value: Any, target: int, how: str, counter: list[int]) -> str:
    """JSON text of ``value`` where the ``target``-th non-empty object repeats its first key."""
    if isinstance(value, dict):
        parts = [json.dumps(k, ensure_ascii=False) + ":" + encode_with_duplicate(v, target, how, counter)
                 for k, v in value.items()]
        if value:
            counter[0] += 1
            if counter[0] - 1 == target:
                key = variant(next(iter(value)), how)
                spelled = json.dumps(key, ensure_ascii=False)
                if how == "escaped":  # every character as a \uXXXX escape (pairs past the BMP)
                    spelled = '"' + "".join(f"\\u{u:04x}" for u in _utf16_units(key)) + '"'
                parts.append(spelled + ":null")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode_with_duplicate(v, target, how, counter) for v in value) + "]"
    return jsonrpc.dumps(value).decode("utf-8")


def _utf16_units(key: str) -> list[int]:
    data = key.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def non_empty_objects(value: Any) -> int:
    if isinstance(value, dict):
        return bool(value) + sum(non_empty_objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(non_empty_objects(v) for v in value)
    return 0


@PROPS
@given(messages(), st.data())
def test_duplicate_keys_are_refused_at_any_depth(case, data):
    _, msg = case
    target = data.draw(st.integers(0, non_empty_objects(msg) - 1))
    how = data.draw(st.sampled_from(["escaped", "fullwidth", "long-s", "case"]))
    doc = encode_with_duplicate(msg, target, how, [0])
    counter = [0]
    original = None

    def first_key_of_target(value: Any) -> None:
        nonlocal original
        if isinstance(value, dict):
            for v in value.values():
                first_key_of_target(v)
            if value:
                counter[0] += 1
                if counter[0] - 1 == target:
                    original = next(iter(value))
        elif isinstance(value, list):
            for v in value:
                first_key_of_target(v)

    first_key_of_target(msg)
    if variant(original, how) != original and fold(variant(original, how)) != fold(original):
        return  # this spelling is not a variant of that key (e.g. no letters to fold)
    with pytest.raises(ProtocolError) as info:
        jsonrpc.loads(doc.encode("utf-8"), max_depth=512)
    assert info.value.code == jsonrpc.PARSE_ERROR


# -- jsonrpc: the depth cap ------------------------------------------------------------------

@PROPS
@given(st.lists(st.sampled_from(["[", '{"a":']), min_size=1, max_size=150), st.integers(1, 120))
def test_depth_cap_is_exact(openers, cap):
    closers = "".join("]" if o == "[" else "}" for o in reversed(openers))
    doc = ("".join(openers) + "1" + closers).encode()
    if len(openers) > cap:
        with pytest.raises(ProtocolError, match="nesting deeper"):
            jsonrpc.loads(doc, max_depth=cap)
    else:
        assert jsonrpc.loads(doc, max_depth=cap) is not None


@pytest.mark.parametrize("number", ["1e99999999999999999999", "-1E+99999999999999999999", "1.5e-99999999999999999999"])
def test_exponent_past_decimal_range_is_a_protocol_error(number):
    # Found by the fuzz run: decimal.InvalidOperation escaped the parser (an internal error).
    with pytest.raises(ProtocolError, match="out of range"):
        jsonrpc.loads(b'{"x":%s}' % number.encode())


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_depth_far_past_the_recursion_limit_is_a_protocol_error(depth):
    with pytest.raises(ProtocolError):
        jsonrpc.loads(b"[" * depth + b"]" * depth)


# -- SSE: streams generated field by field -----------------------------------------------------

field_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\x00"), max_size=30)


@st.composite
def sse_streams(draw) -> tuple[bytes, list[dict[str, str]]]:
    """(stream bytes, the events a client reads from it): JSON-RPC data, comments, ids, retries,
    any line ending, a BOM, multi-line data, and sometimes an unterminated tail."""
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out = bytearray(b"\xef\xbb\xbf" if draw(st.booleans()) else b"")
    events = []
    for _ in range(draw(st.integers(0, 6))):
        expected: dict[str, str] = {}
        lines = []
        if draw(st.booleans()):
            lines.append(b": " + draw(field_text).encode())
        if draw(st.booleans()):
            expected["event"] = draw(field_text)
            lines.append(b"event: " + expected["event"].encode())
        if draw(st.booleans()):
            expected["id"] = draw(field_text)
            lines.append(b"id: " + expected["id"].encode())
        data = jsonrpc.dumps(draw(messages())[1]).decode() if draw(st.booleans()) else draw(field_text)
        half = len(data) // 2
        parts = [data[:half], data[half:]] if draw(st.booleans()) else [data]  # one or two data lines
        expected["data"] = "\n".join(parts)
        lines += [b"data:" + (b" " if p.startswith(" ") or draw(st.booleans()) else b"") + p.encode() for p in parts]
        out += newline.join(lines) + newline + newline
        events.append(expected)
    if draw(st.booleans()):
        out += b"data: unterminated"
    return bytes(out), events


@st.composite
def chunkings(draw, stream: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=25))) | {0, len(stream)})
    return [stream[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


@PROPS
@given(sse_streams(), st.data())
def test_generated_streams_read_back_event_by_event_under_any_chunking(case, data):
    stream, expected = case
    seen: list[SseEvent] = []
    rewriter = SseRewriter(lambda ev: seen.append(ev))
    out = b"".join(rewriter.feed(c) for c in data.draw(chunkings(stream))) + rewriter.feed(b"")
    assert out == stream
    assert [{k: v for k, v in (("event", e.event), ("id", e.id), ("data", e.data)) if v is not None}
            for e in seen] == expected


@PROPS
@given(sse_streams(), st.data(), st.sampled_from([16, 64, 256]))
def test_held_bytes_never_exceed_the_cap(case, data, cap):
    stream, _ = case
    stream += b"data: " + b"x" * data.draw(st.integers(0, 3 * cap))  # and a line that never ends
    rewriter = SseRewriter(lambda ev: None, max_event_bytes=cap)
    out = bytearray()
    for chunk in data.draw(chunkings(stream)):
        out += rewriter.feed(chunk)
        assert rewriter.buffered <= cap
    assert out + rewriter.feed(b"") == stream


SSE_TOKENS = [b"data: ", b"event: message", b"id: 1", b"\n", b"\r\n", b"\r", b": ping", b'{"jsonrpc":"2.0",',
              b'"id":1,', b'"result":{"tools":[{"name":"secret_admin"},{"name":"echo"}]}}', b"\xff", b"{", b"}"]


@PROPS
@given(st.one_of(st.binary(max_size=400), st.lists(st.sampled_from(SSE_TOKENS), max_size=40).map(b"".join)),
       st.data())
def test_random_bytes_through_the_addon_transform_raise_only_to_cut(stream, data):
    """The only way out of the transform is ProtocolError, which cuts the stream (fail closed)."""
    transform = addon_sse_transform({1, "1"})
    rewriter = SseRewriter(transform, max_event_bytes=64)
    try:
        for chunk in data.draw(chunkings(stream)):
            rewriter.feed(chunk)
            assert rewriter.buffered <= 64
        rewriter.feed(b"")
    except ProtocolError:
        pass


def test_addon_transform_filters_a_hidden_tool_split_anywhere():
    event = b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret_admin"},' \
            b'{"name":"echo"}]}}\r\n\r\n'
    for cut in range(1, len(event)):
        rewriter = SseRewriter(addon_sse_transform({1}))
        out = rewriter.feed(event[:cut]) + rewriter.feed(event[cut:]) + rewriter.feed(b"")
        assert b"secret_admin" not in out and b'"echo"' in out, cut


@pytest.mark.parametrize("msg_id", [b"{}", b"[1]", b"true", b"1.5", b"null"])
def test_a_list_under_an_id_no_client_sends_is_never_passed_with_a_hidden_tool(msg_id):
    # Not a JSON-RPC answer the proxy can read, but a lenient client may take it for one: cut.
    event = b'data: {"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"secret_admin"}]}}\n\n' % msg_id
    rewriter = SseRewriter(addon_sse_transform({1}))
    with pytest.raises(ProtocolError):
        rewriter.feed(event)


@pytest.mark.parametrize("msg_id", [b"7", b"\"other\"", b"\"1\""])
def test_a_list_under_any_readable_id_is_filtered(msg_id):
    event = b'data: {"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"secret_admin"},{"name":"echo"}]}}\n\n' % msg_id
    rewriter = SseRewriter(addon_sse_transform({1}))
    out = rewriter.feed(event) + rewriter.feed(b"")
    assert b"secret_admin" not in out and b'"echo"' in out
