"""A legacy HTTP+SSE stream that the upstream gzips although the proxy asked for identity
(tests/servers/compressed_streams.py). The addon must not let such a stream through
un-inspected: gzip/deflate it decodes incrementally, hands the client identity bytes and
enforces as usual; an encoding it does not decode incrementally (br here) is refused."""

from __future__ import annotations

import gzip
import json
import random
import zlib

import brotli

import httpx2
import pytest
from mitmproxy import http

from harness import ran
from intercept_addon.wire.encodings import MAX_DECODED_CHUNK, DecodeError, decode_capped, stream_decoder, zstd
from test_legacy_sse import DENIED, denied, session

EVENTS = b"".join(b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{}}\r\n\r\n" % i
                  for i in range(200))


def first_event(url: str) -> tuple[httpx2.Headers, bytes, bytes]:
    """Response headers, the raw bytes received and their decoding, up to the first event block."""
    with httpx2.stream("GET", url, headers={"accept": "text/event-stream", "accept-encoding": "identity"},
                       trust_env=False, timeout=10) as resp:
        gzipped = resp.headers.get("content-encoding") == "gzip"
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        raw = text = b""
        for chunk in resp.iter_raw():
            raw += chunk
            text += decoder.decompress(chunk) if gzipped else chunk
            if b"\r\n\r\n" in text or b"\n\n" in text:
                return resp.headers, raw, text
    raise AssertionError(f"stream ended before an event: {raw!r}")


@pytest.mark.e2e
def test_upstream_really_compresses(stack_factory):
    stack = stack_factory("--compress-sse", "gzip", transport="sse")
    headers, raw, text = first_event(f"http://127.0.0.1:{stack.server_port}/sse")
    assert headers["content-encoding"] == "gzip" and raw[:2] == b"\x1f\x8b"
    assert text.startswith(b"event: endpoint\r\n")


@pytest.mark.e2e
async def test_compressed_stream_is_decoded_and_enforced(stack_factory):
    stack = stack_factory("--compress-sse", "gzip", transport="sse")
    url = f"http://127.0.0.1:{stack.proxy_port}/sse"

    headers, raw, text = first_event(url)  # the client gets the decoded stream
    assert "content-encoding" not in headers and raw == text
    assert raw.startswith(b"event: endpoint\r\ndata: /messages/?session_id=")

    async with session(url) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        assert "secret_admin" not in tools and "echo" in tools
        assert (await s.call_tool("echo", {"text": "zipped"})).content[0].text == "zipped"
        assert (await denied(s, "delete_everything", {})).message == DENIED
        assert (await denied(s, "secret_admin", {})).code == -32602
        assert (await s.call_tool("echo", {"text": "still"})).content[0].text == "still"
    assert ran(stack.side_log) == ["echo", "echo"]


@pytest.mark.e2e
async def test_stream_it_cannot_decode_is_refused(stack_factory):
    stack = stack_factory("--compress-sse", "br", transport="sse")
    with httpx2.stream("GET", f"http://127.0.0.1:{stack.server_port}/sse", trust_env=False,
                       headers={"accept": "text/event-stream"}, timeout=10) as resp:
        assert resp.headers["content-encoding"] == "br"  # control: the upstream really sends br

    # The proxy answers 502 with a JSON-RPC error in place of the stream: no byte of it passes unread.
    with httpx2.stream("GET", f"http://127.0.0.1:{stack.proxy_port}/sse", trust_env=False,
                       headers={"accept": "text/event-stream"}, timeout=10) as resp:
        assert resp.status_code == 502 and resp.headers["content-type"] == "application/json"
        assert "content-encoding" not in resp.headers
        body = json.loads(resp.read())
    assert body["error"]["message"] == "[INTERCEPT POLICY DENIED] the proxy could not inspect the response"
    with pytest.raises(Exception):
        async with session(f"http://127.0.0.1:{stack.proxy_port}/sse"):
            pass
    assert "cannot be inspected: refused" in stack.proxy.output()
    assert ran(stack.side_log) == []


def response(encoding: str | None) -> http.Response:
    headers = {"content-type": "text/event-stream"}
    if encoding:
        headers |= {"content-encoding": encoding, "content-length": "123"}
    return http.Response.make(200, b"", headers)


def flushed(compressor, parts: list[bytes]) -> bytes:
    return b"".join(compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH) for p in parts) + compressor.flush()


@pytest.mark.parametrize("encoding, wbits", [("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS)])
@pytest.mark.parametrize("seed", range(5))
def test_decoder_any_chunking(encoding, wbits, seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(EVENTS)), 30))
    body = flushed(zlib.compressobj(wbits=wbits), [EVENTS[a:b] for a, b in zip([0, *cuts], [*cuts, len(EVENTS)])])
    resp = response(encoding)
    decode = stream_decoder(resp.headers)
    assert "content-encoding" not in resp.headers and "content-length" not in resp.headers
    splits = sorted(rng.sample(range(1, len(body)), 40))  # inside the gzip header too
    out = b"".join(decode(body[a:b]) for a, b in zip([0, *splits], [*splits, len(body)]))
    assert out + decode(b"") == EVENTS


def test_decoder_refuses_what_it_cannot_read_completely():
    gzipped = zlib.compress(EVENTS, wbits=zlib.MAX_WBITS | 16)
    with pytest.raises(ValueError, match="after the end"):
        stream_decoder(response("gzip").headers)(gzipped + b"data: smuggled\n\n")
    bomb = zlib.compress(b"\0" * (MAX_DECODED_CHUNK + 1), wbits=zlib.MAX_WBITS | 16)
    with pytest.raises(ValueError, match="decodes to more than"):
        stream_decoder(response("gzip").headers)(bomb)
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    with pytest.raises(zlib.error):
        stream_decoder(response("deflate").headers)(raw_deflate.compress(EVENTS) + raw_deflate.flush())


def test_decoder_identity_and_unsupported():
    assert stream_decoder(response(None).headers)(b"data: x\n\n") == b"data: x\n\n"
    resp = response("br")
    assert stream_decoder(resp.headers) is None and resp.headers["content-encoding"] == "br"


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("zstd", zstd.compress), ("br", brotli.compress)])
def test_buffered_bodies_refuse_bytes_after_their_end(encoding, pack):
    """A second gzip member (or bytes after a zstd frame / brotli stream) is read by some
    decoders and not by others: a body the proxy could inspect only in part is refused."""
    body = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'
    assert decode_capped(pack(body), encoding, 1 << 20) == body
    with pytest.raises(DecodeError):
        decode_capped(pack(body) + pack(b'{"tools":[{"name":"secret_admin"}]}'), encoding, 1 << 20)
