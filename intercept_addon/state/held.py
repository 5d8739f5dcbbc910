"""Calendar totals the SQLite store's loop connection read or wrote in its open transaction.

Exact while that transaction holds the file's write lock (no one else can write meanwhile),
so a batch reads each counter from the file once and writes it once, at commit. The store
clears them whenever its transaction ends, and writes them back before any statement that
reads or deletes calendar rows by other means (reset, sweep, snapshot)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

Bucket = tuple[str, int, int]  # key, window seconds, bucket start


class HeldTotals:
    __slots__ = ("totals", "dirty")

    def __init__(self) -> None:
        self.totals: dict[Bucket, Decimal] = {}
        self.dirty: set[Bucket] = set()

    def get(self, db: sqlite3.Connection, bucket: Bucket) -> Decimal:
        total = self.totals.get(bucket)
        if total is None:
            row = db.execute("SELECT total FROM calendar WHERE key=? AND seconds=? AND start=?", bucket).fetchone()
            total = self.totals[bucket] = Decimal(row[0]) if row else Decimal(0)
        return total

    def set(self, bucket: Bucket, total: Decimal) -> None:
        self.totals[bucket] = total
        self.dirty.add(bucket)

    def write(self, db: sqlite3.Connection) -> None:
        """Into the open transaction: what this batch changed."""
        if self.dirty:
            db.executemany("INSERT OR REPLACE INTO calendar (key, seconds, start, total) VALUES (?,?,?,?)",
                           [(*b, str(self.totals[b])) for b in self.dirty])
            self.dirty.clear()

    def clear(self) -> None:
        self.totals.clear()
        self.dirty.clear()
