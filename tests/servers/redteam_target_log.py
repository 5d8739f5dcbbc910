"""An HTTP/1.1 server that logs how each request named its server: one JSON line per request
(request target, Host field, body) in --log, then a JSON-RPC result. For red-team tests of
which names the proxy judges against what a server routes by."""

import argparse
import asyncio
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
            target = head.split(" ")[1]
            fields = [line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line]
            hosts = [value.strip() for name, value in fields if name.lower() == "host"]
            length = next((int(value) for name, value in fields if name.lower() == "content-length"), 0)
            body = (await reader.readexactly(length)).decode(errors="replace")
            with open(args.log, "a") as f:
                f.write(json.dumps({"target": target, "host": hosts, "body": body}) + "\n")
            answer = b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
