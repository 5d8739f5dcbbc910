"""Plain-text tables for the terminal and mitmproxy's command output."""

from __future__ import annotations

from collections.abc import Sequence

from intercept_addon.wire.text import escaped


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns two spaces apart, a dashed rule under the headers; one string per line.
    Cells hold agent-controlled text (sessions, tool names, messages), also from old log lines:
    control characters are escaped, so a cell can neither start a line nor reach the terminal."""
    cells = [[escaped(str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]
