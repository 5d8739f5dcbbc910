"""HTTP/1 trailers, refused instead of hanging the connection.

mitmproxy 12's HTTP/1 body reader raises ``NotImplementedError("HTTP trailers ...")`` when a
chunked body ends with trailer fields: the connection crashes and the client waits forever. Two
patches of ``mitmproxy.proxy.layers.http._http1`` turn that into an answer:

- ``make_body_reader`` hands out a chunked reader that raises ``TrailersRefused`` at trailers;
- ``Http1Connection.read_body`` catches it: a request gets a 400 JSON-RPC error and its
  connection closed (it was never forwarded: bodies are read before the request hook), a
  response becomes a protocol error, which mitmproxy answers with a 502.

``install`` checks the internals it patches and raises if they are not what it expects, so a
mitmproxy upgrade that moves them stops the proxy instead of silently losing the guard.
"""

from __future__ import annotations

import inspect
from typing import Any

import h11
from h11._readers import ChunkedReader
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp

from intercept_addon.proxy.local_reply import local_response
from intercept_addon.wire import jsonrpc, mcp

REQUEST_REFUSED = "a request body with HTTP trailers cannot be judged by the policy proxy; send it without trailers"
RESPONSE_REFUSED = "the upstream's response ends with HTTP trailers, which this proxy does not pass"


class TrailersRefused(Exception):
    """A chunked body ended with trailer fields (raised by the reader, caught by read_body)."""


class NoTrailersReader:
    """A chunked body reader that refuses trailer fields instead of returning them."""

    def __init__(self, reader: ChunkedReader) -> None:
        self._reader = reader

    def __call__(self, buf: Any) -> Any:
        event = self._reader(buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            raise TrailersRefused
        return event

    def read_eof(self) -> Any:
        return self._reader.read_eof()


def refusal_400() -> bytes:
    body = jsonrpc.dumps(jsonrpc.error_body(None, mcp.DENIED_CODE, f"{mcp.DENIED_PREFIX} {REQUEST_REFUSED}"))
    return http1.assemble_response(local_response(400, body, {"connection": "close"}))


_original: tuple[Any, Any] | None = None  # (make_body_reader, read_body) while installed


def install() -> None:
    global _original
    if _original is not None:
        return
    make_body_reader = getattr(_http1, "make_body_reader", None)
    read_body = getattr(getattr(_http1, "Http1Connection", None), "read_body", None)
    if not (callable(make_body_reader) and isinstance(make_body_reader(None), ChunkedReader)
            and inspect.isgeneratorfunction(read_body) and hasattr(_http1, "Http1Server")):
        raise RuntimeError("intercept: mitmproxy's HTTP/1 body reader is not what this addon patches "
                           "(mitmproxy.proxy.layers.http._http1.make_body_reader / Http1Connection.read_body); "
                           "HTTP trailers would not be refused, so the proxy does not start")

    def guarded_reader(expected_size: int | None) -> Any:
        reader = make_body_reader(expected_size)
        return NoTrailersReader(reader) if isinstance(reader, ChunkedReader) else reader

    def guarded_read_body(self: Any, event: Any) -> Any:
        try:
            yield from read_body(self, event)
        except TrailersRefused:
            is_request = isinstance(self, _http1.Http1Server)
            if is_request and self.response is None:
                yield commands.SendData(self.conn, refusal_400())
            yield commands.CloseConnection(self.conn)
            message = REQUEST_REFUSED if is_request else RESPONSE_REFUSED
            yield ReceiveHttp(self.ReceiveProtocolError(self.stream_id, message, code=self.ReceiveProtocolError.code))
            self.state = self.done

    _original = (make_body_reader, read_body)
    _http1.make_body_reader = guarded_reader
    _http1.Http1Connection.read_body = guarded_read_body


def uninstall() -> None:
    global _original
    if _original is not None:
        _http1.make_body_reader, _http1.Http1Connection.read_body = _original
        _original = None
