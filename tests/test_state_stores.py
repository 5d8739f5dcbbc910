"""One suite for every counter store (memory, SQLite, Redis): reserve/commit/rollback, both kinds
of window, retry_after, reset, value, concurrency; then what is particular to each (SQLite
persistence, sweeping expired keys, Redis sharing, expiry, URLs and outages) and the fail modes."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions
from mitmproxy.test import taddons

from harness import free_port
from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.policy.engine import Call, Engine
from intercept_addon.policy.file import parse_policy
from intercept_addon.state import (
    COUNTING,
    Applied,
    CounterRequest,
    Reservation,
    StoreError,
    Window,
    calendar_retry,
    format_retry,
    open_store,
    total_of,
)
from intercept_addon.state import redis as redis_module
from intercept_addon.state import memory as memory_module
from intercept_addon.state import sqlite as sqlite_module
from intercept_addon.state.fail_mode import FailModeStore
from intercept_addon.state.memory import MemoryStore
from intercept_addon.state.redis import RedisStore
from intercept_addon.state.sqlite import SqliteStore
from redis_server import RedisServer

HOUR = Window("calendar", 3600)
MINUTE = Window("calendar", 60)
DAY = Window("calendar", 86400)
SLIDE60 = Window("sliding", 60)

H0 = 1_700_000_000 // 3600 * 3600  # an hour boundary (UTC)


def req(key: str, window: Window = HOUR, amount: float | int | str = 1, op: str | None = "lte",
        limit: float | int | str | None = 3) -> CounterRequest:
    return CounterRequest(key, window, Decimal(str(amount)), op if limit is not None else None,
                          None if limit is None else Decimal(str(limit)))


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


# Redis tests start a redis-server: marked e2e, so `-m "not e2e"` stays free of processes.
needs_redis = pytest.mark.e2e


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        # The SQLite file sits in a directory that does not exist yet: the store creates it.
        s = SqliteStore(tmp_path / "state" / "counters.db")
    else:
        # One redis-server for the session; a prefix of its own keeps each test apart.
        s = RedisStore(request.getfixturevalue("redis_server").url, prefix=unique_prefix())
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
    assert await store.value("k", HOUR, H0) == 0

    second = await store.reserve([req("k", limit=1)], H0 + 1)
    assert second.ok
    await store.commit(second.reservation)  # settling exactly once is the ledger's job (test_ledger)
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


async def test_snapshot_lists_live_counters_only(store):
    await store.reserve([req("gen\x1f_rate_60s\x1fs1", SLIDE60, limit=None),
                         req("gen\x1fdaily\x1f", HOUR, amount="2.5", limit=None)], H0)
    await store.reserve([req("gen\x1f_rate_60s\x1fs1", SLIDE60, limit=None),
                         req("old\x1fdaily\x1f", MINUTE, limit=None)], H0 + 30)
    rolled = await store.reserve([req("back\x1fx\x1f", HOUR, limit=None)], H0)
    await store.rollback(rolled.reservation)
    assert sorted(await store.snapshot(H0 + 45)) == [
        ("gen\x1f_rate_60s\x1fs1", Decimal(2)), ("gen\x1fdaily\x1f", Decimal("2.5")), ("old\x1fdaily\x1f", Decimal(1))]
    # 70 s later: the first sliding entry and the minute bucket are gone, the hour bucket is not.
    assert sorted(await store.snapshot(H0 + 70)) == [("gen\x1f_rate_60s\x1fs1", Decimal(1)),
                                                     ("gen\x1fdaily\x1f", Decimal("2.5"))]
    assert await store.snapshot(H0 + 3600 + 100) == []


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
    assert isinstance(open_store("redis://localhost"), RedisStore)
    assert open_store("rediss://u:p@example.com:7000/3", prefix="team-a:").prefix == "team-a:"
    with pytest.raises(ValueError):
        open_store("postgres://localhost")
    with pytest.raises(ValueError):
        open_store("sqlite")


async def test_addon_state_options():
    addon = InterceptAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, intercept_state="redis://127.0.0.1:6390/2", intercept_state_prefix="team-a:")
        assert isinstance(addon.store, FailModeStore) and addon.store.mode == "closed"  # the default
        assert isinstance(addon.store.inner, RedisStore) and addon.store.inner.prefix == "team-a:"
        tctx.configure(addon, intercept_state_fail="open")
        assert addon.store.mode == "open"
        for bad, message in [({"intercept_state": "redis://h:port/0"}, "intercept_state: the port"),
                             ({"intercept_state": "redis://h/0?bogus=1"}, 'unknown Redis URL parameter "bogus"'),
                             ({"intercept_state_fail": "sometimes"}, "must be one of closed, open")]:
            with pytest.raises(exceptions.OptionsError, match=message):
                tctx.configure(addon, **bad)
        await addon.store.close()


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


# -- concurrency: the check and the increment never interleave -------------------------------


@pytest.mark.parametrize("window", [HOUR, SLIDE60])
async def test_concurrent_reserves_never_pass_the_limit(store, window: Window):
    outcomes = await asyncio.gather(*(store.reserve([req("k", window, limit=30)], H0) for _ in range(100)))
    assert sum(o.ok for o in outcomes) == 30
    assert await store.value("k", window, H0) == 30


# -- Redis: shared by several proxies, keys that expire, URLs, outages -----------------------


def raw_redis(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url)


@needs_redis
async def test_redis_stores_of_several_proxies_share_one_limit(redis_server):
    # Four clients (four proxies' stores, each with its own connections) race on one counter
    # in both kinds of window at once: together they allow exactly the limit.
    prefix = unique_prefix()
    stores = [RedisStore(redis_server.url, prefix=prefix) for _ in range(4)]
    both = [req("shared", HOUR, limit=30), req("shared", SLIDE60, limit=30)]
    racing = asyncio.Semaphore(32)  # 32 in flight at once: racing, without 200 connects at once on a loaded CI box

    async def reserve(i: int):  # type: ignore[no-untyped-def]
        async with racing:
            return await stores[i % 4].reserve(both, H0 + i / 1000)

    outcomes = await asyncio.gather(*(reserve(i) for i in range(200)))
    assert sum(o.ok for o in outcomes) == 30
    for s in stores:
        assert await s.value("shared", HOUR, H0 + 1) == 30
        assert await s.value("shared", SLIDE60, H0 + 1) == 30
    # A reservation made through one proxy is rolled back through another.
    await stores[2].rollback(next(o for o in outcomes if o.ok).reservation)
    assert await stores[0].value("shared", HOUR, H0 + 1) == 29
    assert await stores[0].value("shared", SLIDE60, H0 + 1) == 29
    for s in stores:
        await s.close()


@needs_redis
async def test_redis_keys_expire_with_their_windows(redis_server):
    prefix = unique_prefix()
    s = RedisStore(redis_server.url, prefix=prefix)
    now = H0 + 1000
    kept = await s.reserve([req("k", HOUR, limit=None), req("k", SLIDE60, limit=None)], now)
    undone = await s.reserve([req("k", HOUR, limit=None)], now)
    await s.rollback(undone.reservation)  # rewriting the total keeps its expiry
    raw = raw_redis(redis_server.url)
    keys = sorted([k async for k in raw.scan_iter(match=f"{prefix}*")])
    assert keys == [f"{prefix}c:3600:{H0}:k".encode(), f"{prefix}s:60:k".encode(), f"{prefix}t:60:k".encode()]
    grace = redis_module.GRACE_SECONDS * 1000
    calendar_ttl, entries_ttl, total_ttl = [await raw.pttl(k) for k in keys]
    assert 2600_000 + grace - 5000 < calendar_ttl <= 2600_000 + grace  # the rest of the hour, plus grace
    assert 60_000 + grace - 5000 < entries_ttl <= 60_000 + grace  # the window after the newest entry
    assert 60_000 + grace - 5000 < total_ttl <= entries_ttl
    assert (await raw.get(keys[0]), await raw.get(keys[2])) == (b"1", b"1")
    await s.commit(kept.reservation)
    await raw.aclose()
    await s.close()


@needs_redis
async def test_redis_prefixes_keep_policies_apart(redis_server):
    a = RedisStore(redis_server.url, prefix=unique_prefix())
    b = RedisStore(redis_server.url, prefix=unique_prefix())
    assert (await a.reserve([req("k", limit=1)], H0)).ok
    assert (await b.reserve([req("k", limit=1)], H0)).ok
    assert await b.reset("") == 1
    assert await a.value("k", HOUR, H0) == 1 and await b.value("k", HOUR, H0) == 0
    await a.close()
    await b.close()


@needs_redis
async def test_redis_reset_takes_only_its_own_keys(redis_server):
    # A prefix with glob characters, keys under the prefix that this store did not write.
    prefix = f"t*{uuid.uuid4().hex}?["
    s = RedisStore(redis_server.url, prefix=prefix)
    raw = raw_redis(redis_server.url)
    await raw.set(f"{prefix}unrelated", "x")
    await raw.set(f"{prefix}c:not-a-number:1:k", "x")
    await raw.set(f"tX{prefix[2:]}c:60:0:k", "x")  # matches the prefix as a glob, not literally
    await s.reserve([req("k:with:colons", limit=None), req("k", SLIDE60, limit=None)], H0)
    assert await s.reset("k:with") == 1
    assert await s.value("k", SLIDE60, H0) == 1
    assert await s.reset("") == 2  # the sliding window's entries and total
    assert await raw.exists(f"{prefix}unrelated", f"{prefix}c:not-a-number:1:k", f"tX{prefix[2:]}c:60:0:k") == 3
    await raw.aclose()
    await s.close()


@needs_redis
async def test_redis_sliding_total_is_recounted_if_a_key_went_missing(redis_server):
    # Redis may evict one of a window's two keys (maxmemory with volatile-* policies).
    prefix = unique_prefix()
    s = RedisStore(redis_server.url, prefix=prefix)
    raw = raw_redis(redis_server.url)
    for t, amount in ((0, 2), (10, 3), (20, 4)):
        await s.reserve([req("k", SLIDE60, amount=amount, limit=None)], H0 + t)
    await raw.delete(f"{prefix}t:60:k")
    assert await s.value("k", SLIDE60, H0 + 65) == 7  # recounted from the entries still live
    assert (await s.reserve([req("k", SLIDE60, amount=1, limit=8)], H0 + 65)).ok
    assert not (await s.reserve([req("k", SLIDE60, amount=1, limit=8)], H0 + 65)).ok
    assert await raw.get(f"{prefix}t:60:k") == b"8"  # the running total is back
    await raw.delete(f"{prefix}s:60:k")
    assert await s.value("k", SLIDE60, H0 + 65) == 0  # no entries: a leftover total counts nothing
    await raw.aclose()
    await s.close()


@needs_redis
async def test_redis_values_it_did_not_write_are_store_errors(redis_server):
    prefix = unique_prefix()
    s = RedisStore(redis_server.url, prefix=prefix)
    raw = raw_redis(redis_server.url)
    await raw.set(f"{prefix}c:3600:{H0}:text", "lots")
    await raw.lpush(f"{prefix}c:3600:{H0}:list", "1")
    with pytest.raises(StoreError, match="did not write"):
        await s.value("text", HOUR, H0)
    with pytest.raises(StoreError, match="WRONGTYPE|wrong kind"):
        await s.reserve([req("list")], H0)
    await raw.aclose()
    await s.close()


async def test_redis_unreachable_is_a_store_error_without_the_password():
    s = RedisStore(f"redis://user:hunter2@127.0.0.1:{free_port()}/0")
    for attempt in (s.reserve([req("k")], H0), s.value("k", SLIDE60, H0), s.reset("")):
        with pytest.raises(StoreError, match="is unavailable") as caught:
            await attempt
        assert "hunter2" not in str(caught.value)
    reservation = Reservation([Applied("k", HOUR, H0, "", Decimal(1))])
    with pytest.raises(StoreError):
        await s.rollback(reservation)
    await s.close()


async def test_redis_that_never_answers_times_out():
    # A peer that accepts connections and says nothing (a hung or partitioned server): the call
    # gets a StoreError after the store's short timeout instead of hanging.
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    s = RedisStore(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(StoreError, match="[Tt]imeout"):
        await asyncio.wait_for(s.reserve([req("k")], H0), 10)
    await s.close()
    for writer in held:
        writer.close()
    silent.close()


@needs_redis
async def test_redis_restart_keeps_committed_counts_and_the_store_reconnects(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", durable=True)
    try:
        s = RedisStore(server.url, prefix=unique_prefix())
        for t in range(3):
            outcome = await s.reserve([req("cal", HOUR, limit=3), req("sl", SLIDE60, limit=3)], H0 + t)
            await s.commit(outcome.reservation)
        server.kill()
        with pytest.raises(StoreError):
            await s.reserve([req("cal", HOUR, limit=3)], H0 + 5)
        server.start()  # same port, same data directory; the store object is the same one
        assert await s.value("cal", HOUR, H0 + 5) == 3
        assert await s.value("sl", SLIDE60, H0 + 5) == 3
        assert not (await s.reserve([req("cal", HOUR, limit=3)], H0 + 5)).ok
        outcome = await s.reserve([req("sl", SLIDE60, limit=3)], H0 + 6)
        assert outcome.retry_after == pytest.approx(54)  # the entry of H0 survived with its time
        await s.close()
    finally:
        server.stop()


@needs_redis
async def test_redis_url_with_user_password_and_database(redis_server):
    raw = raw_redis(redis_server.url)
    user = f"u{uuid.uuid4().hex[:8]}"
    await raw.execute_command("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all")
    prefix = unique_prefix()
    s = RedisStore(f"redis://{user}:s3cret@127.0.0.1:{redis_server.port}/5", prefix=prefix)
    assert (await s.reserve([req("k")], H0)).ok
    db5 = raw_redis(f"redis://127.0.0.1:{redis_server.port}/5")
    assert await db5.get(f"{prefix}c:3600:{H0}:k") == b"1"
    assert await raw.get(f"{prefix}c:3600:{H0}:k") is None  # not in database 0
    wrong = RedisStore(f"redis://{user}:wrong@127.0.0.1:{redis_server.port}/5", prefix=prefix)
    with pytest.raises(StoreError) as caught:
        await wrong.value("k", HOUR, H0)
    assert "wrong" not in str(caught.value).replace("WRONGPASS", "")
    await raw.execute_command("ACL", "DELUSER", user)
    for client in (raw, db5, s, wrong):
        await client.aclose() if isinstance(client, redis.asyncio.Redis) else await client.close()


@needs_redis
async def test_redis_tls_url(tmp_path: Path):
    server = RedisServer(tmp_path / "redis-tls", tls=True)
    try:
        s = RedisStore(server.url, prefix=unique_prefix())  # rediss://...?ssl_ca_certs=<the test CA>
        assert (await s.reserve([req("k", limit=1)], H0)).ok
        assert not (await s.reserve([req("k", limit=1)], H0)).ok
        await s.close()
        plain = RedisStore(f"redis://127.0.0.1:{server.port}/0")  # no TLS: the server does not talk
        with pytest.raises(StoreError):
            await plain.value("k", HOUR, H0)
        await plain.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("url", "where"), [
    ("redis://localhost", "redis://localhost:6379/0"),
    ("redis://user:pw@10.0.0.2:7000/3", "redis://10.0.0.2:7000/3"),
    ("rediss://:pw@cache.example.com/1?ssl_ca_certs=/ca.pem&socket_timeout=0.2", "rediss://cache.example.com:6379/1"),
    ("redis://h?db=4", "redis://h:6379/4"),
])
def test_redis_url_accepted(url: str, where: str):
    assert redis_module.check_url(url) == where


@pytest.mark.parametrize("url", [
    "http://localhost:6379", "redis://localhost:notaport/0", "redis://localhost:99999/0", "redis://localhost/zero",
    "redis://localhost/0?sockettimeout=1", "redis://localhost/0?ssl_ca_certs=/ca.pem",
])
def test_redis_url_refused(url: str):
    with pytest.raises(ValueError):
        redis_module.check_url(url)


@pytest.mark.parametrize(("value", "text"), [
    ("1.50E+1", "15"), ("-0", "0"), ("0E-5", "0"), ("1E-7", "0.0000001"), ("100", "100"), ("-2.5", "-2.5"),
    ("123456789012345678901234567890.000", "123456789012345678901234567890"),
])
def test_redis_decimal_text(value: str, text: str):
    assert redis_module.decimal_text(Decimal(value)) == text


def test_redis_decimal_text_refuses_what_it_cannot_count():
    for value in ("1E+5000", "1E-5000", "NaN", "Infinity"):
        with pytest.raises(StoreError):
            redis_module.decimal_text(Decimal(value))


amounts = st.one_of(
    st.integers(0, 10**40).map(Decimal),
    st.decimals(min_value=0, max_value=10**6, places=7, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**15).map(lambda i: Decimal(i).scaleb(-12)),
)


@needs_redis
@settings(max_examples=60, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=8), st.data())
def test_redis_script_arithmetic_is_exact(redis_server, values: list[Decimal], data: st.DataObject):
    # The Lua script sums decimal strings; Python's Decimal (in the COUNTING context) is the truth.
    undo = data.draw(st.sets(st.integers(0, len(values) - 1)))
    limit = data.draw(amounts)
    op = data.draw(st.sampled_from(["lt", "lte"]))

    async def run() -> None:
        s = RedisStore(redis_server.url, prefix=unique_prefix())
        for window in (DAY, SLIDE60):
            made = [await s.reserve([CounterRequest("k", window, v)], H0) for v in values]
            for i in undo:
                await s.rollback(made[i].reservation)
            total = total_of(v for i, v in enumerate(values) if i not in undo)
            assert await s.value("k", window, H0) == total
            probe = CounterRequest("k", window, values[0], op, limit)
            assert (await s.reserve([probe], H0)).ok == probe.fits(COUNTING.add(total, values[0]))
        await s.close()

    asyncio.run(run())


# -- fail modes: what calls get while the store is down ---------------------------------------

FAIL_POLICY = """\
version: "1"
tools:
  generate:
    rules:
      - {name: generate limit, action: allow, rate_limit: {max: 2, window: 60}}
  charge:
    rules:
      - name: daily spend
        conditions: [{path: state.charge.spend, op: lt, value: 100}]
        state: {counter: spend, window: day, increment_from: args.amount}
"""


def fail_engine() -> Engine:
    return Engine(parse_policy(FAIL_POLICY, "policy.yaml"), clock=lambda: float(H0))


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "STATE STORE" in r.getMessage()]


async def test_fail_closed_denies_with_a_clear_message_logged_once(caplog: pytest.LogCaptureFixture):
    store = FailModeStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0"), "closed")
    engine = fail_engine()
    caplog.set_level(logging.INFO, logger="intercept")
    for tool, args in [("generate", {})] * 3 + [("charge", {"amount": 5})] * 2:
        decision = await engine.evaluate(Call("s", tool, args), store)
        assert (decision.allowed, decision.kind, decision.rule) == (False, "error", "(state unavailable)")
        assert decision.message.startswith(f"Policy state is unavailable, so {tool} cannot be checked: Redis at")
    assert (await engine.evaluate(Call("s", "echo", {}), store)).allowed  # needs no counter
    assert len(outage_lines(caplog)) == 1 and "failing closed" in outage_lines(caplog)[0]
    await store.close()


@needs_redis
async def test_fail_open_allows_uncounted_then_counts_again_once_back(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture):
    server = RedisServer(tmp_path / "redis")
    caplog.set_level(logging.INFO, logger="intercept")
    try:
        store = FailModeStore(RedisStore(server.url, prefix=unique_prefix()), "open")
        engine = fail_engine()
        first = await engine.evaluate(Call("s", "generate", {}), store)
        assert first.allowed
        server.kill()
        for _ in range(5):  # over the limit of 2, but nothing can count: allowed
            decision = await engine.evaluate(Call("s", "generate", {}), store)
            assert decision.allowed and decision.reservation is not None
            await store.commit(decision.reservation)
        assert (await engine.evaluate(Call("s", "charge", {"amount": 500}), store)).allowed  # spend reads 0
        await store.rollback(first.reservation)  # lost to the outage: logged, never raised
        assert len(outage_lines(caplog)) == 1 and "failing OPEN" in outage_lines(caplog)[0]

        server.start()  # without persistence: it starts from zero, and counts again
        assert [(await engine.evaluate(Call("s", "generate", {}), store)).allowed for _ in range(3)] == [
            True, True, False]
        assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1
        await store.close()
    finally:
        server.stop()


async def test_fail_mode_passes_everything_through_while_the_store_answers(tmp_path: Path):
    store = FailModeStore(SqliteStore(tmp_path / "c.db"), "open")
    outcome = await store.reserve([req("k", limit=1)], H0)
    assert outcome.ok and not (await store.reserve([req("k", limit=1)], H0)).ok
    await store.rollback(outcome.reservation)
    assert await store.value("k", HOUR, H0) == 0
    assert store.down_since is None
    with pytest.raises(ValueError):
        FailModeStore(MemoryStore(), "sometimes")  # type: ignore[arg-type]
    await store.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["1", "2.5", "0.001", "1e30"]), st.booleans()),
                min_size=1, max_size=60))
def test_memory_sliding_running_total_matches_a_recount(steps):
    """The memory store keeps a running total per sliding window instead of summing its entries
    on every reserve: after any mix of reserves, expiries and rollbacks it equals a recount."""
    window = Window("sliding", 20)
    store = MemoryStore()
    live: list[tuple[float, Decimal, object]] = []  # (time, amount, reservation)

    async def run() -> None:
        now = 1000.0
        for gap, amount, roll_back in steps:
            now += gap
            outcome = await store.reserve([CounterRequest("k", window, Decimal(amount))], now)
            live.append((now, Decimal(amount), outcome.reservation))
            if roll_back:
                _, _, reservation = live.pop(len(live) // 2)
                await store.rollback(reservation)
            expected = total_of(a for t, a, _ in live if t > now - window.seconds)  # exact, unlike sum()
            assert await store.value("k", window, now) == expected

    asyncio.run(run())


async def test_sliding_total_of_ones_and_other_amounts(store):
    """Counts of 1 (rate limits) may be summed as a row count; any other amount is summed exactly."""
    for t, amount in ((0, 1), (1, 1), (2, "2.5"), (3, 1)):
        assert (await store.reserve([req("k", SLIDE60, amount=amount, limit=None)], H0 + t)).ok
    assert await store.value("k", SLIDE60, H0 + 3) == Decimal("5.5")
    assert await store.value("k", SLIDE60, H0 + 62.5) == Decimal(1)  # only the last 1 is left


# -- the memory store's cap: agents name themselves, so its counters are bounded ---------------

async def test_memory_store_holds_at_most_its_cap_and_existing_counters_keep_counting():
    store = MemoryStore(max_counters=3)
    for agent in ("a", "b", "c"):
        assert (await store.reserve([req(agent)], H0)).ok
    with pytest.raises(memory_module.StoreFull):
        await store.reserve([req("d")], H0)  # a fourth name: no room
    assert len(store) == 3
    assert (await store.reserve([req("a")], H0 + 1)).ok  # the ones it holds still count
    assert (await store.reserve([req("a")], H0 + 2)).ok
    assert not (await store.reserve([req("a")], H0 + 3)).ok  # a's limit of 3 holds as before


async def test_memory_store_makes_room_from_expired_counters_when_full():
    store = MemoryStore(max_counters=2)
    assert (await store.reserve([req("a", MINUTE)], H0)).ok
    assert (await store.reserve([req("b", MINUTE)], H0)).ok
    assert (await store.reserve([req("c", MINUTE)], H0 + 61)).ok  # a and b's minute is over: swept
    assert len(store) == 1


async def test_a_full_memory_store_fails_closed_or_open_and_is_logged_once(caplog):
    for mode, allowed in (("closed", False), ("open", True)):
        store = FailModeStore(MemoryStore(max_counters=1), mode)  # type: ignore[arg-type]
        assert (await store.reserve([req("a")], H0)).ok
        with caplog.at_level(logging.WARNING, logger="intercept"):
            caplog.clear()
            for agent in ("b", "c", "d"):
                if allowed:
                    outcome = await store.reserve([req(agent)], H0)
                    assert outcome.ok and not outcome.reservation.applied  # allowed, not counted
                else:
                    with pytest.raises(StoreError):
                        await store.reserve([req(agent)], H0)
            assert (await store.reserve([req("a")], H0)).ok  # no outage: a still counts
        full = [r.getMessage() for r in caplog.records]
        assert len(full) == 1 and full[0].startswith("intercept: STATE STORE FULL") and store.down_since is None
