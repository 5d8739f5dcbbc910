"""The legacy HTTP+SSE transport (MCP 2024-11-05): which POST endpoint belongs to which stream.

The client GETs an event stream; its first ``endpoint`` event names the URL to POST messages to
(``/messages/?session_id=…`` in the Python SDK, ``/message?sessionId=…`` in the TypeScript SDK).
Each POST is answered ``202 Accepted``; the JSON-RPC answers arrive as ``message`` events on the
stream. So a denial must travel on the stream too: the denied request is forwarded as a ``ping``
with the same id (the server answers it without running anything), and that answer is replaced
by the denial. This module holds the per-stream bookkeeping; the mitmproxy glue is in addon.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

from intercept_addon.state import Reservation

SESSION_PARAMS = ("session_id", "sessionId")  # Python SDK, TypeScript SDK
MAX_PENDING = 4096  # unanswered requests per stream; more is refused, so memory stays bounded


class RepeatedSessionParam(ValueError):
    """A session parameter given twice: proxy and server could pick different values."""


@dataclass
class LegacyStream:
    """One legacy GET stream and what the messages POSTed to its endpoint wait for.

    Has the same ``reservations``/``list_ids`` as the addon's ``Tracked``, plus the denials to
    substitute for the answers of the pings sent in place of denied calls.
    """

    key: str | None = None  # endpoint_key of the announced POST endpoint
    reservations: dict[str | int, Reservation] = field(default_factory=dict)
    list_ids: set[str | int] = field(default_factory=set)
    denials: dict[str | int, dict[str, Any]] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return len(self.reservations) + len(self.list_ids) + len(self.denials)

    def forget(self, msg_id: str | int) -> Reservation | None:
        """Drop everything waiting for ``msg_id``; return its reservation, if any."""
        self.list_ids.discard(msg_id)
        self.denials.pop(msg_id, None)
        return self.reservations.pop(msg_id, None)


def endpoint_key(url: str) -> str:
    """The key of a POST endpoint: its path plus the session parameter, if it has one.

    Raises RepeatedSessionParam if a session parameter occurs more than once.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    for name in SESSION_PARAMS:
        values = [v for k, v in pairs if k == name]
        if len(values) > 1:
            raise RepeatedSessionParam(f"query parameter {name} is repeated")
        if values:
            return f"{parts.path}?{name}={values[0]}"
    return parts.path


def announced_key(stream_url: str, data: str) -> str:
    """The endpoint key announced by an ``endpoint`` event, resolved against the stream's URL."""
    return endpoint_key(urljoin(stream_url, data.strip()))


def ping(msg_id: str | int) -> dict[str, Any]:
    """What a denied request is forwarded as: the server answers this id, and runs nothing."""
    return {"jsonrpc": "2.0", "id": msg_id, "method": "ping"}
