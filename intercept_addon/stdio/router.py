"""Which HTTP event stream carries each message the wrapped server writes on its stdout.

stdio has one channel each way; Streamable HTTP has one event stream per client request plus
the client's standalone GET stream. The bridge routes each server message:

* a response: onto the stream of the POST that carried its request (ids matched as clients
  match them, ``wire.jsonrpc.id_key``); the stream ends when all its requests are answered;
* ``notifications/progress``: onto the stream of the request that set its ``progressToken``;
* anything else (sampling, elicitation and roots requests, log and list_changed notifications):
  onto the one request stream open if there is exactly one (the server is then working for that
  request, and the message stays in order with its answer), else onto the GET stream, held back
  (bounded) until the client opens one.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any

from intercept_addon.wire.jsonrpc import id_key

BACKLOG = 1000  # messages held for a GET stream nobody has opened yet
MAX_MESSAGE = 64 * 1024 * 1024  # the longest message (line or body) relayed either way
END = None  # put on a stream's queue after its last message


class Stream:
    """One HTTP response's worth of server messages (raw JSON texts, in order)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.ids: set[Any] = set()  # requests still unanswered on it
        self.tokens: set[Any] = set()

    def put(self, raw: bytes) -> None:
        self.queue.put_nowait(raw)


def _progress_token(request: dict[str, Any]) -> Any:
    """The token a request asks progress under (``params._meta.progressToken``)."""
    params = request.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return id_key(meta.get("progressToken")) if isinstance(meta, dict) else None


def _reported_token(notification: dict[str, Any]) -> Any:
    """The token a progress notification reports under (``params.progressToken``)."""
    params = notification.get("params")
    return id_key(params.get("progressToken")) if isinstance(params, dict) else None


def _cancelled_id(message: dict[str, Any]) -> Any:
    params = message.get("params")
    return id_key(params.get("requestId")) if isinstance(params, dict) else None


class Router:
    def __init__(self) -> None:
        self._pending: dict[Any, Stream] = {}
        self._tokens: dict[Any, Stream] = {}
        self._open: list[Stream] = []
        self._standalone: Stream | None = None
        self._backlog: deque[bytes] = deque(maxlen=BACKLOG)

    # -- messages from the client (already on their way to the server) ---------------------------

    def requests_sent(self, messages: list[dict[str, Any]]) -> Stream | None:
        """Open the stream that will answer the requests among ``messages``; None if there are none.
        A cancellation ends the cancelled request's wait: the server owes no answer."""
        stream = Stream()
        for message in messages:
            method = message.get("method")
            if isinstance(method, str) and "id" in message and (key := id_key(message["id"])) is not None:
                stream.ids.add(key)
                self._pending[key] = stream
                if (token := _progress_token(message)) is not None:
                    stream.tokens.add(token)
                    self._tokens[token] = stream
            elif method == "notifications/cancelled":
                self._answered(_cancelled_id(message))
        if not stream.ids:
            return None
        self._open.append(stream)
        return stream

    def open_standalone(self) -> Stream:
        """The client's GET stream (a newer one replaces an older), with the messages held for it."""
        if self._standalone is not None:
            self._standalone.queue.put_nowait(END)
        stream = self._standalone = Stream()
        while self._backlog:
            stream.put(self._backlog.popleft())
        return stream

    def closed(self, stream: Stream) -> None:
        """The client went away from ``stream``: later messages for it have nowhere to go."""
        if stream is self._standalone:
            self._standalone = None
            return
        for key in list(stream.ids):
            self._pending.pop(key, None)
        self._finish(stream)

    # -- messages from the server -------------------------------------------------------------------

    def route(self, message: Any, raw: bytes) -> None:
        if not isinstance(message, dict):
            return dropped("a line that is not a JSON-RPC message", raw)
        if "method" not in message:
            stream = self._answered(id_key(message.get("id")), raw)
            if stream is None:
                dropped("an answer to no open request", raw)
            return
        if message["method"] == "notifications/progress":
            stream = self._tokens.get(_reported_token(message))
            if stream is not None:
                return stream.put(raw)
        if len(self._open) == 1:
            return self._open[0].put(raw)
        if self._standalone is not None:
            return self._standalone.put(raw)
        self._backlog.append(raw)

    def _answered(self, key: Any, raw: bytes | None = None) -> Stream | None:
        stream = self._pending.pop(key, None) if key is not None else None
        if stream is None:
            return None
        if raw is not None:
            stream.put(raw)
        stream.ids.discard(key)
        if not stream.ids:
            self._finish(stream)
        return stream

    def _finish(self, stream: Stream) -> None:
        for token in stream.tokens:
            if self._tokens.get(token) is stream:
                del self._tokens[token]
        stream.tokens.clear()
        if stream in self._open:
            self._open.remove(stream)
            stream.queue.put_nowait(END)


def dropped(what: str, raw: bytes) -> None:
    print(f"intercept-addon stdio: dropped {what} from the server: {raw[:200]!r}", file=sys.stderr, flush=True)
