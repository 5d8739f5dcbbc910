"""Tests for intercept_addon.wire.sse: incremental SSE rewriting."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intercept_addon.wire.sse import SseEvent, SseRewriter, detect_newline, format_event

# Shapes as emitted by real MCP servers.
STARLETTE_MSG = (
    b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\r\n\r\n'
)
STARLETTE_PING = b": ping - 2025-06-18 12:00:00.123456+00:00\r\n\r\n"
TS_MSG = (
    b"event: message\nid: 3f2b6c1e-8a4d-4c2e-9b1a-7d5e6f8a9b0c\n"
    b'data: {"jsonrpc":"2.0","id":2,"result":{"content":[]}}\n\n'
)
ENDPOINT = b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n"
MULTILINE = b'data: {"jsonrpc":"2.0",\ndata: "id":4}\n\n'
RETRY = b"retry: 3000\n\n"
PRIMING = b"id: 9c1d-0\ndata: \n\n"
PRIMING_RETRY = b"id: 9c1d-1\nretry: 1000\ndata: \n\n"
LONE_CR = b'event: message\rdata: {"jsonrpc":"2.0","id":5,"result":{}}\r\r'
SHAPES = [
    STARLETTE_MSG,
    STARLETTE_PING,
    TS_MSG,
    ENDPOINT,
    MULTILINE,
    RETRY,
    PRIMING,
    PRIMING_RETRY,
    LONE_CR,
]


class Recorder:
    def __init__(self) -> None:
        self.events: list[SseEvent] = []

    def __call__(self, event: SseEvent) -> None:
        self.events.append(event)
        return None


def run(rewriter: SseRewriter, chunks: list[bytes]) -> bytes:
    out = b"".join(rewriter.feed(c) for c in chunks)
    return out + rewriter.feed(b"")


def parse(stream: bytes, chunks: list[bytes] | None = None) -> tuple[list[SseEvent], bytes]:
    rec = Recorder()
    out = run(SseRewriter(rec), chunks if chunks is not None else [stream])
    return rec.events, out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *cuts})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


# -- an independent whole-input reference parser -----------------------------------------

_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


def reference(stream: bytes, max_event_bytes: int = 4 * 1024 * 1024):
    """Parse a complete stream at once. Returns (blocks, tail, oversized) where blocks are
    (SseEvent, inspected) pairs and tail is the unterminated remainder."""
    blocks: list[tuple[SseEvent, bool]] = []
    oversized = 0
    start = 0
    fields: dict[str, list[str]] = {}
    first = True
    for m in _LINE.finditer(stream):
        content = m.group(1)
        if first:
            content = content.removeprefix(b"\xef\xbb\xbf")
            first = False
        if content:
            if not content.startswith(b":"):
                name, _, value = content.decode("utf-8", "replace").partition(":")
                value = value.removeprefix(" ")
                if not (name == "id" and "\0" in value):
                    fields.setdefault(name, []).append(value)
            continue
        raw = stream[start : m.end()]
        start = m.end()
        data = fields.get("data")
        ev = SseEvent(
            raw=raw,
            event=fields.get("event", [None])[-1],
            data=None if data is None else "\n".join(data),
            id=fields.get("id", [None])[-1],
            retry=fields.get("retry", [None])[-1],
        )
        inspected = len(raw) <= max_event_bytes
        oversized += not inspected
        blocks.append((ev, inspected))
        fields = {}
    tail = stream[start:]
    oversized += len(tail) > max_event_bytes
    return blocks, tail, oversized


# -- captured shapes ----------------------------------------------------------------------


def test_starlette_crlf_message_and_ping():
    stream = STARLETTE_MSG + STARLETTE_PING
    events, out = parse(stream)
    assert out == stream
    assert [e.raw for e in events] == [STARLETTE_MSG, STARLETTE_PING]
    msg, ping = events
    assert msg.event == "message"
    assert json.loads(msg.data) == {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}
    assert (ping.event, ping.data, ping.id, ping.retry) == (None, None, None, None)


def test_ping_is_released_as_soon_as_it_is_complete():
    rw = SseRewriter(Recorder())
    assert rw.feed(STARLETTE_PING) == STARLETTE_PING
    assert rw.buffered == 0


def test_typescript_lf_message_with_id():
    events, out = parse(TS_MSG)
    assert out == TS_MSG
    [ev] = events
    assert ev.event == "message"
    assert ev.id == "3f2b6c1e-8a4d-4c2e-9b1a-7d5e6f8a9b0c"
    assert json.loads(ev.data)["id"] == 2


def test_endpoint_event():
    [ev], _ = parse(ENDPOINT)
    assert (ev.event, ev.data) == ("endpoint", "/messages/?session_id=abc")


def test_multiline_data_joined_with_lf():
    [ev], _ = parse(MULTILINE)
    assert ev.data == '{"jsonrpc":"2.0",\n"id":4}'
    assert json.loads(ev.data) == {"jsonrpc": "2.0", "id": 4}


def test_retry_only_event():
    [ev], _ = parse(RETRY)
    assert (ev.retry, ev.data, ev.event) == ("3000", None, None)


def test_priming_event_has_id_and_empty_data():
    (a, b), _ = parse(PRIMING + PRIMING_RETRY)
    assert (a.id, a.data) == ("9c1d-0", "")
    assert (b.id, b.retry, b.data) == ("9c1d-1", "1000", "")


def test_lone_cr_stream():
    stream = LONE_CR + b": ping\r\r"
    events, out = parse(stream)
    assert out == stream
    assert [e.raw for e in events] == [LONE_CR, b": ping\r\r"]
    assert events[0].event == "message"
    assert json.loads(events[0].data)["id"] == 5


def test_lone_cr_blank_line_waits_for_next_byte_then_releases():
    rec = Recorder()
    rw = SseRewriter(rec)
    # The final CR might be half of a CRLF, so the event is not complete yet.
    assert rw.feed(b"data: x\r\r") == b""
    assert rec.events == []
    assert rw.feed(b"d") == b"data: x\r\r"
    assert [e.data for e in rec.events] == ["x"]
    assert rw.buffered == 1


def test_lone_cr_blank_line_at_end_of_stream_is_a_complete_event():
    seen = []

    def transform(ev: SseEvent) -> bytes:
        seen.append(ev.data)
        return format_event("replaced", newline=detect_newline(ev.raw))

    rw = SseRewriter(transform)
    assert rw.feed(b"data: x\r\r") == b""
    assert rw.feed(b"") == b"event: message\rdata: replaced\r\r"
    assert seen == ["x"]


# -- CR/LF split across chunks ----------------------------------------------------------


def test_crlf_split_across_chunks_is_one_line_end():
    chunks = [b"data: a\r", b"\n\r", b"\ndata: b\r", b"\n", b"\r", b"\n"]
    events, out = parse(b"".join(chunks), chunks)
    assert out == b"".join(chunks)
    assert [e.raw for e in events] == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]
    assert [e.data for e in events] == ["a", "b"]


def test_crlf_split_in_ping_does_not_create_an_empty_event():
    chunks = [b": ping\r\n\r", b"\n", b"data: x\r\n\r\n"]
    events, _ = parse(b"".join(chunks), chunks)
    assert [e.raw for e in events] == [b": ping\r\n\r\n", b"data: x\r\n\r\n"]


def test_crlf_split_every_byte():
    stream = STARLETTE_MSG + STARLETTE_PING + ENDPOINT
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    events, out = parse(stream, chunks)
    assert out == stream
    assert [e.raw for e in events] == [STARLETTE_MSG, STARLETTE_PING, ENDPOINT]


# -- field parsing details ----------------------------------------------------------------


def test_field_parsing_rules():
    stream = (
        b"data\n"  # no colon: field with empty value
        b"data:x\n"  # no space
        b"data:  two spaces\n"  # only one space is stripped
        b"event: a\nevent: b\n"  # last wins
        b"id: 1\nid: bad\x00id\n"  # an id with NUL is ignored
        b"unknown: field\n"
        b": comment\n"
        b"\n"
    )
    [ev], _ = parse(stream)
    assert ev.data == "\nx\n two spaces"
    assert ev.event == "b"
    assert ev.id == "1"
    assert ev.raw == stream


def test_extra_blank_lines_are_empty_blocks():
    events, out = parse(b"data: a\n\n\n")
    assert out == b"data: a\n\n\n"
    assert [e.raw for e in events] == [b"data: a\n\n", b"\n"]
    assert events[1].data is None


def test_invalid_utf8_is_replaced_in_fields_but_raw_is_exact():
    stream = b"data: \xff\xe2\x82\n\n"
    [ev], out = parse(stream)
    assert out == stream and ev.raw == stream
    assert ev.data == "\ufffd\ufffd"


def test_utf8_char_split_across_chunks():
    stream = "data: héllo €\n\n".encode()
    cut = stream.index(b"\xe2") + 1
    [ev], out = parse(stream, [stream[:cut], stream[cut:]])
    assert out == stream
    assert ev.data == "héllo €"


def test_leading_bom_ignored_for_parsing_but_forwarded():
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for chunks in ([stream], [b"\xef", b"\xbb", b"\xbfdata: x\n", b"\n"]):
        [ev], out = parse(stream, chunks)
        assert out == stream
        assert ev.raw == stream
        assert ev.data == "x"


def test_bom_then_blank_line_is_an_empty_block():
    events, _ = parse(b"\xef\xbb\xbf\ndata: y\n\n")
    assert [e.raw for e in events] == [b"\xef\xbb\xbf\n", b"data: y\n\n"]


def test_bom_later_in_stream_is_not_stripped():
    events, _ = parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert [e.data for e in events] == ["a", None]


def test_unterminated_trailing_event_is_forwarded_without_transform():
    calls = []
    rw = SseRewriter(lambda ev: calls.append(ev) or b"REPLACED")
    out = run(rw, [b"data: a\n\ndata: b\n"])
    assert out == b"REPLACED" + b"data: b\n"
    assert [e.data for e in calls] == ["a"]


# -- transform ------------------------------------------------------------------------------


def test_transform_replaces_events_and_keeps_others():
    def transform(ev: SseEvent) -> bytes | None:
        if ev.event == "message" and json.loads(ev.data)["id"] == 1:
            return format_event('{"jsonrpc":"2.0","id":1,"error":{}}', newline=detect_newline(ev.raw))
        return None

    stream = STARLETTE_PING + STARLETTE_MSG + ENDPOINT.replace(b"/messages", b"/m")
    out = run(SseRewriter(transform), [stream[:7], stream[7:60], stream[60:]])
    assert out == (
        STARLETTE_PING
        + b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"error":{}}\r\n\r\n'
        + ENDPOINT.replace(b"/messages", b"/m")
    )


def test_transform_exception_propagates():
    def boom(ev: SseEvent) -> bytes | None:
        raise RuntimeError("policy engine failed")

    rw = SseRewriter(boom)
    assert rw.feed(b"data: partial") == b""
    with pytest.raises(RuntimeError, match="policy engine failed"):
        rw.feed(b"\n\n")


def test_transform_exception_at_end_of_stream_propagates():
    rw = SseRewriter(lambda ev: 1 / 0)
    rw.feed(b"data: x\r\r")
    with pytest.raises(ZeroDivisionError):
        rw.feed(b"")


def test_transform_must_return_bytes():
    rw = SseRewriter(lambda ev: "not bytes")
    with pytest.raises(TypeError):
        rw.feed(b"data: x\n\n")


# -- memory bound / oversized events ----------------------------------------------------


def test_ten_megabytes_without_newline_stays_bounded():
    limit = 4 * 1024 * 1024
    calls = []
    rw = SseRewriter(calls.append)
    chunk = b"x" * 1024
    out = bytearray()
    for _ in range(10 * 1024):
        out += rw.feed(chunk)
        assert rw.buffered <= limit
    out += rw.feed(b"")
    assert out == chunk * 10 * 1024
    assert rw.oversized_events == 1
    assert calls == []


def test_oversized_event_passes_through_and_next_event_is_inspected():
    calls = []

    def transform(ev: SseEvent) -> bytes:
        calls.append(ev.data)
        return b"data: R\n\n"

    big = b"data: " + b"y" * 100 + b"\r\n\r\n"
    stream = big + b"data: small\r\n\r\n"
    for size in (1, 3, 7, len(stream)):
        calls.clear()
        rw = SseRewriter(transform, max_event_bytes=32)
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        out = run(rw, chunks)
        assert out == big + b"data: R\n\n", size
        assert calls == ["small"], size
        assert rw.oversized_events == 1, size


def test_max_event_bytes_too_small_is_rejected():
    with pytest.raises(ValueError):
        SseRewriter(lambda ev: None, max_event_bytes=3)


def test_large_event_in_small_chunks_is_linear():
    # A quadratic rescan of the held event would take minutes here.
    payload = b"data: " + b"z" * (3 * 1024 * 1024) + b"\n\n"
    rec = Recorder()
    rw = SseRewriter(rec)
    started = time.perf_counter()
    out = run(rw, [payload[i : i + 256] for i in range(0, len(payload), 256)])
    assert time.perf_counter() - started < 5
    assert out == payload
    assert len(rec.events[0].data) == 3 * 1024 * 1024


# -- format_event / detect_newline ------------------------------------------------------


def test_format_event_multiline_and_roundtrip():
    block = format_event("a\nb\r\nc\rd", event="message", id="7", newline=b"\r\n")
    assert block == b"event: message\r\nid: 7\r\ndata: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n"
    [ev], _ = parse(block)
    assert (ev.event, ev.id, ev.data) == ("message", "7", "a\nb\nc\nd")


def test_format_event_without_event_field_and_leading_space():
    block = format_event(" x", event=None)
    assert block == b"data:  x\n\n"
    [ev], _ = parse(block)
    assert ev.data == " x"


def test_format_event_rejects_injection_and_bad_newline():
    with pytest.raises(ValueError):
        format_event("x", event="message\ndata: evil")
    with pytest.raises(ValueError):
        format_event("x", id="1\r")
    with pytest.raises(ValueError):
        format_event("x", newline=b"\n\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(STARLETTE_MSG, b"\r\n"), (TS_MSG, b"\n"), (LONE_CR, b"\r"), (b"data: x", b"\n")],
)
def test_detect_newline(raw, expected):
    assert detect_newline(raw) == expected


# -- properties: chunking never matters -------------------------------------------------

TOKENS = [
    b"\r", b"\n", b"\r\n", b":", b" ", b"data", b"event", b"id", b"retry", b"x",
    b"\xef\xbb\xbf", b"\xff", b"\xe2\x82", b"\x00", b'{"id": 7}', b'{"id": 1}',
]
structured = st.lists(st.sampled_from(SHAPES), max_size=8).map(b"".join)
tokenised = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
streams = st.one_of(
    structured,
    tokenised,
    st.binary(max_size=300),
    st.tuples(structured, tokenised, st.binary(max_size=40)).map(b"".join),
    st.tuples(st.just(b"\xef\xbb\xbf"), structured).map(b"".join),
)


@st.composite
def chunked_streams(draw):
    stream = draw(streams)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=30))
    return stream, split(stream, cuts)


PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(chunked_streams(), st.sampled_from([16, 17, 40, 100, 4 * 1024 * 1024]))
def test_identity_transform_is_byte_identical(case, limit):
    stream, chunks = case
    rw = SseRewriter(lambda ev: None, max_event_bytes=limit)
    out = bytearray()
    for c in chunks:
        out += rw.feed(c)
        assert rw.buffered <= limit
    out += rw.feed(b"")
    assert out == stream


@PROPS
@given(chunked_streams())
def test_events_match_reference_for_any_chunking(case):
    stream, chunks = case
    blocks, _, _ = reference(stream)
    events, out = parse(stream, chunks)
    assert events == [ev for ev, _ in blocks]
    assert out == stream


@PROPS
@given(chunked_streams(), st.sampled_from([16, 23, 60]))
def test_oversize_verdict_does_not_depend_on_chunking(case, limit):
    stream, chunks = case
    blocks, _, oversized = reference(stream, limit)
    rec = Recorder()
    rw = SseRewriter(rec, max_event_bytes=limit)
    assert run(rw, chunks) == stream
    assert rec.events == [ev for ev, inspected in blocks if inspected]
    assert rw.oversized_events == oversized


def replace_id_7(ev: SseEvent) -> bytes | None:
    try:
        msg = json.loads(ev.data or "")
    except ValueError:
        return None
    if isinstance(msg, dict) and msg.get("id") == 7:
        return format_event('{"id": 7, "error": "blocked"}', newline=detect_newline(ev.raw))
    return None


id7_streams = st.lists(
    st.sampled_from(
        [
            *SHAPES,
            b'event: message\r\ndata: {"id": 7}\r\n\r\n',
            b'data: {"id":\ndata:  7}\n\n',
            b'data: {"id": 7}\r\r',
            b'id: e1\ndata: {"id": 7, "result": {}}\n\n',
        ]
    ),
    max_size=8,
).map(b"".join)


@PROPS
@given(st.data())
def test_replacement_output_does_not_depend_on_chunking(data):
    stream = data.draw(st.one_of(id7_streams, st.tuples(id7_streams, tokenised).map(b"".join)))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    out = run(SseRewriter(replace_id_7), split(stream, cuts))
    blocks, tail, _ = reference(stream)
    expected = b"".join(replace_id_7(ev) or ev.raw for ev, _ in blocks) + tail
    assert out == expected
    assert out == run(SseRewriter(replace_id_7), [stream])
