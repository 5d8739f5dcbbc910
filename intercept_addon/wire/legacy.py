"""The legacy HTTP+SSE transport (MCP 2024-11-05): which POST endpoint belongs to which stream.

The client GETs an event stream; its first ``endpoint`` event names the URL to POST messages to
(``/messages/?session_id=…`` in the Python SDK, ``/message?sessionId=…`` in the TypeScript SDK).
Each POST is answered ``202 Accepted``; the JSON-RPC answers arrive as ``message`` events on the
stream. So a denial must travel on the stream too: the denied request is forwarded as a ``ping``
with the same id (the server answers it without running anything), and that answer is replaced
by the denial.

Servers read the session parameter leniently (the Python SDK parses it with ``uuid.UUID``, which
ignores case, hyphens, braces and ``urn:uuid:``; Starlette percent-decodes the path), so a POST
is tied to a stream only by the exact spelling announced; ``variant_key`` is how a spelling that
a server may still map to a live stream is recognised (and refused).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

SESSION_PARAMS = ("session_id", "sessionId")  # Python SDK, TypeScript SDK
MAX_PENDING = 4096  # unanswered requests per stream; more is refused, so memory stays bounded


class RepeatedSessionParam(ValueError):
    """A session parameter given twice: proxy and server could pick different values."""


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


def variant_path(path: str) -> str:
    """A path as a lenient router may match it: percent-decoded (repeatedly), case-folded, with
    runs of ``/`` collapsed and no trailing ``/``."""
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    while "//" in path:
        path = path.replace("//", "/")
    return path.casefold().rstrip("/")


def variant_key(url: str) -> str:
    """The normalised path of a POST endpoint: two URLs with one variant key may reach the same
    stream on a lenient server, whatever their session parameters say."""
    return variant_path(urlsplit(url).path)


def ping(msg_id: str | int) -> dict[str, Any]:
    """What a denied request is forwarded as: the server answers this id, and runs nothing."""
    return {"jsonrpc": "2.0", "id": msg_id, "method": "ping"}
