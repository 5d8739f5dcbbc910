"""The counter store in force and the ledger that owns its reservations."""

from __future__ import annotations

import os
from typing import Any

from mitmproxy import exceptions

from intercept_addon.state import open_store
from intercept_addon.state.fail_mode import FailModeStore
from intercept_addon.state.ledger import Ledger

STATE_OPTIONS = frozenset({"intercept_state", "intercept_state_prefix"})


class Counters:
    def __init__(self) -> None:
        self.store: FailModeStore | None = None
        self.ledger = Ledger()

    def configure(self, opts: Any, updated: set[str]) -> None:
        if updated & STATE_OPTIONS or self.store is None:
            default = os.path.join(os.path.expanduser(opts.confdir), "intercept-state.sqlite")
            try:
                store = open_store(opts.intercept_state, default_path=default, prefix=opts.intercept_state_prefix)
            except Exception as exc:
                raise exceptions.OptionsError(f"intercept_state: {exc}") from None
            if self.store is not None:  # settled calls go back to the store that counted them
                self.ledger.retire(self.store)
            self.store = FailModeStore(store, opts.intercept_state_fail)
        elif "intercept_state_fail" in updated:  # a fail mode is not a new store: counters stay
            self.store.mode = opts.intercept_state_fail

    async def close(self) -> None:
        await self.ledger.close()
        if self.store is not None:
            await self.store.close()
