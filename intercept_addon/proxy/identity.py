"""Who is calling: the identity counters are kept per (``scope: session``).

Sources, tried in the configured order (``intercept_identity``), first present wins:
* ``mcp-session``: an ``Mcp-Session-Id`` that the same origin (scheme, host, port) issued. An
  id the client made up, or one another server issued (in regular mode a site the agent
  controls), is no session: a client cannot mint fresh budgets.
* ``legacy-session``: the stream of a legacy HTTP+SSE endpoint the POST went to. A query
  ``session_id`` anywhere else means nothing.
* ``agent-header``, ``authorization`` (a hash of the header), ``client`` (the peer address).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from mitmproxy import http

MAX_ISSUED_SESSIONS = 100_000
MAX_VALUE_LENGTH = 128  # client-chosen: keep counter keys small

Origin = tuple[str, str, int]


def origin_of(request: http.Request) -> Origin:
    return request.scheme, request.host.lower(), request.port


class Identities:
    def __init__(self) -> None:
        self._issued: OrderedDict[tuple[Origin, str], None] = OrderedDict()  # oldest first, bounded

    def note_issued(self, flow: http.HTTPFlow) -> None:
        """A 2xx answer carrying ``Mcp-Session-Id``: that origin issued the session."""
        resp = flow.response
        assert resp is not None
        issued = resp.headers.get("mcp-session-id")
        if not issued or not 200 <= resp.status_code < 300:
            return
        key = (origin_of(flow.request), issued)
        self._issued[key] = None
        self._issued.move_to_end(key)
        if len(self._issued) > MAX_ISSUED_SESSIONS:
            self._issued.popitem(last=False)

    def of(self, flow: http.HTTPFlow, headers: dict[str, str], sources: tuple[str, ...], agent_header: str,
           legacy_key: str | None) -> str:
        """The identity of a request. ``legacy_key``: the live legacy stream its POST goes to."""
        if legacy_key is not None:
            # On a legacy endpoint the stream is the session: an Mcp-Session-Id header there is
            # ignored by the server, so it must not mint fresh per-session budgets either.
            return f"legacy-session:{legacy_key}"
        for source in sources:
            value: str | None = None
            if source == "mcp-session":
                value = headers.get("mcp-session-id")
                if value is not None and (origin_of(flow.request), value) not in self._issued:
                    value = None
            elif source == "agent-header":
                value = headers.get(agent_header)
            elif source == "authorization":
                auth = headers.get("authorization")
                value = hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else None
            elif source == "client":
                value = flow.client_conn.peername[0] if flow.client_conn.peername else None
            if value:
                if len(value) > MAX_VALUE_LENGTH:
                    value = hashlib.sha256(value.encode()).hexdigest()
                return f"{source}:{value}"
        return "anonymous"
