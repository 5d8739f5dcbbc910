"""Values of the policy format: its vocabularies, parsers of its shorthands, and how a policy
value is shown in an error message. Pure functions, shared by the models and the engine."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, Literal

import re2

from intercept_addon.wire.text import DEFAULT_LIMIT, escaped, shown

OPERATORS = ("eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists")
NUMERIC_OPS = frozenset({"lt", "lte", "gt", "gte"})
LIST_OPS = frozenset({"in", "not_in"})
CALENDAR_WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}
# What a counter counts per: the agent (the catalogue form's default; "session" is its old
# name), the verified user, the MCP session inside an agent, the tool key, or one shared counter.
Scope = Literal["agent", "session", "user", "mcp-session", "tool", "global"]
IDENTITY_PATHS = ("identity.agent", "identity.sub")  # and identity.claims.<name>[.<name>...]
GLOBAL_NAMESPACE = "_global"  # Intercept's counter namespace for "*" rules
MAX_WINDOW_SECONDS = 31 * 86400

_RATE_SHORTHAND = re.compile(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*$")
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GLOB_CHARS = frozenset("*?[")


def is_number(value: Any) -> bool:
    """JSON/YAML numbers; bool is not a number here (True == 1 in Python), nor is NaN (it
    compares with nothing, and Decimal's ordering raises on it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return False
    return not (value.is_nan() if isinstance(value, Decimal) else value != value)


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the literal the author wrote, not its binary expansion
    return Decimal(value)


def values_equal(a: Any, b: Any) -> bool:
    if is_number(a) and is_number(b):
        return to_decimal(a) == to_decimal(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def compile_regex(pattern: str) -> Any:
    """RE2 (Go's dialect, as in Intercept): linear time on agent-controlled input."""
    options = re2.Options()
    options.log_errors = False  # errors are reported by the validator, not printed by RE2
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None


# RE2 asked directly (the module's own search also maps every group's byte offsets back to
# str offsets, five times the cost of the match); its search where the internals are not these.
_DIRECT = hasattr(re2, "_Anchor") and hasattr(re2.compile(""), "_regexp")
_UNANCHORED = re2._Anchor.UNANCHORED if _DIRECT else None
_NO_SPAN = (-1, -1)


def regex_found(compiled: Any, text: str) -> bool:
    """``compiled.search(text) is not None`` for an RE2 pattern: only whether it matches
    anywhere, which is all a condition, a schema ``pattern`` or an answer's ``deny_if`` asks."""
    if not _DIRECT:
        return compiled.search(text) is not None
    data = text.encode("utf-8")  # as the module encodes (a lone surrogate raises the same)
    return compiled._regexp.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_SPAN


def split_state_path(path: str) -> tuple[str, str]:
    """``state.<ns>.<counter>`` -> (ns, counter); tool names may themselves contain dots."""
    ns, _, counter = path.removeprefix("state.").rpartition(".")
    return ns, counter


def is_glob(key: str) -> bool:
    return key != "*" and any(c in GLOB_CHARS for c in key)


def parse_rate_shorthand(text: str) -> tuple[int, str]:
    """``"5/hour"`` -> (5, "hour"); raises ValueError with Intercept's messages."""
    m = _RATE_SHORTHAND.match(text)
    if not m:
        raise ValueError(f'rate_limit must look like "<count>/<minute|hour|day>", got {shown(text)}')
    count, window = m.groups()
    if not count.isdigit() or int(count) <= 0:
        raise ValueError(f"rate_limit count must be a positive integer, got {shown(count)}")
    if window not in CALENDAR_WINDOWS:
        raise ValueError(f'rate_limit window must be "minute", "hour", or "day", got {shown(window)}')
    return int(count), window


def parse_duration(value: int | str) -> int:
    """Seconds from ``60``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``, or a window name."""
    if isinstance(value, str):
        if value in CALENDAR_WINDOWS:
            return CALENDAR_WINDOWS[value]
        m = _DURATION.match(value)
        if not m:
            raise ValueError(
                f'window must be seconds (e.g. 60) or a duration like "90s", "5m", "1h", "1d", got {shown(value)}'
            )
        value = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if value <= 0 or value > MAX_WINDOW_SECONDS:
        raise ValueError(f"window must be between 1 second and 31 days, got {value}")
    return value


def shown_value(value: Any) -> str:
    """A policy value in an error message, its type visible: strings quoted and escaped,
    true/false/null and numbers as YAML writes them, lists and mappings as JSON (escaped, cut)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):  # as YAML spells them
        return ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    text = json.dumps(value, ensure_ascii=False, default=str)  # dates and the like as strings
    more = f"... ({len(text) - DEFAULT_LIMIT} more characters)" if len(text) > DEFAULT_LIMIT else ""
    return escaped(text[:DEFAULT_LIMIT]) + more
