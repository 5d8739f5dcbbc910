"""Counters in a SQLite file: they survive a proxy restart, and several proxies on one machine
can share the file (every reserve checks and increments inside the file's write lock, so the
check and the increment cannot interleave with another process).

Calls run on the event loop, synchronously, and never wait for a lock there: the loop's
connection has no busy timeout, and an operation that finds the file locked (another proxy's
transaction) is run again in a worker thread, on its own connection that waits up to
BUSY_TIMEOUT seconds, while the loop serves other flows.

Write-behind: a commit (writing the WAL) costs several times the statements it commits, so a
proxy alone on its file that writes faster than one commit per BATCH_SECONDS keeps one
transaction open for up to BATCH_SECONDS (or BATCH_OPS operations) and commits them together;
a write after a pause commits at once. It holds the write lock all that time, so its reads
are exact and nobody else can write in between: the batch changes when counts reach the
file, not what a reserve decides. A crash (not a clean shutdown: ``close`` commits) loses the
reservations of the open batch, at most BATCH_SECONDS of loop time and BATCH_OPS operations.
Whether a proxy is alone is told by a lock file beside the database that every store holds
shared: while another store has the file open, every operation commits at once, as before,
so two proxies never wait a whole batch for each other.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Sequence, TypeVar

from intercept_addon.state import (
    COUNTING,
    Applied,
    CounterRequest,
    Reservation,
    ReserveOutcome,
    StoreError,
    Window,
    calendar_retry,
    sliding_retry,
    total_of,
)
from intercept_addon.state.held import HeldTotals
from intercept_addon.state.neighbours import Neighbours

SCHEMA = """
CREATE TABLE IF NOT EXISTS calendar (
    key TEXT NOT NULL, seconds INTEGER NOT NULL, start INTEGER NOT NULL, total TEXT NOT NULL,
    PRIMARY KEY (key, seconds, start)
);
CREATE TABLE IF NOT EXISTS sliding (
    entry TEXT PRIMARY KEY, key TEXT NOT NULL, seconds INTEGER NOT NULL,
    ts REAL NOT NULL, amount TEXT NOT NULL
);
-- Covering: a window's count and total are read from the index alone.
DROP INDEX IF EXISTS sliding_key;
CREATE INDEX IF NOT EXISTS sliding_window ON sliding (key, seconds, ts, amount);
"""
SWEEP_EVERY = 1024
BUSY_TIMEOUT = 5.0  # seconds an operation waits, off the loop, for another process's lock
BATCH_SECONDS = 0.02  # the longest a lone proxy's batch stays uncommitted (what a crash can lose)
BATCH_OPS = 256  # ... and the most operations in one batch
T = TypeVar("T")
log = logging.getLogger("intercept")


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


def _busy(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _attempt(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], write: bool,
             rows: bool = True) -> T:
    """``work`` on ``db``, a write all of it or none, inside an IMMEDIATE transaction that the
    caller commits: the one already open (a batch), else a new one. ``rows=False``: the work
    writes no row itself (only held totals, which a savepoint could not undo anyway), so in an
    open batch it needs no savepoint of its own."""
    if not write:
        return work(db)
    joined = db.in_transaction
    if joined and not rows:
        return work(db)
    db.execute("SAVEPOINT op" if joined else "BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        if joined:  # the batch keeps what earlier operations did
            db.execute("ROLLBACK TO op")
            db.execute("RELEASE op")
        elif db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if joined:
        db.execute("RELEASE op")
    return result


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = _connect(self.path, BUSY_TIMEOUT)  # at start, waiting is fine
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA busy_timeout=0")  # from now on the loop never waits
            self._neighbours = Neighbours(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc
        self._since_sweep = 0
        # The loop connection's open batch: commit it after BATCH_SECONDS or BATCH_OPS.
        self._batching = False
        self._batched = 0
        self._commit_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._held = HeldTotals()  # calendar totals of the open transaction (held.py)
        self._last_commit = float("-inf")
        # One thread with its own connection, started the first time the file is locked.
        self._waiter: ThreadPoolExecutor | None = None
        self._waiter_db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True, rows: bool = True) -> T:
        """``work(connection)`` now if the file is free, else in the worker once it is."""
        try:
            if write and not self._db.in_transaction:  # a new transaction: batch it?
                self._batching = self._busy_writing() and self._neighbours.alone()
            result = _attempt(self._db, work, write, rows)
            if write:
                self._written()
            return result
        except sqlite3.Error as exc:
            if not self._closed and not self._db.in_transaction:
                self._held.clear()  # rolled back: what it read is no longer held
            if not _busy(exc):
                raise StoreError(f"state file {self.path}: {exc}") from exc
        if self._waiter is None:
            self._waiter = ThreadPoolExecutor(1, thread_name_prefix="intercept-sqlite")
        return await asyncio.get_running_loop().run_in_executor(self._waiter, self._wait_and_run, work, write)

    def _wait_and_run(self, work: Callable[[sqlite3.Connection], T], write: bool) -> T:
        """In the worker thread: ``work`` on its connection, waiting up to BUSY_TIMEOUT for the lock."""
        try:
            if self._waiter_db is None:
                self._waiter_db = _connect(self.path, BUSY_TIMEOUT)
            result = _attempt(self._waiter_db, work, write)
            if write:
                self._waiter_db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            if self._waiter_db is not None and self._waiter_db.in_transaction:
                self._waiter_db.execute("ROLLBACK")
            raise StoreError(f"state file {self.path}: {exc}") from exc

    def _busy_writing(self) -> bool:
        """Did the last commit end a moment ago? Then writes come faster than batches: batch
        them. A write after a pause commits at once, so an idle proxy never holds the lock."""
        return time.monotonic() - self._last_commit < BATCH_SECONDS

    def _written(self) -> None:
        """An operation is in the loop connection's transaction: commit now, or with its batch."""
        if not self._batching:
            self._commit()
            return
        self._batched += 1
        if self._batched >= BATCH_OPS:
            self._commit()
        elif self._commit_timer is None:
            self._commit_timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._commit_batch)

    def _commit(self) -> None:
        """Commit the loop connection's transaction (a failure raises: the caller fails closed)."""
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        self._batched = 0
        self._last_commit = time.monotonic()
        try:
            self._held.write(self._db)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._held.clear()

    def _commit_batch(self) -> None:
        """The batch's time is up. Its calls are answered already: a failure can only be logged."""
        self._commit_timer = None
        try:
            self._commit()
        except sqlite3.Error as exc:
            log.error(f"intercept: state file {self.path}: a batch of counter updates was lost: {exc}")

    def _holding(self, db: sqlite3.Connection) -> HeldTotals | None:
        """The held totals, if ``db`` is the loop connection inside its transaction."""
        return self._held if db is self._db and db.in_transaction else None

    def _total(self, db: sqlite3.Connection, key: str, window: Window, now: float) -> Decimal:
        if window.kind == "calendar":
            held = self._holding(db)
            if held is not None:
                return held.get(db, (key, window.seconds, window.start(now)))
            row = db.execute(
                "SELECT total FROM calendar WHERE key=? AND seconds=? AND start=?",
                (key, window.seconds, window.start(now)),
            ).fetchone()
            return Decimal(row[0]) if row else Decimal(0)
        where = (key, window.seconds, now - window.seconds)
        # Rate limits count 1 per call: then the total is the row count, summed by SQLite
        # without handing every row to Python.
        count, others = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount <> '1'), 0) FROM sliding WHERE key=? AND seconds=? AND ts>?",
            where,
        ).fetchone()
        if not others:
            return Decimal(count)
        rows = db.execute("SELECT amount FROM sliding WHERE key=? AND seconds=? AND ts>?", where).fetchall()
        return total_of(Decimal(a) for (a,) in rows)

    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome:
        sweep = self._sweep_due()

        def work(db: sqlite3.Connection) -> ReserveOutcome:
            held = self._holding(db)
            if sweep:
                self._write_held(held, db)
                db.execute("DELETE FROM calendar WHERE start + seconds <= ?", (now,))
                db.execute("DELETE FROM sliding WHERE ts + seconds <= ?", (now,))
            totals = [self._total(db, r.key, r.window, now) for r in requests]
            for i, (req, total) in enumerate(zip(requests, totals)):
                if not req.fits(COUNTING.add(total, req.amount)):
                    return ReserveOutcome(ok=False, denied=i, retry_after=self._retry(db, req, now))
            entries: dict[int, str] = {}
            for i, req in enumerate(requests):  # statements first: one that fails leaves the held totals as they were
                if req.window.kind == "sliding":
                    entries[i] = uuid.uuid4().hex
                    db.execute("INSERT INTO sliding (entry, key, seconds, ts, amount) VALUES (?,?,?,?,?)",
                               (entries[i], req.key, req.window.seconds, now, str(req.amount)))
            reservation = Reservation()
            for i, (req, total) in enumerate(zip(requests, totals)):
                w = req.window
                if w.kind == "sliding":
                    reservation.applied.append(Applied(req.key, w, now, entries[i], req.amount))
                    continue
                start = w.start(now)
                new_total = COUNTING.add(total, req.amount)
                if held is not None:
                    held.set((req.key, w.seconds, start), new_total)
                else:
                    db.execute("INSERT OR REPLACE INTO calendar (key, seconds, start, total) VALUES (?,?,?,?)",
                               (req.key, w.seconds, start, str(new_total)))
                reservation.applied.append(Applied(req.key, w, start, "", req.amount))
            return ReserveOutcome(ok=True, reservation=reservation)

        # Calendar counters in an open batch change held totals only: no row, no savepoint.
        return await self._run(work, rows=sweep or any(r.window.kind == "sliding" for r in requests))

    @staticmethod
    def _retry(db: sqlite3.Connection, req: CounterRequest, now: float) -> float:
        if req.window.kind == "calendar":
            return calendar_retry(req.window, now)
        rows = db.execute(
            "SELECT ts, amount FROM sliding WHERE key=? AND seconds=? AND ts>?",
            (req.key, req.window.seconds, now - req.window.seconds),
        ).fetchall()
        return sliding_retry(req, [(ts, Decimal(a)) for ts, a in rows], now)

    async def commit(self, reservation: Reservation) -> None:
        pass  # the counters already hold it

    async def rollback(self, reservation: Reservation) -> None:
        def work(db: sqlite3.Connection) -> None:
            for a in reservation.applied:  # statements first, as in reserve
                if a.window.kind == "sliding":
                    db.execute("DELETE FROM sliding WHERE entry=?", (a.entry,))
            held = self._holding(db)
            for a in reservation.applied:
                if a.window.kind == "sliding":
                    continue
                bucket = (a.key, a.window.seconds, int(a.bucket))
                if held is not None:
                    total = held.get(db, bucket)
                    if total:
                        held.set(bucket, max(COUNTING.subtract(total, a.amount), Decimal(0)))
                    continue
                row = db.execute("SELECT total FROM calendar WHERE key=? AND seconds=? AND start=?", bucket).fetchone()
                if row:
                    total = max(COUNTING.subtract(Decimal(row[0]), a.amount), Decimal(0))
                    db.execute("UPDATE calendar SET total=? WHERE key=? AND seconds=? AND start=?", (str(total), *bucket))

        await self._run(work, rows=any(a.window.kind == "sliding" for a in reservation.applied))

    async def value(self, key: str, window: Window, now: float) -> Decimal:
        return await self._run(lambda db: self._total(db, key, window, now), write=False)

    async def reset(self, key_prefix: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            self._write_held(self._holding(db), db)
            # Compare a prefix without LIKE, whose wildcards could appear in keys.
            n = len(key_prefix)
            a = db.execute("DELETE FROM calendar WHERE substr(key, 1, ?)=?", (n, key_prefix)).rowcount
            b = db.execute("DELETE FROM sliding WHERE substr(key, 1, ?)=?", (n, key_prefix)).rowcount
            return a + b

        return await self._run(work)

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        def work(db: sqlite3.Connection) -> tuple[list, list]:  # type: ignore[type-arg]
            held = self._holding(db)
            if held is not None:
                held.write(db)  # into the open transaction: read below with the rest
            calendar = db.execute(
                "SELECT key, total FROM calendar WHERE start <= ? AND ? < start + seconds", (now, now)).fetchall()
            sliding = db.execute("SELECT key, seconds, amount FROM sliding WHERE ts > ? - seconds",
                                 (now,)).fetchall()
            return calendar, sliding

        calendar, sliding = await self._run(work, write=False)
        logs: dict[tuple[str, int], list[Decimal]] = {}
        for key, seconds, amount in sliding:
            logs.setdefault((key, seconds), []).append(Decimal(amount))
        totals = [(key, Decimal(total)) for key, total in calendar]
        totals += [(key, total_of(amounts)) for (key, _), amounts in logs.items()]
        return [(key, total) for key, total in totals if total]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._db.in_transaction:  # a clean shutdown loses no count
                self._commit()
        except sqlite3.Error as exc:
            log.error(f"intercept: state file {self.path}: the last counter updates were lost: {exc}")
        self._db.close()
        self._neighbours.close()
        if self._waiter is not None:  # after what it still has queued
            await asyncio.get_running_loop().run_in_executor(self._waiter, self._close_waiter_db)
            self._waiter.shutdown()
            self._waiter = None

    def _close_waiter_db(self) -> None:
        if self._waiter_db is not None:
            self._waiter_db.close()
            self._waiter_db = None

    @staticmethod
    def _write_held(held: HeldTotals | None, db: sqlite3.Connection) -> None:
        """Before a statement that deletes calendar rows: the held totals go to the file first."""
        if held is not None:
            held.write(db)
            held.clear()

    def _sweep_due(self) -> bool:
        """Every SWEEP_EVERY reserves, one also deletes the expired rows (counted on the loop)."""
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return False
        self._since_sweep = 0
        return True
