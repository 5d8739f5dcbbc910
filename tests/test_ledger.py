"""The ledger: every reserve ends in exactly one settle, on the store that made it, whatever the
call's path (answers, errors, refusals, hang-ups, streams cut, reloads, store swaps, shutdown)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons

from conftest import TEST_POLICY
from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.state import Reservation
from intercept_addon.state.fail_mode import FailModeStore
from intercept_addon.state.ledger import Ledger
from intercept_addon.state.memory import MemoryStore
from test_addon_unit import call, request_flow


class RecordingStore(MemoryStore):
    """A memory store that records what happens to each reservation it made."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[Reservation] = []
        self.settles: Counter[int] = Counter()  # id(reservation) -> commits + rollbacks
        self.rollbacks: list[Reservation] = []
        self.closed = False

    async def reserve(self, requests: Any, now: float) -> Any:
        outcome = await super().reserve(requests, now)
        if outcome.ok:
            self.made.append(outcome.reservation)
        return outcome

    async def commit(self, reservation: Reservation) -> None:
        self.settles[id(reservation)] += 1

    async def rollback(self, reservation: Reservation) -> None:
        self.settles[id(reservation)] += 1
        self.rollbacks.append(reservation)
        await super().rollback(reservation)

    async def close(self) -> None:
        self.closed = True

    def exactly_once(self) -> bool:
        return all(self.settles[id(r)] == 1 for r in self.made) and sum(self.settles.values()) == len(self.made)


# -- the ledger alone -------------------------------------------------------------------------


async def test_a_ticket_settles_once_and_a_forwarded_one_cannot_be_released():
    ledger, store = Ledger(), RecordingStore()
    outcome = await store.reserve([], 0)
    ticket = ledger.open(store, outcome.reservation)
    ledger.forwarded([ticket])
    with pytest.raises(RuntimeError):
        ledger.release(ticket)
    ledger.settle(ticket, refund=True)
    ledger.settle(ticket)
    ledger.keep_all([ticket])
    await ledger.close()
    assert store.exactly_once() and store.rollbacks == [outcome.reservation]
    assert (ledger.opened, ledger.refunded, ledger.kept, ledger.pending) == (1, 1, 0, 0)


async def test_a_call_that_began_is_kept_whatever_its_answer():
    ledger, store = Ledger(), RecordingStore()
    ticket = ledger.open(store, (await store.reserve([], 0)).reservation)
    ledger.forwarded([ticket])
    ticket.began = True  # progress came back before the error
    ledger.settle(ticket, refund=True)
    assert store.exactly_once() and not store.rollbacks


async def test_a_retired_store_closes_once_its_tickets_are_settled():
    ledger, old = Ledger(), RecordingStore()
    ticket = ledger.open(old, (await old.reserve([], 0)).reservation)
    ledger.retire(old)
    assert not old.closed  # a call it counted is still out
    ledger.settle(ticket)
    await asyncio.sleep(0)
    assert old.closed and old.exactly_once()


async def test_close_keeps_forwarded_tickets_and_releases_the_rest():
    ledger, store = Ledger(), RecordingStore()
    out = ledger.open(store, (await store.reserve([], 0)).reservation)
    held = ledger.open(store, (await store.reserve([], 0)).reservation)
    ledger.forwarded([out])
    await ledger.close()
    assert store.exactly_once() and store.rollbacks == [held.reservation]


# -- every path through the addon -------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    addon = InterceptAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, confdir=str(tmp_path), intercept_policy=str(policy), intercept_state="memory")
        store = RecordingStore()
        addon.counters.store = FailModeStore(store)
        yield addon, tctx, store


def answer(flow: http.HTTPFlow, status: int, body: Any, ctype: str = "application/json") -> None:
    flow.response = http.Response.make(status, body if isinstance(body, bytes) else json.dumps(body).encode(),
                                       {"content-type": ctype})


async def forwarded(addon: InterceptAddon, msg_id: int = 1, agent: str = "a") -> http.HTTPFlow:
    flow = request_flow(call("generate", {"prompt": "p"}, msg_id), headers={"x-agent-id": agent})
    await addon.request(flow)
    assert flow.response is None and flow.id in addon.flows
    return flow


RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}


async def test_every_path_settles_each_reservation_exactly_once(proxy, tmp_path):
    addon, tctx, store = proxy
    ledger = addon.counters.ledger

    async def through(status: int, body: Any, ctype: str = "application/json") -> None:
        flow = await forwarded(addon, agent=f"agent-{ledger.opened}")
        answer(flow, status, body, ctype)
        addon.responseheaders(flow)
        if callable(flow.response.stream):
            for chunk in (flow.response.content or b"", b""):
                flow.response.stream(chunk)
        await addon.response(flow)

    await through(200, RESULT)  # a result
    await through(200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}})  # refund
    await through(200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32800, "message": "cancelled"}})
    await through(404, b"gone")
    await through(503, b"down")
    await through(200, b'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n', "text/event-stream")
    await through(200, b": keep-alive, then the stream ends\n\n", "text/event-stream")  # cut: kept
    await through(200, b'{"not": "json-rpc"', "application/json")  # unreadable: kept
    await through(200, b"", "application/json")  # 202-like empty body: kept

    hung_up = await forwarded(addon, agent="hang-up")
    addon.error(hung_up)

    # Refused after reserving: a batch whose later element is denied releases the first's count.
    batch = [call("generate", {"prompt": "p"}, 1), call("delete_everything", msg_id=2)]
    flow = request_flow(batch, revision="2025-03-26", headers={"x-agent-id": "batch"})
    await addon.request(flow)
    assert flow.response is not None

    # An internal error after the reservation: the request is refused and releases it.
    def broken(*_: Any) -> None:
        raise RuntimeError("bug after reserving")

    original, addon.calls._forward = addon.calls._forward, broken  # type: ignore[method-assign]
    flow = request_flow(call("generate", {"prompt": "p"}, 1), headers={"x-agent-id": "internal"})
    await addon.request(flow)
    assert flow.response.status_code == 500
    addon.calls._forward = original  # type: ignore[method-assign]

    # A reload while a call is out: its answer still settles it once.
    out = await forwarded(addon, agent="reload")
    assert addon.reload_policy()
    answer(out, 200, RESULT)
    addon.responseheaders(out)
    await addon.response(out)

    # A store swap while a call is out: it settles on the store that counted it, which closes after.
    out = await forwarded(addon, agent="swap")
    tctx.configure(addon, intercept_state=f"sqlite:///{tmp_path / 'swapped.sqlite'}")
    assert not store.closed
    answer(out, 200, RESULT)
    addon.responseheaders(out)
    await addon.response(out)
    await asyncio.sleep(0)
    assert store.closed

    # Shutdown with a call still out (on the new store): kept, and nothing is left open.
    addon.counters.store = FailModeStore(new := RecordingStore())
    await forwarded(addon, agent="shutdown")
    await addon.done()
    assert new.exactly_once() and not new.rollbacks

    assert store.exactly_once(), store.settles
    assert len(store.made) == 14 and len(store.rollbacks) == 4  # -32602, 404, the batch, the internal error
    assert ledger.pending == 0 and ledger.opened == ledger.kept + ledger.refunded
