"""The addon's options: declared once, parsed once per ``configure`` into a frozen Settings.

Hooks read ``Settings`` fields, never ``ctx.options`` (an attribute lookup through mitmproxy's
option manager on every call), and a value is validated before anything uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mitmproxy import exceptions

from intercept_addon.proxy import tokens
from intercept_addon.proxy.servers import UNNAMED
from intercept_addon.state.fail_mode import FAIL_MODES
from intercept_addon.wire import mcp
from intercept_addon.wire.encodings import BODY_BUFFER_LIMIT
from intercept_addon.wire.admission import Limits

MODES = ("enforce", "monitor")
DENY_AS = ("error", "result")
IDENTITY_SOURCES = ("agent-header", "authorization", "process", "client", "mcp-session", "legacy-session")
DEFAULT_IDENTITY = ("agent-header", "authorization", "process", "client")  # proxy/identity.py
CHOICES = {"intercept_mode": MODES, "intercept_deny_as": DENY_AS, "intercept_state_fail": FAIL_MODES,
           "intercept_unnamed_server": UNNAMED}


def declare(loader: Any) -> None:
    add = loader.add_option
    add("intercept_policy", str, "",
        "Policy YAML file, comma-separated files, or a directory of them (each may name its "
        "servers:). Unset: inspect only, nothing is blocked.")
    add("intercept_unnamed_server", str, "inspect",
        "A server no policy's servers: names (once any does): inspect (annotated, nothing blocked), "
        "fallback (the policy without servers:), or deny.", choices=UNNAMED)
    add("intercept_mode", str, "enforce", "enforce: block denied calls; monitor: only log and mark.", choices=MODES)
    add("intercept_deny_as", str, "error",
        "error: JSON-RPC error reply; result: tool result with isError and the reason as text.", choices=DENY_AS)
    add("intercept_state", str, "sqlite",
        "Counters: sqlite (a file in mitmproxy's confdir), sqlite:///path, memory, or "
        "redis[s]://[user:password@]host:port/db (one Redis shared by several proxies).")
    add("intercept_state_prefix", str, "intercept:", "Prefix of every Redis key of the counters.")
    add("intercept_state_fail", str, "closed",
        "While the state store is unreachable: closed (deny calls that need a counter) "
        "or open (allow them uncounted, logged).", choices=FAIL_MODES)
    add("intercept_max_body", int, 4 * 1024 * 1024, "Largest MCP request body accepted, bytes.")
    add("intercept_max_depth", int, 64, "Deepest JSON nesting accepted in an MCP message.")
    add("intercept_identity", str, ",".join(DEFAULT_IDENTITY),
        "Where the agent's identity comes from, first present wins: " + ", ".join(IDENTITY_SOURCES))
    add("intercept_agent_header", str, "x-agent-id", "Header naming the agent (agent-header source).")
    add("intercept_tool_names", str, mcp.DEFAULT_TOOL_NAME,
        "Regex every tools/call name must match in full (refuses lookalike names).")
    tokens.declare(loader)
    add("intercept_gc_freeze", bool, True,
        "Once running, and after each policy change, leave the objects alive then (mitmproxy, the "
        "policies) out of Python's garbage collections (gc.freeze): about 1% less CPU under load.")
    add("intercept_log_allowed", bool, False,
        "A line in mitmproxy's event log for each allowed call too (denials and refusals always "
        "get one; the decision log has every decision). Costs ~10% throughput at high call rates.")


@dataclass(frozen=True, slots=True)
class Settings:
    policy: str
    mode: str
    deny_as: str
    limits: Limits
    identity: tuple[str, ...]
    agent_header: str  # lower-cased
    log_allowed: bool
    unnamed_server: str
    reverse: bool  # every listening mode is reverse: a policy without servers governs the upstream

    @property
    def enforcing(self) -> bool:
        return bool(self.policy) and self.mode == "enforce"


def read(opts: Any) -> Settings:
    """Settings from mitmproxy's options; raises OptionsError naming the bad option."""
    for name, choices in CHOICES.items():  # mitmproxy shows choices, but --set does not check them
        if getattr(opts, name) not in choices:
            raise exceptions.OptionsError(f"{name} must be one of {', '.join(choices)}, got {getattr(opts, name)!r}")
    if opts.intercept_max_body <= 0:
        raise exceptions.OptionsError("intercept_max_body must be positive")
    if not 1 <= opts.intercept_max_depth <= 512:
        raise exceptions.OptionsError("intercept_max_depth must be between 1 and 512")
    sources = tuple(s.strip() for s in opts.intercept_identity.split(",") if s.strip())
    if not sources or any(s not in IDENTITY_SOURCES for s in sources):
        raise exceptions.OptionsError(f"intercept_identity: use a list of {', '.join(IDENTITY_SOURCES)}")
    try:
        tool_name = re.compile(opts.intercept_tool_names)
    except re.error as exc:
        raise exceptions.OptionsError(f"intercept_tool_names is not a valid regex: {exc}") from None
    return Settings(
        policy=opts.intercept_policy,
        mode=opts.intercept_mode,
        deny_as=opts.intercept_deny_as,
        limits=Limits(opts.intercept_max_body, opts.intercept_max_depth, tool_name),
        identity=sources,
        agent_header=opts.intercept_agent_header.lower(),
        log_allowed=opts.intercept_log_allowed,
        unnamed_server=opts.intercept_unnamed_server,
        reverse=bool(opts.mode) and all(m.startswith("reverse:") for m in opts.mode),
    )


def check_mitmproxy_options(opts: Any, updated: set[str]) -> None:
    """mitmproxy options that would let bytes past the policy unread, or buffer without bound."""
    if "stream_large_bodies" in updated and opts.stream_large_bodies:
        raise exceptions.OptionsError(
            "intercept: stream_large_bodies sends request bodies upstream before the policy sees them; "
            "unset it (intercept_max_body limits body size instead)"
        )
    if updated & {"body_size_limit", "intercept_max_body", "mode"} and not opts.body_size_limit \
            and all(m.startswith("reverse:") for m in opts.mode):
        # mitmproxy buffers whole bodies before any hook sees them. Its own limit refuses a
        # larger body with 413 as soon as Content-Length (or the bytes read) pass it, so a
        # 100 MB or endless body never fills memory. It holds for answers too, which is right
        # in front of an MCP server but would break a developer's downloads in regular or
        # transparent mode: there it stays the user's choice. Explicitly set values are kept.
        opts.body_size_limit = str(max(BODY_BUFFER_LIMIT, opts.intercept_max_body))
