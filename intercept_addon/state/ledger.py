"""The ledger: the one owner of every reservation, from reserve to settle.

One rule decides what a reservation becomes: **once a call has been forwarded, its quota is
spent.** Hanging up, cancelling, timeouts, connection errors, 5xx answers and answers of unknown
meaning all keep it. It is refunded only when the server provably did not run the tool: a
JSON-RPC error of -32700/-32600/-32601/-32602, or an HTTP 4xx (or a redirect), answered before anything else
of that call (no progress, no server request, nothing streamed). A request refused by the
proxy never reached the server, so it releases everything it reserved.

Every ticket is settled exactly once (a second settle is a no-op), by the store that made its
reservation: a store swapped out while tickets are open stays open until they are settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

from intercept_addon.state import Reservation, Store

log = logging.getLogger("intercept")

# Errors a server answers before running anything: the request could not be parsed or routed.
REFUND_CODES = frozenset({-32700, -32600, -32601, -32602})


def refundable_error(code: object) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and code in REFUND_CODES


def refundable_status(status: int) -> bool:
    """A redirect or a 4xx: the server turned the request away before handling it (a client that
    follows a redirect sends the call again, and that one is counted)."""
    return 300 <= status < 500


class Ticket:
    """One call's reservation and what has happened to the call so far."""

    __slots__ = ("store", "reservation", "forwarded", "began", "settled")

    def __init__(self, store: Store, reservation: Reservation) -> None:
        self.store = store
        self.reservation = reservation
        self.forwarded = False  # handed to the server: from now on the quota is spent...
        self.began = False  # ...and once anything of the call came back, even an error keeps it
        self.settled = False


class Ledger:
    def __init__(self) -> None:
        self._open: set[Ticket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired: list[Store] = []
        self.opened = 0  # tickets ever opened / settled: equal whenever nothing is in flight
        self.kept = 0
        self.refunded = 0

    def open(self, store: Store, reservation: Reservation) -> Ticket:
        ticket = Ticket(store, reservation)
        self._open.add(ticket)
        self.opened += 1
        return ticket

    @property
    def pending(self) -> int:
        return len(self._open)

    def forwarded(self, tickets: Iterable[Ticket]) -> None:
        for ticket in tickets:
            ticket.forwarded = True

    def release(self, ticket: Ticket) -> None:
        """The call never reached the server (refused, or denied in its batch): undo its counters."""
        if ticket.forwarded:
            raise RuntimeError("a forwarded call's quota is spent; use settle()")
        self._settle(ticket, refund=True)

    def settle(self, ticket: Ticket, *, refund: bool = False) -> None:
        """A forwarded call is over. ``refund`` only when its answer proves it did not run (see the
        module docstring); a call that began is kept whatever its answer."""
        self._settle(ticket, refund=refund and not ticket.began)

    def keep_all(self, tickets: Iterable[Ticket]) -> None:
        for ticket in list(tickets):
            self._settle(ticket, refund=False)

    def _settle(self, ticket: Ticket, *, refund: bool) -> None:
        if ticket.settled:
            return
        ticket.settled = True
        self._open.discard(ticket)
        if refund:
            self.refunded += 1
            self._run(ticket.store.rollback(ticket.reservation))
        else:
            self.kept += 1
            self._run(ticket.store.commit(ticket.reservation))
        if self._retired:
            self._close_idle()

    def _run(self, work: Awaitable[None]) -> None:
        """Start a store update now; local stores finish without suspending, so no task lingers."""
        try:
            task = asyncio.eager_task_factory(asyncio.get_running_loop(), work)  # type: ignore[arg-type]
        except RuntimeError:  # no loop (a store used outside mitmproxy): nothing can be pending
            work.close()  # type: ignore[attr-defined]
            return
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        elif task.exception() is not None:
            log.error(f"intercept: a counter update failed: {task.exception()!r}")

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(f"intercept: a counter update failed: {task.exception()!r}")
        if self._retired:
            self._close_idle()

    def retire(self, store: Store) -> None:
        """``store`` was swapped out: close it once its open tickets are settled."""
        self._retired.append(store)
        self._close_idle()

    def _close_idle(self) -> None:
        busy = {t.store for t in self._open}
        if self._tasks:  # an update in flight may belong to any retired store
            return
        for store in [s for s in self._retired if s not in busy]:
            self._retired.remove(store)
            self._run(store.close())

    async def close(self) -> None:
        """Shutdown: every open ticket is settled (kept if forwarded, released if not), every
        update awaited, every retired store closed."""
        for ticket in list(self._open):
            self._settle(ticket, refund=not ticket.forwarded)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._close_idle()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
