"""In-process counters. Atomic because reserve never awaits while it checks and applies.

Bounded: at most MAX_COUNTERS counters (one per key and window: about 400 bytes each), since
agents name themselves (``X-Agent-Id``) and a client choosing a new name per call would
otherwise grow the heap without end. A reserve that needs a new counter when the store is full
sweeps the expired ones first; if it is still full it raises StoreFull, which the fail mode
turns into a denial (closed, the default) or an uncounted call (open). Counters that exist keep
counting. SQLite and Redis keep their counters outside the heap and have no such cap."""

from __future__ import annotations

import itertools
from collections import deque
from decimal import Decimal
from typing import Sequence

from intercept_addon.state import (
    COUNTING,
    Applied,
    CounterRequest,
    Reservation,
    ReserveOutcome,
    StoreFull,
    Window,
    calendar_retry,
    sliding_retry,
)

SWEEP_EVERY = 1024  # reserves between sweeps of expired keys (session ids come from clients)
MAX_COUNTERS = 500_000  # about 200 MB of counters


class _SlidingLog:
    """One sliding window's entries (time, amount, id), oldest first, and their running total:
    a reserve costs O(entries that expired), not O(entries in the window)."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, Decimal, str]] = deque()
        self.total = Decimal(0)

    def expire(self, horizon: float) -> None:
        while self.entries and self.entries[0][0] <= horizon:
            self.total = COUNTING.subtract(self.total, self.entries.popleft()[1])
        if not self.entries:
            self.total = Decimal(0)

    def add(self, ts: float, amount: Decimal, entry: str) -> None:
        self.entries.append((ts, amount, entry))
        self.total = COUNTING.add(self.total, amount)

    def remove(self, entry: str) -> None:
        for i, (_, amount, e) in enumerate(self.entries):
            if e == entry:
                del self.entries[i]
                self.total = COUNTING.subtract(self.total, amount)
                return


class MemoryStore:
    def __init__(self, max_counters: int = MAX_COUNTERS) -> None:
        self.max_counters = max_counters
        # calendar: (key, seconds) -> (bucket start, total); sliding: (key, seconds) -> its log
        self._buckets: dict[tuple[str, int], tuple[int, Decimal]] = {}
        self._logs: dict[tuple[str, int], _SlidingLog] = {}
        self._ids = itertools.count()
        self._since_sweep = 0
        self._full_sweep_at = float("-inf")

    def _total(self, key: str, window: Window, now: float) -> Decimal:
        if window.kind == "calendar":
            start, total = self._buckets.get((key, window.seconds), (None, Decimal(0)))
            return total if start == window.start(now) else Decimal(0)
        log = self._logs.get((key, window.seconds))
        if log is None:
            return Decimal(0)
        log.expire(now - window.seconds)
        return log.total

    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome:
        self._maybe_sweep(now)
        self._make_room(requests, now)
        totals = [self._total(r.key, r.window, now) for r in requests]
        for i, (req, total) in enumerate(zip(requests, totals)):
            if not req.fits(COUNTING.add(total, req.amount)):
                return ReserveOutcome(ok=False, denied=i, retry_after=self._retry(req, now))
        reservation = Reservation()
        for req, total in zip(requests, totals):
            w = req.window
            if w.kind == "calendar":
                start = w.start(now)
                self._buckets[(req.key, w.seconds)] = (start, COUNTING.add(total, req.amount))
                reservation.applied.append(Applied(req.key, w, start, "", req.amount))
            else:
                entry = str(next(self._ids))
                self._logs.setdefault((req.key, w.seconds), _SlidingLog()).add(now, req.amount, entry)
                reservation.applied.append(Applied(req.key, w, now, entry, req.amount))
        return ReserveOutcome(ok=True, reservation=reservation)

    def _retry(self, req: CounterRequest, now: float) -> float:
        if req.window.kind == "calendar":
            return calendar_retry(req.window, now)
        log = self._logs.get((req.key, req.window.seconds))
        return sliding_retry(req, [(ts, a) for ts, a, _ in log.entries] if log else [], now)

    async def commit(self, reservation: Reservation) -> None:
        pass  # the counters already hold it

    async def rollback(self, reservation: Reservation) -> None:
        for a in reservation.applied:
            slot = (a.key, a.window.seconds)
            if a.window.kind == "calendar":
                start, total = self._buckets.get(slot, (None, Decimal(0)))
                if start == a.bucket:  # the window it counted in may already be over
                    self._buckets[slot] = (start, max(COUNTING.subtract(total, a.amount), Decimal(0)))
            else:
                log = self._logs.get(slot)
                if log is not None:
                    log.remove(a.entry)

    async def value(self, key: str, window: Window, now: float) -> Decimal:
        return self._total(key, window, now)

    async def reset(self, key_prefix: str) -> int:
        doomed = [s for s in (*self._buckets, *self._logs) if s[0].startswith(key_prefix)]
        for slot in doomed:
            self._buckets.pop(slot, None)
            self._logs.pop(slot, None)
        return len(doomed)

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        slots = [(k, Window("calendar", s)) for k, s in self._buckets]
        slots += [(k, Window("sliding", s)) for k, s in self._logs]
        totals = [(key, self._total(key, window, now)) for key, window in slots]
        return [(key, total) for key, total in totals if total]

    async def close(self) -> None:
        pass

    def _make_room(self, requests: Sequence[CounterRequest], now: float) -> None:
        new = sum((r.key, r.window.seconds) not in (self._buckets if r.window.kind == "calendar" else self._logs)
                  for r in requests)
        if not new or len(self) + new <= self.max_counters:
            return
        if now - self._full_sweep_at >= 1.0:  # a sweep walks every counter: not on each call of a flood
            self._full_sweep_at = now
            self._sweep(now)
        if len(self) + new > self.max_counters:
            raise StoreFull(f"the in-memory counter store holds its maximum of {self.max_counters} counters "
                            "(intercept_state=memory); use sqlite or redis for more")

    def _maybe_sweep(self, now: float) -> None:
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for slot, (start, _) in list(self._buckets.items()):
            if start + slot[1] <= now:
                del self._buckets[slot]
        for slot, log in list(self._logs.items()):
            if not log.entries or log.entries[-1][0] + slot[1] <= now:
                del self._logs[slot]

    def __len__(self) -> int:
        return len(self._buckets) + len(self._logs)
