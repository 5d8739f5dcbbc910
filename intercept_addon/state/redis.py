"""Counters in Redis: one limit shared by every proxy instance that points at the same server.

Each ``reserve`` is one Lua script, which Redis runs atomically: the check of every counter of a
call and the increments happen with no other client's command in between, so proxies racing on
one counter can never together allow more than its limit.

Layout (``P`` is the configurable prefix, ``K`` the engine's counter key, raw UTF-8 bytes):
* calendar bucket: string ``P c:<seconds>:<bucket start>:K`` holding the exact decimal total;
* sliding window: sorted set ``P s:<seconds>:K``, one member ``<amount>:<entry id>`` per
  increment, scored by its timestamp, and its running total ``P t:<seconds>:K`` (the sum of
  its members), so a reserve costs the entries that expired since the last one, not a sum over
  the whole window. Both keys expire together; if one is missing the total is recounted.
Every key expires with its window (plus ``GRACE_SECONDS`` for clocks that disagree a little), so
Redis does not grow without bound; amounts and totals are decimal strings, summed exactly by the
script (Lua's numbers are doubles, which would round).

Persistence is Redis's business: with ``appendonly yes`` and ``appendfsync always`` a restart
loses no committed count; with ``everysec`` it can lose the last second, with RDB snapshots only
everything since the last snapshot. Redis Cluster is not supported (a script's keys must share
one slot).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Sequence
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from intercept_addon.state import (
    Applied,
    CounterRequest,
    Reservation,
    ReserveOutcome,
    StoreError,
    Window,
    calendar_retry,
    sliding_retry,
)

DEFAULT_PREFIX = "intercept:"
GRACE_SECONDS = 60
# A dead or partitioned Redis must not hold a call for long: it is denied (or allowed, with
# intercept_state_fail=open) instead. URL query parameters of the same names override these.
CONNECT_TIMEOUT = 0.5
COMMAND_TIMEOUT = 1.0
MAX_AMOUNT_DIGITS = 1000  # far beyond any real amount; keeps the script's string sums bounded
URL_PARAMETERS = frozenset({
    "db", "socket_timeout", "socket_connect_timeout", "client_name", "max_connections",
    "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname",
})
SCAN_BATCH = 1000

# Exact arithmetic on non-negative decimal strings in canonical form ("12", "0.5": no exponent,
# no leading or trailing zeros). A limit may be negative ("-3"); totals and amounts never are.
DECIMALS_LUA = """
local function parts(s)
  local i, f = string.match(s, "^(%d+)%.?(%d*)$")
  return i, f
end
local function canonical(digits, nfrac)
  local int = string.sub(digits, 1, #digits - nfrac)
  local frac = string.sub(digits, #digits - nfrac + 1)
  int = string.match(int, "^0*(%d-)$")
  if int == "" then int = "0" end
  frac = string.match(frac, "^(%d-)0*$")
  if frac == "" then return int end
  return int .. "." .. frac
end
local function aligned(a, b)
  local ai, af = parts(a)
  local bi, bf = parts(b)
  local ni, nf = math.max(#ai, #bi), math.max(#af, #bf)
  local x = string.rep("0", ni - #ai) .. ai .. af .. string.rep("0", nf - #af)
  local y = string.rep("0", ni - #bi) .. bi .. bf .. string.rep("0", nf - #bf)
  return x, y, nf
end
local function cmp(a, b)
  if string.sub(b, 1, 1) == "-" then return 1 end
  local x, y = aligned(a, b)
  for k = 1, #x do
    local d = string.byte(x, k) - string.byte(y, k)
    if d ~= 0 then return d < 0 and -1 or 1 end
  end
  return 0
end
local function small(a, b)  -- both integers small enough for doubles to add exactly
  return #a <= 15 and #b <= 15 and not string.find(a, ".", 1, true) and not string.find(b, ".", 1, true)
end
local function add(a, b)
  if small(a, b) then return string.format("%.0f", tonumber(a) + tonumber(b)) end
  local x, y, nf = aligned(a, b)
  local out, carry = {}, 0
  for k = #x, 1, -1 do
    local d = string.byte(x, k) + string.byte(y, k) - 96 + carry
    carry = d >= 10 and 1 or 0
    out[k] = string.char(48 + d - 10 * carry)
  end
  return canonical((carry == 1 and "1" or "") .. table.concat(out), nf)
end
local function sub0(a, b)  -- max(a - b, 0)
  if cmp(a, b) <= 0 then return "0" end
  if small(a, b) then return string.format("%.0f", tonumber(a) - tonumber(b)) end
  local x, y, nf = aligned(a, b)
  local out, borrow = {}, 0
  for k = #x, 1, -1 do
    local d = string.byte(x, k) - string.byte(y, k) - borrow
    borrow = d < 0 and 1 or 0
    out[k] = string.char(48 + d + 10 * borrow)
  end
  return canonical(table.concat(out), nf)
end
local function amount_of(member)
  return string.match(member, "^[^:]+")
end
-- The live total of a sliding window: the running total minus the entries at or before the
-- horizon (not yet removed), or a recount of the live entries if either key is missing.
local function sliding_total(zkey, tkey, horizon)
  local total = redis.call("GET", tkey)
  if total and redis.call("EXISTS", zkey) == 1 then
    for _, m in ipairs(redis.call("ZRANGEBYSCORE", zkey, "-inf", horizon)) do total = sub0(total, amount_of(m)) end
    return total
  end
  total = "0"
  for _, m in ipairs(redis.call("ZRANGEBYSCORE", zkey, "(" .. horizon, "+inf")) do total = add(total, amount_of(m)) end
  return total
end
"""

# KEYS: two per counter (calendar: the bucket twice; sliding: entries, total). ARGV: now, then
# per counter: kind (c|s), amount, op ("" for no limit), limit, ttl in ms, horizon (sliding:
# entries at or before it are gone), member (sliding).
# Returns {1} when every counter fits and was incremented, else {0, index of the first that
# does not fit, then its live sliding entries as score, amount pairs (for retry_after)}.
RESERVE_LUA = DECIMALS_LUA + """
local now = ARGV[1]
local totals = {}
for i = 1, #KEYS / 2 do
  local a = 2 + (i - 1) * 7
  local kind, amount, op, limit, horizon = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 5]
  local key = KEYS[2 * i - 1]
  local total
  if kind == "c" then
    total = redis.call("GET", key) or "0"
  else
    total = sliding_total(key, KEYS[2 * i], horizon)
  end
  if op ~= "" then
    local c = cmp(add(total, amount), limit)
    if c > 0 or (c == 0 and op == "lt") then
      local out = {0, i - 1}
      if kind == "s" then
        local live = redis.call("ZRANGEBYSCORE", key, "(" .. horizon, "+inf", "WITHSCORES")
        for j = 1, #live, 2 do
          out[#out + 1] = live[j + 1]
          out[#out + 1] = amount_of(live[j])
        end
      end
      return out
    end
  end
  totals[i] = total
end
for i = 1, #KEYS / 2 do
  local a = 2 + (i - 1) * 7
  local amount, ttl, horizon = ARGV[a + 1], ARGV[a + 4], ARGV[a + 5]
  local key, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  if ARGV[a] == "c" then
    redis.call("SET", key, add(totals[i], amount), "PX", ttl)
  else
    local total = sliding_total(key, tkey, horizon)  -- again: an earlier counter may be this one
    redis.call("ZREMRANGEBYSCORE", key, "-inf", horizon)
    redis.call("ZADD", key, now, ARGV[a + 6])
    redis.call("SET", tkey, add(total, amount), "PX", ttl)
    redis.call("PEXPIRE", key, ttl)
  end
end
return {1}
"""

# KEYS: as for reserve. ARGV per counter: kind, then the amount (calendar) or the member
# (sliding). A bucket or entry that already expired stays gone.
ROLLBACK_LUA = DECIMALS_LUA + """
for i = 1, #KEYS / 2 do
  local kind, what = ARGV[2 * i - 1], ARGV[2 * i]
  local key, tkey = KEYS[2 * i - 1], KEYS[2 * i]
  if kind == "c" then
    local total = redis.call("GET", key)
    if total then redis.call("SET", key, sub0(total, what), "KEEPTTL") end
  elseif redis.call("ZREM", key, what) == 1 then
    local total = redis.call("GET", tkey)
    if total then redis.call("SET", tkey, sub0(total, amount_of(what)), "KEEPTTL") end
  end
end
return 1
"""

# KEYS: a sliding window's entries and total. ARGV: the horizon. Reads only.
SLIDING_VALUE_LUA = DECIMALS_LUA + """
return sliding_total(KEYS[1], KEYS[2], ARGV[1])
"""


def decimal_text(value: Decimal) -> str:
    """The canonical decimal string the scripts compute with ("1.5", "-3", never "1.50E+1")."""
    if not value.is_finite():
        raise StoreError(f"cannot count {value}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if max(value.adjusted(), 0) + 1 + max(-exponent, 0) > MAX_AMOUNT_DIGITS:
        raise StoreError(f"{value} has more than {MAX_AMOUNT_DIGITS} digits, too many for the Redis store")
    text = format(value.copy_abs(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "-" + text if value < 0 and text != "0" else text


def _glob_escape(text: bytes) -> bytes:
    """A literal for SCAN MATCH: Redis globs treat * ? [ ] and backslash specially."""
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _encode(key: str) -> bytes:
    # surrogatepass: agent-supplied session ids may hold lone surrogates; they must still map
    # to one key each, reversibly.
    return key.encode("utf-8", "surrogatepass")


def check_url(url: str) -> str:
    """Validate a redis:// or rediss:// URL; return it without credentials, for messages."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f'"{parts.scheme}" is not a Redis URL scheme (use redis:// or rediss://)')
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the port of a Redis URL must be a number between 0 and 65535") from None
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f'the path of a Redis URL is the database number, got "{parts.path}"')
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in URL_PARAMETERS:
            raise ValueError(f'unknown Redis URL parameter "{name}" (known: {", ".join(sorted(URL_PARAMETERS))})')
        if name.startswith("ssl_") and parts.scheme != "rediss":
            raise ValueError(f'"{name}" needs a rediss:// (TLS) URL')
        if name == "db":
            db = value
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{port}/{db or 0}"


class RedisStore:
    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.where = check_url(url)
        self.prefix = prefix
        self._prefix = _encode(prefix)
        # No retries of a command: a reserve sent again after a lost reply would count twice.
        # The pool still replaces a connection Redis closed (a restart) before using it.
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._reserve = self._redis.register_script(RESERVE_LUA)
        self._rollback = self._redis.register_script(ROLLBACK_LUA)
        self._sliding_value = self._redis.register_script(SLIDING_VALUE_LUA)
        # Entry ids unique across every proxy sharing the server: a random instance id + a count.
        self._instance = os.urandom(6).hex()
        self._ids = itertools.count()

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis at {self.where} is unavailable: {exc}") from exc
        except (ArithmeticError, ValueError, IndexError) as exc:  # a key someone else wrote
            raise StoreError(f"Redis at {self.where} holds a value this store did not write: {exc}") from exc

    def _keys(self, key: str, window: Window, now: float) -> list[bytes]:
        """The two Redis keys of a counter: calendar, its bucket twice; sliding, entries and total."""
        if window.kind == "calendar":
            bucket = self._prefix + b"c:%d:%d:" % (window.seconds, window.start(now)) + _encode(key)
            return [bucket, bucket]
        tail = b":%d:" % window.seconds + _encode(key)
        return [self._prefix + b"s" + tail, self._prefix + b"t" + tail]

    @staticmethod
    def _ttl_ms(window: Window, now: float) -> int:
        left = calendar_retry(window, now) if window.kind == "calendar" else window.seconds
        return math.ceil((left + GRACE_SECONDS) * 1000)

    async def reserve(self, requests: Sequence[CounterRequest], now: float) -> ReserveOutcome:
        keys: list[bytes] = []
        args: list[str] = [repr(float(now))]
        applied: list[Applied] = []
        for req in requests:
            w = req.window
            if req.amount < 0:
                raise StoreError(f"cannot count a negative amount ({req.amount})")
            amount = decimal_text(req.amount)
            member = f"{amount}:{self._instance}{next(self._ids):x}" if w.kind == "sliding" else ""
            keys += self._keys(req.key, w, now)
            args += [
                "c" if w.kind == "calendar" else "s", amount, "" if req.limit is None else req.limit_op or "lte",
                decimal_text(req.limit) if req.limit is not None else "", str(self._ttl_ms(w, now)),
                repr(float(now - w.seconds)), member,
            ]
            bucket = w.start(now) if w.kind == "calendar" else now
            applied.append(Applied(req.key, w, bucket, member, req.amount))
        with self._failures():
            result = await self._reserve(keys=keys, args=args)
            if result[0] == 1:
                return ReserveOutcome(ok=True, reservation=Reservation(applied))
            index = int(result[1])
            req = requests[index]
            if req.window.kind == "calendar":
                retry = calendar_retry(req.window, now)
            else:
                entries = [(float(result[j]), Decimal(result[j + 1].decode())) for j in range(2, len(result), 2)]
                retry = sliding_retry(req, entries, now)
        return ReserveOutcome(ok=False, denied=index, retry_after=retry)

    async def commit(self, reservation: Reservation) -> None:
        pass  # the counters already hold it

    async def rollback(self, reservation: Reservation) -> None:
        if not reservation.applied:
            return
        keys: list[bytes] = []
        args: list[str] = []
        for a in reservation.applied:
            keys += self._keys(a.key, a.window, a.bucket)
            args += ["c", decimal_text(a.amount)] if a.window.kind == "calendar" else ["s", a.entry]
        with self._failures():
            await self._rollback(keys=keys, args=args)

    async def value(self, key: str, window: Window, now: float) -> Decimal:
        keys = self._keys(key, window, now)
        with self._failures():
            if window.kind == "calendar":
                total = await self._redis.get(keys[0])
            else:
                total = await self._sliding_value(keys=keys, args=[repr(float(now - window.seconds))])
            return Decimal(total.decode()) if total is not None else Decimal(0)

    def _counter_key(self, redis_key: bytes) -> bytes | None:
        """K of a key this store wrote (layout in the module docstring), else None."""
        rest = redis_key[len(self._prefix):]
        kind, _, rest = rest.partition(b":")
        fields = rest.split(b":", 2 if kind == b"c" else 1)
        if kind not in (b"c", b"s", b"t") or len(fields) != (3 if kind == b"c" else 2):
            return None
        if not all(f.isdigit() for f in fields[:-1]):
            return None
        return fields[-1]

    async def reset(self, key_prefix: str) -> int:
        wanted = _encode(key_prefix)
        removed = 0
        with self._failures():
            doomed: list[bytes] = []
            async for redis_key in self._redis.scan_iter(match=_glob_escape(self._prefix) + b"*", count=SCAN_BATCH):
                counter = self._counter_key(redis_key)
                if counter is not None and counter.startswith(wanted):
                    doomed.append(redis_key)
            for i in range(0, len(doomed), SCAN_BATCH):
                removed += await self._redis.unlink(*doomed[i:i + SCAN_BATCH])
        return removed

    async def snapshot(self, now: float) -> list[tuple[str, Decimal]]:
        totals: list[tuple[str, Decimal]] = []
        with self._failures():
            async for redis_key in self._redis.scan_iter(match=_glob_escape(self._prefix) + b"*", count=SCAN_BATCH):
                counter = self._counter_key(redis_key)
                if counter is None:
                    continue
                kind, seconds, start = redis_key[len(self._prefix):].split(b":", 3)[:3]
                if kind == b"t":  # a sliding window's total: read with its entries
                    continue
                key, window = counter.decode("utf-8", "surrogatepass"), int(seconds)
                if kind == b"c":
                    if int(start) == Window("calendar", window).start(now):  # older buckets wait to expire
                        totals.append((key, await self.value(key, Window("calendar", window), now)))
                else:
                    totals.append((key, await self.value(key, Window("sliding", window), now)))
        return [(key, total) for key, total in totals if total]

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
