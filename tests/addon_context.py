"""The addons of the root script (``intercept_addon.py``) in mitmproxy's test context, fed real
request flows: for tests of what the addons do with a decision, without starting a process."""

from __future__ import annotations

import contextlib
import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mitmproxy import hooks
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from harness import ROOT
from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.commands import InterceptCommands
from intercept_addon.proxy.decision_log import DecisionLog


class Proxy:
    def __init__(self, tctx: taddons.context, addons: list[Any]):
        self.tctx = tctx
        self.intercept = next(a for a in addons if isinstance(a, InterceptAddon))
        self.log = next(a for a in addons if isinstance(a, DecisionLog))
        self.commands = next(a for a in addons if isinstance(a, InterceptCommands))
        self.ids = 0

    async def send(self, body: bytes, agent: str = "a1") -> tflow.HTTPFlow:
        flow = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/mcp", content=body, headers=(
            (b"content-type", b"application/json"), (b"x-agent-id", agent.encode()))))
        await self.intercept.request(flow)
        self.log.flush()  # the decision log buffers its lines
        return flow

    async def call(self, tool: str, arguments: dict, agent: str = "a1") -> tflow.HTTPFlow:
        self.ids += 1
        message = {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}}
        return await self.send(json.dumps(message).encode(), agent)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.path.read_text().splitlines()]

    def command(self, name: str, *args: str) -> Any:
        """Run a command as mitmproxy's console and mitmweb do: by name, with string arguments."""
        return self.tctx.master.commands.call_strings(name, args)


@contextlib.contextmanager
def proxy_context(confdir: Path, policy: Path, **options: Any) -> Iterator[Proxy]:
    addons = runpy.run_path(str(ROOT / "intercept_addon.py"))["addons"]  # the script's own wiring
    with taddons.context(Proxyserver(), *addons) as tctx:  # Proxyserver: options the addon reads
        tctx.options.update(**{"confdir": str(confdir), "intercept_state": "memory",
                               "intercept_policy": str(policy), **options})
        for addon in addons:  # every option, as mitmproxy's script loader does (taddons does not)
            tctx.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(tctx.options.keys())))
        proxy = Proxy(tctx, addons)
        try:
            yield proxy
        finally:
            proxy.log.done()
