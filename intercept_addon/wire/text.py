"""Agent-controlled text made safe to print: in error messages, logs, tables and flow comments.

A raw newline in a tool name or a session id would let an agent forge a line of the decision
summary; an ANSI escape could recolour or erase a terminal; a bidi override could make a
line read differently from what it holds. Every character Python does not call printable is
escaped: C0 and C1 controls, DEL, U+2028/U+2029, the bidi controls (format characters),
surrogates, unassigned code points and every space but U+0020.
"""

from __future__ import annotations

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
DEFAULT_LIMIT = 120  # characters of a value shown in a message


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code > 0xFFFF:  # JSON spells these as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def escaped(text: str) -> str:
    """``text`` with every non-printable character escaped JSON-style (no quotes added; ``"``
    and ``\\`` stay as they are): for table cells and other text already in its own column."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def shown(value: str, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as a JSON string literal, with every non-printable character escaped; past
    ``limit`` characters it is cut and a marker says how much was left out."""
    cut = value[:limit]
    body = "".join(_SHORT.get(c) or (c if c.isprintable() else _escape(c)) for c in cut)
    more = f"... ({len(value) - limit} more characters)" if len(value) > limit else ""
    return f'"{body}"{more}'
