"""An agent on the official Python SDK (mcp 2.3.0), run as its own process by the identity e2e
tests: the proxy must tell it apart from other processes by the connection alone.

Prints one JSON line with its pid, then one per call: {"ok": text} or {"error": message}.
``--per-call-session``: a new client (session, HTTP client, TCP connection) for every call, as
agents built on per-call adapters do; otherwise one client for all calls.

Usage: sdk_agent.py URL TOOL COUNT [--mode auto|legacy] [--per-call-session] [--header NAME=VALUE]...
"""

import argparse
import asyncio
import contextlib
import json
import os

import httpx2
import mcp
from mcp.client.streamable_http import streamable_http_client


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


@contextlib.asynccontextmanager
async def connect(url: str, mode: str, headers: dict[str, str]):
    http = httpx2.AsyncClient(headers=headers, trust_env=False, timeout=httpx2.Timeout(30, read=60))
    async with http, mcp.Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


async def call(client: mcp.Client, tool: str, i: int) -> None:
    try:
        result = await client.call_tool(tool, {"prompt": f"sdk-{os.getpid()}-{i}"})
        say(ok=result.content[0].text)
    except mcp.MCPError as exc:
        say(error=exc.message)


async def main(args: argparse.Namespace) -> None:
    say(pid=os.getpid())
    headers = dict(h.split("=", 1) for h in args.header)
    if args.per_call_session:
        for i in range(args.count):
            async with connect(args.url, args.mode, headers) as client:
                await call(client, args.tool, i)
        return
    async with connect(args.url, args.mode, headers) as client:
        for i in range(args.count):
            await call(client, args.tool, i)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("tool")
    parser.add_argument("count", type=int)
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    parser.add_argument("--per-call-session", action="store_true")
    parser.add_argument("--header", action="append", default=[])
    asyncio.run(main(parser.parse_args()))
