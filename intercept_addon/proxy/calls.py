"""The request path: admit a body, judge each of its calls, then answer or forward.

Every reservation a request makes is owned by the ledger from the moment it is made. The one
``finally`` in :meth:`CallJudge.judge` releases whatever was not handed to the server, so a
request refused or denied at any point, even by an internal error, spends no quota; only the
last step of forwarding marks its tickets forwarded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from intercept_addon.policy.engine import SERVER_SEP, Call
from intercept_addon.proxy.continuations import arguments_key, retry_state
from intercept_addon.proxy.identity import Who
from intercept_addon.proxy.legacy_streams import LegacyStream
from intercept_addon.proxy.pending import OwedCall, Pending
from intercept_addon.proxy.servers import Binding
from intercept_addon.proxy.tokens import TokenError
from intercept_addon.proxy.verdicts import reply
from intercept_addon.wire import admission, jsonrpc, legacy, mcp
from intercept_addon.wire.admission import Admitted
from intercept_addon.wire.jsonrpc import INVALID_REQUEST, Message, ProtocolError, id_key
from intercept_addon.wire.text import escaped, shown

if TYPE_CHECKING:
    from intercept_addon.proxy.addon import InterceptAddon

Denial = tuple[int, dict[str, Any]]  # (HTTP status, JSON-RPC body) answered locally


def header_map(headers: http.Headers) -> dict[str, str]:
    """Lower-cased name -> value, repeats joined with ", " as ``Headers.get`` does. Read once per
    request: every ``Headers`` lookup scans and case-folds all fields."""
    out: dict[str, str] = {}
    for name, value in headers.items(multi=True):
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class CallJudge:
    def __init__(self, core: InterceptAddon) -> None:
        self.core = core

    async def judge(self, flow: http.HTTPFlow) -> None:
        core, req = self.core, flow.request
        if req.authority and req.http_version.startswith("HTTP/1") and isinstance(flow.client_conn.proxy_mode,
                                                                                 ReverseMode):
            # an HTTP/1 absolute-form target would reach the upstream as sent, and a gateway there
            # could route it to a host never judged (HTTP/2's :authority is the Host: it stays)
            req.authority = ""
        if req.method == "GET" and "text/event-stream" in req.headers.get("accept", "").lower():
            req.headers["accept-encoding"] = "identity"  # a legacy stream must be readable
            if core.toollists.active:  # its answers are filtered for this caller, under its server's policy
                await self.bind(flow, None)
                core.stream_callers[flow.id] = await self.who(flow, header_map(req.headers), None)
        # Every body is judged, whatever the method: a lenient server may route PUT or PATCH
        # to its JSON-RPC handler too. Bodiless requests (GET streams, DELETE) carry no call.
        if req.method != "POST" and not req.raw_content:
            return
        headers = header_map(req.headers)
        admitted = admission.admit(req.raw_content or b"", headers, core.settings.limits)
        if admitted is None:
            return  # not MCP: forwarded as it came
        stream = core.legacy.for_post(req)
        if stream is not None:
            _check_legacy(admitted, stream)
        answering = None if admitted.batch else admitted.messages[0].id
        binding = await self.bind(flow, answering)
        if stream is not None and stream.server is not None and core.toollists.servers.bound:
            binding = core.toollists.servers.of_stream(flow, stream.server)
        who = await self.who(flow, headers, stream.key if stream is not None else None, answering=answering)
        pending = Pending(caller=who)
        try:
            denials = [await self._message(flow, admitted, i, who, binding, pending)
                       for i in range(len(admitted.messages))]
            if stream is not None:
                self._legacy_post(flow, admitted, denials[0], pending, stream)
            elif any(denials):
                _deny(flow, admitted, denials)
            else:
                self._forward(flow, admitted, pending)
        finally:
            for ticket in pending.tickets():
                if not ticket.forwarded:
                    core.counters.ledger.release(ticket)

    async def bind(self, flow: http.HTTPFlow, answering: str | int | None) -> Binding:
        """The policy that governs the flow's server; a refusal answers request id ``answering``."""
        try:
            return await self.core.toollists.servers.of(flow)
        except ProtocolError as exc:
            exc.id = answering
            raise

    async def who(self, flow: http.HTTPFlow, headers: dict[str, str], legacy_key: str | None,
                  answering: str | int | None = None) -> Who:
        """The caller, noted on the flow. A token that fails verification (when configured) is
        refused with 401 (answering request id ``answering``): it never reaches the server."""
        core = self.core
        user = None
        if core.tokens is not None:
            try:
                user = await core.tokens.verify(headers.get("authorization"))
            except TokenError as exc:
                raise ProtocolError(INVALID_REQUEST, f"authorization refused: {exc}", status=401,
                                    id=answering) from None
        who = await core.identities.of(flow, headers, core.settings.identity, core.settings.agent_header,
                                       legacy_key, user)
        meta = flow.metadata
        meta["mcp.agent"] = who.agent
        if who.user is not None:
            meta["mcp.user"] = who.user
        if who.mcp_session is not None:
            meta["mcp.session"] = who.mcp_session
        if who.process is not None:
            meta["mcp.process"] = f"{escaped(who.process.name)} (pid {who.process.pid})"  # the process names itself
        return who

    async def _message(self, flow: http.HTTPFlow, admitted: Admitted, index: int, who: Who, binding: Binding,
                       pending: Pending) -> Denial | None:
        """Judge one message; return the local reply if it is denied."""
        core, msg = self.core, admitted.messages[index]
        flow.metadata.setdefault("mcp.method", msg.method or "(response)")
        if msg.method == "tools/list" and msg.kind == "request":
            pending.lists[id_key(msg.id)] = msg.id  # type: ignore[assignment]
            return None
        guarded = admitted.guarded.get(index)
        if guarded is not None:
            return await self._section(flow, admitted, msg, guarded, who, binding, pending)
        call = admitted.calls.get(index)
        if call is None:
            return None
        tools = flow.metadata.get("mcp.tool")  # a batch's flow names every tool it calls
        if tools is None or call.name not in tools.split(", "):
            flow.metadata["mcp.tool"] = call.name if tools is None else f"{tools}, {call.name}"
        engine, store = binding.engine, core.counters.store
        if engine is None:
            flow.metadata["mcp.decision"] = "inspect"
            return None
        is_retry, state = retry_state(msg.params)
        credit = f"{binding.server}{SERVER_SEP}{who.agent}" if binding.server else who.agent  # one server's credits
        counted = not (is_retry and core.continuations.take(credit, call.name, arguments_key(call.arguments), state))
        decision = core.toollists.pin_decision(flow, binding, call.name) \
            or core.toollists.schema_decision(flow, binding, call.name, call.arguments) or await engine.evaluate(
            Call(who.agent, call.name, call.arguments, who.user, who.claims, who.mcp_session, binding.server),
            store, count=counted)  # type: ignore[arg-type]
        ticket = None
        if decision.reservation is not None and decision.reservation.applied:
            ticket = core.counters.ledger.open(store, decision.reservation)  # type: ignore[arg-type]
        ruled = engine.answer_rules(call.name) is not None
        if ticket is not None or not counted or ruled:  # its answer settles it, may ask again, or is ruled
            meta = (msg.params or {}).get("_meta")
            token = meta.get("progressToken") if isinstance(meta, dict) else None
            pending.calls[id_key(msg.id)] = OwedCall(msg.id, credit, call.name, ticket,  # type: ignore[arg-type]
                                                     id_key(token) if token is not None else None, call.arguments,
                                                     ruled=ruled)
        if decision.kind == "ask" and core.settings.enforcing:  # held, its ticket open, until a person answers
            decision = await core.approvals.ask(flow, decision, who.agent, binding.server, call.arguments)
        core.verdicts.annotate(flow, decision, call.arguments, core.settings)
        if decision.allowed or not core.settings.enforcing:
            return None
        return core.verdicts.denial(msg.id, decision, core.settings, admitted.revision, engine.policy.deny_as)

    async def _section(self, flow: http.HTTPFlow, admitted: Admitted, msg: Message, request: mcp.GuardedRequest,
                       who: Who, binding: Binding, pending: Pending) -> Denial | None:
        """A resources/read, prompts/get or completion/complete, judged by its policy section
        (none written: it passes as before). Its counters settle on its answer, as a call's do."""
        core = self.core
        flow.metadata.setdefault("mcp.target", request.key)
        governed = binding.governed
        if governed is None:
            return None
        ruled = request.section != "completion" and governed.engine.answer_rules(None) is not None
        engine = governed.sections.get(request.section)
        if engine is None:
            if ruled:  # no rules for the request, some for what it brings back
                pending.calls[id_key(msg.id)] = OwedCall(msg.id, who.agent, request.key, None,  # type: ignore[arg-type]
                                                         section=request.section, ruled=True)
            return None
        decision = await engine.evaluate(Call(who.agent, request.key, request.arguments, who.user, who.claims,
                                              who.mcp_session, binding.server), core.counters.store)  # type: ignore[arg-type]
        ticket = None
        if decision.reservation is not None and decision.reservation.applied:
            ticket = core.counters.ledger.open(core.counters.store, decision.reservation)  # type: ignore[arg-type]
        if ticket is not None or ruled:
            pending.calls[id_key(msg.id)] = OwedCall(msg.id, who.agent, request.key, ticket,  # type: ignore[arg-type]
                                                     section=request.section, ruled=ruled)
        core.verdicts.annotate(flow, decision, request.arguments, core.settings)
        if decision.allowed or not core.settings.enforcing:
            return None
        return core.verdicts.denial(msg.id, decision, core.settings, admitted.revision, "error")  # not a tool result

    def _forward(self, flow: http.HTTPFlow, admitted: Admitted, pending: Pending) -> None:
        req = flow.request
        if pending or self.core.toollists.watched:  # any answer may carry a tools/list: read it
            self.core.flows[flow.id] = pending
            req.headers["accept-encoding"] = "identity"  # answers must be readable
        if admitted.forwarded != req.raw_content:  # exactly what was judged (most clients send just that)
            req.content = admitted.forwarded
        self.core.counters.ledger.forwarded(pending.tickets())  # last: from here the quota is spent

    def _legacy_post(self, flow: http.HTTPFlow, admitted: Admitted, denial: Denial | None, pending: Pending,
                     stream: LegacyStream) -> None:
        """Legacy HTTP+SSE: the POST only gets 202; answers, denials included, travel on the stream."""
        msg = admitted.messages[0]
        key = id_key(msg.id)
        if denial is not None:
            stream.pending.denials[key] = denial[1]
            flow.request.content = jsonrpc.dumps(legacy.ping(msg.id))  # type: ignore[arg-type]
        else:
            flow.request.content = admitted.forwarded
            stream.pending.merge(pending)
        if msg.kind == "request":
            self.core.legacy_posts[flow.id] = (stream, key)
        if denial is None:
            self.core.counters.ledger.forwarded(pending.tickets())


def _check_legacy(admitted: Admitted, stream: LegacyStream) -> None:
    if admitted.batch:
        raise ProtocolError(INVALID_REQUEST, "batches are not part of the legacy HTTP+SSE transport")
    msg = admitted.messages[0]
    if msg.kind == "request" and stream.pending.owes(msg.id):
        raise ProtocolError(INVALID_REQUEST, f"request id {shown(str(msg.id))} is still unanswered on this session",
                            id=msg.id)


def _deny(flow: http.HTTPFlow, admitted: Admitted, denials: list[Denial | None]) -> None:
    """Nothing of a batch goes upstream once one element is denied."""
    if not admitted.batch:
        reply(flow, *denials[0])  # type: ignore[misc]
        return
    skipped = f"{mcp.DENIED_PREFIX} not forwarded: another call in this batch was denied"
    replies = [d[1] if d else jsonrpc.error_body(m.id, mcp.DENIED_CODE, skipped)
               for m, d in zip(admitted.messages, denials) if d or m.kind == "request"]
    reply(flow, 200, replies)
