"""The wrapped server as a Streamable HTTP endpoint on 127.0.0.1, reachable only through the proxy.

Messages are relayed as bytes, not re-encoded: a client's POST body is written to the server's
stdin as one line (a JSON value holds CR or LF only as whitespace, so they become spaces), and
each line the server writes becomes one SSE event (``router.Router`` picks the stream). A
request POST is answered at once with an event stream, so the client may send its next message
(a sampling answer, a cancellation) while this one waits. Every request must carry the per-run
secret header that only the proxy adds; the port is random and bound to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import sys
import uuid
from typing import Any

import uvicorn

from intercept_addon.stdio.proxy import SECRET_HEADER
from intercept_addon.stdio.router import END, MAX_MESSAGE, Router, Stream, dropped

Send = Any
Receive = Any


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Bridge:
    """The ASGI app in front of one server process (its stdin is ``to_server``)."""

    def __init__(self, path: str, secret: str, to_server: asyncio.StreamWriter) -> None:
        self.path = path
        self._secret = secret.encode()
        self._to_server = to_server
        self.router = Router()
        self.session = uuid.uuid4().hex  # issued on initialize, like a stateful HTTP server

    async def pump(self, from_server: asyncio.StreamReader) -> None:
        """Route every line the server writes until it closes its stdout."""
        while line := await from_server.readline():
            raw = line.strip()
            if not raw:
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                dropped("a line that is not JSON", raw)
                continue
            if isinstance(message, list):  # a batch answer (2025-03-26): one event per message
                for item in message:
                    self.router.route(item, _compact(item))
            else:
                self.router.route(message, raw)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        if not hmac.compare_digest(headers.get(SECRET_HEADER.encode(), b""), self._secret):
            return await _plain(send, 403, b"Forbidden")
        if scope["path"] != self.path:
            return await _plain(send, 404, b"Not Found")
        if scope["method"] == "POST":
            return await self._post(receive, send)
        if scope["method"] == "GET" and b"text/event-stream" in headers.get(b"accept", b""):
            stream = self.router.open_standalone()
            return await self._events(stream, receive, send, [])
        await _plain(send, 405, b"Method Not Allowed", [(b"allow", b"GET, POST")])

    async def _post(self, receive: Receive, send: Send) -> None:
        body = await _body(receive)
        if body is None:
            return await _plain(send, 413, b"Payload Too Large")
        try:
            parsed = json.loads(body)
        except ValueError:
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            return await _plain(send, 400, _compact(error), content_type=b"application/json")
        messages = [m for m in (parsed if isinstance(parsed, list) else [parsed]) if isinstance(m, dict)]
        stream = self.router.requests_sent(messages)  # before the server can answer
        try:
            self._to_server.write(body.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n")
            await self._to_server.drain()
        except (ConnectionError, RuntimeError):  # the server is gone; the wrapper is stopping
            if stream is not None:
                self.router.closed(stream)
            return await _plain(send, 503, b"The server has exited")
        if stream is None:
            return await _plain(send, 202, b"")
        extra = [(b"mcp-session-id", self.session.encode())] \
            if any(m.get("method") == "initialize" for m in messages) else []
        await self._events(stream, receive, send, extra)

    async def _events(self, stream: Stream, receive: Receive, send: Send,
                      extra: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"), *extra]})
        await send({"type": "http.response.body", "body": b"", "more_body": True})  # headers out now
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while True:
                item = asyncio.ensure_future(stream.queue.get())
                await asyncio.wait({item, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not item.done():
                    item.cancel()
                    return
                raw = item.result()
                if raw is END:
                    break
                await send({"type": "http.response.body", "body": b"event: message\ndata: " + raw + b"\n\n",
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            self.router.closed(stream)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return b""
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_MESSAGE:
            return None
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
                 content_type: bytes = b"text/plain; charset=utf-8") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *headers]})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield  # the wrapper owns SIGINT and SIGTERM


async def serve(app: Bridge, sock: socket.socket) -> tuple[_Server, asyncio.Task[None]]:
    """Serve ``app`` on ``sock`` (bound to 127.0.0.1 by the caller, who needed its port before);
    returns once it accepts connections."""
    server = _Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the bridge stopped before it listened")
        await asyncio.sleep(0.005)
    print(f"intercept-addon stdio: bridge on http://127.0.0.1:{sock.getsockname()[1]}{app.path}",
          file=sys.stderr, flush=True)
    return server, task
