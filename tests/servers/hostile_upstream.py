"""A scripted MCP-ish HTTP/1.1 server on 127.0.0.1 whose answers a test chooses, to play a hostile
upstream behind the proxy (tests/test_hostile_answers_e2e.py).

    hostile_upstream.py --port N

Control (sent straight to this port, never through the proxy):
- ``POST /__answer`` ``{"key": K, "answer": A}`` queues A for the next request under key K: the
  JSON-RPC method of a POST body (``"tools/list"``), or ``"GET"`` for a bodiless GET.
- ``POST /__reset`` forgets queued answers and the log.
- ``GET /__log`` the requests received so far: ``[{"method", "path", "headers", "body"}]``.

An answer is ``{"status": 200, "headers": {...}, "parts": [...]}``. A part is text sent as is,
except that ``$id`` becomes the request's id as JSON and ``$n`` the bare id (so ``"id":"$n"``
answers id 3 as ``"3"``), or ``{"sleep": seconds}``, or ``{"wait_for": METHOD}``: wait (at most
5 s) until a POST with that method has arrived; from then on ``$id``/``$n`` are its id. An event
stream or several parts are sent chunked (one chunk per part, flushed), one part otherwise with
Content-Length; a ``content-length`` header in the answer is sent as given, unchunked.

Without a queued answer: ``initialize`` gets a 2025-11-25 InitializeResult and a session id,
notifications 202, ``tools/list`` lists ``echo`` and ``secret_admin``, ``tools/call`` a text
result, any other method -32601, a GET or DELETE 405.
"""

import argparse
import asyncio
import json
import time
from typing import Any

TOOLS = [{"name": "echo", "inputSchema": {"type": "object"}},
         {"name": "secret_admin", "inputSchema": {"type": "object"}}]
WAIT_LIMIT = 5.0
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def rpc(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"status": 200, "headers": {"content-type": "application/json"},
            "parts": [json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})]}


def default_answer(http_method: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or "method" not in body:
        return {"status": 405 if http_method in ("GET", "DELETE") else 400, "headers": {}, "parts": []}
    if "id" not in body:
        return {"status": 202, "headers": {}, "parts": []}
    method, msg_id = body["method"], body["id"]
    if method == "initialize":
        answer = rpc(msg_id, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                              "serverInfo": {"name": "hostile", "version": "0"}})
        answer["headers"]["mcp-session-id"] = "hostile-session"
        return answer
    if method == "tools/list":
        return rpc(msg_id, {"tools": TOOLS})
    if method == "tools/call":
        name = (body.get("params") or {}).get("name")
        return rpc(msg_id, {"content": [{"type": "text", "text": f"ran {name}"}]})
    return {"status": 200, "headers": {"content-type": "application/json"},
            "parts": [json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32601, "message": "no"}})]}


class Upstream:
    def __init__(self) -> None:
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.log: list[dict[str, Any]] = []
        self.arrived = asyncio.Condition()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        if target.startswith("/__"):
            await self.control(method, target, raw, writer)
            return True
        text = raw.decode("utf-8", "replace")
        async with self.arrived:
            self.log.append({"method": method, "path": target, "headers": headers, "body": text})
            self.arrived.notify_all()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        key = body.get("method") if isinstance(body, dict) else (method if not raw else None)
        queued = self.answers.get(key) if isinstance(key, str) else None
        answer = queued.pop(0) if queued else default_answer(method, body)
        await self.send(writer, answer, body.get("id") if isinstance(body, dict) else None)
        return True

    async def control(self, method: str, target: str, raw: bytes, writer: asyncio.StreamWriter) -> None:
        out: Any = {}
        if target == "/__answer" and method == "POST":
            order = json.loads(raw)
            self.answers.setdefault(order["key"], []).append(order["answer"])
        elif target == "/__reset" and method == "POST":
            self.answers.clear()
            self.log.clear()
        elif target == "/__log":
            out = self.log
        body = json.dumps(out)
        await self.send(writer, {"status": 200, "headers": {"content-type": "application/json"}, "parts": [body]}, None)

    async def waited_id(self, rpc_method: str) -> Any:
        """The id of the first logged POST calling ``rpc_method``, waiting for it if need be."""
        deadline = time.monotonic() + WAIT_LIMIT

        def found() -> Any:
            for entry in self.log:
                try:
                    body = json.loads(entry["body"])
                except ValueError:
                    continue
                if isinstance(body, dict) and body.get("method") == rpc_method:
                    return body
            return None

        async with self.arrived:
            while (body := found()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {rpc_method} request within {WAIT_LIMIT}s")
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)
                except TimeoutError:
                    pass
        return body.get("id")

    async def send(self, writer: asyncio.StreamWriter, answer: dict[str, Any], msg_id: Any) -> None:
        status = answer.get("status", 200)
        headers = dict(answer.get("headers", {}))
        parts = answer.get("parts", [])
        # Event streams are chunked, as real servers send them, unless a length is given.
        chunked = "content-length" not in headers and (
            "event-stream" in headers.get("content-type", "") or len(parts) != 1 or not isinstance(parts[0], str))
        if chunked:
            headers["transfer-encoding"] = "chunked"
        elif "content-length" not in headers:
            headers["content-length"] = str(len(self.fill(parts[0], msg_id)) if parts else 0)
        head = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1"))
        for part in parts:
            if isinstance(part, dict):
                if "sleep" in part:
                    await asyncio.sleep(min(float(part["sleep"]), WAIT_LIMIT))
                if "wait_for" in part:
                    msg_id = await self.waited_id(part["wait_for"])
                continue
            data = self.fill(part, msg_id)
            if chunked and not data:
                continue  # an empty chunk would end the body
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def fill(part: str, msg_id: Any) -> bytes:
        return part.replace("$id", json.dumps(msg_id)).replace("$n", str(msg_id)).encode()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
