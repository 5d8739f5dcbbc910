"""The SQLite store's write-behind (state/sqlite.py): a proxy alone on its file that writes
faster than one commit per BATCH_SECONDS commits its writes in batches; a clean shutdown
loses none of them, a crash at most one batch; a store that shares its file commits every
operation at once, so counts stay shared and no proxy waits a batch for another. Another
process reads the file with a plain sqlite3 connection, as another proxy would."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from intercept_addon.state import CounterRequest, Window
from intercept_addon.state import sqlite as sqlite_module
from intercept_addon.state.sqlite import SqliteStore

HOUR = Window("calendar", 3600)
NOW = 1_700_000_000 // 3600 * 3600 + 10.0


def counter(key: str = "k", limit: int | None = None) -> CounterRequest:
    return CounterRequest(key, HOUR, Decimal(1), "lte" if limit is not None else None,
                          None if limit is None else Decimal(limit))


def committed(path: Path, key: str = "k") -> int:
    """The count another process sees in the file (committed transactions only)."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT total FROM calendar WHERE key=?", (key,)).fetchone()
    return int(row[0]) if row else 0


async def test_a_burst_is_committed_in_batches_and_a_clean_close_loses_none(tmp_path: Path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for _ in range(50):  # back to back, without yielding to the loop: faster than a batch
        assert (await store.reserve([counter()], NOW)).ok
    assert committed(path) < 50  # the batch is still open: written behind
    assert await store.value("k", HOUR, NOW) == 50  # while this store reads its own writes
    await store.close()
    assert committed(path) == 50  # close committed the open batch


async def test_a_batch_reaches_the_file_within_batch_seconds(tmp_path: Path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for _ in range(20):
        await store.reserve([counter()], NOW)
    await asyncio.sleep(sqlite_module.BATCH_SECONDS * 5)
    assert committed(path) == 20  # what a crash now would lose: nothing
    await store.close()


async def test_a_batch_never_holds_more_than_batch_ops(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "BATCH_OPS", 10)
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for i in range(1, 36):
        await store.reserve([counter()], NOW)
        assert i - committed(path) <= 10
    await store.close()


CRASH = """
import asyncio, os, sys
from decimal import Decimal
from intercept_addon.state import CounterRequest, Window
from intercept_addon.state.sqlite import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        await store.reserve([CounterRequest("k", Window("calendar", 3600), Decimal(1))], 1_700_000_010.0)
    os._exit(0)  # a crash: no close, no commit

asyncio.run(main())
"""


def test_a_crash_loses_at_most_the_open_batch(tmp_path: Path):
    path = tmp_path / "state.db"
    calls = 1000
    subprocess.run([sys.executable, "-c", CRASH, str(path), str(calls)], check=True, timeout=60)
    assert calls - sqlite_module.BATCH_OPS <= committed(path) <= calls


async def test_stores_sharing_a_file_commit_every_operation_and_count_together(tmp_path: Path):
    path = tmp_path / "shared.db"
    a, b = SqliteStore(path), SqliteStore(path)
    for i in range(10):  # a burst through both: neither batches, each sees the other at once
        assert (await a.reserve([counter(limit=20)], NOW)).ok
        assert committed(path) == 2 * i + 1
        assert (await b.reserve([counter(limit=20)], NOW)).ok
        assert committed(path) == 2 * i + 2
    assert not (await a.reserve([counter(limit=20)], NOW)).ok  # b's counts are a's limit too
    await b.close()
    for _ in range(3):  # alone again: the next burst is batched
        await a.reserve([counter("other")], NOW)
    assert committed(path, "other") < 3
    await a.close()
    assert committed(path, "other") == 3


async def test_a_batch_gives_the_lock_back_to_another_process(tmp_path: Path):
    """A process that is no store (no lock file) waits at most one batch for the write lock."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for _ in range(5):
        await store.reserve([counter()], NOW)
    writer = asyncio.create_task(asyncio.to_thread(_write_elsewhere, path))
    await asyncio.wait_for(writer, 5)  # the loop ran: the batch timer committed and released the lock
    assert committed(path, "elsewhere") == 1
    assert await store.value("k", HOUR, NOW) == 5
    await store.close()


def _write_elsewhere(path: Path) -> None:
    db = sqlite3.connect(path, timeout=3, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO calendar VALUES ('elsewhere', 3600, 0, '1')")
    db.execute("COMMIT")
    db.close()


async def test_a_batch_reads_and_writes_a_hot_counter_once(tmp_path: Path):
    store = SqliteStore(tmp_path / "state.db")
    await store.reserve([counter()], NOW)  # commits at once: the store was idle
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for _ in range(50):
        await store.reserve([counter(limit=100)], NOW)
    await store.close()
    calendar = [s for s in statements if "calendar" in s]
    assert len(calendar) <= 2, calendar  # one read when the batch began, one write at commit


# -- the write-behind against the in-memory store, operation by operation ----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from intercept_addon.state.memory import MemoryStore  # noqa: E402

SLIDE = Window("sliding", 60)
OPS = st.lists(st.one_of(
    st.tuples(st.just("reserve"), st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from([HOUR, SLIDE]),
                                                     st.integers(1, 3)), min_size=1, max_size=3)),
    st.tuples(st.just("rollback"), st.integers(0, 50)),
    st.tuples(st.just("value"), st.sampled_from("ab"), st.sampled_from([HOUR, SLIDE])),
    st.tuples(st.just("reset"), st.sampled_from(["", "a", "b"])),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("later"), st.sampled_from([1, 30, 61, 3600])),
), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_write_behind_answers_as_the_memory_store_does(tmp_path_factory, ops):
    asyncio.run(_same_answers(tmp_path_factory.mktemp("diff") / "state.db", ops))


async def _same_answers(path: Path, ops: list) -> None:
    sqlite_module.SWEEP_EVERY, sweep = 3, sqlite_module.SWEEP_EVERY  # sweeps inside batches too
    try:
        sql, mem = SqliteStore(path), MemoryStore()
        await sql.reserve([counter("warm")], NOW)
        await mem.reserve([counter("warm")], NOW)
        now, made = NOW, []
        for op in ops:
            if op[0] == "reserve":
                reqs = [CounterRequest(k, w, Decimal(n), "lte", Decimal(5)) for k, w, n in op[1]]
                a, b = await sql.reserve(reqs, now), await mem.reserve(reqs, now)
                assert (a.ok, a.denied) == (b.ok, b.denied)
                if a.ok:
                    made.append((a.reservation, b.reservation))
            elif op[0] == "rollback" and made:
                a, b = made.pop(op[1] % len(made))
                await sql.rollback(a)
                await mem.rollback(b)
            elif op[0] == "value":
                assert await sql.value(op[1], op[2], now) == await mem.value(op[1], op[2], now)
            elif op[0] == "reset":
                await sql.reset(op[1])
                await mem.reset(op[1])
            elif op[0] == "snapshot":
                assert sorted(await sql.snapshot(now)) == sorted(await mem.snapshot(now))
            elif op[0] == "later":
                now += op[1]
        assert sorted(await sql.snapshot(now)) == sorted(await mem.snapshot(now))
        await sql.close()
        reopened = SqliteStore(path)  # everything reached the file
        assert sorted(await reopened.snapshot(now)) == sorted(await mem.snapshot(now))
        await reopened.close()
    finally:
        sqlite_module.SWEEP_EVERY = sweep


async def test_calendar_counters_in_an_open_batch_take_no_savepoint_and_still_count(tmp_path: Path):
    """A calendar reserve or rollback inside a batch writes only held totals: it runs no
    SAVEPOINT of its own. A sliding window's reserve writes a row: it keeps its savepoint."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    first = await store.reserve([counter(limit=3)], NOW)  # opens the transaction
    held = [await store.reserve([counter(limit=3)], NOW) for _ in range(3)]
    assert [o.ok for o in held] == [True, True, False]  # the limit still holds inside the batch
    await store.rollback(held[0].reservation)  # type: ignore[arg-type]
    assert (await store.reserve([counter(limit=3)], NOW)).ok  # the refund counted
    assert not any(s.startswith("SAVEPOINT") for s in statements), statements
    sliding = CounterRequest("s", Window("sliding", 60), Decimal(1))
    assert (await store.reserve([sliding], NOW)).ok
    assert any(s.startswith("SAVEPOINT") for s in statements)
    await store.close()
    assert first.ok and committed(path) == 3
