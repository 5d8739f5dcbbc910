"""tools/list answers: hidden tools removed, pinned definitions compared (``fingerprints``),
policy keys the server does not have reported (proxy/coverage.py).

Any answer shaped like a tools/list result is judged, whatever id it carries: a hostile server
cannot slip a list past the filter under an id the proxy does not expect.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from mitmproxy import http

from intercept_addon.policy import fingerprint
from intercept_addon.policy.engine import Call, Decision
from intercept_addon.policy.model import Policy
from intercept_addon.proxy.coverage import PolicyCoverage
from intercept_addon.proxy.published import PublishedTools
from intercept_addon.proxy.servers import Binding, ServerBindings, server_key
from intercept_addon.proxy.servers import governed as compiled
from intercept_addon.wire import mcp

log = logging.getLogger("intercept")

MAX_PINNED_SERVERS = 1024  # servers whose pin changes are remembered


class ToolLists:
    """Per server (proxy/servers.py): the policy that governs it, its hidden tools, its pins."""

    def __init__(self) -> None:
        self.servers = ServerBindings()
        self.coverage = PolicyCoverage()
        self.published = PublishedTools()  # the schemas ``arguments: schema`` checks against
        self.watched = self.per_caller = self._hides_sections = False  # set by ``use``
        # server -> (the pins judged against, tools last served with another definition)
        self._pins: OrderedDict[str, tuple[Any, fingerprint.PinWatch]] = OrderedDict()

    def use(self, policies: dict[str, Policy] | None) -> None:
        """A new set of policies (file -> policy); an unchanged file keeps its compiled engine."""
        old = {g.source: g for g in self.servers.policies}
        governed = []
        for source, policy in (policies or {}).items():
            kept = old.get(source)
            governed.append(kept if kept is not None and kept.policy == policy else compiled(source, policy))
        self.servers.use(governed)
        self.coverage.use(self.servers)
        engines = [g.engine for g in governed]
        sections = [e for g in governed for e in g.sections.values()]
        # Read on every request and answer: worked out once per set of policies.
        self._hides_sections = any(e.policy.hide for e in sections)
        # Does any policy change or judge tools/list answers (hidden tools, hide_denied, pins), hide
        # other lists, or judge what servers ask of clients (such a request may come on any stream)?
        self.watched = self._hides_sections or any(
            "sampling" in g.sections or "elicitation" in g.sections for g in governed) or any(
            bool(e.policy.hide) or e.policy.hide_denied or e.policy.fingerprints is not None for e in engines)
        self.per_caller = any(e.policy.hide_denied for e in engines)  # tools/list filtered per caller

    def _other_list(self, flow: http.HTTPFlow, msg: dict[str, Any]) -> bool:
        """Hidden resources, resource templates and prompts dropped from their lists."""
        binding = self.servers.of_answer(flow)
        sections = binding.governed.sections if binding.governed is not None else {}
        return mcp.filter_listed(msg, lambda section, name: section in sections and sections[section].is_hidden(name))

    @property
    def active(self) -> bool:
        """Is any policy in force?"""
        return bool(self.servers.policies)

    def counter(self, server: str, namespace: str, name: str) -> Any:
        """The counter spec a stored key names (for ``intercept.status``), or None."""
        engines = [self.servers.governing(server)] if server else self.servers.engines
        return next((spec for e in engines if e is not None and (spec := e.counter(namespace, name))), None)

    def _pin_watch(self, server: str, pins: Any) -> fingerprint.PinWatch:
        known = self._pins.get(server)
        if known is None or known[0] != pins:  # changes were judged against the old pins
            known = self._pins[server] = (pins, fingerprint.PinWatch())
            if len(self._pins) > MAX_PINNED_SERVERS:
                self._pins.popitem(last=False)
        self._pins.move_to_end(server)
        return known[1]

    def judge(self, flow: http.HTTPFlow, msg: dict[str, Any], caller: Any = None) -> bool:
        """Filter ``msg`` in place if it is shaped like a tools/list result; True if it changed.
        ``caller`` (a Who): with ``hide_denied``, tools denied outright for it are dropped too."""
        if not self.active:
            return False
        if not mcp.listed_tools(msg):
            return self._hides_sections and self._other_list(flow, msg)
        binding = self.servers.of_answer(flow)
        engine = binding.engine
        if engine is None:
            return False
        self.coverage.observe(flow, msg, binding)  # the list as served, hidden tools included
        self.published.observe(server_key(flow, binding), msg)
        hidden = engine.is_hidden
        if engine.policy.hide_denied and caller is not None:
            def hidden(name: str) -> bool:
                return engine.is_hidden(name) or engine.denied_outright(
                    Call(caller.agent, name, {}, caller.user, caller.claims, caller.mcp_session, binding.server))
        pins = engine.policy.fingerprints
        if pins is None:
            return mcp.filter_tools(msg, hidden)
        watch = self._pin_watch(binding.server, pins)
        changes = watch.observe(mcp.listed_tools(msg), pins.tools)
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
                                or (hide and watch.changed(name, pins.tools) is not None))

    def answer_ruled(self, flow: http.HTTPFlow, call: Any, item: dict[str, Any]) -> tuple[dict[str, Any], Decision] | None:
        """A call's answer under the policy's ``answers`` rules: (the message to send instead, the
        decision the log records), or None. Errors pass as they are: they carry no result."""
        key = mcp.member_key(item, "result")
        result = item.get(key) if key is not None else None
        if not isinstance(result, dict):
            return None
        engine = self.servers.of_answer(flow).engine
        rules = engine.answer_rules(None if call.section else call.tool) if engine is not None else None
        if rules is None:
            return None
        what = f"{call.section.rstrip('s')} {call.tool}" if call.section else f"tool {call.tool}"
        outcome = rules.apply(result, what)
        if outcome is None:
            return None
        flow.metadata["mcp.answer_rule"] = outcome.what
        note = f"ANSWER {call.tool}: {outcome.what}"
        flow.comment = f"{flow.comment}; {note}" if flow.comment else note
        if outcome.replaced:
            flow.marked = ":no_entry:"
        message = outcome.result["content"][0]["text"] if outcome.replaced else f"{what}: {outcome.what}"
        return {**item, key: outcome.result}, Decision(not outcome.replaced, call.tool, "answer",
                                                        f"answers: {outcome.what}", message)

    def schema_decision(self, flow: http.HTTPFlow, binding: Binding, tool: str, arguments: Any) -> Decision | None:
        """A denial for arguments that do not match the schema the server published (``arguments: schema``)."""
        engine = binding.engine
        assert engine is not None
        if not engine.checks_arguments(tool) or engine.is_hidden(tool):
            return None  # a hidden tool is denied as unknown by the engine, its schema never shown
        return self.published.decision(server_key(flow, binding), tool, arguments)

    def pin_decision(self, flow: http.HTTPFlow, binding: Binding, tool: str) -> Decision | None:
        """A denial for a pinned tool last served (by this server) with another definition."""
        engine = binding.engine
        assert engine is not None
        pins = engine.policy.fingerprints
        if pins is None or self._pin_watch(binding.server, pins).changed(tool, pins.tools) is None \
                or engine.is_hidden(tool):
            return None
        flow.metadata["mcp.fingerprint_changed"] = tool
        if pins.on_change == "flag":
            return None
        return Decision(False, tool, "deny", "(fingerprint changed)",
                        f"{tool}: tool definition changed since it was pinned; "
                        "calls are denied until the policy's fingerprints are updated")
