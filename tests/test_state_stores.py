"""One suite for every counter store: reserve/commit/rollback, both kinds of window, retry_after,
reset, value; then what is particular to each (SQLite persistence, sweeping expired keys)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from intercept_addon.state import (
    CounterRequest,
    StoreError,
    Window,
    calendar_retry,
    format_retry,
    open_store,
)
from intercept_addon.state import memory as memory_module
from intercept_addon.state import sqlite as sqlite_module
from intercept_addon.state.memory import MemoryStore
from intercept_addon.state.sqlite import SqliteStore

HOUR = Window("calendar", 3600)
MINUTE = Window("calendar", 60)
DAY = Window("calendar", 86400)
SLIDE60 = Window("sliding", 60)

H0 = 1_700_000_000 // 3600 * 3600  # an hour boundary (UTC)


def req(key: str, window: Window = HOUR, amount: float | int | str = 1, op: str | None = "lte",
        limit: float | int | str | None = 3) -> CounterRequest:
    return CounterRequest(key, window, Decimal(str(amount)), op if limit is not None else None,
                          None if limit is None else Decimal(str(limit)))


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    # The SQLite file sits in a directory that does not exist yet: the store creates it.
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "state" / "counters.db")
    yield s
    await s.close()


# -- reserve / commit / rollback -------------------------------------------------------------


async def test_reserve_up_to_the_limit_then_deny(store):
    for i in range(3):
        outcome = await store.reserve([req("k")], H0 + i)
        assert outcome.ok and outcome.reservation is not None and outcome.denied is None
        assert len(outcome.reservation.applied) == 1
        await store.commit(outcome.reservation)
    assert await store.value("k", HOUR, H0 + 10) == 3
    outcome = await store.reserve([req("k")], H0 + 10)
    assert (outcome.ok, outcome.reservation, outcome.denied) == (False, None, 0)
    assert outcome.retry_after == pytest.approx(3590)
    assert await store.value("k", HOUR, H0 + 10) == 3  # a denial changes nothing


@pytest.mark.parametrize(("op", "fits"), [("lt", 2), ("lte", 3)])
async def test_lt_and_lte_limits(store, op: str, fits: int):
    for _ in range(fits):
        assert (await store.reserve([req("k", op=op, limit=3)], H0)).ok
    assert not (await store.reserve([req("k", op=op, limit=3)], H0)).ok


async def test_no_limit_always_fits(store):
    for _ in range(10):
        assert (await store.reserve([req("k", amount=1000, limit=None)], H0)).ok
    assert await store.value("k", HOUR, H0) == 10_000


async def test_rollback_returns_and_commit_keeps(store):
    first = await store.reserve([req("k", limit=1)], H0)
    assert first.ok
    assert not (await store.reserve([req("k", limit=1)], H0)).ok
    await store.rollback(first.reservation)
    assert first.reservation.settled
    assert await store.value("k", HOUR, H0) == 0
    await store.rollback(first.reservation)  # idempotent
    assert await store.value("k", HOUR, H0) == 0

    second = await store.reserve([req("k", limit=1)], H0 + 1)
    assert second.ok
    await store.commit(second.reservation)
    await store.rollback(second.reservation)  # after commit: no effect
    assert await store.value("k", HOUR, H0 + 1) == 1
    assert not (await store.reserve([req("k", limit=1)], H0 + 2)).ok


async def test_rollback_never_goes_negative_and_leaves_other_reservations(store):
    a = await store.reserve([req("k", amount=2, limit=10)], H0)
    b = await store.reserve([req("k", amount=5, limit=10)], H0)
    await store.rollback(a.reservation)
    assert await store.value("k", HOUR, H0) == 5
    await store.commit(b.reservation)
    assert await store.value("k", HOUR, H0) == 5


async def test_rollback_after_the_calendar_window_ended_does_not_touch_the_new_one(store):
    old = await store.reserve([req("k", limit=5)], H0 + 3599)
    assert (await store.reserve([req("k", limit=5)], H0 + 3600)).ok  # new bucket
    await store.rollback(old.reservation)
    assert await store.value("k", HOUR, H0 + 3600) == 1


async def test_rollback_of_a_sliding_entry(store):
    a = await store.reserve([req("k", SLIDE60, limit=2)], H0)
    b = await store.reserve([req("k", SLIDE60, limit=2)], H0 + 1)
    assert not (await store.reserve([req("k", SLIDE60, limit=2)], H0 + 2)).ok
    await store.rollback(a.reservation)
    assert await store.value("k", SLIDE60, H0 + 2) == 1
    # The remaining entry is b's: it expires at H0 + 61, not at H0 + 60.
    assert (await store.reserve([req("k", SLIDE60, limit=2)], H0 + 2)).ok
    outcome = await store.reserve([req("k", SLIDE60, limit=2)], H0 + 3)
    assert outcome.retry_after == pytest.approx(58)
    await store.commit(b.reservation)


async def test_several_counters_all_or_nothing(store):
    first = req("calls", limit=100)
    second = req("volume", amount=6, limit=10)
    assert (await store.reserve([first, second], H0)).ok
    outcome = await store.reserve([first, second], H0)
    assert (outcome.ok, outcome.denied) == (False, 1)
    assert await store.value("calls", HOUR, H0) == 1  # the first counter was not incremented
    assert await store.value("volume", HOUR, H0) == 6
    both = await store.reserve([first, req("volume", amount=4, limit=10)], H0)
    assert both.ok and len(both.reservation.applied) == 2
    await store.rollback(both.reservation)  # undoes both
    assert await store.value("calls", HOUR, H0) == 1
    assert await store.value("volume", HOUR, H0) == 6


async def test_mixed_windows_in_one_reservation(store):
    outcome = await store.reserve([req("a", HOUR), req("b", SLIDE60), req("c", DAY)], H0 + 5)
    assert outcome.ok
    assert [a.window for a in outcome.reservation.applied] == [HOUR, SLIDE60, DAY]
    await store.rollback(outcome.reservation)
    for key, window in (("a", HOUR), ("b", SLIDE60), ("c", DAY)):
        assert await store.value(key, window, H0 + 5) == 0


async def test_keys_are_independent(store):
    assert (await store.reserve([req("tool\x1fcalls\x1fsession-a", limit=1)], H0)).ok
    assert (await store.reserve([req("tool\x1fcalls\x1fsession-b", limit=1)], H0)).ok
    assert not (await store.reserve([req("tool\x1fcalls\x1fsession-a", limit=1)], H0)).ok


async def test_same_key_different_windows_are_different_counters(store):
    assert (await store.reserve([req("k", MINUTE, limit=1)], H0)).ok
    assert (await store.reserve([req("k", HOUR, limit=1)], H0)).ok
    assert (await store.reserve([req("k", SLIDE60, limit=1)], H0)).ok
    assert await store.value("k", MINUTE, H0) == await store.value("k", HOUR, H0) == 1


# -- calendar windows ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "offset", "next_start"),
    [(MINUTE, 59.5, 60), (HOUR, 1000, 3600), (HOUR, 0, 3600), (DAY, 100, 86400 - H0 % 86400)],
)
async def test_calendar_retry_is_seconds_to_the_next_bucket(store, window: Window, offset: float, next_start: int):
    now = H0 + offset
    assert (await store.reserve([req("k", window, limit=1)], now)).ok
    outcome = await store.reserve([req("k", window, limit=1)], now)
    assert outcome.retry_after == pytest.approx(next_start - offset)
    assert outcome.retry_after == calendar_retry(window, now)


async def test_calendar_buckets_are_utc_aligned(store):
    assert H0 % 3600 == 0
    assert (await store.reserve([req("k", HOUR, limit=1)], H0 + 3599.999)).ok
    assert not (await store.reserve([req("k", HOUR, limit=1)], H0 + 3599.9999)).ok
    assert (await store.reserve([req("k", HOUR, limit=1)], H0 + 3600)).ok  # reset at the top of the hour
    assert await store.value("k", HOUR, H0 + 3600) == 1
    assert await store.value("k", HOUR, H0 + 7200) == 0
    assert Window("calendar", 86400).start(H0 + 5) % 86400 == 0


# -- sliding windows -------------------------------------------------------------------------


async def test_sliding_window_expires_each_entry_on_its_own(store):
    for t in (0, 10, 20):
        assert (await store.reserve([req("k", SLIDE60)], H0 + t)).ok
    assert await store.value("k", SLIDE60, H0 + 59.999) == 3
    outcome = await store.reserve([req("k", SLIDE60)], H0 + 30)
    assert (outcome.ok, outcome.retry_after) == (False, pytest.approx(30))
    assert await store.value("k", SLIDE60, H0 + 60) == 2  # an entry leaves exactly at ts + window
    assert await store.value("k", SLIDE60, H0 + 70) == 1
    assert await store.value("k", SLIDE60, H0 + 80) == 0
    assert (await store.reserve([req("k", SLIDE60)], H0 + 60)).ok


async def test_sliding_retry_waits_for_enough_weight_to_leave(store):
    for t, amount in ((0, 4), (10, 4), (20, 2)):
        assert (await store.reserve([req("k", SLIDE60, amount=amount, limit=10)], H0 + t)).ok
    outcome = await store.reserve([req("k", SLIDE60, amount=5, limit=10)], H0 + 30)
    # Dropping the 4 at t=0 leaves 6 + 5 > 10; dropping the 4 at t=10 too leaves 2 + 5: at t=70.
    assert not outcome.ok and outcome.retry_after == pytest.approx(40)


async def test_sliding_amount_alone_over_the_limit(store):
    outcome = await store.reserve([req("k", SLIDE60, amount=11, limit=10)], H0)
    assert not outcome.ok and outcome.retry_after == pytest.approx(60)


async def test_calendar_amount_alone_over_the_limit(store):
    outcome = await store.reserve([req("k", HOUR, amount=11, limit=10)], H0 + 100)
    assert not outcome.ok and outcome.retry_after == pytest.approx(3500)


def test_format_retry():
    assert format_retry(0.0001) == 1
    assert format_retry(1.0) == 1
    assert format_retry(1.0000000001) == 1  # float noise does not add a second
    assert format_retry(1.01) == 2
    assert format_retry(59.5) == 60


# -- exact amounts ---------------------------------------------------------------------------


async def test_decimal_amounts_are_exact(store):
    for amount in ("0.1", "0.2"):
        assert (await store.reserve([req("k", DAY, amount=amount, limit="0.3")], H0)).ok
    assert await store.value("k", DAY, H0) == Decimal("0.3")
    assert not (await store.reserve([req("k", DAY, amount="0.0000001", limit="0.3")], H0)).ok


@pytest.mark.parametrize("window", [DAY, SLIDE60])
async def test_large_amounts_are_counted_exactly(store, window: Window):
    limit = 10**29  # 30 digits: beyond Decimal's default 28-digit context
    big = CounterRequest("k", window, Decimal(limit - 1), "lte", Decimal(limit))
    one = CounterRequest("k", window, Decimal(1), "lte", Decimal(limit))
    assert (await store.reserve([big], H0)).ok
    assert (await store.reserve([one], H0)).ok
    assert await store.value("k", window, H0) == limit
    assert not (await store.reserve([one], H0)).ok
    first = await store.reserve([CounterRequest("j", window, Decimal(limit - 1), None, None)], H0)
    await store.reserve([CounterRequest("j", window, Decimal("0.5"), None, None)], H0)
    await store.rollback(first.reservation)
    assert await store.value("j", window, H0) == Decimal("0.5")


# -- value, reset ----------------------------------------------------------------------------


async def test_value_of_unknown_key_is_zero(store):
    assert await store.value("never", HOUR, H0) == 0
    assert await store.value("never", SLIDE60, H0) == 0


async def test_reset_by_prefix(store):
    for key in ("create_issue\x1f_rate_hour\x1f", "create_issue\x1fdaily\x1f", "create_pr\x1f_rate_hour\x1f",
                "_global\x1fcalls\x1f"):
        assert (await store.reserve([req(key, HOUR, limit=None)], H0)).ok
    assert (await store.reserve([req("create_issue\x1fslide\x1fs1", SLIDE60, limit=None)], H0)).ok
    removed = await store.reset("create_issue\x1f")
    assert removed >= 3
    for key in ("create_issue\x1f_rate_hour\x1f", "create_issue\x1fdaily\x1f"):
        assert await store.value(key, HOUR, H0) == 0
    assert await store.value("create_issue\x1fslide\x1fs1", SLIDE60, H0) == 0
    assert await store.value("create_pr\x1f_rate_hour\x1f", HOUR, H0) == 1
    assert await store.value("_global\x1fcalls\x1f", HOUR, H0) == 1
    assert await store.reset("nothing-matches") == 0


async def test_reset_prefix_is_literal(store):
    # LIKE wildcards in a prefix match only themselves.
    await store.reserve([req("a%b", limit=None)], H0)
    await store.reserve([req("axb", limit=None)], H0)
    await store.reserve([req("a_c", limit=None)], H0)
    await store.reserve([req("abc", limit=None)], H0)
    await store.reset("a%")
    await store.reset("a_")
    assert await store.value("a%b", HOUR, H0) == 0
    assert await store.value("a_c", HOUR, H0) == 0
    assert await store.value("axb", HOUR, H0) == 1
    assert await store.value("abc", HOUR, H0) == 1


async def test_reset_everything(store):
    await store.reserve([req("x", limit=None), req("y", SLIDE60, limit=None)], H0)
    assert await store.reset("") >= 2
    assert await store.value("x", HOUR, H0) == 0 and await store.value("y", SLIDE60, H0) == 0


# -- SQLite: persistence, sharing, errors ----------------------------------------------------


async def test_sqlite_counters_survive_reopening(tmp_path: Path):
    path = tmp_path / "counters.db"
    first = SqliteStore(path)
    for t in (0, 1):
        assert (await first.reserve([req("cal", HOUR, limit=3), req("sl", SLIDE60, limit=3)], H0 + t)).ok
    pending = await first.reserve([req("cal", HOUR, limit=3)], H0 + 2)
    await first.close()

    second = SqliteStore(path)
    assert await second.value("cal", HOUR, H0 + 5) == 3
    assert await second.value("sl", SLIDE60, H0 + 5) == 2
    assert not (await second.reserve([req("cal", HOUR, limit=3)], H0 + 5)).ok
    assert (await second.reserve([req("sl", SLIDE60, limit=3)], H0 + 5)).ok
    outcome = await second.reserve([req("sl", SLIDE60, limit=3)], H0 + 6)
    assert outcome.retry_after == pytest.approx(54)  # the entry written at H0 by the first store
    # A reservation made before the restart can still be rolled back.
    await second.rollback(pending.reservation)
    assert await second.value("cal", HOUR, H0 + 5) == 2
    await second.close()


async def test_sqlite_two_stores_share_one_file(tmp_path: Path):
    path = tmp_path / "shared.db"
    a, b = SqliteStore(path), SqliteStore(path)
    assert (await a.reserve([req("k", limit=2)], H0)).ok
    assert (await b.reserve([req("k", limit=2)], H0)).ok
    assert not (await a.reserve([req("k", limit=2)], H0)).ok
    assert await b.value("k", HOUR, H0) == 2
    await a.close()
    await b.close()


async def test_sqlite_unusable_path_raises_store_error(tmp_path: Path):
    with pytest.raises(StoreError):
        SqliteStore(tmp_path)  # a directory


async def test_sqlite_closed_store_raises_store_error(tmp_path: Path):
    s = SqliteStore(tmp_path / "c.db")
    await s.close()
    with pytest.raises(StoreError):
        await s.reserve([req("k")], H0)
    with pytest.raises(StoreError):
        await s.value("k", HOUR, H0)


def test_open_store(tmp_path: Path):
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store("sqlite", default_path=str(tmp_path / "a.db")), SqliteStore)
    assert isinstance(open_store(f"sqlite://{tmp_path / 'b.db'}"), SqliteStore)
    assert isinstance(open_store(str(tmp_path / "c.db")), SqliteStore)
    with pytest.raises(ValueError):
        open_store("redis://localhost")
    with pytest.raises(ValueError):
        open_store("sqlite")


# -- expired keys are swept ------------------------------------------------------------------


async def test_memory_store_does_not_grow_without_bound():
    store = MemoryStore()
    every = memory_module.SWEEP_EVERY
    now = float(H0)
    largest = 0
    for i in range(4 * every + 7):
        # Every reserve from a new agent session, each long after the previous one's windows.
        await store.reserve([req(f"s{i}", MINUTE, limit=None), req(f"s{i}", SLIDE60, limit=None)], now)
        now += 61
        largest = max(largest, len(store))
    assert largest <= 2 * every
    # Quiet for a while, then calls from one session only: the next sweep drops all the rest.
    now += 3600
    for _ in range(every):
        await store.reserve([req("steady", MINUTE, limit=None)], now)
    assert len(store) == 1
    assert await store.value("steady", MINUTE, now) == every


async def test_memory_sweep_keeps_live_keys():
    store = MemoryStore()
    every = memory_module.SWEEP_EVERY
    await store.reserve([req("live-cal", DAY, limit=None), req("live-slide", SLIDE60, limit=None)], H0)
    for i in range(every):
        await store.reserve([req(f"tmp{i}", MINUTE, limit=None)], H0 + 30)
    assert await store.value("live-cal", DAY, H0 + 59) == 1
    assert await store.value("live-slide", SLIDE60, H0 + 59) == 1


async def test_value_does_not_create_keys():
    store = MemoryStore()
    for i in range(100):
        await store.value(f"probe{i}", HOUR, H0)
        await store.value(f"probe{i}", SLIDE60, H0)
    assert len(store) == 0


async def test_sqlite_store_sweeps_expired_rows(tmp_path: Path):
    path = tmp_path / "sweep.db"
    store = SqliteStore(path)
    every = sqlite_module.SWEEP_EVERY
    now = float(H0)
    for i in range(2 * every + 3):
        await store.reserve([req(f"s{i}", MINUTE, limit=None), req(f"s{i}", SLIDE60, limit=None)], now)
        now += 61
    with sqlite3.connect(path) as db:
        calendar_rows = db.execute("SELECT COUNT(*) FROM calendar").fetchone()[0]
        sliding_rows = db.execute("SELECT COUNT(*) FROM sliding").fetchone()[0]
    assert calendar_rows <= every and sliding_rows <= every
    assert calendar_rows + sliding_rows < 2 * every + 3
    await store.close()
