"""The SQLite store while another process holds the file's write lock (a second proxy on the
same file, as the README allows): the event loop keeps running, the waiting operation
succeeds once the lock is released (or fails closed after BUSY_TIMEOUT), and through a real
mitmdump an unrelated call is answered at once. The lock holder is a real second process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from intercept_addon.state import CounterRequest, StoreError, Window
from intercept_addon.state import sqlite as sqlite_module
from intercept_addon.state.sqlite import SqliteStore

HOUR = Window("calendar", 3600)
SLIDE = Window("sliding", 60)
NOW = 1_700_000_000.0
HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def counter(key: str, limit: int, window: Window = HOUR) -> CounterRequest:
    return CounterRequest(key, window, Decimal(1), "lte", Decimal(limit))


def hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process in BEGIN IMMEDIATE on ``path`` for ``seconds``; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    proc.stdout.close()  # it prints nothing more
    return proc


class LoopWaits:
    """The longest the event loop's thread spent inside one SQLite operation.

    Time in SQLite, not gaps between loop ticks: on a loaded machine the scheduler can stall
    the whole process for longer than any threshold, and that is not the loop waiting for the
    lock. Waiting for the lock would take as long as the holder holds it (1 s and more here).
    ``in_worker`` counts the operations the worker thread ran, proof the lock was met."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.longest = 0.0
        self.in_worker = 0
        attempt = sqlite_module._attempt

        def timed(db, work, *how):  # type: ignore[no-untyped-def]
            if threading.get_ident() != self.loop_thread:
                self.in_worker += 1
                return attempt(db, work, *how)
            start = time.monotonic()
            try:
                return attempt(db, work, *how)
            finally:
                self.longest = max(self.longest, time.monotonic() - start)

        monkeypatch.setattr(sqlite_module, "_attempt", timed)


async def test_a_reserve_waits_for_the_lock_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    assert (await store.reserve([counter("k", 2)], NOW)).ok
    holder = hold_lock(path, 1.5)
    waits = LoopWaits(monkeypatch)
    start = time.monotonic()
    outcome = await store.reserve([counter("k", 2), counter("k", 2, SLIDE)], NOW)
    waited = time.monotonic() - start
    assert outcome.ok and 1.0 < waited < 4.0  # it did wait for the other process
    assert waits.longest < 0.5, f"the event loop waited {waits.longest:.3f} s in SQLite"
    assert waits.in_worker >= 1  # the lock was met, and waited for off the loop
    assert holder.wait(timeout=10) == 0
    assert await store.value("k", HOUR, NOW) == 2
    assert not (await store.reserve([counter("k", 2)], NOW)).ok  # the fast path again, still counting
    await store.close()


async def test_every_operation_waits_off_the_loop_and_reserves_stay_atomic(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    first = await store.reserve([counter("k", 5)], NOW)
    holder = hold_lock(path, 1.0)
    waits = LoopWaits(monkeypatch)
    rollback = asyncio.ensure_future(store.rollback(first.reservation))
    reserves = await asyncio.gather(*(store.reserve([counter("k", 5)], NOW) for _ in range(20)))
    await rollback
    value, snapshot = await store.value("k", HOUR, NOW), await store.snapshot(NOW)
    assert waits.longest < 0.5, f"the event loop waited {waits.longest:.3f} s in SQLite"
    assert waits.in_worker >= 1  # the lock was met, and waited for off the loop
    assert sum(r.ok for r in reserves) == 5  # the rollback was queued first: its count came back
    assert value == snapshot[0][1] == 5
    assert await store.reset("") == 1
    holder.wait(timeout=10)
    await store.close()


async def test_a_lock_held_too_long_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Callers fail closed on StoreError (intercept_state_fail decides)."""
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "shared.db"
    store = SqliteStore(path)
    holder = hold_lock(path, 1.5)
    waits = LoopWaits(monkeypatch)
    with pytest.raises(StoreError, match="locked"):
        await store.reserve([counter("k", 2)], NOW)
    assert waits.longest < 0.5 and waits.in_worker == 1
    holder.wait(timeout=10)
    assert (await store.reserve([counter("k", 2)], NOW)).ok
    await store.close()


@pytest.mark.e2e
async def test_an_uncounted_call_is_answered_while_a_counted_one_waits_for_the_lock(tmp_path: Path,
                                                                                    policy_file: Path):
    from harness import start_mcp_server, start_mitmdump
    from test_addon_e2e import client

    state = tmp_path / "state.sqlite"
    server, port, _ = start_mcp_server(tmp_path)
    proxy, proxy_port = start_mitmdump(tmp_path, port, f"intercept_state=sqlite://{state}", policy=policy_file)
    url = f"http://127.0.0.1:{proxy_port}/mcp"
    try:
        async with client(url, "auto", agent="a1") as counted, client(url, "auto", agent="a2") as uncounted:
            await counted.call_tool("generate", {"prompt": "warm"})
            await uncounted.call_tool("echo", {"text": "warm"})
            holder = hold_lock(state, 3.0)
            generate = asyncio.ensure_future(counted.call_tool("generate", {"prompt": "p"}))
            await asyncio.sleep(0.3)  # the proxy has it, and found the file locked
            start = time.monotonic()
            echoed = await uncounted.call_tool("echo", {"text": "now"})
            answered = time.monotonic() - start
            assert echoed.content[0].text == "now"
            assert answered < 1.0, f"echo took {answered:.3f} s behind a locked counter store"
            assert not generate.done()  # still waiting for the other process's lock
            assert (await generate).content[0].text == "generated p"
            assert holder.wait(timeout=10) == 0
    finally:
        proxy.stop()
        server.stop()
