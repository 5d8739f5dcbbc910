"""The addon manager's floor: addons with the hook shape of ``intercept_addon.py`` that do nothing.

bench_cost.py's ``hooks`` config loads it into an otherwise bare mitmdump, so the table shows what
mitmproxy charges for calling our hooks at all, apart from what they do.
"""

from __future__ import annotations

from typing import Any


class Shape:
    """One addon with the per-flow hooks the real one implements."""

    def __init__(self, name: str, hooks: tuple[str, ...], is_async: tuple[str, ...] = ()) -> None:
        self.name = name
        for hook in hooks:
            setattr(self, hook, self._async if hook in is_async else self._sync)

    def _sync(self, *_: Any) -> None:
        return None

    async def _async(self, *_: Any) -> None:
        return None


SHAPE = [("unjudged", ("next_layer",), ()),
         ("intercept", ("request", "responseheaders", "response", "error", "server_connect", "client_disconnected"),
          ("request", "response", "server_connect")),
         ("approvals", (), ()), ("viewer", (), ()), ("decision_log", (), ()), ("commands", (), ())]

addons = [Shape(*s) for s in SHAPE]
