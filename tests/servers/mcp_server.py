"""A real MCP server (official SDK) with side-effect tools, for tests through the proxy.

Every tool that runs appends one line "<tool> <json args>" to --log, so a test can prove that
a denied call never reached the tool.
"""

import argparse
import json

from mcp.server.mcpserver import Context, MCPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--transport", default="streamable-http", choices=["streamable-http", "sse"])
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()

    def ran(tool: str, **kwargs: object) -> None:
        with open(args.log, "a") as f:
            f.write(f"{tool} {json.dumps(kwargs, sort_keys=True)}\n")

    server = MCPServer("intercept-test")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        ran("echo", text=text)
        return text

    @server.tool()
    def charge(amount: int, currency: str = "usd") -> str:
        """Charge money (side effect)."""
        ran("charge", amount=amount, currency=currency)
        return f"charged {amount} {currency}"

    @server.tool()
    def generate(prompt: str) -> str:
        """Costly generation (rate limited in tests)."""
        ran("generate", prompt=prompt)
        return f"generated {prompt}"

    @server.tool()
    def delete_everything() -> str:
        """Destructive: must never run through the proxy."""
        ran("delete_everything")
        return "deleted"

    @server.tool()
    def secret_admin() -> str:
        """Hidden by the test policy."""
        ran("secret_admin")
        return "admin"

    @server.tool()
    def flaky(fail: bool = True) -> str:
        """Fails with a JSON-RPC level error when asked (to test counter rollback)."""
        ran("flaky", fail=fail)
        if fail:
            raise ValueError("flaky failed")
        return "ok"

    @server.tool()
    async def progress(n: int, ctx: Context) -> str:
        """Reports progress, so the answer comes as an SSE stream."""
        ran("progress", n=n)
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"step {i + 1}")
        return f"counted to {n}"

    kwargs = {"host": "127.0.0.1", "port": args.port}
    if args.transport == "streamable-http":
        kwargs.update(json_response=args.json_response, stateless_http=args.stateless)
    server.run(args.transport, **kwargs)


if __name__ == "__main__":
    main()
