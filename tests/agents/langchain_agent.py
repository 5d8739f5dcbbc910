"""An agent built on LangChain's MCP adapters, run as its own process by the identity e2e tests
(in .venv-langchain: langchain-mcp-adapters needs mcp<2).

It takes the adapters' common path: ``MultiServerMCPClient(...).get_tools()``, then each tool
call through the LangChain tool, which opens a new MCP session (and HTTP client) per call.
Prints one JSON line with its pid, then one per call: {"ok": text} or {"error": text}.

Usage: langchain_agent.py URL TOOL COUNT [TRANSPORT]
"""

import asyncio
import json
import os
import sys

from langchain_mcp_adapters.client import MultiServerMCPClient


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(url: str, tool: str, count: int, transport: str) -> None:
    say(pid=os.getpid())
    client = MultiServerMCPClient({"test": {"transport": transport, "url": url}})
    tools = {t.name: t for t in await client.get_tools()}
    for i in range(count):
        try:
            out = await tools[tool].ainvoke({"prompt": f"lc-{os.getpid()}-{i}"})
            say(ok=out if isinstance(out, str) else json.dumps(out, default=str))
        except Exception as exc:  # the agent reports a denial and goes on, as a model loop would
            say(error=str(exc), type=type(exc).__name__)


if __name__ == "__main__":
    url, tool, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(main(url, tool, count, sys.argv[4] if len(sys.argv) > 4 else "streamable_http"))
