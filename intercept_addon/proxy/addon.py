"""The mitmproxy addon: translate flows into calls, and decisions back into responses.

Fail closed everywhere: mitmproxy forwards a flow whose hook raised, so every hook body is
guarded and answers the client itself with a JSON-RPC error when anything goes wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from intercept_addon.wire import encodings, jsonrpc, legacy, mcp
from intercept_addon.policy import fingerprint
from intercept_addon.policy.engine import Call, Decision, Engine
from intercept_addon.wire.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, Message, ProtocolError
from intercept_addon.wire.legacy import LegacyStream
from intercept_addon.policy.file import PolicyError, load_policy
from intercept_addon.wire.sse import SseEvent, SseRewriter, detect_newline, format_event
from intercept_addon.state import Reservation, open_store
from intercept_addon.state.fail_mode import FAIL_MODES, FailModeStore

log = logging.getLogger("intercept")

MODES = ("enforce", "monitor")
DENY_AS = ("error", "result")
IDENTITY_SOURCES = ("mcp-session", "legacy-session", "agent-header", "authorization", "client")
MCP_HEADERS = ("mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name")
JSON_SPACE = re.compile(rb"[ \t\r\n]*")
RELOAD_POLL_SECONDS = 1.0
MAX_ISSUED_SESSIONS = 100_000


def header_map(headers: http.Headers) -> dict[str, str]:
    """Lower-cased name -> value, repeats joined with ", " as ``Headers.get`` does. Read once per
    request: every ``Headers`` lookup scans and case-folds all fields."""
    out: dict[str, str] = {}
    for name, value in headers.items(multi=True):
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


@dataclass
class Tracked:
    """What a forwarded flow waits for: counters to settle and tools/list answers to filter."""

    reservations: dict[str | int, Reservation] = field(default_factory=dict)
    list_ids: set[str | int] = field(default_factory=set)


def _reply(flow: http.HTTPFlow, status: int, body: Any) -> None:
    flow.response = http.Response.make(status, jsonrpc.dumps(body), {"content-type": "application/json"})


def _mcp_websocket(headers: http.Headers) -> bool:
    """A WebSocket upgrade offering the "mcp" subprotocol (an SDK transport outside the spec)."""
    if "websocket" not in headers.get("upgrade", "").lower():
        return False
    return "mcp" in (p.strip().lower() for p in headers.get("sec-websocket-protocol", "").split(","))


def _reframed(event: SseEvent, msg: dict[str, Any]) -> bytes:
    """``event`` carrying ``msg`` instead, in the stream's own line endings, id kept."""
    return format_event(jsonrpc.dumps(msg).decode("utf-8"), event=event.event, id=event.id,
                        newline=detect_newline(event.raw))


def _unanswered(owed: Tracked | LegacyStream) -> bytes:
    """Error events for the ids a cut event stream still owes its client, so none waits forever.
    Starts with a blank line: it ends whatever uninspected event was being passed through."""
    text = f"{mcp.DENIED_PREFIX} the response stream could not be inspected and was cut"
    ids = [*owed.reservations, *owed.list_ids, *getattr(owed, "denials", ())]
    return b"\n\n" + b"".join(format_event(jsonrpc.dumps(jsonrpc.error_body(i, INTERNAL_ERROR, text)).decode("utf-8"))
                              for i in dict.fromkeys(ids))


class InterceptAddon:
    name = "intercept_addon"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.store: FailModeStore | None = None
        self._tasks: set[asyncio.Task] = set()  # store updates from sync hooks, awaited in `done`
        self.tracked: dict[str, Tracked] = {}
        self.legacy_streams: dict[str, LegacyStream] = {}  # by GET flow id
        self.legacy_endpoints: dict[str, LegacyStream] = {}  # by legacy.endpoint_key
        self._policy_mtime: float | None = None
        self._reloader: asyncio.Task | None = None
        self._tool_name: re.Pattern[str] = re.compile(mcp.DEFAULT_TOOL_NAME)
        self._identity: tuple[str, ...] = IDENTITY_SOURCES
        self.pins = fingerprint.PinWatch()  # pinned tools last served with another definition
        # Called once per decision (the decision log, the status command): (flow, decision,
        # arguments), or (flow, None, None) for a request refused as malformed. Must not raise.
        self.decision_hooks: list[Callable[[http.HTTPFlow, Decision | None, Mapping[str, Any] | None], None]] = []
        # Mcp-Session-Id values servers issued: only those identify a session, so a client
        # cannot mint a fresh per-session budget by sending a made-up id to a stateless server.
        self.issued_sessions: OrderedDict[str, None] = OrderedDict()

    # -- options ---------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("intercept_policy", str, "", "Policy YAML file. Unset: inspect only, nothing is blocked.")
        loader.add_option("intercept_mode", str, "enforce", "enforce: block denied calls; monitor: only log and mark.")
        loader.add_option("intercept_deny_as", str, "error",
                          "error: JSON-RPC error reply; result: tool result with isError and the reason as text.")
        loader.add_option("intercept_state", str, "sqlite",
                          "Counters: sqlite (a file in mitmproxy's confdir), sqlite:///path, memory, or "
                          "redis[s]://[user:password@]host:port/db (one Redis shared by several proxies).")
        loader.add_option("intercept_state_prefix", str, "intercept:", "Prefix of every Redis key of the counters.")
        loader.add_option("intercept_state_fail", str, "closed",
                          "While the state store is unreachable: closed (deny calls that need a counter) "
                          "or open (allow them uncounted, logged).")
        loader.add_option("intercept_max_body", int, 4 * 1024 * 1024, "Largest MCP request body accepted, bytes.")
        loader.add_option("intercept_max_depth", int, 64, "Deepest JSON nesting accepted in an MCP message.")
        loader.add_option("intercept_identity", str, ",".join(IDENTITY_SOURCES),
                          "Where an agent session's identity comes from, first match wins: " + ", ".join(IDENTITY_SOURCES))
        loader.add_option("intercept_agent_header", str, "x-agent-id", "Header naming the agent (agent-header source).")
        loader.add_option("intercept_tool_names", str, mcp.DEFAULT_TOOL_NAME,
                          "Regex every tools/call name must match in full (refuses lookalike names).")
        loader.add_option("intercept_log_allowed", bool, False,
                          "A line in mitmproxy's event log for each allowed call too (denials and refusals always "
                          "get one; the decision log has every decision). Costs ~10% throughput at high call rates.")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "stream_large_bodies" in updated and opts.stream_large_bodies:
            raise exceptions.OptionsError(
                "intercept: stream_large_bodies sends request bodies upstream before the policy sees them; "
                "unset it (intercept_max_body limits body size instead)"
            )
        if "intercept_mode" in updated and opts.intercept_mode not in MODES:
            raise exceptions.OptionsError(f"intercept_mode must be one of {', '.join(MODES)}")
        if "intercept_deny_as" in updated and opts.intercept_deny_as not in DENY_AS:
            raise exceptions.OptionsError(f"intercept_deny_as must be one of {', '.join(DENY_AS)}")
        if "intercept_max_body" in updated and opts.intercept_max_body <= 0:
            raise exceptions.OptionsError("intercept_max_body must be positive")
        if updated & {"body_size_limit", "intercept_max_body", "mode"} and not opts.body_size_limit \
                and all(m.startswith("reverse:") for m in opts.mode):
            # mitmproxy buffers whole bodies before any hook sees them. Its own limit refuses a
            # larger body with 413 as soon as Content-Length (or the bytes read) pass it, so a
            # 100 MB or endless body never fills memory. It holds for answers too, which is right
            # in front of an MCP server but would break a developer's downloads in regular or
            # transparent mode: there it stays the user's choice. Explicitly set values are kept.
            opts.body_size_limit = str(max(encodings.BODY_BUFFER_LIMIT, opts.intercept_max_body))
        if "intercept_max_depth" in updated and not 1 <= opts.intercept_max_depth <= 512:
            raise exceptions.OptionsError("intercept_max_depth must be between 1 and 512")
        if "intercept_identity" in updated:
            sources = tuple(s.strip() for s in opts.intercept_identity.split(",") if s.strip())
            bad = [s for s in sources if s not in IDENTITY_SOURCES]
            if bad or not sources:
                raise exceptions.OptionsError(f"intercept_identity: use a list of {', '.join(IDENTITY_SOURCES)}")
            self._identity = sources
        if "intercept_tool_names" in updated:
            try:
                self._tool_name = re.compile(opts.intercept_tool_names)
            except re.error as exc:
                raise exceptions.OptionsError(f"intercept_tool_names is not a valid regex: {exc}") from None
        if "intercept_state_fail" in updated and opts.intercept_state_fail not in FAIL_MODES:
            raise exceptions.OptionsError(f"intercept_state_fail must be one of {', '.join(FAIL_MODES)}")
        if updated & {"intercept_state", "intercept_state_prefix"} or self.store is None:
            default = os.path.join(os.path.expanduser(opts.confdir), "intercept-state.sqlite")
            try:
                store = open_store(opts.intercept_state, default_path=default, prefix=opts.intercept_state_prefix)
            except Exception as exc:
                raise exceptions.OptionsError(f"intercept_state: {exc}") from None
            if self.store is not None:
                self._spawn(self.store.close())
            self.store = FailModeStore(store, opts.intercept_state_fail)
        elif "intercept_state_fail" in updated:  # a fail mode is not a new store: counters stay
            self.store.mode = opts.intercept_state_fail
        if "intercept_policy" in updated:
            self._load_policy(startup=True)

    def reload_policy(self) -> bool:
        """Load the policy file again now; False (and the old policy stays) if it is invalid."""
        return self._load_policy(startup=False)

    def _load_policy(self, *, startup: bool) -> bool:
        path = ctx.options.intercept_policy
        if not path:
            self.engine = None
            log.warning("intercept: NO POLICY (intercept_policy unset): inspect only, nothing is blocked")
            return True
        try:
            mtime = Path(path).stat().st_mtime
            policy = load_policy(path)
        except (PolicyError, OSError) as exc:
            if startup:
                raise exceptions.OptionsError(f"intercept: invalid policy, not started:\n{exc}") from None
            log.error(f"intercept: policy {path} NOT reloaded, the previous policy stays in force:\n{exc}")
            return False
        self._policy_mtime = mtime
        if self.engine is None or self.engine.policy.fingerprints != policy.fingerprints:
            self.pins.forget()  # changes were judged against the old pins
        self.engine = Engine(policy)  # counters live in the store: a reload keeps them
        rules = sum(len(t.rules) for t in policy.tools.values())
        log.info(f"intercept: policy {path} loaded ({len(policy.tools)} tools, {rules} rules, "
                 f"default {policy.default}, mode {ctx.options.intercept_mode})")
        return True

    # -- lifecycle: watch the policy file ----------------------------------------------------

    def running(self) -> None:
        if self._reloader is None:
            self._reloader = asyncio.get_running_loop().create_task(self._watch_policy())

    async def _watch_policy(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            path = ctx.options.intercept_policy
            try:
                mtime = Path(path).stat().st_mtime if path else None
            except OSError:
                continue
            if mtime is not None and mtime != self._policy_mtime:
                self._policy_mtime = mtime
                self._load_policy(startup=False)

    async def done(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
        if self._tasks:  # settle what answered calls reserved before the store goes
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store is not None:
            await self.store.close()

    # -- requests --------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        if flow.request.method == "GET" and "text/event-stream" in flow.request.headers.get("accept", "").lower():
            flow.request.headers["accept-encoding"] = "identity"  # a legacy stream must be readable
        if _mcp_websocket(flow.request.headers):  # a transport this proxy does not inspect: closed
            self._refuse(flow, ProtocolError(INVALID_REQUEST, "MCP over WebSocket is not inspected by the policy "
                                             "proxy; use Streamable HTTP", status=403))
            return
        # Every body is judged, whatever the method: a lenient server may route PUT or PATCH
        # to its JSON-RPC handler too. Bodiless requests (GET streams, DELETE) carry no call.
        if flow.request.method != "POST" and not flow.request.raw_content:
            return
        try:
            await self._inspect_body(flow)
        except ProtocolError as exc:
            self._refuse(flow, exc)
        except Exception:
            log.error(f"intercept: internal error, request refused:\n{traceback.format_exc()}")
            self._refuse(flow, ProtocolError(INTERNAL_ERROR, "internal policy error; the request was not forwarded",
                                             status=500))

    def _refuse(self, flow: http.HTTPFlow, exc: ProtocolError) -> None:
        flow.metadata["mcp.decision"] = "refused"
        flow.metadata["mcp.reason"] = exc.message
        flow.comment = f"REFUSED: {exc.message}"
        flow.marked = ":no_entry:"
        self.tracked.pop(flow.id, None)
        log.info(f"intercept: refused {flow.request.method} {flow.request.pretty_url}: {exc.message}")
        if self.enforcing:
            _reply(flow, exc.status, jsonrpc.error_body(exc.id, exc.code, f"{mcp.DENIED_PREFIX} {exc.message}"))
        self._notify(flow, None, None)  # last: the reply above is in place whatever they do

    @property
    def enforcing(self) -> bool:
        return bool(ctx.options.intercept_policy) and ctx.options.intercept_mode == "enforce"

    def _looks_like_mcp(self, flow: http.HTTPFlow, headers: dict[str, str]) -> bool:
        req = flow.request
        if any(h in headers for h in MCP_HEADERS):
            return True
        # application/json, +json, json-rpc, ...: servers differ in which of these they accept.
        if "json" in headers.get("content-type", "").lower():
            return True
        # JSON-looking bodies under any content type (after any run of JSON whitespace), and
        # the encodings servers auto-detect.
        raw = req.raw_content or b""
        start = JSON_SPACE.match(raw).end()  # type: ignore[union-attr]
        return raw[start:start + 1] in (b"{", b"[") or raw.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) \
            or b"\x00" in raw[:4]

    def _body(self, flow: http.HTTPFlow) -> bytes:
        req = flow.request
        raw = req.raw_content or b""
        limit = ctx.options.intercept_max_body
        if len(raw) > limit:
            raise ProtocolError(INVALID_REQUEST, f"request body larger than {limit} bytes", status=413)
        enc = req.headers.get("content-encoding", "").strip().lower()
        if enc and enc != "identity":
            if enc not in encodings.KNOWN:
                raise ProtocolError(INVALID_REQUEST, f"unsupported Content-Encoding {enc!r}", status=415)
            # Decode only to learn whether this is MCP; MCP servers do not accept compressed requests.
            try:
                decoded = encodings.decode_capped(raw, enc, limit + 1)
            except encodings.DecodeError as exc:
                raise ProtocolError(PARSE_ERROR, f"request body: {exc}", status=400) from None
            if len(decoded) > limit:
                raise ProtocolError(INVALID_REQUEST, f"request body larger than {limit} bytes", status=413)
            return decoded
        return raw

    async def _inspect_body(self, flow: http.HTTPFlow) -> None:
        headers = header_map(flow.request.headers)
        if not self._looks_like_mcp(flow, headers):
            return
        req = flow.request
        body = self._body(flow)
        charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", headers.get("content-type", ""), re.I)
        if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
            raise ProtocolError(PARSE_ERROR, f"charset {charset.group(1)} is not UTF-8", status=415)
        value = jsonrpc.loads(body, max_depth=ctx.options.intercept_max_depth)
        if not jsonrpc.looks_like_jsonrpc(value):
            return  # JSON, but not JSON-RPC: not ours, forward as it came
        if body is not req.raw_content:
            raise ProtocolError(INVALID_REQUEST, "compressed MCP requests are not accepted", status=415)
        revision = headers.get("mcp-protocol-version")
        if isinstance(value, list):
            messages = self._batch(value, revision)
        else:
            messages = [jsonrpc.classify(value)]
        stream = self._legacy_stream_of(req.url)
        if stream is not None and isinstance(value, list):
            raise ProtocolError(INVALID_REQUEST, "batches are not part of the legacy HTTP+SSE transport")
        # On a legacy endpoint the stream is the session: an Mcp-Session-Id header there is
        # ignored by the server, so it must not mint fresh per-session budgets either.
        flow.metadata["mcp.session"] = self.session_of(flow, headers) if stream is None \
            else f"legacy-session:{stream.key}"
        if not isinstance(value, list):
            mcp.check_routing_headers(messages[0], headers.get, revision)
        tracked = Tracked()
        denials = [await self._message(flow, msg, revision, tracked) for msg in messages]
        if stream is not None:
            self._legacy_post(flow, stream, messages[0], denials[0], tracked)
            return
        if any(denials):
            # Nothing of a batch goes upstream once one element is denied.
            await self._release(tracked)
            if not isinstance(value, list):
                _reply(flow, *denials[0])  # type: ignore[misc]
                return
            skipped = f"{mcp.DENIED_PREFIX} not forwarded: another call in this batch was denied"
            replies = [d[1] if d else jsonrpc.error_body(m.id, mcp.DENIED_CODE, skipped)
                       for m, d in zip(messages, denials) if d or m.kind == "request"]
            _reply(flow, 200, replies)
            return
        if tracked.reservations or tracked.list_ids:
            self.tracked[flow.id] = tracked
            # Answers must be readable to settle counters and filter tool lists.
            req.headers["accept-encoding"] = "identity"
        evaluated = jsonrpc.dumps(value)
        if evaluated != body:  # forward exactly what was evaluated (most clients already send this)
            req.content = evaluated

    def _legacy_stream_of(self, url: str) -> LegacyStream | None:
        """The legacy stream whose announced endpoint this POST goes to, if any."""
        try:
            key = legacy.endpoint_key(url)
        except legacy.RepeatedSessionParam as exc:  # proxy and server could read different sessions
            raise ProtocolError(INVALID_REQUEST, str(exc)) from None
        stream = self.legacy_endpoints.get(key)
        if stream is not None and stream.pending >= legacy.MAX_PENDING:
            raise ProtocolError(INVALID_REQUEST, "too many unanswered requests on this session", status=429)
        return stream

    def _legacy_post(self, flow: http.HTTPFlow, stream: LegacyStream, msg: Message,
                     denial: tuple[int, dict[str, Any]] | None, tracked: Tracked) -> None:
        """Legacy HTTP+SSE: the POST only gets 202; answers, denials included, travel on the stream."""
        if denial is not None:
            stream.denials[msg.id] = denial[1]  # type: ignore[index]
            flow.request.content = jsonrpc.dumps(legacy.ping(msg.id))  # type: ignore[arg-type]
        else:
            stream.reservations.update(tracked.reservations)
            stream.list_ids |= tracked.list_ids
            flow.request.content = jsonrpc.dumps(msg.body)  # forward exactly what was evaluated
        if msg.kind == "request":
            flow.metadata["intercept.legacy"] = (stream.key, msg.id)

    def _batch(self, value: list[Any], revision: str | None) -> list[Message]:
        if revision not in (None, "2025-03-26"):
            raise ProtocolError(INVALID_REQUEST, f"batches are not allowed in MCP {revision}")
        if not value:
            raise ProtocolError(INVALID_REQUEST, "empty batch")
        return [jsonrpc.classify(item) for item in value]

    async def _message(self, flow: http.HTTPFlow, msg: Message, revision: str | None,
                       tracked: Tracked) -> tuple[int, dict[str, Any]] | None:
        """Evaluate one message; return the local reply if it is denied."""
        flow.metadata.setdefault("mcp.method", msg.method or "(response)")
        mcp.check_method(msg)
        if msg.method == "tools/list" and msg.kind == "request":
            tracked.list_ids.add(msg.id)  # type: ignore[arg-type]
            return None
        if msg.method != "tools/call":
            return None
        if msg.kind == "notification":
            raise ProtocolError(INVALID_REQUEST, "tools/call must be a request with an id, not a notification")
        call = mcp.tool_call(msg, self._tool_name)
        tools = flow.metadata.get("mcp.tool")  # a batch's flow names every tool it calls
        if tools is None or call.name not in tools.split(", "):
            flow.metadata["mcp.tool"] = call.name if tools is None else f"{tools}, {call.name}"
        if self.engine is None:
            flow.metadata["mcp.decision"] = "inspect"
            return None
        decision = self._pin_decision(flow, call.name) or await self.engine.evaluate(
            Call(flow.metadata["mcp.session"], call.name, call.arguments), self.store)
        self._annotate(flow, decision, call.arguments)
        if decision.allowed:
            if decision.reservation is not None and decision.reservation.applied:
                tracked.reservations[msg.id] = decision.reservation  # type: ignore[index]
            return None
        if not self.enforcing:
            return None
        code = mcp.UNKNOWN_TOOL_CODE if decision.kind == "hidden" else mcp.DENIED_CODE
        text = decision.message if decision.kind == "hidden" else f"{mcp.DENIED_PREFIX} {decision.message}"
        data: dict[str, Any] = {"reason": "policy_denied", "tool": decision.tool, "rule": decision.rule,
                                "kind": decision.kind}
        if decision.retry_after is not None:
            data["retry_after"] = decision.retry_after
        if decision.kind == "hidden":
            data = None  # type: ignore[assignment]  # indistinguishable from an absent tool
        return mcp.denial(msg.id, text=text, code=code, data=data,
                          as_result=ctx.options.intercept_deny_as == "result",
                          revision=revision)

    def _pin_decision(self, flow: http.HTTPFlow, tool: str) -> Decision | None:
        """A denial for a pinned tool last served with another definition (``fingerprints``)."""
        assert self.engine is not None
        pins = self.engine.policy.fingerprints
        if pins is None or self.pins.changed(tool, pins.tools) is None or self.engine.is_hidden(tool):
            return None
        flow.metadata["mcp.fingerprint_changed"] = tool
        if pins.on_change == "flag":
            return None
        return Decision(False, tool, "deny", "(fingerprint changed)",
                        f"{tool}: tool definition changed since it was pinned; "
                        "calls are denied until the policy's fingerprints are updated")

    def _tools_list(self, flow: http.HTTPFlow, msg: dict[str, Any]) -> bool:
        """A tools/list answer: flag pinned tools served with another definition, then drop hidden
        ones (and changed ones under ``on_change: hide``) in place; True if ``msg`` changed."""
        assert self.engine is not None
        engine, pins = self.engine, self.engine.policy.fingerprints
        if pins is None:
            return mcp.filter_tools(msg, engine.is_hidden)
        changes = self.pins.observe(mcp.listed_tools(msg), pins.tools)
        if changes:
            names = ", ".join(sorted({c.tool for c in changes}))
            flow.metadata["mcp.fingerprint_changed"] = names
            flow.marked = flow.marked or ":warning:"
            flow.comment = f"TOOL DEFINITION CHANGED ({pins.on_change}): {names}"
            for c in changes:
                log.warning(f"intercept: tool definition changed since it was pinned: tool={c.tool!r} "
                            f"pinned={c.pinned} served={c.served} on_change={pins.on_change}")
        hide = pins.on_change == "hide"
        return mcp.filter_tools(msg, lambda name: engine.is_hidden(name)
                                or (hide and self.pins.changed(name, pins.tools) is not None))

    def _annotate(self, flow: http.HTTPFlow, decision: Decision, arguments: Mapping[str, Any]) -> None:
        verdict = "allow" if decision.allowed else "deny"
        if flow.metadata.get("mcp.decision") != "deny":  # a batch's flow shows its denial, wherever it was
            flow.metadata["mcp.decision"] = verdict
            if decision.rule:
                flow.metadata["mcp.rule"] = decision.rule
        if not decision.allowed:
            flow.metadata["mcp.reason"] = decision.message
            if decision.retry_after is not None:
                flow.metadata["mcp.retry_after"] = decision.retry_after
            flow.marked = ":no_entry:"
            enforced = "" if self.enforcing else " (monitor: forwarded)"
            flow.comment = f"DENY {decision.tool} [{decision.rule}]: {decision.message}{enforced}"
        # Every log record is dispatched to every loaded addon, which costs more than the policy
        # check: allowed calls get an event-log line only on request (the decision log has them).
        if not decision.allowed or ctx.options.intercept_log_allowed:
            log.info(f"intercept: {verdict} tool={decision.tool} session={flow.metadata.get('mcp.session')} "
                     f"rule={decision.rule or '-'}" + (f" reason={decision.message!r}" if not decision.allowed else ""))
        self._notify(flow, decision, arguments)

    def _notify(self, flow: http.HTTPFlow, decision: Decision | None, arguments: Mapping[str, Any] | None) -> None:
        """Tell the decision hooks (log, status); a failing one must not change the decision."""
        for hook in self.decision_hooks:
            try:
                hook(flow, decision, arguments)
            except Exception:
                log.error(f"intercept: decision hook {hook!r} failed:\n{traceback.format_exc()}")

    def session_of(self, flow: http.HTTPFlow, headers: dict[str, str]) -> str:
        req = flow.request
        for source in self._identity:
            value: str | None = None
            if source == "mcp-session":
                value = headers.get("mcp-session-id")
                if value not in self.issued_sessions:
                    value = None
            elif source == "legacy-session":
                if "?" in req.path:
                    value = req.query.get("session_id") or req.query.get("sessionId")
            elif source == "agent-header":
                value = headers.get(ctx.options.intercept_agent_header.lower())
            elif source == "authorization":
                auth = headers.get("authorization")
                value = hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else None
            elif source == "client":
                value = flow.client_conn.peername[0] if flow.client_conn.peername else None
            if value:
                if len(value) > 128:  # client-chosen: keep counter keys small
                    value = hashlib.sha256(value.encode()).hexdigest()
                return f"{source}:{value}"
        return "anonymous"

    # -- responses -------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            resp = flow.response
            assert resp is not None
            issued = resp.headers.get("mcp-session-id")
            if issued and 200 <= resp.status_code < 300:
                self.issued_sessions[issued] = None
                self.issued_sessions.move_to_end(issued)
                if len(self.issued_sessions) > MAX_ISSUED_SESSIONS:
                    self.issued_sessions.popitem(last=False)
            if "text/event-stream" not in resp.headers.get("content-type", "").lower():
                return
            tracked = self.tracked.get(flow.id)
            if tracked is None:
                if flow.request.method == "GET":  # may be a legacy HTTP+SSE stream: never pass it unread
                    decode = encodings.stream_decoder(resp.headers)
                    if decode is None:
                        log.warning(f"intercept: event stream {flow.request.pretty_url} has Content-Encoding "
                                    f"{resp.headers['content-encoding']!r}, which cannot be inspected: refused")
                        self._fail_response(flow, body_to_come=True)
                        return
                    stream = self.legacy_streams[flow.id] = LegacyStream()
                    resp.stream = self._sse_stream(flow, self._legacy_transform(flow, stream),
                                                   lambda: self._legacy_end(flow),
                                                   must_inspect=lambda: self._must_inspect(stream), decode=decode,
                                                   owed=stream)
                else:
                    resp.stream = True  # not ours to inspect, but never buffer an event stream
                return
            decode = encodings.stream_decoder(resp.headers)
            if decode is None:
                return  # br/zstd despite our Accept-Encoding: identity: buffered, decoded within caps in `response`
            # A tools/list answer too large to filter must not pass: it could list hidden tools.
            resp.stream = self._sse_stream(flow, self._sse_transform(flow, tracked), lambda: self._finish(flow),
                                           must_inspect=lambda: bool(tracked.list_ids), decode=decode, owed=tracked)
        except Exception:
            log.error(f"intercept: internal error on response headers:\n{traceback.format_exc()}")
            self._fail_response(flow, body_to_come=True)

    def _sse_transform(self, flow: http.HTTPFlow, tracked: Tracked | LegacyStream):  # type: ignore[no-untyped-def]
        """Per event: settle the counters of answered calls, filter tools/list answers, and (legacy
        streams) put denials in place of the answers to the pings sent for denied calls."""

        def transform(event: SseEvent) -> bytes | None:
            if event.data is None:
                return None
            try:
                msg = jsonrpc.loads(event.data.encode("utf-8"), max_depth=512)
            except ProtocolError:
                return None
            if not isinstance(msg, dict) or "method" in msg or not jsonrpc.valid_id(msg.get("id")):
                return None  # not an answer to anything we sent (an object id is not even hashable)
            msg_id = msg["id"]
            if (settlement := self._settlement(tracked, msg_id, msg)) is not None:
                self._spawn(settlement)  # a stream callable cannot await
            denial = tracked.denials.pop(msg_id, None) if isinstance(tracked, LegacyStream) else None
            if denial is not None:
                tracked.list_ids.discard(msg_id)
                return _reframed(event, denial)
            if msg_id in tracked.list_ids:
                tracked.list_ids.discard(msg_id)
                if self.engine is not None and self._tools_list(flow, msg):
                    return _reframed(event, msg)
            return None

        return transform

    def _legacy_transform(self, flow: http.HTTPFlow, stream: LegacyStream):  # type: ignore[no-untyped-def]
        """Per event of a GET stream: learn a legacy POST endpoint, then answer for its messages."""
        answers = self._sse_transform(flow, stream)  # type: ignore[arg-type]

        def transform(event: SseEvent) -> bytes | None:
            if event.event == "endpoint" and event.data is not None:
                self._legacy_register(flow, stream, event.data)
                return None
            if event.event not in (None, "message") or event.data is None:
                return None
            return answers(event) if stream.key is not None else self._replayed(flow, event)

        return transform

    def _watches_tool_lists(self) -> bool:
        """Does the policy change or judge tools/list answers (hidden tools, pinned definitions)?"""
        policy = self.engine.policy if self.engine is not None else None
        return policy is not None and (bool(policy.hide) or policy.fingerprints is not None)

    def _must_inspect(self, stream: LegacyStream) -> bool:
        """Must every event of this GET stream be read? Legacy: while answers are owed. Streamable
        HTTP: whenever tool lists are watched, since a replayed tools/list may come (`_replayed`)."""
        return stream.pending > 0 if stream.key is not None else self._watches_tool_lists()

    def _replayed(self, flow: http.HTTPFlow, event: SseEvent) -> bytes | None:
        """An event on a Streamable HTTP GET stream. A resumed stream (Last-Event-ID) replays
        answers to earlier POSTs whose ids are no longer tracked: filter anything shaped like a
        tools/list result, so a reconnect cannot reveal hidden tools."""
        if not self._watches_tool_lists():
            return None
        try:
            msg = jsonrpc.loads(event.data.encode("utf-8"), max_depth=512)  # type: ignore[union-attr]
        except ProtocolError:
            return None
        if not isinstance(msg, dict) or "method" in msg or not mcp.listed_tools(msg):
            return None
        return _reframed(event, msg) if self._tools_list(flow, msg) else None

    def _legacy_register(self, flow: http.HTTPFlow, stream: LegacyStream, data: str) -> None:
        try:
            key = legacy.announced_key(flow.request.url, data)
        except ValueError:
            log.warning(f"intercept: unusable legacy endpoint {data!r}: its POSTs are not tied to the stream")
            return
        if stream.key is not None and self.legacy_endpoints.get(stream.key) is stream:
            del self.legacy_endpoints[stream.key]
        stream.key = key
        self.legacy_endpoints[key] = stream

    def _legacy_end(self, flow: http.HTTPFlow) -> None:
        """A GET stream is over: forget its endpoint; keep what it reserved (accepted calls may have run)."""
        stream = self.legacy_streams.pop(flow.id, None)
        if stream is None:
            return
        if stream.key is not None and self.legacy_endpoints.get(stream.key) is stream:
            del self.legacy_endpoints[stream.key]
        self._settle_later(stream.reservations.values(), keep=True)
        stream.reservations.clear()
        stream.list_ids.clear()
        stream.denials.clear()

    def _legacy_post_failed(self, flow: http.HTTPFlow) -> None:
        """A legacy POST was not accepted: nothing will answer its id on the stream."""
        key, msg_id = flow.metadata.pop("intercept.legacy")
        stream = self.legacy_endpoints.get(key)
        reservation = stream.forget(msg_id) if stream is not None else None
        if reservation is not None:
            self._settle_later([reservation], keep=False)

    def _sse_stream(self, flow: http.HTTPFlow, transform, end,  # type: ignore[no-untyped-def]
                    must_inspect=lambda: False, decode=lambda chunk: chunk, owed=None):
        """A stream callable; ``decode`` undoes the Content-Encoding; ``end()`` runs once when the
        stream is over or cut. Cut the stream on an event too large to inspect while ``must_inspect()``;
        a cut stream ends with an error event for each id ``owed`` (Tracked/LegacyStream) still awaits."""
        rewriter = SseRewriter(transform)
        failed = False

        def feed(chunk: bytes) -> bytes:
            nonlocal failed
            if failed:
                return b""
            try:
                data = decode(chunk)
                out = rewriter.feed(data) if data else b""  # feed(b"") means end of stream
                if chunk == b"":
                    out += rewriter.feed(b"")
                if rewriter.oversized_events and must_inspect():
                    raise RuntimeError("an event too large to inspect while answers are awaited")
                if chunk == b"":
                    end()
                return out
            except Exception:
                failed = True  # fail closed: nothing more of this stream reaches the client
                log.error(f"intercept: internal error in an event stream, stream cut:\n{traceback.format_exc()}")
                answers = _unanswered(owed) if owed is not None else b""
                end()
                return answers

        def stream(chunk: bytes) -> list[bytes]:
            # Never b"" for a chunk: over HTTP/1 chunked, mitmproxy writes it as the zero-length
            # chunk that ENDS the body, so holding back half an event would truncate the stream.
            out = feed(chunk)
            return [out] if out else []

        return stream

    def _settlement(self, tracked: Tracked | LegacyStream, msg_id: Any, msg: dict[str, Any]) -> Awaitable[None] | None:
        """The store update an answer calls for: commit on a result, roll back on an error."""
        reservation = tracked.reservations.pop(msg_id, None)
        if reservation is None or self.store is None:
            return None
        return self.store.rollback(reservation) if "error" in msg else self.store.commit(reservation)

    def _finish(self, flow: http.HTTPFlow) -> None:
        """The flow is over: keep whatever it reserved and never answered (the tool may have run)."""
        tracked = self.tracked.pop(flow.id, None)
        if tracked is not None:
            self._settle_later(tracked.reservations.values(), keep=True)

    def _settle_later(self, reservations: Any, *, keep: bool) -> None:
        """Commit (keep) or roll back reservations from a synchronous hook or stream callable."""
        if self.store is None:
            return
        for reservation in list(reservations):
            self._spawn(self.store.commit(reservation) if keep else self.store.rollback(reservation))

    def _spawn(self, work: Awaitable[None]) -> None:
        """Run a store update from synchronous code; kept referenced until done (see `done`)."""
        try:
            task = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        except RuntimeError:  # no loop (configured outside mitmproxy): nothing can be pending
            work.close()  # type: ignore[attr-defined]
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def response(self, flow: http.HTTPFlow) -> None:
        try:
            self._legacy_end(flow)  # a streamed GET's response hook runs once the stream is over
            if "intercept.legacy" in flow.metadata and flow.response is not None \
                    and not 200 <= flow.response.status_code < 300:
                self._legacy_post_failed(flow)
        except Exception:
            log.error(f"intercept: internal error on a legacy response:\n{traceback.format_exc()}")
        tracked = self.tracked.get(flow.id)
        if tracked is None or flow.response is None or flow.response.stream:
            return
        try:
            await self._inspect_response(flow, tracked)
        except Exception:
            log.error(f"intercept: internal error on a response:\n{traceback.format_exc()}")
            self._fail_response(flow)
        finally:
            self.tracked.pop(flow.id, None)

    async def _inspect_response(self, flow: http.HTTPFlow, tracked: Tracked) -> None:
        resp = flow.response
        assert resp is not None
        if resp.status_code >= 400:
            await self._release(tracked)
            return
        ctype = resp.headers.get("content-type", "").lower()
        content = encodings.decoded_response(resp.headers, resp.raw_content or b"")
        if "text/event-stream" in ctype:  # a compressed stream we had to buffer
            rewriter = SseRewriter(self._sse_transform(flow, tracked))
            resp.content = rewriter.feed(content) + rewriter.feed(b"")
        elif content.strip():
            try:
                value = jsonrpc.loads(content, max_depth=512)
            except ProtocolError:
                if tracked.list_ids:
                    raise
                value = None
            changed = False
            for msg in value if isinstance(value, list) else [value]:
                if isinstance(msg, dict) and jsonrpc.valid_id(msg.get("id")) and "method" not in msg:
                    if (settlement := self._settlement(tracked, msg["id"], msg)) is not None:
                        await settlement
                    if msg["id"] in tracked.list_ids and self.engine is not None:
                        changed |= self._tools_list(flow, msg)
            if changed:
                resp.content = jsonrpc.dumps(value)
        for reservation in tracked.reservations.values():  # 202 and friends: the call was accepted
            await self.store.commit(reservation)  # type: ignore[union-attr]

    async def _release(self, tracked: Tracked) -> None:
        for reservation in tracked.reservations.values():
            await self.store.rollback(reservation)  # type: ignore[union-attr]
        tracked.reservations.clear()

    def _fail_response(self, flow: http.HTTPFlow, *, body_to_come: bool = False) -> None:
        """Answer 502 in place of a response we could not inspect. ``body_to_come`` (from
        ``responseheaders``): mitmproxy would still read the upstream body into this response,
        so it is streamed and every upstream byte is swallowed."""
        self._finish(flow)
        body = jsonrpc.dumps(jsonrpc.error_body(None, INTERNAL_ERROR,
                                                f"{mcp.DENIED_PREFIX} the proxy could not inspect the response"))
        flow.response = http.Response.make(502, body, {"content-type": "application/json"})
        if body_to_come:
            pending = [body]

            def swallow(chunk: bytes) -> list[bytes]:
                # [] rather than b"": over HTTP/1 chunked, b"" would be written as the end of the body.
                return [pending.pop()] if pending else []

            flow.response.stream = swallow

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            self._legacy_end(flow)
            if "intercept.legacy" in flow.metadata:
                self._legacy_post_failed(flow)
        except Exception:
            log.error(f"intercept: internal error on a flow error:\n{traceback.format_exc()}")
        tracked = self.tracked.pop(flow.id, None)
        if tracked is not None:
            self._settle_later(tracked.reservations.values(), keep=False)
