"""Cost of ``arguments: schema`` per call, with mcp-sora's real inputSchemas (tests/fixtures):
the check alone (validators compiled once per schema), for a valid call and for a denied one,
next to the engine's own evaluation of a condition rule for scale.

    .venv/bin/python bench/bench_arguments.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from intercept_addon.policy.engine import Call, Engine
from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy.published import PublishedTools
from intercept_addon.state.memory import MemoryStore

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mcp_sora_tools.json"
CONDITION = "tools:\n  sora_generate_video:\n    rules:\n      - name: duration\n        conditions: [{path: args.duration, op: in, value: [10, 15, 25]}]\n"


def per_call(work, calls: int) -> float:
    work()  # warm: compiles the validator
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    calls = parser.parse_args().calls
    published = PublishedTools()
    published.observe("sora", {"jsonrpc": "2.0", "id": 1, "result": {"tools": json.loads(FIXTURE.read_text())}})
    valid = {"prompt": "a cat on a river", "model": "sora-2", "duration": 10, "size": "large"}
    invalid = dict(valid, duration=7)
    engine, store = Engine(parse_policy(CONDITION)), MemoryStore()
    loop = asyncio.new_event_loop()
    rows = [
        ("schema check, valid call", per_call(lambda: published.decision("sora", "sora_generate_video", valid), calls)),
        ("schema check, denied call", per_call(lambda: published.decision("sora", "sora_generate_video", invalid), calls)),
        ("engine: one condition rule (for scale)", per_call(lambda: loop.run_until_complete(
            engine.evaluate(Call("a", "sora_generate_video", valid), store)), calls // 4)),
    ]
    for name, micros in rows:
        print(f"{name:45} {micros:8.1f} µs per call")


if __name__ == "__main__":
    main()
