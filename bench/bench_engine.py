"""Benchmark one Engine.evaluate of a tools/call (not a test).

Policies of the same shape at three sizes: (a) 50 tools, (b) 1,000 tools, (c) 1,000 tools plus
20 glob keys; every tool has argument conditions and a per-session rate limit (a sliding-window
counter), and a "*" rule keeps a calendar counter, so each call checks conditions and reserves two
counters. Run on the in-memory store and on SQLite in a temporary file, all in one process.

    .venv/bin/python bench/bench_engine.py [--calls N]

Prints the median and p99 of one evaluate in microseconds, and the 1000-tool / 50-tool ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from intercept_addon.policy.engine import Call, Engine  # noqa: E402
from intercept_addon.policy.model import Policy  # noqa: E402
from intercept_addon.state.memory import MemoryStore  # noqa: E402
from intercept_addon.state.sqlite import SqliteStore  # noqa: E402

T0 = 1_700_000_000.0
SESSIONS = 8


def tool_rules(i: int) -> dict[str, Any]:
    return {
        "rules": [
            {"name": f"rate {i}", "action": "allow", "rate_limit": {"max": 1000, "window": 60}},
            {
                "name": f"arguments {i}",
                "action": "allow",
                "conditions": [
                    {"path": "args.prompt", "op": "exists", "value": True},
                    {"path": "args.size", "op": "in", "value": ["small", "medium", "large"]},
                    {"path": "args.count", "op": "lte", "value": 10},
                    {"path": "args.url", "op": "regex", "value": "^https://[a-z0-9.-]+/"},
                    {"path": "args.model", "op": "in", "value": ["m-1", "m-2"], "optional": True},
                ],
            },
        ]
    }


def build_policy(tools: int, globs: int) -> Policy:
    spec: dict[str, Any] = {f"tool_{i:04d}": tool_rules(i) for i in range(tools)}
    for g in range(globs):
        # Each glob matches the tools whose number ends in its two digits (about 10 of 1,000).
        spec[f"tool_??{g:02d}"] = {
            "rules": [{"name": f"glob {g}", "conditions": [{"path": "args.count", "op": "gte", "value": 0}]}]
        }
    spec["*"] = {
        "rules": [
            {
                "name": "global budget",
                "conditions": [{"path": "state._global.calls", "op": "lt", "value": 10**9}],
                "state": {"counter": "calls", "window": "day"},
            }
        ]
    }
    return Policy.model_validate({"version": "1", "default": "allow", "tools": spec})


ARGS = {"prompt": "a cat", "size": "medium", "count": 3, "url": "https://cdn.example.com/a.png"}


async def measure(policy: Policy, tools: int, store: Any, calls: int, warmup: int) -> list[float]:
    clock_now = [T0]
    engine = Engine(policy, clock=lambda: clock_now[0])
    samples: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for n in range(warmup + calls):
            # A call every 50 ms of fake time: windows hold a realistic number of entries.
            clock_now[0] = T0 + n * 0.05
            call = Call(f"session-{n % SESSIONS}", f"tool_{(n * 7919) % tools:04d}", ARGS)
            started = time.perf_counter_ns()
            decision = await engine.evaluate(call, store)
            elapsed = time.perf_counter_ns() - started
            if not decision.allowed:
                raise SystemExit(f"unexpected denial: {decision}")
            await store.commit(decision.reservation)
            if n >= warmup:
                samples.append(elapsed / 1000)
    finally:
        gc.enable()
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="measured calls per case")
    parser.add_argument("--warmup", type=int, default=500)
    opts = parser.parse_args()

    cases = [
        ("(a) 50 tools", 50, 0),
        ("(b) 1,000 tools", 1000, 0),
        ("(c) 1,000 tools + 20 globs", 1000, 20),
    ]
    built = []
    for label, tools, globs in cases:
        started = time.perf_counter()
        policy = build_policy(tools, globs)
        Engine(policy)
        built.append((label, tools, policy, time.perf_counter() - started))

    print(f"Engine.evaluate, one tools/call, {opts.calls} calls per case after {opts.warmup} warm-up "
          f"(Python {sys.version.split()[0]})")
    for label, _, _, secs in built:
        print(f"  policy {label}: validated and compiled in {secs * 1000:.0f} ms")
    print()
    print(f"{'store':<8} {'policy':<28} {'median µs':>10} {'p99 µs':>10}")
    medians: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for store_name in ("memory", "sqlite"):
            for label, tools, policy, _ in built:
                store = MemoryStore() if store_name == "memory" else SqliteStore(Path(tmp) / f"{tools}-{label[1]}.db")
                samples = await measure(policy, tools, store, opts.calls, opts.warmup)
                await store.close()
                median, p99 = summary(samples)
                medians[(store_name, label)] = median
                print(f"{store_name:<8} {label:<28} {median:>10.1f} {p99:>10.1f}")
    print()
    for store_name in ("memory", "sqlite"):
        ratio = medians[(store_name, "(b) 1,000 tools")] / medians[(store_name, "(a) 50 tools")]
        ratio_c = medians[(store_name, "(c) 1,000 tools + 20 globs")] / medians[(store_name, "(a) 50 tools")]
        print(f"ratio 1000-tool/50-tool median ({store_name}): {ratio:.2f}  (with 20 globs: {ratio_c:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
