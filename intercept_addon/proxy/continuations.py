"""2026-07-28 multi-round-trip calls: one logical call, one unit of quota.

A server that needs input answers a tools/call with ``resultType: "input_required"``; the client
retries the call (a new request, the same tool and arguments) with ``inputResponses`` and the
echoed ``requestState``. The interim answer spends the call's unit, so the retry is judged on its
own arguments like any call, but not counted again. A credit is granted per interim answer and
taken by one retry of the same agent, tool and arguments carrying the same ``requestState``: a
retry with other arguments (a larger amount on a spend cap) is another call, and counts. Credits
are bounded in number and expire, so they cannot pile up into a second budget.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from intercept_addon.wire import jsonrpc

CREDIT_SECONDS = 600.0
MAX_CREDITS = 10_000

CreditKey = tuple[str, str, str, str | None]  # (identity, tool, arguments_key, requestState)


def arguments_key(arguments: dict[str, Any]) -> str:
    """A digest of a call's arguments, the same for every spelling that parses alike."""
    return hashlib.sha256(jsonrpc.dumps(arguments, sort_keys=True)).hexdigest()


def retry_state(params: dict[str, Any] | None) -> tuple[bool, str | None]:
    """(is this tools/call a retry, the requestState it echoes)."""
    params = params or {}
    state = params.get("requestState")
    is_retry = "inputResponses" in params or "requestState" in params
    return is_retry, state if isinstance(state, str) else None


class Continuations:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._credits: OrderedDict[CreditKey, float] = OrderedDict()  # -> expiry, oldest first
        self._clock = clock

    def grant(self, identity: str, tool: str, arguments: str, result: dict[str, Any]) -> None:
        state = result.get("requestState")
        key = (identity, tool, arguments, state if isinstance(state, str) else None)
        self._credits[key] = self._clock() + CREDIT_SECONDS
        self._credits.move_to_end(key)
        while len(self._credits) > MAX_CREDITS:
            self._credits.popitem(last=False)

    def take(self, identity: str, tool: str, arguments: str, state: str | None) -> bool:
        expiry = self._credits.pop((identity, tool, arguments, state), None)
        return expiry is not None and expiry > self._clock()


def is_interim(result: Any) -> bool:
    return isinstance(result, dict) and result.get("resultType") == "input_required"
