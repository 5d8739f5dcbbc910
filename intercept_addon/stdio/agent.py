"""The agent's side: JSON-RPC lines on our stdin and stdout, Streamable HTTP to the proxy.

Each line the agent writes is POSTed to the proxy as it came. The next line is sent only once
the proxy has answered the previous POST's headers (the bridge answers a request's headers as
soon as the server has it), so the server reads the agent's messages in the agent's order,
while answers stream back concurrently. Whatever the proxy answers (the server's messages, or
its own denial) is written to stdout one message per line; an answer that is not JSON-RPC becomes
a JSON-RPC error for each request in the POST, so the agent never waits for nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx2

from intercept_addon.wire.jsonrpc import id_key
from intercept_addon.wire.sse import SseEvent, SseRewriter

ACCEPT = "application/json, text/event-stream"
INTERNAL_ERROR = -32603
GET_RETRIES = 5  # reconnections of the GET stream in a row before giving up on it


def client(proxy: str | None = None) -> httpx2.AsyncClient:
    """To the proxy on loopback (as a reverse proxy, or as the HTTP ``proxy`` when it is shared):
    no proxy from the environment, no read timeout (event streams stay open while a tool runs)."""
    return httpx2.AsyncClient(proxy=proxy, trust_env=False, timeout=httpx2.Timeout(10.0, read=None))


def write_line(raw: bytes) -> None:
    sys.stdout.buffer.write(raw + b"\n")
    sys.stdout.buffer.flush()


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _error(request_id: Any, message: str) -> bytes:
    return _compact({"jsonrpc": "2.0", "id": request_id, "error": {"code": INTERNAL_ERROR, "message": message}})


class AgentSide:
    def __init__(self, url: str, client: httpx2.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self._base_headers = headers or {}
        self._client = client
        self._write = write_line
        self._session: str | None = None
        self._protocol: str | None = None
        self._initialize_ids: set[Any] = set()
        self._cancelled: set[Any] = set()
        self._get_stream: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _headers(self, accept: str = ACCEPT) -> dict[str, str]:
        headers = {**self._base_headers, "accept": accept, "content-type": "application/json"}
        if self._session:
            headers["mcp-session-id"] = self._session
        if self._protocol:
            headers["mcp-protocol-version"] = self._protocol
        return headers

    async def send(self, line: bytes) -> None:
        """POST one line from the agent; return when the proxy has taken it (its answer's headers)."""
        body = line.strip()
        if not body:
            return
        try:
            parsed = json.loads(body)
        except ValueError:
            return self._write(_compact({"jsonrpc": "2.0", "id": None,
                                         "error": {"code": -32700, "message": "Parse error"}}))
        messages = [m for m in (parsed if isinstance(parsed, list) else [parsed]) if isinstance(m, dict)]
        ids = [m["id"] for m in messages if "method" in m and "id" in m]
        for m in messages:
            if m.get("method") == "initialize" and "id" in m:
                self._initialize_ids.add(id_key(m["id"]))
            if m.get("method") == "notifications/cancelled" and isinstance(m.get("params"), dict):
                self._cancelled.add(id_key(m["params"].get("requestId")))
        try:
            response = await self._client.send(
                self._client.build_request("POST", self.url, content=body, headers=self._headers()), stream=True)
        except httpx2.HTTPError as exc:
            for request_id in ids:
                self._write(_error(request_id, f"intercept-addon stdio: the proxy cannot be reached: {exc}"))
            return
        if session := response.headers.get("mcp-session-id"):
            self._session = session
        task = asyncio.create_task(self._answers(response, ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answers(self, response: httpx2.Response, ids: list[Any]) -> None:
        owed = {id_key(i): i for i in ids}
        try:
            async for raw in _messages(response):
                self._relay(raw, owed)
        except httpx2.HTTPError:
            pass
        finally:
            await response.aclose()
        for key, request_id in owed.items():
            if key not in self._cancelled:
                self._write(_error(request_id, f"intercept-addon stdio: the proxy answered HTTP "
                                               f"{response.status_code} without an answer to this request"))

    def _relay(self, raw: bytes, owed: dict[Any, Any]) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict) and "method" not in item:
                key = id_key(item.get("id"))
                owed.pop(key, None)
                self._initialized(key, item)
        self._write(raw if b"\n" not in raw and b"\r" not in raw else _compact(message))

    def _initialized(self, key: Any, answer: dict[str, Any]) -> None:
        """The answer to initialize names the protocol version; then open the GET stream."""
        if key not in self._initialize_ids:
            return
        self._initialize_ids.discard(key)
        result = answer.get("result")
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self._protocol = result["protocolVersion"]
        if self._get_stream is None:
            self._get_stream = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        """The standalone GET stream: the server's messages outside any request's stream."""
        failures = 0
        while failures < GET_RETRIES:
            try:
                request = self._client.build_request("GET", self.url, headers=self._headers("text/event-stream"))
                response = await self._client.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        return  # 405: the server has none
                    failures = 0
                    async for raw in _messages(response):
                        self._relay(raw, {})
                finally:
                    await response.aclose()
            except httpx2.HTTPError:
                pass
            failures += 1
            await asyncio.sleep(0.1 * failures)

    async def close(self) -> None:
        for task in [*self._tasks, *([self._get_stream] if self._get_stream else [])]:
            task.cancel()


async def _messages(response: httpx2.Response):  # type: ignore[no-untyped-def]
    """The JSON-RPC texts in an answer: one JSON body, or the data of each SSE event."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        events: list[SseEvent] = []
        reader = SseRewriter(lambda event: events.append(event))
        async for chunk in response.aiter_bytes():
            reader.feed(chunk)
            for event in events:
                if event.data:
                    yield event.data.encode()
            events.clear()
        reader.feed(b"")
        for event in events:
            if event.data:
                yield event.data.encode()
        return
    body = (await response.aread()).strip()
    if body and content_type in ("application/json", ""):
        yield body
