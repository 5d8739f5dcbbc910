"""An MCP upstream whose answers say nothing about whether the tool ran, for the counting
tests (raw HTTP/1.1 on asyncio streams, 127.0.0.1 only).

It runs every tools/call it receives, logging "<tool> <json args>" to --log as mcp_server.py
does, then answers (--answer): ``500`` (a plain-text 500), ``drop`` (hangs up without
answering), ``internal-error`` (JSON-RPC -32603) or ``server-error`` (JSON-RPC -32000).
"""

import argparse
import asyncio
import json

ERROR_CODES = {"internal-error": -32603, "server-error": -32000}


def http_answer(status: int, ctype: str, payload: bytes) -> bytes:
    return (f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(payload)}\r\n\r\n"
            .encode() + payload)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: str, log: str) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            body = json.loads(await reader.readexactly(length) or b"{}")
            if body.get("method") == "tools/call":
                params = body.get("params") or {}
                with open(log, "a") as f:
                    f.write(f"{params.get('name')} {json.dumps(params.get('arguments') or {}, sort_keys=True)}\n")
            if answer == "drop":
                return
            if answer == "500":
                writer.write(http_answer(500, "text/plain", b"Internal Server Error"))
            else:
                error = {"jsonrpc": "2.0", "id": body.get("id"),
                         "error": {"code": ERROR_CODES[answer], "message": "something went wrong"}}
                writer.write(http_answer(200, "application/json", json.dumps(error).encode()))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--answer", required=True, choices=["500", "drop", *ERROR_CODES])
    args = parser.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, args.answer, args.log), "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
