"""What calls get while the counter store is unreachable (a Redis outage, say).

* closed (default): the StoreError reaches the engine, which denies every call that needs a
  counter with "Policy state is unavailable, so <tool> cannot be checked: <why>".
* open: every counter reads as zero and nothing is reserved, so such calls are allowed
  uncounted: availability over the limits, for teams that choose it.

Either way an outage is logged once when it is first seen and once when the store answers
again, never per call. A full store (StoreFull: the in-memory store's cap) is no outage, since
the counters it holds still count: the calls that need a new counter get the fail mode's
answer, and that is logged at most once a minute. Settling never raises: a commit or rollback
lost to an outage can only leave a count too high (the call was answered already; there is
nobody left to tell).
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Literal, Sequence

from intercept_addon.state import CounterRequest, Reservation, ReserveOutcome, Store, StoreError, StoreFull, Window

FailMode = Literal["closed", "open"]
FAIL_MODES: tuple[FailMode, ...] = ("closed", "open")

log = logging.getLogger("intercept")


class FailModeStore:
    def __init__(self, inner: Store, mode: FailMode = "closed") -> None:
        if mode not in FAIL_MODES:
            raise ValueError(f"fail mode must be one of {', '.join(FAIL_MODES)}, got {mode!r}")
        self.inner = inner
        self.mode = mode
        self.down_since: float | None = None  # monotonic time the current outage was first seen
        self._full_logged = float("-inf")  # monotonic time a full store was last logged

    def _outage(self, exc: StoreError) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        if self.mode == "open":
            log.warning(f"intercept: STATE STORE UNAVAILABLE, failing OPEN: calls are allowed and NOT counted, "
                        f"limits do not hold until it is back: {exc}")
        else:
            log.warning(f"intercept: STATE STORE UNAVAILABLE, failing closed: calls that need a counter are "
                        f"denied until it is back: {exc}")

    def _answered(self) -> None:
        if self.down_since is None:
            return
        log.warning(f"intercept: state store reachable again after {time.monotonic() - self.down_since:.1f} s; "
                    "counting resumes")
        self.down_since = None

    def _full(self, exc: StoreFull) -> None:
        if time.monotonic() - self._full_logged < 60:
            return
        self._full_logged = time.monotonic()
        answer = "allowed and NOT counted" if self.mode == "open" else "denied"
        log.warning(f"intercept: STATE STORE FULL: calls that need a new counter are {answer}: {exc}")

    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome:
        try:
            outcome = await self.inner.reserve(requests, now)
        except StoreFull as exc:
            self._full(exc)
            if self.mode == "closed":
                raise
            return ReserveOutcome(ok=True, reservation=Reservation())
        except StoreError as exc:
            self._outage(exc)
            if self.mode == "closed":
                raise
            return ReserveOutcome(ok=True, reservation=Reservation())  # nothing applied, nothing to undo
        self._answered()
        return outcome

    async def value(self, key: str, window: Window, now: float) -> Decimal:
        try:
            total = await self.inner.value(key, window, now)
        except StoreError as exc:
            self._outage(exc)
            if self.mode == "closed":
                raise
            return Decimal(0)
        self._answered()
        return total

    async def commit(self, reservation: Reservation) -> None:
        try:
            await self.inner.commit(reservation)
        except StoreError as exc:
            self._outage(exc)

    async def rollback(self, reservation: Reservation) -> None:
        try:
            await self.inner.rollback(reservation)
        except StoreError as exc:
            self._outage(exc)

    async def reset(self, key_prefix: str) -> int:
        return await self.inner.reset(key_prefix)

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        return await self.inner.snapshot(now)

    async def close(self) -> None:
        await self.inner.close()
