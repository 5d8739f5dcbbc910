"""Where the verifying keys come from: a fixed local key, or the issuer's JWKS kept fresh.

The JWKS is fetched in a worker thread (urllib blocks), never on mitmproxy's event loop. A
token naming an unknown ``kid`` may trigger a refetch, but at most one starts per
``refetch_seconds`` and concurrent requests share it: a flood of forged kids costs the issuer
one request per interval. A failed fetch keeps the last good key set (tokens still need a valid
signature and expiry); an answer that is a valid JWK Set replaces it, even with no usable key,
so an issuer that withdraws a key is obeyed at the next fetch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse

from intercept_addon.proxy.token_keys import Key, KeyProblem, load_jwks

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 300.0  # background refetch of a loaded key set
REFETCH_SECONDS = 30.0  # the least time between two fetches (unknown kid, retry after failure)
TIMEOUT_SECONDS = 5.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and (parts.scheme == "https" or parts.scheme == "http" and parts.hostname in LOOPBACK):
        return
    raise KeyProblem("intercept_jwt_jwks_url must be an https:// URL (http:// only on 127.0.0.1, ::1 or "
                     "localhost): over plain HTTP anyone on the path could substitute their own keys")


class StaticKeys:
    """``intercept_jwt_key``: one key, whatever kid a token names."""

    loaded = True
    generation = 0  # never changes

    def __init__(self, key: Key) -> None:
        self.keys = (key,)

    def matching(self, kid: str | None) -> tuple[Key, ...]:
        return self.keys

    async def refetch(self) -> bool:
        return False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class RemoteKeys:
    """``intercept_jwt_jwks_url``: the issuer's key set, cached and refreshed in the background."""

    def __init__(self, url: str, algorithms: frozenset[str], *, refresh_seconds: float = REFRESH_SECONDS, refetch_seconds: float = REFETCH_SECONDS,
                 timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self.url = url
        self.keys: tuple[Key, ...] = ()
        self.loaded = False  # a key set has been received (perhaps with no usable key)
        self.fetches = 0  # fetches started, ever
        self.generation = 0  # counts changes of the key set: tokens verified before are forgotten
        self._algorithms = algorithms
        self._refresh = refresh_seconds
        self._refetch = refetch_seconds
        self._timeout = timeout_seconds
        self._last_start = -math.inf
        self._inflight: asyncio.Task[bool] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def matching(self, kid: str | None) -> tuple[Key, ...]:
        return tuple(k for k in self.keys if kid is None or k.kid == kid)

    async def start(self) -> None:
        """The first fetch (awaited, at most ``timeout_seconds``), then the background refresh.
        Unreachable: logged as an error; every token is refused until a fetch succeeds."""
        if await self.refetch():
            logger.info(f"intercept: JWKS {self.url}: {len(self.keys)} usable keys")
        else:
            logger.error(f"intercept: JWKS {self.url} could not be loaded: every MCP request is refused "
                         f"(401) until it is; retrying every {self._refetch:g} s")
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        for task in (self._refresher, self._inflight):
            if task is not None:
                task.cancel()  # a fetch's thread ends by itself within its timeout
        self._refresher = self._inflight = None

    async def refetch(self) -> bool:
        """Fetch now, unless one is under way (then wait for it) or one started less than
        ``refetch_seconds`` ago (then don't). True if a key set was received."""
        if self._inflight is None:
            if time.monotonic() - self._last_start < self._refetch:
                return False
            self._last_start = time.monotonic()
            self._inflight = asyncio.create_task(self._fetch())
            self._inflight.add_done_callback(self._fetched)
        return await asyncio.shield(self._inflight)  # a cancelled request leaves the fetch running

    def _fetched(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _fetch(self) -> bool:
        self.fetches += 1
        try:
            keys, skipped = await asyncio.to_thread(load_jwks, self.url, self._algorithms, self._timeout)
        except KeyProblem as exc:
            kept = f"; keeping the {len(self.keys)} keys loaded before" if self.loaded else ""
            logger.warning(f"intercept: JWKS {self.url}: {exc}{kept}")
            return False
        if keys != self.keys or not self.loaded:
            for reason in skipped:
                logger.warning(f"intercept: JWKS {self.url}: skipped {reason}")
            if not keys:
                logger.warning(f"intercept: JWKS {self.url} has no usable key: every token is refused")
            self.keys, self.loaded = keys, True
            self.generation += 1
        return True

    async def _refresh_forever(self) -> None:
        ok = self.loaded
        while True:
            await asyncio.sleep(self._refresh if ok else self._refetch)
            ok = await self.refetch()
