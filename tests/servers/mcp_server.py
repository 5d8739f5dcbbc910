"""A real MCP server (official SDK) with side-effect tools, for tests through the proxy.

Every tool that runs appends one line "<tool> <json args>" to --log, so a test can prove that
a denied call never reached the tool.

For ``scan`` and fingerprint tests: ``--annotated-tools`` adds tools carrying annotations
(some contradicting their names), ``--page-size N`` lists tools N per page (nextCursor), and
``--echo-description-suffix TEXT`` redefines echo the way a rogue server would.

For counting tests: ``--counting-tools`` adds ``slow`` (logs when it starts, then sleeps) and
two 2026-07-28 multi-round-trip tools that first answer ``input_required``.
"""

import argparse
import json
import os
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.types import ListToolsResult, ToolAnnotations

ECHO_DESCRIPTION = "Echo the text back."


class PagedServer(MCPServer):
    """tools/list in pages of ``page_size`` tools (0: all at once); the cursor is an offset."""

    page_size = 0

    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        tools = await self.list_tools()
        if not self.page_size:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


class MemoryEventStore(EventStore):
    """Every event kept, so a client can resume a stream with Last-Event-ID (2025-11-25)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        index = next((i for i, event in enumerate(self.events) if event[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, sid, message in self.events[index + 1:]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--transport", default="streamable-http", choices=["streamable-http", "sse"])
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--resumable", action="store_true", help="keep events: streams resume with Last-Event-ID")
    parser.add_argument("--compress-sse", choices=["gzip", "br"], help="compress every event stream, ignoring Accept-Encoding")
    parser.add_argument("--annotated-tools", action="store_true")
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--echo-description-suffix", default="")
    parser.add_argument("--counting-tools", action="store_true")
    parser.add_argument("--content", action="store_true", help="resources, a resource template, prompts, completion")
    args = parser.parse_args()

    def ran(tool: str, **kwargs: object) -> None:
        with open(args.log, "a") as f:
            f.write(f"{tool} {json.dumps(kwargs, sort_keys=True)}\n")

    server = PagedServer("intercept-test")
    server.page_size = args.page_size

    @server.tool(description=ECHO_DESCRIPTION + args.echo_description_suffix)
    def echo(text: str) -> str:
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
    async def progress(n: int, ctx: Context, gate: str = "") -> str:
        """Reports progress, so the answer comes as an SSE stream. With ``gate`` (a file path) it
        goes on after the first step only once that file exists: a client can prove it received
        that step before the answer was complete (nothing between them buffered it)."""
        ran("progress", n=n)
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"step {i + 1}")
            if gate and i == 0:
                with anyio.move_on_after(20):
                    while not os.path.exists(gate):
                        await anyio.sleep(0.05)
                if not os.path.exists(gate):
                    return "the gate never opened: the first step did not reach the client"
        return f"counted to {n}"

    if args.annotated_tools:
        add_annotated_tools(server, ran)
    if args.content:
        add_content(server, ran)
    if args.counting_tools:
        from counting_tools import add_counting_tools

        add_counting_tools(server, ran)

    if args.compress_sse:
        import uvicorn
        from compressed_streams import CompressEventStreams

        app = server.sse_app(host="127.0.0.1") if args.transport == "sse" else server.streamable_http_app()
        app = CompressEventStreams(app, args.compress_sse)
        uvicorn.run(app, host="127.0.0.1", port=args.port)
        return
    kwargs = {"host": "127.0.0.1", "port": args.port}
    if args.transport == "streamable-http":
        kwargs.update(json_response=args.json_response, stateless_http=args.stateless)
        if args.resumable:
            kwargs["event_store"] = MemoryEventStore()
    server.run(args.transport, **kwargs)


def add_content(server: MCPServer, ran: Any) -> None:
    """What the policy's resources, prompts and completion sections govern; each use is logged."""

    @server.resource("docs://readme", mime_type="text/plain")
    def readme() -> str:
        ran("read", uri="docs://readme")
        return "read me"

    @server.resource("secret://keys", mime_type="text/plain")
    def keys() -> str:
        ran("read", uri="secret://keys")
        return "the keys"

    @server.resource("notes://{name}", mime_type="text/plain")
    def note(name: str) -> str:
        ran("read", uri=f"notes://{name}")
        return f"note {name}"

    @server.prompt()
    def review(code: str) -> str:
        ran("prompt", name="review", code=code)
        return f"Review this: {code}"

    @server.prompt()
    def admin_prompt() -> str:
        ran("prompt", name="admin_prompt")
        return "You are root."

    @server.tool()
    async def ask_model(question: str, ctx: Context) -> str:
        """Asks the client's model (sampling/createMessage)."""
        from mcp.types import SamplingMessage, TextContent

        ran("ask_model", question=question)
        answer = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=50)
        return f"the model said: {answer.content.text}"

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Any:
        from mcp.types import Completion

        ran("complete", argument=argument.name, value=argument.value)
        return Completion(values=[f"{argument.value}1", f"{argument.value}2"])


def add_annotated_tools(server: MCPServer, ran: Any) -> None:
    """Tools whose annotations say what they do; remove_draft and get_queue contradict their names."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def lookup(query: str, mode: Literal["exact", "fuzzy"] = "exact") -> str:
        """Look a record up."""
        ran("lookup", query=query, mode=mode)
        return f"found {query}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def purge_archive(confirm: bool) -> str:
        """Delete the whole archive."""
        ran("purge_archive", confirm=confirm)
        return "purged"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    def archive_item(item_id: str, tier: Literal["cold", "warm"]) -> str:
        """Move an item to an archive tier."""
        ran("archive_item", item_id=item_id, tier=tier)
        return f"archived {item_id}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def remove_draft(draft_id: str) -> str:
        """Mark a draft as removed (it can be restored)."""
        ran("remove_draft", draft_id=draft_id)
        return f"removed {draft_id}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def get_queue(drain: bool = True) -> str:
        """Read the queue; reading drains it."""
        ran("get_queue", drain=drain)
        return "queue"


if __name__ == "__main__":
    main()
