"""Content-Encodings, decoded within caps: a few KB of gzip, br or zstd can expand to gigabytes
(a decompression bomb), so no body is ever decoded whole, and a stream is decoded chunk by chunk."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, MutableMapping

import brotli  # mitmproxy's own dependencies, as are the zstd bindings

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

KNOWN = ("gzip", "deflate", "br", "zstd")
MAX_DECODED_CHUNK = 16 * 1024 * 1024  # what one compressed chunk of an event stream may expand to
BODY_BUFFER_LIMIT = 32 * 1024 * 1024  # default body_size_limit: also caps buffered responses


class DecodeError(ValueError):
    """A body that does not decode cleanly in its Content-Encoding."""


def decode_capped(raw: bytes, enc: str, cap: int) -> bytes:
    """At most about ``cap`` bytes of a compressed body. Bytes after the end of the compressed
    data (a second gzip member, say) are refused: other decoders may read them."""
    try:
        if enc == "br":  # brotli itself refuses input past the end of its stream
            return brotli.Decompressor().process(raw, output_buffer_limit=cap)
        if enc == "zstd":
            decoder = zstd.ZstdDecompressor()
            out = decoder.decompress(raw, max_length=cap)
        else:  # gzip: gzip or zlib framing; deflate: zlib framing, else raw deflate
            try:
                decoder = zlib.decompressobj(47 if enc == "gzip" else zlib.MAX_WBITS)
                out = decoder.decompress(raw, cap)
            except zlib.error:
                if enc == "gzip":
                    raise
                decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                out = decoder.decompress(raw, cap)
    except (zlib.error, brotli.error, zstd.ZstdError) as exc:
        raise DecodeError(f"not valid {enc}: {exc}") from None
    if decoder.unused_data:
        raise DecodeError(f"data after the end of the {enc} body")
    return out


def decoded_response(headers: MutableMapping[str, str], raw: bytes) -> bytes:
    """A buffered answer's body, decoded but never past BODY_BUFFER_LIMIT: a server may ignore
    our Accept-Encoding: identity and send a decompression bomb. ``headers`` reads names
    case-insensitively (mitmproxy's Headers)."""
    enc = headers.get("content-encoding", "").strip().lower()
    if enc in ("", "identity") or not raw:
        return raw
    if enc not in KNOWN:
        raise ValueError(f"an answer with Content-Encoding {enc!r} cannot be inspected")
    content = decode_capped(raw, enc, BODY_BUFFER_LIMIT + 1)
    if len(content) > BODY_BUFFER_LIMIT:
        raise ValueError(f"an answer that decodes to more than {BODY_BUFFER_LIMIT} bytes")
    return content


def stream_decoder(headers: MutableMapping[str, str]) -> Callable[[bytes], bytes] | None:
    """Undo a streamed response's Content-Encoding chunk by chunk (the header is removed: the
    client gets identity); None for an encoding this cannot decode incrementally. Raises on
    anything it cannot decode completely, so the stream is cut rather than passed on unread."""
    enc = headers.get("content-encoding", "identity").strip().lower()
    if enc == "identity":
        return lambda chunk: chunk
    if enc not in ("gzip", "x-gzip", "deflate"):
        return None
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing (raw deflate: zlib.error)
    del headers["content-encoding"]
    headers.pop("content-length", None)

    def decode(chunk: bytes) -> bytes:
        if not chunk:
            return decoder.flush()
        out = decoder.decompress(chunk, MAX_DECODED_CHUNK)
        if decoder.unconsumed_tail:
            raise ValueError(f"a {enc} chunk decodes to more than {MAX_DECODED_CHUNK} bytes")
        if decoder.unused_data:  # bytes after the end of the compressed body
            raise ValueError(f"data after the end of the {enc} body")
        return out

    return decode
