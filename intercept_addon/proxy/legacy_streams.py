"""Live legacy HTTP+SSE streams, and which POSTs belong to them.

A GET event stream becomes a legacy stream when its first event announces an ``endpoint``
(later ``endpoint`` events are ignored: a server announces once). POSTs are tied to it by origin
and the exact announced spelling; a POST whose path matches an announced endpoint of that origin
only after normalisation is refused, since a lenient server may deliver it to a live stream
that the proxy would not count or filter it on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from mitmproxy import http

from intercept_addon.proxy.identity import Origin, origin_of
from intercept_addon.proxy.pending import Pending
from intercept_addon.wire import legacy
from intercept_addon.wire.jsonrpc import INVALID_REQUEST, ProtocolError
from intercept_addon.wire.text import shown

log = logging.getLogger("intercept")


@dataclass(slots=True)
class LegacyStream:
    origin: Origin
    url: str
    key: str | None = None  # the announced endpoint (legacy.endpoint_key)
    events: int = 0  # events seen: only the first may announce the endpoint
    pending: Pending = field(default_factory=Pending)
    server: str | None = None  # the server its GET was bound to (proxy/servers.py): its POSTs' too
    untied: bool = False  # it announced an endpoint the proxy cannot read


class LegacyStreams:
    def __init__(self) -> None:
        self._by_flow: dict[str, LegacyStream] = {}
        self._by_endpoint: dict[tuple[Origin, str], LegacyStream] = {}
        self._variants: Counter[tuple[Origin, str]] = Counter()  # announced endpoints, normalised
        self._untied: Counter[Origin] = Counter()  # live streams whose endpoint could not be read

    def opened(self, flow: http.HTTPFlow) -> LegacyStream:
        stream = self._by_flow[flow.id] = LegacyStream(origin_of(flow.request), flow.request.url,
                                                       server=flow.metadata.get("mcp.server"))
        return stream

    def announce(self, stream: LegacyStream, data: str) -> None:
        """The stream's first event named its POST endpoint."""
        try:
            key = legacy.announced_key(stream.url, data)
        except ValueError:
            # its POSTs could not be told from other POSTs to this server, nor judged under its
            # stream: while it lives, POSTs to this origin that match no stream are refused
            log.warning(f"intercept: unusable legacy endpoint {shown(data)}: POSTs to this server that belong to "
                        "no other stream are refused while this stream lives")
            stream.untied = True
            self._untied[stream.origin] += 1
            return
        stream.key = key
        self._by_endpoint[(stream.origin, key)] = stream
        self._variants[(stream.origin, legacy.variant_key(key))] += 1

    def closed(self, flow: http.HTTPFlow) -> LegacyStream | None:
        """The GET stream is over: its endpoint is forgotten; the caller settles what it owed."""
        stream = self._by_flow.pop(flow.id, None)
        if stream is not None and stream.untied:
            self._untied[stream.origin] -= 1
            if self._untied[stream.origin] <= 0:
                del self._untied[stream.origin]
        if stream is None or stream.key is None:
            return stream
        if self._by_endpoint.get((stream.origin, stream.key)) is stream:
            del self._by_endpoint[(stream.origin, stream.key)]
        variant = (stream.origin, legacy.variant_key(stream.key))
        self._variants[variant] -= 1
        if self._variants[variant] <= 0:
            del self._variants[variant]
        return stream

    def live(self) -> list[LegacyStream]:
        return list(self._by_flow.values())

    @property
    def endpoints(self) -> int:
        return len(self._by_endpoint)

    def for_post(self, request: http.Request) -> LegacyStream | None:
        """The live stream a POST belongs to, None if it belongs to none; refuses a POST that a
        lenient server may still deliver to a live stream."""
        if not self._variants and not self._untied:
            return None
        origin = origin_of(request)
        try:
            key = legacy.endpoint_key(request.url)
        except legacy.RepeatedSessionParam as exc:  # proxy and server could read different sessions
            raise ProtocolError(INVALID_REQUEST, str(exc)) from None
        stream = self._by_endpoint.get((origin, key))
        if stream is None:
            if (origin, legacy.variant_key(key)) in self._variants:
                raise ProtocolError(INVALID_REQUEST, "this endpoint matches a live legacy stream's only in another "
                                    "spelling; POST to the endpoint exactly as the stream announced it", status=400)
            if origin in self._untied:
                raise ProtocolError(INVALID_REQUEST, "a live legacy stream of this server announced an endpoint the "
                                    "proxy cannot read, so its POSTs cannot be judged under it", status=400)
            return None
        if stream.pending.size >= legacy.MAX_PENDING:
            raise ProtocolError(INVALID_REQUEST, "too many unanswered requests on this session", status=429)
        return stream
