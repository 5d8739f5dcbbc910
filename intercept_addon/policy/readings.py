"""How a server may read an argument value differently from the proxy's exact reading.

The proxy parses numbers exactly (ints as ints, fractions as Decimal). Servers bind values in
other ways:

* **as doubles.** JavaScript, Go's ``float64`` and Python's ``json`` read a fraction, and
  JavaScript any number, as the nearest IEEE-754 double: ``0.09999999999999999999`` is ``0.1``
  to them, ``13.000000000000000001`` is ``13`` and ``9007199254740993`` is ``9007199254740992``.
* **leniently.** The official Python SDK binds arguments with pydantic in lax mode: an ``int``
  takes ``"13"``, ``" 13 "``, ``"1_3"``, ``13.0`` and ``true``; a ``Decimal`` takes ``"_13"``; a
  ``bool`` takes ``"yes"`` and ``1``; and a parameter not typed ``str`` first has a string that
  holds a JSON array, object or null parsed (``"[13]"`` is ``[13]``). JavaScript's ``Number()``
  (zod's ``z.coerce.number``) takes ``[13]`` and ``" 13 "`` for 13, ``null`` and ``[]`` for 0;
  ``String()`` takes ``13.0`` for ``"13"``.

Which readings matter depends on what a condition decides (conditions.py): one that must hold
for the call to pass must hold under every reading that could make the server act on a
forbidden value; one that triggers a denial, a question or a limit triggers when any reading
makes it hold.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from intercept_addon.policy.values import is_number, values_equal
from intercept_addon.wire.jsonrpc import depth_ok, lenient_number

DOUBLE_EXACT = 2**53  # integers beyond this have no double of their own
# pydantic's lax booleans (case-insensitive, not stripped)
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})
_DECIMAL_STRIP = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what Python's Decimal() ignores around a number


def as_double(value: Any) -> Any:
    """``value`` as a reader of binary doubles sees it: the same object when nothing changes
    (the common case costs one type test), else a copy with each such number as a float."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _double_of_int(value) if not -DOUBLE_EXACT <= value <= DOUBLE_EXACT else value
    if kind is Decimal:
        return float(value)  # correctly rounded; past a double's range it is inf or 0.0
    if kind is float:
        return value
    if kind is list:
        items = [as_double(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if kind is dict:
        pairs = {k: as_double(v) for k, v in value.items()}
        return value if all(pairs[k] is v for k, v in value.items()) else pairs
    return value


def _double_of_int(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # a lenient reading of a long digit string; JavaScript's Infinity
        return float("inf") if value > 0 else float("-inf")


def _number_in(text: str) -> int | float | Decimal | None:
    """The number lenient readers take ``text`` for: int(), Number(), float(), Decimal()."""
    number = lenient_number(text)
    if number is not None:
        return number
    for read in (float, Decimal):
        try:
            found = read(text.strip(_DECIMAL_STRIP) if read is Decimal else text)
        except (ValueError, InvalidOperation):
            continue
        if is_number(found):  # not NaN
            return found
    return None


def _js_string(value: Any) -> str | None:
    """JavaScript's ``String(value)`` for JSON values (None for an object: "[object Object]")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = ["" if v is None else _js_string(v) for v in value]
        return None if None in parts else ",".join(parts)  # type: ignore[arg-type]
    if is_number(value):
        double = as_double(value) if not isinstance(value, int) else _double_of_int(value)
        if double in (float("inf"), float("-inf")):
            return "Infinity" if double > 0 else "-Infinity"
        return str(int(double)) if double.is_integer() and abs(double) < 1e21 else repr(double)
    return None


def coerced(value: Any, *, blank_is_zero: bool = True) -> tuple[Any, ...]:
    """The other values a lenient server may bind ``value`` to (see the module doc); value
    itself and its double are not among them. ``blank_is_zero``: JavaScript's ``Number()`` of
    ``null``, ``""`` and ``[]`` (0), a reading worth forbidding but too far-fetched to fire a
    rule on."""
    found: list[Any] = []
    if isinstance(value, str):
        number = _number_in(value) if blank_is_zero or value.strip() else None
        if number is not None:
            found.append(number)
        word = value.lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            found.append(word in _TRUE_WORDS)
        parsed = json_in(value)
        if parsed is not NOT_JSON:
            found.append(parsed)
        return tuple(found)
    if isinstance(value, bool):
        return (int(value), _js_string(value))
    if value is None:
        return ("null", 0) if blank_is_zero else ("null",)  # String(null); Number(null) is 0
    if isinstance(value, list) and len(value) <= 1:  # String([13]), Number([13]); Number([]) is 0
        text = _js_string(value)
        if text is not None:
            found.append(text)
            number = lenient_number(text) if blank_is_zero or text.strip() else None
            if number is not None:
                found.append(number)
        return tuple(found)
    if is_number(value):
        if value in (0, 1):
            found.append(value == 1)
        text = _js_string(value)
        if text is not None:
            found.append(text)
    return tuple(found)


NOT_JSON: Any = object()
MAX_DEPTH = 64  # as the proxy's own parser: deeper JSON in a string is not judged, so not passed
# Members of the JSON in one string that are judged; past this it is not read (nor passed): a few
# megabytes of "[0,0,…]" would otherwise cost seconds of the event loop per condition.
MAX_MEMBERS = 10_000


class Unreadable(ValueError):
    """A string holds JSON deeper or larger than the proxy judges: a server may parse it."""


def _may_hold_json(text: str) -> bool:
    """Could ``text`` be a JSON array, object or null (the only JSON value starting with n)?"""
    head = text.lstrip(" \t\n\r")[:1]
    return head in ("[", "{") or head == "n" and text.strip(" \t\n\r") == "null"


def json_in(text: str) -> Any:
    """What the Python SDK's pre-parse finds in a string: a JSON array, object or null (it
    leaves other JSON, and what Python's json refuses, as the string); else NOT_JSON."""
    if not _may_hold_json(text):
        return NOT_JSON
    if text.count(",") >= MAX_MEMBERS:  # every member past the first of each array or object has one
        raise Unreadable(f"a string holds JSON of more than {MAX_MEMBERS} members")
    try:
        parsed = json.loads(text)  # the SDK's own reader (so duplicate keys: the last one wins)
    except (ValueError, RecursionError):
        return NOT_JSON
    if parsed is not None and not isinstance(parsed, (list, dict)):
        return NOT_JSON
    if not depth_ok(parsed, MAX_DEPTH):
        raise Unreadable(f"a string holds JSON nested deeper than {MAX_DEPTH} levels")
    return parsed


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value: object keys and values, array elements, at any depth."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _kind(value: Any) -> str | None:
    """Scalars of one kind, where a lenient reading never equals another value of that kind
    that the exact or double reading does not: None for the rest (containers, null, mixes)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return None if _may_hold_json(value) else "str"
    return "number" if is_number(value) else None


def loosely_equals_any(value: Any, others_double: Any, *, blank_is_zero: bool = True) -> bool:
    """Could a server bind ``value`` to one of ``others`` (given as doubles)? Elementwise for
    arrays and objects, as pydantic coerces a ``list[int]``'s elements. The readings of
    ``value`` are worked out once, whatever the number of others."""
    others = list(others_double)
    if not others:
        return False
    kind = _kind(value)
    if kind is not None and all(_kind(o) is kind for o in others):  # no coercion joins like kinds
        double = as_double(value)
        return any(values_equal(double, o) for o in others)
    alternatives = coerced(value, blank_is_zero=blank_is_zero)
    reads = [as_double(value), *(as_double(r) for r in alternatives)]
    if any(values_equal(r, o) for o in others for r in reads):
        return True
    containers = [c for c in (value, *alternatives) if isinstance(c, (list, dict))]
    for other in others:
        for c in containers:
            if isinstance(c, list) and isinstance(other, list) and len(c) == len(other):
                if all(loosely_equals_any(v, (o,), blank_is_zero=blank_is_zero) for v, o in zip(c, other)):
                    return True
            elif isinstance(c, dict) and isinstance(other, dict) and c.keys() == other.keys():
                if all(loosely_equals_any(c[k], (other[k],), blank_is_zero=blank_is_zero) for k in c):
                    return True
    return False
