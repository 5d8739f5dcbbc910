"""The event log's lines per decision: at most LINES_PER_SECOND a second, the rest counted and
said once the second is over; the decision log keeps every decision (a flood of denials or of
malformed requests must not make the proxy spend a log record on each)."""

from __future__ import annotations

import asyncio
import json
import math
import logging
import time

import httpx2
import pytest

from intercept_addon.proxy.log_budget import LINES_PER_SECOND, LogBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_past_the_budget_are_counted_and_said_with_the_next_second(caplog):
    clock = Clock()
    budget = LogBudget(per_second=3, clock=clock)
    with caplog.at_level(logging.INFO, logger="intercept"):
        for i in range(7):
            budget.info(f"line {i}")
        clock.now += 0.99
        budget.info("still the same second")
        clock.now += 0.02
        budget.info("a new second")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["line 0", "line 1", "line 2"]
    assert lines[3].startswith("intercept: 5 more decisions in one second") and "decision log" in lines[3]
    assert lines[4:] == ["a new second"]


async def test_the_count_is_said_when_the_second_is_over_even_if_nothing_follows(caplog):
    budget = LogBudget(per_second=1)
    with caplog.at_level(logging.INFO, logger="intercept"):
        budget.info("first")
        budget.info("left out")
        budget.info("left out too")
        assert [r.getMessage() for r in caplog.records] == ["first"]
        await asyncio.sleep(1.1)
    assert caplog.records[-1].getMessage().startswith("intercept: 2 more decisions in one second")


@pytest.mark.e2e
async def test_a_flood_of_denials_is_not_a_flood_of_log_records(stack_factory, tmp_path):
    stack = stack_factory(options=("intercept_state=memory",))
    headers = {"mcp-protocol-version": "2025-06-18", "accept": "application/json, text/event-stream",
               "x-agent-id": "looping-agent"}
    calls = 5 * LINES_PER_SECOND

    async def denied(http: httpx2.AsyncClient, i: int) -> None:
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "delete_everything"}}
        resp = await http.post(stack.url, json=body, headers=headers)
        assert "Deleting everything is not allowed" in resp.json()["error"]["message"]

    began = time.monotonic()
    async with httpx2.AsyncClient(trust_env=False, timeout=60) as http:
        await asyncio.gather(*(denied(http, i) for i in range(calls)))
    seconds = time.monotonic() - began
    await asyncio.sleep(1.5)  # the count of lines left out is said once their second is over
    out = stack.proxy.output()
    shown = out.count("intercept: deny tool=delete_everything")
    left_out = sum(int(line.split("intercept: ", 1)[1].split()[0]) for line in out.splitlines()
                   if "more decisions in one second" in line)
    assert shown + left_out == calls and left_out > 0
    assert shown <= LINES_PER_SECOND * (math.ceil(seconds) + 1)
    log = (tmp_path / "mitmproxy" / "intercept-decisions.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["decision"] == "deny" for line in log) == calls  # every one is kept
