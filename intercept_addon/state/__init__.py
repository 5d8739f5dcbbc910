"""Counter stores: where rate limits and spend caps keep their numbers.

One small async interface, so a network backend (Redis) fits beside the local ones:
``reserve`` checks and applies every counter of one call atomically (all or nothing),
``commit`` keeps a reservation, ``rollback`` returns it. Which of the two, and that it happens
exactly once, is the ledger's business (ledger.py), not the stores'.

Two kinds of window:
* calendar: UTC-aligned buckets (Intercept's minute/hour/day), value = sum in the bucket;
* sliding: a log of (time, amount) entries younger than the window.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Literal, Protocol, Sequence


# Counter arithmetic is exact: Decimal's default context rounds to 28 significant digits, so
# a spend cap on large amounts (token base units, say) would silently stop counting. Only a
# sum past 10,000 digits rounds, and then by less than 1e-9999 of the total. Overflow cannot
# happen at this exponent range; a NaN never reaches a store (the engine refuses it).
COUNTING = decimal.Context(prec=10_000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def total_of(amounts: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for amount in amounts:
        total = COUNTING.add(total, amount)
    return total


@dataclass(frozen=True, slots=True)
class Window:
    kind: Literal["calendar", "sliding"]
    seconds: int

    def start(self, now: float) -> int:
        """Start of the calendar bucket holding ``now`` (UTC-aligned: epoch is midnight UTC)."""
        return int(now // self.seconds) * self.seconds


@dataclass(frozen=True, slots=True)
class CounterRequest:
    """Add ``amount`` to ``key`` if the new total still satisfies ``limit_op limit``."""

    key: str
    window: Window
    amount: Decimal
    limit_op: Literal["lt", "lte"] | None = None
    limit: Decimal | None = None

    def fits(self, total: Decimal) -> bool:
        if self.limit is None:
            return True
        return total < self.limit if self.limit_op == "lt" else total <= self.limit


@dataclass(frozen=True, slots=True)
class Applied:
    """One increment a reservation made: enough to undo it exactly."""

    key: str
    window: Window
    bucket: float  # calendar: bucket start; sliding: the entry's timestamp
    entry: str  # sliding: unique entry id ("" for calendar)
    amount: Decimal


@dataclass(slots=True)
class Reservation:
    """What one reserve applied; the ledger settles it exactly once (commit or rollback)."""

    applied: list[Applied] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    ok: bool
    reservation: Reservation | None = None
    denied: int | None = None  # index of the request that did not fit
    retry_after: float | None = None  # seconds until that request would fit


class StoreError(Exception):
    """The store could not be reached or answered nonsense; callers fail closed."""


class StoreFull(StoreError):
    """The store holds as many counters as it may: a call that needs a new one cannot be counted."""


class Store(Protocol):
    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome: ...

    async def commit(self, reservation: Reservation) -> None: ...

    async def rollback(self, reservation: Reservation) -> None: ...

    async def value(self, key: str, window: Window, now: float) -> Decimal: ...

    async def reset(self, key_prefix: str) -> int: ...

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        """Every counter with a non-zero total in its current window, as (key, total); a key
        counted in windows of two lengths (a policy edit) appears once per window."""
        ...

    async def close(self) -> None: ...


def calendar_retry(window: Window, now: float) -> float:
    return window.start(now) + window.seconds - now


def sliding_retry(req: CounterRequest, entries: Sequence[tuple[float, Decimal]], now: float) -> float:
    """Seconds until enough of the oldest entries expire for ``req`` to fit."""
    total = total_of(a for _, a in entries)
    for ts, amount in sorted(entries):
        total = COUNTING.subtract(total, amount)
        if req.fits(COUNTING.add(total, req.amount)):
            return max(ts + req.window.seconds - now, 0.001)
    return float(req.window.seconds)  # the amount alone exceeds the limit


def format_retry(seconds: float) -> int:
    """Whole seconds to tell an agent: never 0 while it is still blocked."""
    return max(1, math.ceil(seconds - 1e-9))


def open_store(spec: str, *, default_path: str | None = None, prefix: str | None = None) -> Store:
    """``memory``, ``sqlite`` (default file), ``sqlite:///path``, a plain path, or a
    ``redis://``/``rediss://`` URL (``prefix``: the Redis key prefix)."""
    from intercept_addon.state.memory import MemoryStore
    from intercept_addon.state.sqlite import SqliteStore

    if spec == "memory":
        return MemoryStore()
    if spec in ("", "sqlite"):
        if default_path is None:
            raise ValueError("no default path for the SQLite state file")
        return SqliteStore(default_path)
    if spec.startswith("sqlite://"):
        return SqliteStore(spec.removeprefix("sqlite://"))
    if spec.startswith(("redis://", "rediss://")):
        from intercept_addon.state.redis import DEFAULT_PREFIX, RedisStore

        return RedisStore(spec, prefix=DEFAULT_PREFIX if prefix is None else prefix)
    if "://" in spec:
        raise ValueError(f'unsupported state backend "{spec}" (use memory, sqlite, sqlite:///path, '
                         "redis://host:port/db or rediss://...)")
    return SqliteStore(spec)
