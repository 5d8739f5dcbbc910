"""Counters in a SQLite file: they survive a proxy restart, and several proxies on one machine
can share the file (each reserve is one IMMEDIATE transaction, so the check and the increment
cannot interleave with another process).

Calls are synchronous: a WAL commit without fsync (synchronous=NORMAL) takes tens of
microseconds, cheaper than handing each one to a thread.
"""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Sequence

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


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {self.path}: {exc}") from exc
        self._since_sweep = 0

    def _total(self, key: str, window: Window, now: float) -> Decimal:
        if window.kind == "calendar":
            row = self._db.execute(
                "SELECT total FROM calendar WHERE key=? AND seconds=? AND start=?",
                (key, window.seconds, window.start(now)),
            ).fetchone()
            return Decimal(row[0]) if row else Decimal(0)
        where = (key, window.seconds, now - window.seconds)
        # Rate limits count 1 per call: then the total is the row count, summed by SQLite
        # without handing every row to Python.
        count, others = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount <> '1'), 0) FROM sliding WHERE key=? AND seconds=? AND ts>?",
            where,
        ).fetchone()
        if not others:
            return Decimal(count)
        rows = self._db.execute("SELECT amount FROM sliding WHERE key=? AND seconds=? AND ts>?", where).fetchall()
        return total_of(Decimal(a) for (a,) in rows)

    def _transaction(self, work):  # type: ignore[no-untyped-def]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise StoreError(f"state file {self.path}: {exc}") from exc

    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome:
        def work() -> ReserveOutcome:
            self._maybe_sweep(now)
            totals = [self._total(r.key, r.window, now) for r in requests]
            for i, (req, total) in enumerate(zip(requests, totals)):
                if not req.fits(COUNTING.add(total, req.amount)):
                    return ReserveOutcome(ok=False, denied=i, retry_after=self._retry(req, now))
            reservation = Reservation()
            for req, total in zip(requests, totals):
                w = req.window
                if w.kind == "calendar":
                    start = w.start(now)
                    self._db.execute(
                        "INSERT OR REPLACE INTO calendar (key, seconds, start, total) VALUES (?,?,?,?)",
                        (req.key, w.seconds, start, str(COUNTING.add(total, req.amount))),
                    )
                    reservation.applied.append(Applied(req.key, w, start, "", req.amount))
                else:
                    entry = uuid.uuid4().hex
                    self._db.execute(
                        "INSERT INTO sliding (entry, key, seconds, ts, amount) VALUES (?,?,?,?,?)",
                        (entry, req.key, w.seconds, now, str(req.amount)),
                    )
                    reservation.applied.append(Applied(req.key, w, now, entry, req.amount))
            return ReserveOutcome(ok=True, reservation=reservation)

        return self._transaction(work)

    def _retry(self, req: CounterRequest, now: float) -> float:
        if req.window.kind == "calendar":
            return calendar_retry(req.window, now)
        rows = self._db.execute(
            "SELECT ts, amount FROM sliding WHERE key=? AND seconds=? AND ts>?",
            (req.key, req.window.seconds, now - req.window.seconds),
        ).fetchall()
        return sliding_retry(req, [(ts, Decimal(a)) for ts, a in rows], now)

    async def commit(self, reservation: Reservation) -> None:
        reservation.settled = True

    async def rollback(self, reservation: Reservation) -> None:
        if reservation.settled:
            return
        reservation.settled = True

        def work() -> None:
            for a in reservation.applied:
                if a.window.kind == "sliding":
                    self._db.execute("DELETE FROM sliding WHERE entry=?", (a.entry,))
                    continue
                row = self._db.execute(
                    "SELECT total FROM calendar WHERE key=? AND seconds=? AND start=?",
                    (a.key, a.window.seconds, int(a.bucket)),
                ).fetchone()
                if row:
                    total = max(COUNTING.subtract(Decimal(row[0]), a.amount), Decimal(0))
                    self._db.execute(
                        "UPDATE calendar SET total=? WHERE key=? AND seconds=? AND start=?",
                        (str(total), a.key, a.window.seconds, int(a.bucket)),
                    )

        self._transaction(work)

    async def value(self, key: str, window: Window, now: float) -> Decimal:
        try:
            return self._total(key, window, now)
        except sqlite3.Error as exc:
            raise StoreError(f"state file {self.path}: {exc}") from exc

    async def reset(self, key_prefix: str) -> int:
        def work() -> int:
            # Compare a prefix without LIKE, whose wildcards could appear in keys.
            n = len(key_prefix)
            a = self._db.execute("DELETE FROM calendar WHERE substr(key, 1, ?)=?", (n, key_prefix)).rowcount
            b = self._db.execute("DELETE FROM sliding WHERE substr(key, 1, ?)=?", (n, key_prefix)).rowcount
            return a + b

        return self._transaction(work)

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        try:
            calendar = self._db.execute(
                "SELECT key, total FROM calendar WHERE start <= ? AND ? < start + seconds", (now, now)).fetchall()
            sliding = self._db.execute("SELECT key, seconds, amount FROM sliding WHERE ts > ? - seconds",
                                       (now,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"state file {self.path}: {exc}") from exc
        logs: dict[tuple[str, int], list[Decimal]] = {}
        for key, seconds, amount in sliding:
            logs.setdefault((key, seconds), []).append(Decimal(amount))
        totals = [(key, Decimal(total)) for key, total in calendar]
        totals += [(key, total_of(amounts)) for (key, _), amounts in logs.items()]
        return [(key, total) for key, total in totals if total]

    async def close(self) -> None:
        self._db.close()

    def _maybe_sweep(self, now: float) -> None:
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        self._db.execute("DELETE FROM calendar WHERE start + seconds <= ?", (now,))
        self._db.execute("DELETE FROM sliding WHERE ts + seconds <= ?", (now,))
