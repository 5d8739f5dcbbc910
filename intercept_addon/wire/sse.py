"""Incremental rewriting of a ``text/event-stream`` (Server-Sent Events) response body.

mitmproxy hands a stream callable arbitrary byte chunks and finally ``b""``.
:class:`SseRewriter` turns that into whole event blocks, lets the caller replace each one,
and otherwise forwards the bytes exactly as received. It holds at most one unfinished event.

Parsing follows the HTML "server-sent events" interpretation rules: CRLF, lone LF and lone
CR all end a line, a blank line ends an event, lines starting with ``:`` are comments,
a field without a colon has an empty value, one space after the colon is dropped, and a
UTF-8 BOM at the very start of the stream is ignored (but forwarded).

Two consequences worth knowing:

* A CR that is the last byte received so far may be the first half of a CRLF, so a block
  whose blank line ends in that CR is released only when the next byte (or end of stream)
  arrives. Deciding earlier would make the output depend on where chunks happen to split.
* Events larger than ``max_event_bytes`` are *not inspected*; see :class:`SseRewriter`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SseEvent", "SseRewriter", "detect_newline", "format_event"]

_EOL = re.compile(rb"\r\n?|\n")  # longest match first: CRLF is one terminator, not two
_EOL_STR = re.compile(r"\r\n?|\n")
_CR = 0x0D
_LF = 0x0A
_BOM = b"\xef\xbb\xbf"
# Must exceed the 3-byte BOM: an event given up on then always holds more than a BOM,
# so skipping it never has to decide whether a split BOM makes its first line blank.
_MIN_EVENT_BYTES = 16


@dataclass(frozen=True)
class SseEvent:
    """One event block as received. Fields are decoded with ``errors="replace"``."""

    raw: bytes  # exact bytes of the block, including its terminating blank line
    event: str | None  # last ``event:`` value
    data: str | None  # ``data:`` values joined with "\n"; None if the block has no data field
    id: str | None  # last ``id:`` value (ignored if it contains NUL, as clients do)
    retry: str | None  # raw ``retry:`` value


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


class SseRewriter:
    """Feed raw chunks in, get the bytes to forward out.

    ``transform(event)`` is called once per complete event block (comment-only blocks and
    bare blank lines included) and returns the replacement bytes, or None to forward
    ``event.raw`` unchanged. Exceptions from ``transform`` propagate to the caller of
    :meth:`feed` so it can fail closed; the rewriter is unusable after that.

    Oversized events: an event whose block is longer than ``max_event_bytes`` is forwarded
    unchanged *without* calling ``transform``, and ``oversized_events`` is incremented.
    If it is still incomplete, the bytes held so far are forwarded at once and the rest of
    the event streams through as it arrives, so memory stays bounded even for a stream
    that never sends a newline. The caller must treat any increase of ``oversized_events``
    as "could not inspect" and apply its own policy (e.g. abort the flow).

    A trailing event that is never terminated by a blank line is forwarded unchanged at end
    of stream without ``transform``: clients discard it too.
    """

    def __init__(
        self,
        transform: Callable[[SseEvent], bytes | None],
        *,
        max_event_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if max_event_bytes < _MIN_EVENT_BYTES:
            raise ValueError(f"max_event_bytes must be at least {_MIN_EVENT_BYTES}")
        self._transform = transform
        self._max = max_event_bytes
        self.oversized_events: int = 0
        self._bom_pending = True  # the stream's first line has not been parsed yet
        # Normal mode: _buf holds the unfinished event. _pos is where its current line
        # starts, _scan where the search for the next line end resumes (never re-scan).
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._reset_fields()
        # Skip mode (inside an oversized event): only track where lines end.
        self._skipping = False
        self._line_empty = True  # no bytes yet in the current line
        self._skip_cr = False  # last byte forwarded was a CR that ended a line
        self._skip_done = False  # ...and that line was the event's blank line

    @property
    def buffered(self) -> int:
        """Bytes currently held back (part of one unfinished event at most)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes to send downstream now.

        ``b""`` means end of stream: a pending event is finished if its blank line is
        complete, and any unterminated remainder is flushed unchanged.
        """
        if not chunk:
            return self._finish()
        out = bytearray()
        if self._skipping:
            end = self._skip(chunk)
            if end < 0:
                return bytes(chunk)
            out += chunk[:end]
            chunk = chunk[end:]
            self._skipping = False
        self._buf += chunk
        start = self._scan_lines(out, eof=False)
        del self._buf[:start]  # compact once per feed, not once per event
        self._pos -= start
        self._scan -= start
        if len(self._buf) > self._max:
            self.oversized_events += 1
            out += self._buf
            self._enter_skip()
        return bytes(out)

    # -- normal mode ---------------------------------------------------------------

    def _reset_fields(self) -> None:
        self._event: bytes | None = None
        self._data: list[bytes] | None = None
        self._id: bytes | None = None
        self._retry: bytes | None = None

    def _scan_lines(self, out: bytearray, *, eof: bool) -> int:
        """Parse complete lines of ``_buf``, emitting finished events into ``out``.

        Returns the offset where the unfinished event starts.
        """
        buf = self._buf
        start = 0
        while (m := _EOL.search(buf, self._scan)) is not None:
            end = m.end()
            if end == len(buf) and end - m.start() == 1 and buf[m.start()] == _CR and not eof:
                self._scan = m.start()  # maybe half of a CRLF: decide when more arrives
                return start
            line = bytes(buf[self._pos : m.start()])
            self._pos = self._scan = end
            if self._bom_pending:
                self._bom_pending = False
                line = line.removeprefix(_BOM)
            if line:
                self._parse_line(line)
            else:  # blank line: the event is complete
                out += self._dispatch(bytes(buf[start:end]))
                start = end
        self._scan = len(buf)
        return start

    def _parse_line(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ":" comment
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if self._data is None:
                self._data = []
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._id = value
        elif name == b"retry":
            self._retry = value

    def _dispatch(self, raw: bytes) -> bytes:
        data = None if self._data is None else b"\n".join(self._data)
        event = SseEvent(raw, _text(self._event), _text(data), _text(self._id), _text(self._retry))
        self._reset_fields()
        if len(raw) > self._max:  # same verdict whether it arrived whole or in pieces
            self.oversized_events += 1
            return raw
        result = self._transform(event)
        if result is None:
            return raw
        if not isinstance(result, (bytes, bytearray)):
            raise TypeError(f"SSE transform must return bytes or None, not {type(result).__name__}")
        return bytes(result)

    def _finish(self) -> bytes:
        out = bytearray()
        if not self._skipping:
            start = self._scan_lines(out, eof=True)  # a trailing CR now surely ends a line
            out += self._buf[start:]  # unterminated remainder: clients drop it, so do not inspect
        self._buf.clear()
        self._pos = self._scan = 0
        self._reset_fields()
        self._skipping = False
        return bytes(out)

    # -- skip mode (oversized event) ----------------------------------------------

    def _enter_skip(self) -> None:
        # Lines before _pos were complete and non-blank; only the unfinished one matters.
        tail = bytes(self._buf[self._pos :])
        self._bom_pending = False  # (tail > 3 bytes: non-blank with or without a BOM)
        self._buf.clear()
        self._pos = self._scan = 0
        self._reset_fields()
        self._skipping = True
        self._line_empty = True
        self._skip_cr = self._skip_done = False
        self._skip(tail)  # tail holds no complete line end, so this cannot end the event

    def _skip(self, data: bytes) -> int:
        """Track line ends in forwarded bytes; return the offset just past the event's
        blank line, or -1 if the event continues past ``data``."""
        i = 0
        if self._skip_cr:  # an LF right after a CR belongs to that CR's line end
            self._skip_cr = False
            if data[:1] == b"\n":
                i = 1
            if self._skip_done:
                return i
        while (m := _EOL.search(data, i)) is not None:
            blank = self._line_empty and m.start() == i
            self._line_empty = True
            i = m.end()
            if i == len(data) and data[i - 1] == _CR:
                self._skip_cr, self._skip_done = True, blank
                return -1
            if blank:
                return i
        if i < len(data):
            self._line_empty = False
        return -1


def format_event(
    data: str,
    *,
    event: str | None = "message",
    id: str | None = None,
    newline: bytes = b"\n",
) -> bytes:
    """Build a complete event block; each line of ``data`` becomes one ``data:`` line."""
    if newline not in (b"\n", b"\r\n", b"\r"):
        raise ValueError("newline must be LF, CRLF or CR")
    lines: list[str] = []
    for name, value in (("event", event), ("id", id)):
        if value is None:
            continue
        if _EOL_STR.search(value):  # would smuggle extra fields into the stream
            raise ValueError(f"SSE {name} must not contain a line break")
        lines.append(f"{name}: {value}")
    lines.extend(f"data: {part}" for part in _EOL_STR.split(data))
    nl = newline.decode("ascii")
    return (nl.join(lines) + nl + nl).encode("utf-8")


def detect_newline(raw: bytes) -> bytes:
    """Line ending of the first line in ``raw`` (LF if there is none)."""
    m = _EOL.search(raw)
    return m.group() if m else b"\n"
