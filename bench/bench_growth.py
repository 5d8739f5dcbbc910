"""How the addon's own cost grows, measured in-process where a loaded machine cannot blur it:
one allowed tools/call's strict parse + Engine.evaluate + commit on the default SQLite store,
in CPU microseconds (process_time), for policies of 50, 1,000 and 10,000 tools (bench_cost.py's
policy shape) and for 10, 1,000 and 100,000 distinct agents inside the counter's window; and
what the agents cost in memory (the in-memory store's counters, measured with tracemalloc;
SQLite keeps them in its file, whose size is shown) and the policy's parse time.

    .venv/bin/python bench/bench_growth.py [--calls 20000]

Results: a table, and bench/results/bench_growth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_cost import policy  # noqa: E402

from intercept_addon.policy.engine import Call, Engine  # noqa: E402
from intercept_addon.policy.file import parse_policy  # noqa: E402
from intercept_addon.state.memory import MemoryStore  # noqa: E402
from intercept_addon.state.sqlite import SqliteStore  # noqa: E402
from intercept_addon.wire import jsonrpc  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_growth.json"
BODY = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello %d"}}}'


async def per_call(engine: Engine, store, calls: int, agents: int) -> float:  # type: ignore[no-untyped-def]
    """CPU microseconds per call: parse the body, evaluate, commit (as the addon does)."""
    for i in range(agents):  # every agent has its counter in the window before timing
        await _one(engine, store, i, agents)
    start = time.process_time()
    for i in range(calls):
        await _one(engine, store, i, agents)
    return (time.process_time() - start) / calls * 1e6


async def _one(engine: Engine, store, i: int, agents: int) -> None:  # type: ignore[no-untyped-def]
    msg = jsonrpc.loads(BODY % (i, i))
    args = msg["params"]["arguments"]
    decision = await engine.evaluate(Call(f"agent-{i % agents}", "echo", args), store)
    assert decision.allowed, decision
    if decision.reservation is not None:
        await store.commit(decision.reservation)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    out: dict = {"tools": {}, "agents": {}}
    print(f"{'case':<16}{'CPU us/call':>12}  other")
    for tools in (50, 1000, 10000):
        start = time.process_time()
        engine = Engine(parse_policy(policy(tools)))
        parsed = time.process_time() - start
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "state.db")
            us = await per_call(engine, store, args.calls, 1)
            await store.close()
        out["tools"][tools] = {"cpu_us_per_call": us, "policy_parse_seconds": parsed}
        print(f"{f'{tools} tools':<16}{us:>12.1f}  policy parsed in {parsed:.2f} s CPU")
    engine = Engine(parse_policy(policy(50)))
    for agents in (10, 1000, 100_000):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state.db"
            store = SqliteStore(path)
            us = await per_call(engine, store, args.calls, agents)
            await store.close()
            size = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
        memory = MemoryStore()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        mem_us = await per_call(engine, memory, min(args.calls, 5000), agents)
        held = (tracemalloc.get_traced_memory()[0] - before) / 2**20
        tracemalloc.stop()
        out["agents"][agents] = {"sqlite_cpu_us_per_call": us, "sqlite_file_mib": size,
                                 "memory_store_mib": held, "memory_store_bytes_per_agent": held * 2**20 / agents,
                                 "memory_cpu_us_per_call_traced": mem_us}
        print(f"{f'{agents} agents':<16}{us:>12.1f}  SQLite file {size:.1f} MiB; "
              f"memory store {held:.1f} MiB ({held * 2**20 / agents:.0f} B/agent)")
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "calls": args.calls, **out},
                                  indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
