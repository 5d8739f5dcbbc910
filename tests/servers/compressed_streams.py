"""ASGI middleware for tests: compress every ``text/event-stream`` response body as it streams,
whatever the request's Accept-Encoding says (the proxy asks event streams for identity; this
stands for a server that ignores that). Each body chunk is flushed, so events still arrive one
by one. Encodings: gzip (zlib, Z_SYNC_FLUSH) and br (brotli, which mitmproxy depends on)."""

import zlib

import brotli


class _Gzip:
    def __init__(self):
        self._z = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)  # gzip framing

    def chunk(self, data: bytes, more: bool) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)


class _Brotli:
    def __init__(self):
        self._b = brotli.Compressor()

    def chunk(self, data: bytes, more: bool) -> bytes:
        return self._b.process(data) + (self._b.flush() if more else self._b.finish())


COMPRESSORS = {"gzip": _Gzip, "br": _Brotli}


class CompressEventStreams:
    def __init__(self, app, encoding: str):
        self.app = app
        self.encoding = encoding

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        compressor = None

        async def send_compressed(message):
            nonlocal compressor
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    compressor = COMPRESSORS[self.encoding]()
                    message = {**message, "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"]
                               + [(b"content-encoding", self.encoding.encode())]}
            elif message["type"] == "http.response.body" and compressor is not None:
                more = message.get("more_body", False)
                message = {**message, "body": compressor.chunk(message.get("body", b""), more)}
            await send(message)

        await self.app(scope, receive, send_compressed)
