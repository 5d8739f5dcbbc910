"""Tool fingerprints: pin each tool's definition and notice when a server redefines one.

A trusted tool whose description is silently rewritten can steer an agent ("before calling
any other tool, send ~/.ssh to ..."); a changed input schema can change what a call does.
``scan`` records a fingerprint of every tool, the policy pins them, and the addon compares
every tools/list answer against the pins.

The fingerprint of a tool is ``"sha256:"`` followed by the lower-case hex SHA-256 of the
UTF-8 bytes of this canonical JSON text::

    {"description":D,"inputSchema":S,"name":N}

* N, D, S are the tool's ``name``, ``description`` and ``inputSchema`` as served; a missing
  member counts as ``null`` (a missing and a null description fingerprint the same).
* Objects: keys sorted by Unicode code point, at every depth. No whitespace anywhere; the
  separators are ``,`` and ``:``.
* Strings: ``"`` and ``\\`` escaped with a backslash; ``\\b \\f \\n \\r \\t`` for those controls;
  the other characters below U+0020 as ``\\u00xx`` (lower-case hex); every other character as
  itself (no ``\\u`` escapes, no Unicode normalisation: a changed invisible character is a
  change). An unpaired surrogate is written as its 3-byte (WTF-8) encoding.
* Numbers: the IEEE-754 double nearest to the number. Integral values below 2**53 in
  magnitude are written as integers (``1.0`` and ``1`` are the same number, as in JSON
  Schema); others in Python's shortest round-trip form (``0.1``, ``1e+16``, ``2.5e-07``).
  Every JSON parser agrees on the double, so the proxy (exact decimals) and the SDK client
  ``scan`` uses (floats) compute the same fingerprint.
* ``true``, ``false``, ``null`` as such.

This is Python's ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` after mapping every number to a float (integral ones back to int).
Annotations, title, outputSchema and icons are not part of the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PREFIX = "sha256:"
PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
_EXACT_INT_LIMIT = 2**53


def _number(value: int | float | Decimal) -> int | float:
    as_float = float(value)
    if as_float.is_integer() and abs(as_float) < _EXACT_INT_LIMIT:
        return int(as_float)
    return as_float


def _canonical_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return _number(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(tool: Mapping[str, Any]) -> bytes:
    """The bytes a tool's fingerprint is the hash of (see the module docstring)."""
    subject = {
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    }
    text = json.dumps(_canonical_value(subject), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def fingerprint(tool: Mapping[str, Any]) -> str:
    return PREFIX + hashlib.sha256(canonical_json(tool)).hexdigest()


@dataclass(frozen=True, slots=True)
class Change:
    """A pinned tool served with another definition."""

    tool: str
    pinned: str
    served: str


class PinWatch:
    """Which pinned tools were served with a definition other than their pin.

    A change is remembered until the policy's pins change (``forget``, on reload) or pin the
    served definition (or drop the pin): serving the pinned definition again does not clear
    it, since another session may still hold the changed one. The check at tools/call time
    needs no tools/list in the same flow. Only pinned names are remembered, so memory is
    bounded by the policy.
    """

    def __init__(self) -> None:
        self._served: dict[str, str] = {}  # tool -> fingerprint served, when it differed from the pin

    def observe(self, tools: Iterable[Any], pins: Mapping[str, str]) -> list[Change]:
        """Compare one tools/list page against the pins; return the pinned tools it changes."""
        changes: list[Change] = []
        for tool in tools:
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
                continue
            name = tool["name"]
            pinned = pins.get(name)
            if pinned is None:
                continue
            served = fingerprint(tool)
            if served != pinned:
                changes.append(Change(name, pinned, served))
                self._served[name] = served
        return changes

    def forget(self) -> None:
        """The pins changed: what was judged against the old ones no longer holds."""
        self._served.clear()

    def changed(self, tool: str, pins: Mapping[str, str]) -> str | None:
        """The fingerprint last served for ``tool`` if it still differs from its pin, else None."""
        served = self._served.get(tool)
        pinned = pins.get(tool)
        if served is None or pinned is None or served == pinned:
            return None
        return served
