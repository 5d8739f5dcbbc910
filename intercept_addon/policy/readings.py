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
from intercept_addon.wire.jsonrpc import lenient_number

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
        return float(value) if not -DOUBLE_EXACT <= value <= DOUBLE_EXACT else value
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
        double = float(value)
        return str(int(double)) if double.is_integer() and abs(double) < 1e21 else repr(double)
    return None


def coerced(value: Any) -> tuple[Any, ...]:
    """The other values a lenient server may bind ``value`` to (see the module doc); value
    itself and its double are not among them."""
    found: list[Any] = []
    if isinstance(value, str):
        if len(value) <= 10_000:  # a number or a word is short; a long string is only parsed as JSON
            number = _number_in(value)
            if number is not None:
                found.append(number)
            word = value.lower()
            if word in _TRUE_WORDS or word in _FALSE_WORDS:
                found.append(word in _TRUE_WORDS)
        parsed = _json_in(value)
        if parsed is not _NOT_JSON:
            found.append(parsed)
        return tuple(found)
    if isinstance(value, bool):
        return (int(value), _js_string(value))
    if value is None:
        return ("null", 0)  # String(null); Number(null) is 0
    if isinstance(value, list):  # String([13]) and Number([13]) (via the string: Number([]) is 0)
        text = _js_string(value)
        if text is not None:
            found.append(text)
            number = lenient_number(text)
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


_NOT_JSON: Any = object()


def _json_in(text: str) -> Any:
    """What pydantic's pre-parse finds in a string: a JSON array, object or null, else _NOT_JSON."""
    if text.lstrip(" \t\n\r")[:1] not in ("[", "{", "n"):
        return _NOT_JSON
    try:
        parsed = json.loads(text)  # the SDK's own reader (so duplicate keys: the last one wins)
    except (ValueError, RecursionError):
        return _NOT_JSON
    return parsed if parsed is None or isinstance(parsed, (list, dict)) else _NOT_JSON


def loosely_equal(value: Any, other_double: Any) -> bool:
    """Could a server bind ``value`` to ``other`` (given as its double)? Elementwise for arrays
    and objects, as pydantic coerces a ``list[int]``'s elements."""
    if values_equal(as_double(value), other_double):
        return True
    if isinstance(value, list) and isinstance(other_double, list) and len(value) == len(other_double) \
            and all(loosely_equal(v, o) for v, o in zip(value, other_double)):
        return True
    if isinstance(value, dict) and isinstance(other_double, dict) and value.keys() == other_double.keys() \
            and all(loosely_equal(value[k], other_double[k]) for k in value):
        return True
    return any(values_equal(as_double(r), other_double) or (isinstance(r, (list, dict)) and loosely_equal(r, other_double))
               for r in coerced(value))


