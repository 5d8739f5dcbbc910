"""tools/list answers: hidden tools removed, pinned definitions compared (``fingerprints``),
policy keys the server does not have reported (proxy/coverage.py).

Any answer shaped like a tools/list result is judged, whatever id it carries: a hostile server
cannot slip a list past the filter under an id the proxy does not expect.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import http

from intercept_addon.policy import fingerprint
from intercept_addon.policy.engine import Call, Decision, Engine
from intercept_addon.proxy.coverage import PolicyCoverage
from intercept_addon.wire import mcp

log = logging.getLogger("intercept")


class ToolLists:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.pins = fingerprint.PinWatch()  # pinned tools last served with another definition
        self.coverage = PolicyCoverage()

    def use(self, engine: Engine | None) -> None:
        old = self.engine.policy.fingerprints if self.engine is not None else None
        if engine is None or engine.policy.fingerprints != old:
            self.pins.forget()  # changes were judged against the old pins
        self.engine = engine
        self.coverage.use(engine.policy if engine is not None else None)

    @property
    def watched(self) -> bool:
        """Does the policy change or judge tools/list answers (hidden tools, tools denied outright
        with ``hide_denied``, pinned definitions)?"""
        policy = self.engine.policy if self.engine is not None else None
        return policy is not None and (bool(policy.hide) or policy.hide_denied or policy.fingerprints is not None)

    @property
    def per_caller(self) -> bool:
        """Are tools/list answers filtered per caller (``hide_denied``)?"""
        return self.engine is not None and self.engine.policy.hide_denied

    def judge(self, flow: http.HTTPFlow, msg: dict[str, Any], caller: Any = None) -> bool:
        """Filter ``msg`` in place if it is shaped like a tools/list result; True if it changed.
        ``caller`` (a Who): with ``hide_denied``, tools denied outright for it are dropped too."""
        engine = self.engine
        if engine is None or not mcp.listed_tools(msg):
            return False
        self.coverage.observe(flow, msg)  # the list as served, hidden tools included
        hidden = engine.is_hidden
        if engine.policy.hide_denied and caller is not None:
            def hidden(name: str) -> bool:
                return engine.is_hidden(name) or engine.denied_outright(
                    Call(caller.agent, name, {}, caller.user, caller.claims, caller.mcp_session))
        pins = engine.policy.fingerprints
        if pins is None:
            return mcp.filter_tools(msg, hidden)
        changes = self.pins.observe(mcp.listed_tools(msg), pins.tools)
        if changes:
            names = ", ".join(sorted({c.tool for c in changes}))  # pinned names: the policy's own
            flow.metadata["mcp.fingerprint_changed"] = names
            flow.marked = flow.marked or ":warning:"
            flow.comment = f"TOOL DEFINITION CHANGED ({pins.on_change}): {names}"
            for c in changes:
                log.warning(f"intercept: tool definition changed since it was pinned: tool={c.tool!r} "
                            f"pinned={c.pinned} served={c.served} on_change={pins.on_change}")
        hide = pins.on_change == "hide"
        return mcp.filter_tools(msg, lambda name: hidden(name)
                                or (hide and self.pins.changed(name, pins.tools) is not None))

    def pin_decision(self, flow: http.HTTPFlow, tool: str) -> Decision | None:
        """A denial for a pinned tool last served with another definition."""
        engine = self.engine
        assert engine is not None
        pins = engine.policy.fingerprints
        if pins is None or self.pins.changed(tool, pins.tools) is None or engine.is_hidden(tool):
            return None
        flow.metadata["mcp.fingerprint_changed"] = tool
        if pins.on_change == "flag":
            return None
        return Decision(False, tool, "deny", "(fingerprint changed)",
                        f"{tool}: tool definition changed since it was pinned; "
                        "calls are denied until the policy's fingerprints are updated")
