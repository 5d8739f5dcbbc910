"""Tools for the counting tests (``mcp_server.py --counting-tools``).

``slow`` logs the moment it starts, before it sleeps, so a test knows the call reached the
tool even when the client hangs up or cancels before the answer. The ``confirm_*`` tools speak
the 2026-07-28 multi-round-trip pattern: the first round answers ``input_required`` and runs
nothing; the retry carrying the answer and the echoed ``requestState`` runs and logs.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

REQUEST_STATE = "awaiting-confirmation"


def confirmation() -> InputRequiredResult:
    question = ElicitRequest(params=ElicitRequestFormParams(
        message="Go ahead?",
        requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}))
    return InputRequiredResult(input_requests={"confirm": question}, request_state=REQUEST_STATE)


def confirmed(ctx: Context) -> bool:
    answers = ctx.input_responses or {}
    return "confirm" in answers and ctx.request_state == REQUEST_STATE


def add_counting_tools(server: MCPServer, ran: Any) -> None:
    @server.tool()
    async def slow(seconds: float, tag: str = "") -> str:
        """Logs that it started, then sleeps ``seconds``."""
        ran("slow", seconds=seconds, tag=tag)
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def confirm_generate(prompt: str, ctx: Context) -> InputRequiredResult | str:
        """Costly generation that asks for confirmation first (2026-07-28 input_required)."""
        if not confirmed(ctx):
            return confirmation()
        ran("confirm_generate", prompt=prompt)
        return f"generated {prompt}"

    @server.tool()
    def confirm_charge(amount: int, ctx: Context) -> InputRequiredResult | str:
        """Charge money after a confirmation round (2026-07-28 input_required)."""
        if not confirmed(ctx):
            return confirmation()
        ran("confirm_charge", amount=amount)
        return f"charged {amount}"
