"""The mitmproxy addon: hooks that dispatch to the components, each behind one fail-closed guard.

mitmproxy forwards a flow whose hook raised, so every hook body runs inside ``_guard``: on any
error the request is refused (500), or the response replaced by a 502, never passed on unjudged.

Components (one concern each): settings (options), PolicySources (the files), ToolLists (the
policy of each server, hidden tools and pins), Counters (store + ledger), Identities, LegacyStreams,
CallJudge (requests), ResponseJudge and Answers (what comes back), Verdicts (flow notes,
replies, decision hooks), Continuations (multi-round-trip calls).

This is the one addon with per-flow hooks: mitmproxy charges every call for each hook it
dispatches, so the transport guard (UnjudgedTraffic), the flow list's comments (Timeline) and
the viewer's copy of streams (McpViewer) are called from these hooks, in that order, not
dispatched to separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from mitmproxy import ctx, http

from intercept_addon.proxy import settings as options
from intercept_addon.proxy.answers import Answers
from intercept_addon.proxy.approvals import Approvals
from intercept_addon.proxy.calls import CallJudge
from intercept_addon.proxy.contentview import McpViewer
from intercept_addon.proxy.continuations import Continuations
from intercept_addon.proxy.counters import Counters
from intercept_addon.proxy.heap import Heap
from intercept_addon.proxy.identity import Identities
from intercept_addon.proxy.legacy_streams import LegacyStream, LegacyStreams
from intercept_addon.proxy.pending import Pending
from intercept_addon.proxy.policy_sources import PolicySources
from intercept_addon.proxy.responses import ResponseJudge
from intercept_addon.proxy.server_requests import ServerRequests, post_to_server
from intercept_addon.proxy.settings import Settings
from intercept_addon.proxy.streams import fail_response
from intercept_addon.proxy.timeline import Timeline
from intercept_addon.proxy.tokens import TokenVerifier
from intercept_addon.proxy.toollists import ToolLists
from intercept_addon.proxy.unjudged import UnjudgedTraffic
from intercept_addon.proxy.verdicts import Verdicts
from intercept_addon.wire.jsonrpc import INTERNAL_ERROR, ProtocolError

log = logging.getLogger("intercept")


class InterceptAddon:
    name = "intercept_addon"

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.toollists = ToolLists()
        self.heap = Heap()
        self.policy = PolicySources(self._use_policies)  # counters live in the store: a reload keeps them
        self.counters = Counters()
        self.identities = Identities()
        self.legacy = LegacyStreams()
        self.verdicts = Verdicts()
        self.continuations = Continuations()
        # addons of their own too (options, commands, raw layers): addons() lists them
        self.approvals = Approvals()
        self.unjudged = UnjudgedTraffic(self)
        self.viewer = McpViewer()
        self.timeline = Timeline()  # no addon: only these hooks call it
        self.server_requests = ServerRequests(self.counters.ledger, self.toollists, lambda: self.counters.store,
                                              self.verdicts.notify, self.verdicts.lines.info, post_to_server)
        self.answers = Answers(self.counters.ledger, self.toollists, self.continuations, self.verdicts.notify,
                               self.server_requests)
        self.calls = CallJudge(self)
        self.responses = ResponseJudge(self)
        self.flows: dict[str, Pending] = {}  # forwarded requests still owed an answer
        self.legacy_posts: dict[str, tuple[LegacyStream, Any]] = {}  # POST flow -> (its stream, id key)
        self.stream_callers: dict[str, Any] = {}  # GET event-stream flow -> its caller (a Who), until answered
        self.tokens: TokenVerifier | None = None
        self._running = False
        self._background: set[asyncio.Task[None]] = set()  # verifier starts and closes after a change

    # -- what other addons read ------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self.counters.store

    @property
    def enforcing(self) -> bool:
        return self.settings is not None and self.settings.enforcing

    @property
    def decision_hooks(self) -> list[Callable[..., None]]:
        return self.verdicts.hooks

    def owed(self) -> dict[str, int]:
        """What the proxy still waits for from servers: every count drains to 0 once they answer."""
        streams = self.legacy.live()
        return {"flows": len(self.flows), "legacy_streams": len(streams), "legacy_endpoints": self.legacy.endpoints,
                "calls": sum(len(s.pending.calls) for s in streams), "lists": sum(len(s.pending.lists) for s in streams),
                "denials": sum(len(s.pending.denials) for s in streams), "tickets": self.counters.ledger.pending}

    def reload_policy(self) -> bool:
        return self.policy.reload()

    def _use_policies(self, policies: Any) -> None:
        self.toollists.use(policies)
        self.heap.freeze()  # the replaced policies are collected, the new ones frozen

    # -- lifecycle -------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        options.declare(loader)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        self.settings = options.read(opts)
        options.check_mitmproxy_options(opts, updated)
        self.toollists.servers.configure(self.settings.unnamed_server, self.settings.reverse, opts.ssl_insecure)
        if any(o.startswith("intercept_jwt_") for o in updated):
            self._use_tokens(TokenVerifier.from_options(opts))
        self.counters.configure(opts, updated)
        self.heap.configure(opts.intercept_gc_freeze)
        if "intercept_policy" in updated:
            self.policy.configure(opts.intercept_policy)

    async def running(self) -> None:
        self._running = True
        self.policy.start()
        if self.tokens is not None:
            await self.tokens.start()
        self.heap.start()  # last: what start-up made is alive by now

    def _use_tokens(self, tokens: TokenVerifier | None) -> None:
        """Swap the verifier; once running, the new one starts and the old one closes in the background."""
        old, self.tokens = self.tokens, tokens
        if not self._running:
            return
        loop = asyncio.get_running_loop()
        for work in ([tokens.start()] if tokens is not None else []) + ([old.close()] if old is not None else []):
            task = loop.create_task(work)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def done(self) -> None:
        await self.policy.stop()
        if self.tokens is not None:
            await self.tokens.close()
        await self.counters.close()

    async def server_connect(self, data: Any) -> None:
        await self.toollists.servers.pin(data.server)  # the address judged is the address connected

    def client_disconnected(self, client: Any) -> None:
        self.identities.processes.forget(client)

    # -- hooks -----------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        try:
            self.unjudged.check_request(flow)
            if flow.response is None:
                await self.calls.judge(flow)
        except ProtocolError as exc:
            self.verdicts.refuse(flow, exc, self.settings)  # type: ignore[arg-type]
        except Exception:
            log.error(f"intercept: internal error, request refused:\n{traceback.format_exc()}")
            self.verdicts.refuse(flow, ProtocolError(INTERNAL_ERROR, "internal policy error; the request was "
                                                     "not forwarded", status=500), self.settings)  # type: ignore[arg-type]
        self.timeline.requested(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        with self._guard(flow, body_to_come=True):
            self.responses.headers(flow)
        self.viewer.streaming(flow)

    async def response(self, flow: http.HTTPFlow) -> None:
        with self._guard(flow):
            self.unjudged.check_response(flow)
            self._legacy_flow_over(flow)
            pending = self.flows.get(flow.id)
            try:
                if pending is not None and flow.response is not None and not flow.response.stream:
                    await self.responses.body(flow, pending)
            finally:
                self.responses.end(flow)
        self.timeline.answered(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        with self._guard(flow, answer=False):
            self._legacy_flow_over(flow)
            self.responses.end(flow)
        self.viewer.cut(flow)

    def _legacy_flow_over(self, flow: http.HTTPFlow) -> None:
        self.stream_callers.pop(flow.id, None)
        self.responses.get_stream_end(flow)  # a streamed GET's hooks run once the stream is over
        post = self.legacy_posts.pop(flow.id, None)
        if post is not None:
            self.responses.legacy_post_done(flow, *post)

    @contextlib.contextmanager
    def _guard(self, flow: http.HTTPFlow, *, body_to_come: bool = False, answer: bool = True) -> Iterator[None]:
        """Fail closed: an answer the proxy failed to judge is replaced by a 502, and whatever
        the flow owed is kept (the server may have run it)."""
        try:
            yield
        except Exception:
            log.error(f"intercept: internal error on a response, answered 502:\n{traceback.format_exc()}")
            self.responses.end(flow)
            if answer:
                fail_response(flow, body_to_come=body_to_come)
