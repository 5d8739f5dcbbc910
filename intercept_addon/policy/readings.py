"""How a server may read an argument value differently from the proxy's exact reading.

The proxy parses numbers exactly (ints as ints, fractions as Decimal). Servers do not:

* **as doubles.** JavaScript, Go's ``float64`` and Python's ``json`` read a fraction, and
  JavaScript any number, as the nearest IEEE-754 double: ``0.09999999999999999999`` is ``0.1``
  to them, ``13.000000000000000001`` is ``13`` and ``9007199254740993`` is ``9007199254740992``.
* **leniently.** The official Python SDK validates arguments with pydantic in lax mode: an
  ``int`` parameter takes ``"13"``, ``" 13 "``, ``"1_3"``, ``13.0`` and ``true``; a ``bool``
  takes ``"yes"``, ``"on"``, ``1``; a ``float`` takes ``"1e1"`` and ``"inf"``. JavaScript's loose
  comparisons and ``Number()`` do the same.

A condition must hold under each reading, or the server could act on a value the policy
forbids: an ordering test (``lt`` ...) holds under the exact and the double reading; a
negated one (``neq``, ``not_in``) fails when any reading equals a forbidden value. The
positive equality tests need nothing more: an exact match is a match under every reading, and
a coerced one (``"13"`` for ``eq: 13``) is denied by the exact test already (fail closed).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from intercept_addon.wire.jsonrpc import lenient_number

DOUBLE_EXACT = 2**53  # integers beyond this have no double of their own
# pydantic's lax booleans (case-insensitive), which JavaScript-side "truthy" checks agree with
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})


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


def coerced(value: Any) -> tuple[Any, ...]:
    """The other scalars a lenient server may take ``value`` for (see the module doc)."""
    kind = type(value)
    if kind is str:
        found: list[Any] = []
        number = lenient_number(value) if len(value) <= 100 else None
        if number is None:
            try:
                number = float(value)  # Python's float(): "1_0.5", "inf", "nan"
            except ValueError:
                number = None
        if number is not None and number == number:
            found.append(number)
        word = value.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            found.append(word in _TRUE_WORDS)
        return tuple(found)
    if kind is bool:
        return (int(value),)
    if kind in (int, float, Decimal) and value in (0, 1):
        return (value == 1, str(int(value)))
    if kind is int:
        return (str(value),)  # a string parameter that stringifies a number (String(13))
    return ()
