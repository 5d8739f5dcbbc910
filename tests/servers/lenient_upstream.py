"""A lenient MCP-ish server on 127.0.0.1 that takes whatever a client manages to send, to prove
that traffic the proxy does not judge never reaches a tool (tests/test_unjudged_traffic.py).

    lenient_upstream.py --port N --log SIDE_EFFECTS

Every ``tools/call`` it receives, however it came, appends "<tool> {}" to the log, as
tests/servers/mcp_server.py does. Leniencies, each one a real server's:

- leading empty lines before a request line are skipped (Node's HTTP parser does);
- a request with ``Sec-WebSocket-Key`` is a WebSocket handshake even without ``Upgrade``, and
  the answer picks subprotocol ``mcp`` even when the client offered none (the Python SDK 1.x
  WebSocket server does); each text frame is then a JSON-RPC message;
- any other ``Upgrade`` is accepted with a 101, after which each line is a JSON-RPC message;
- chunked bodies may end with trailers; a POST to ``/trailers`` is answered with one.
"""

import argparse
import asyncio
import base64
import hashlib
import json
from typing import Any

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11D65"


def answer(message: Any, ran: Any) -> bytes:
    """The JSON-RPC answer to one message; runs the tool of a tools/call."""
    if not isinstance(message, dict) or "id" not in message:
        return b""
    if message.get("method") == "tools/call":
        name = (message.get("params") or {}).get("name")
        ran(str(name))
        result: dict[str, Any] = {"content": [{"type": "text", "text": f"ran {name}"}]}
    else:
        result = {}
    return json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    line = b"\r\n"
    while line in (b"\r\n", b"\n"):  # skip leading empty lines
        line = await reader.readline()
    if not line:
        return None
    headers: dict[str, str] = {}
    while (field := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = field.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return line.decode("latin-1").strip(), headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            body += await reader.readexactly(size)
            await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return body
    return await reader.readexactly(int(headers.get("content-length", "0")))


def ws_frame(payload: bytes) -> bytes:
    size = len(payload)
    head = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
    return head + payload


async def ws_messages(reader: asyncio.StreamReader):
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
        masked = await reader.readexactly(size)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
        if first & 0x0F == 0x8:  # close
            return
        yield payload


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ran: Any) -> None:
    while head := await read_head(reader):
        _, headers = head
        body = await read_body(reader, headers)
        if "sec-websocket-key" in headers:
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: mcp\r\n\r\n")
            async for payload in ws_messages(reader):
                writer.write(ws_frame(answer(json.loads(payload), ran)))
            return
        if "upgrade" in headers:
            writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {headers['upgrade']}\r\n"
                         "Connection: Upgrade\r\n\r\n".encode())
            while line := await reader.readline():
                writer.write(answer(json.loads(line), ran) + b"\n")
            return
        reply = answer(json.loads(body), ran) if body.strip() else b""
        if head[0].split(" ")[1:2] == ["/trailers"]:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"%x\r\n%s\r\n0\r\nx-checksum: 1\r\n\r\n" % (len(reply), reply))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(reply), reply))
        await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    def ran(tool: str) -> None:
        with open(args.log, "a") as f:
            f.write(f"{tool} {{}}\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer, ran)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
