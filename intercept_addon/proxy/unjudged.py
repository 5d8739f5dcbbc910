"""Traffic the policy cannot judge is refused, not passed through.

The policy judges HTTP requests. mitmproxy also carries other traffic, which no request hook
ever sees:

- raw TCP: inside a CONNECT tunnel (and in transparent mode) mitmproxy picks HTTP or raw TCP from
  the first bytes alone, so a first segment of two bytes (``PO`` then ``ST ...``) or a leading
  empty line (``\\r\\nPOST``, which Node's parser skips) makes a request raw TCP; so are UDP, DNS
  and raw QUIC. ``next_layer`` lets mitmproxy decide, then replaces such a layer with one that
  closes the connection. (``flow.kill()`` in ``tcp_start`` would do nothing: mitmproxy's TCP layer
  never looks at it and relays anyway.)
- protocol upgrades (WebSocket with or without a subprotocol, h2c, anything with an ``Upgrade``
  header): answered 403 with a JSON-RPC error; and a 101 the server sends anyway is replaced by a
  502 before mitmproxy switches to the new protocol (its WebSocket layer ignores a kill as well).
- request trailers (HTTP/2 and 3 here; HTTP/1 ones in ``trailers``): 400, always;
- header fields holding CR, LF or NUL: 400, always. mitmproxy keeps an HTTP/1 obs-fold line
  (``X-A: b`` then `` Transfer-Encoding: chunked``) inside the previous value and forwards it
  as is; a server reading that line as a field of its own frames the body otherwise (chunked,
  not by Content-Length), and the body's tail becomes a request nobody judged (smuggling).

Hosts in ``intercept_unjudged_hosts`` pass unjudged; so does all of it but trailers while the
addon is not enforcing (no policy, or monitor mode), logged. One log line per host and kind.

At load, a check is scheduled for options mitmproxy silently dropped (``deferred_options``): the
proxy then refuses to start.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers import DNSLayer, RawQuicLayer, TCPLayer, UDPLayer

from intercept_addon.proxy import deferred_options, trailers
from intercept_addon.proxy.local_reply import local_response
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.text import escaped, shown

log = logging.getLogger("intercept")

OPTION = "intercept_unjudged_hosts"
MAX_REPORTED = 1024  # (kind, host) pairs already logged
RAW_LAYERS = {TCPLayer: "raw TCP", UDPLayer: "UDP", DNSLayer: "DNS", RawQuicLayer: "raw QUIC"}
FIELD_BREAK = re.compile(rb"[\r\n\0]")
BROKEN_FIELD = ("a header field holding a line break or NUL (an obs-fold line, a bare CR) may be read "
                "otherwise by the server than by the policy proxy; send each field on one line")


def raw_kind(top: layer.Layer | None) -> str | None:
    """What raw protocol a proposed layer stack ends in (TLS layers wrap it), or None for one the
    addon sees into (HTTP). mitmproxy's own --ignore-hosts layers carry no flow and pass."""
    while top is not None:
        kind = RAW_LAYERS.get(type(top))
        if kind is not None:
            return kind if getattr(top, "flow", True) is not None else None
        top = getattr(top, "child_layer", None)
    return None


def broken_field(headers: http.Headers) -> bool:
    """Some field's name or value holds CR, LF or NUL (HTTP/1 obs-fold, a bare CR)."""
    return any(FIELD_BREAK.search(name) or FIELD_BREAK.search(value) for name, value in headers.fields)


def opted_out(host: str, globs: Sequence[str]) -> bool:
    host = host.lower()
    return any(fnmatch.fnmatchcase(host, glob) for glob in globs)


class Closed(layer.Layer):
    """In place of a raw layer: closes the connection at its first event; relays nothing."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        for conn in (self.context.client, self.context.server):
            if conn.connected:
                yield commands.CloseConnection(conn)


class UnjudgedTraffic:
    name = "intercept_unjudged"

    def __init__(self, intercept: Any) -> None:
        self.intercept = intercept  # its .enforcing says whether refusals apply
        self.globs: tuple[str, ...] = ()
        self.reported: OrderedDict[tuple[str, str], None] = OrderedDict()

    def load(self, loader: Any) -> None:
        loader.add_option(OPTION, Sequence[str], [],
                          "Host globs (fnmatch, case-insensitive, e.g. '*.example.com') whose raw TCP/UDP "
                          "connections and protocol upgrades (WebSocket, h2c) pass unjudged. Everything "
                          "else the policy cannot read is refused.")
        trailers.install()
        # Runs once this script's registration is over, whether process_deferred succeeded or not
        # (if it failed, no hook of this script ever runs).
        ctx.master.event_loop.call_soon(self._refuse_to_start_if_options_were_dropped)

    def configure(self, updated: set[str]) -> None:
        if OPTION in updated:
            self.globs = tuple(g.strip().lower() for g in getattr(ctx.options, OPTION) if g.strip())

    def done(self) -> None:
        trailers.uninstall()

    def _refuse_to_start_if_options_were_dropped(self) -> None:
        prefix = "intercept_"
        problems = deferred_options.unapplied(ctx.options, prefix) + deferred_options.unknown(ctx.options, prefix)
        if problems:
            for line in problems:
                log.error(f"intercept: {line}")
            log.error("intercept: options were not applied, so the policy may not be in force; not started")
            sys.exit(1)  # at once: no request may pass before mitmproxy's own error check would run

    # -- raw connections -------------------------------------------------------------------

    def next_layer(self, nextlayer: Any) -> None:
        decide = ctx.master.addons.get("nextlayer")  # mitmproxy's own addon: it decides, then we judge
        if nextlayer.layer is None and decide is not None:
            decide.next_layer(nextlayer)
        kind = raw_kind(nextlayer.layer)
        if kind is None:
            return
        address = nextlayer.context.server.address
        if self._refuses(kind, str(address[0]) if address else ""):
            nextlayer.layer = Closed(nextlayer.context)

    # -- HTTP ------------------------------------------------------------------------------

    def check_request(self, flow: http.HTTPFlow) -> None:
        """Called by the InterceptAddon's request hook, first (this addon has no per-flow hooks:
        each one mitmproxy dispatches costs every call)."""
        req = flow.request
        if broken_field(req.headers):  # always: what the server reads is not what was judged
            self._answer(flow, 400, BROKEN_FIELD)
        elif "upgrade" in req.headers:
            if self._refuses("protocol upgrade", req.host):
                self._answer(flow, 403, f"an upgrade to {shown(req.headers['upgrade'], 60)} (WebSocket, h2c, ...) "
                             f"is not judged by the policy proxy, which judges MCP over HTTP only; "
                             + self._hint(req.host))
        elif req.trailers:  # HTTP/2 and 3; always: mitmproxy could not pass them to an HTTP/1 server
            self._answer(flow, 400, trailers.REQUEST_REFUSED)

    def check_response(self, flow: http.HTTPFlow) -> None:
        # A server may switch protocols without being asked (no Upgrade header): the bytes that
        # follow would be relayed unjudged. Refused before mitmproxy switches.
        if flow.response is not None and flow.response.status_code == 101 \
                and self._refuses("protocol switch (101)", flow.request.host):
            flow.websocket = None
            self._answer(flow, 502, f"the server at {escaped(flow.request.host)} switched protocols; what follows "
                         "would not be judged by the policy proxy, so the connection is closed; "
                         + self._hint(flow.request.host))

    # -- shared ----------------------------------------------------------------------------

    def _refuses(self, kind: str, host: str) -> bool:
        """Whether to refuse ``kind`` of traffic to ``host``; logs the first time per host."""
        if opted_out(host, self.globs):
            return False
        enforcing = self.intercept.enforcing
        key = (kind, host.lower())
        if key not in self.reported:
            self.reported[key] = None
            if len(self.reported) > MAX_REPORTED:
                self.reported.popitem(last=False)
            what = f"intercept: {kind} to {escaped(host) or 'an unknown host'}"
            if enforcing:
                log.warning(f"{what} refused: the policy cannot judge it; {self._hint(host)}; "
                            "further ones to this host are not logged")
            else:
                log.warning(f"{what} passed unjudged (not enforcing); further ones are not logged")
        return enforcing

    @staticmethod
    def _hint(host: str) -> str:
        return (f"to let this host's non-HTTP traffic through unjudged, start the proxy with "
                f"--set {OPTION}={escaped(host)} (or --ignore-hosts)")

    @staticmethod
    def _answer(flow: http.HTTPFlow, status: int, reason: str) -> None:
        message = f"{mcp.DENIED_PREFIX} {reason}"
        flow.metadata["mcp.decision"] = "refused"
        flow.metadata["mcp.reason"] = reason
        flow.comment = f"REFUSED: {reason}"
        flow.marked = ":no_entry:"
        flow.response = local_response(status, jsonrpc.dumps(jsonrpc.error_body(None, mcp.DENIED_CODE, message)),
                                       {"connection": "close"})
