"""Condition semantics: dot paths into arguments and the eleven operators.

Written-down semantics (tests pin each one):
* A path walks objects by key and arrays by a decimal index (``args.items.0.name``).
* A key a rule names that is absent while another key equal to it ignoring case and Unicode
  form is present (``Amount`` for ``args.amount``) is ambiguous: a server that binds keys
  case-insensitively (Go's encoding/json) reads it as the named argument, a strict one does
  not. The call is denied (:class:`AmbiguousKey`), since the two readings cannot both be judged.
* A missing path fails every operator except ``exists: false`` (so ``neq``/``not_in`` on a
  missing argument deny too, as in Intercept: fail closed), unless the condition says
  ``optional: true`` (our extension), which checks an argument only when it is given.
* ``null`` counts as absent for ``exists`` and is an ordinary value for the others.
* Numbers compare exactly: ints as ints, JSON fractions as Decimal (never float). A boolean is
  not a number. ``eq`` between a number and a string is false (no "5" == 5 coercion).
* A server may read an argument otherwise (as a double, or coercing ``"13"`` to 13: see
  :mod:`readings`), so an argument condition is judged by what it decides. One the call must
  pass (a rule's conditions) :meth:`~CompiledCondition.passes`: ``lt``/``lte``/``gt``/``gte``
  hold for the value and its double, ``neq``/``not_in`` fail if any reading equals a
  forbidden value, the rest hold for the value as parsed (a coerced match is no match: fail
  closed). One that makes a call denied, asked about or limited (``when:``, an ask rule's
  conditions) :meth:`~CompiledCondition.triggers` when it holds under any reading. Counters
  and identities are the proxy's own values: :meth:`~CompiledCondition.holds_for` judges them
  as they are.
* A path that runs into a string holding a JSON object or array (``args.order.amount`` with
  ``"order": "{\"amount\": 5}"``) is ambiguous too: the Python SDK parses such a string
  before binding it. The call is denied (:class:`JsonInString`).
* ``contains``: substring on strings, element equality on arrays, false otherwise.
* ``regex``: RE2 search (unanchored, Go's dialect), strings only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from intercept_addon.policy.readings import as_double, coerced, loosely_equal
from intercept_addon.policy.rules import Condition
from intercept_addon.policy.values import compile_regex, is_number, regex_found, to_decimal, values_equal
from intercept_addon.wire.jsonrpc import fold
from intercept_addon.wire.text import shown

MISSING: Any = object()


def normalise(value: Any) -> Any:
    """Policy literals as the engine compares them: YAML floats become exact Decimals."""
    if isinstance(value, float):
        return to_decimal(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def split_path(path: str) -> tuple[str, ...]:
    """``args.a.b`` -> ``("a", "b")``."""
    return tuple(path.split(".")[1:])


class AmbiguousKey(ValueError):
    """A named key is absent but a case/Unicode variant of it is present."""

    def __init__(self, path: str, key: str) -> None:
        super().__init__(f"argument key {shown(key)} differs from {path} only by case or Unicode form")
        self.path = path
        self.key = key


class JsonInString(AmbiguousKey):
    """A path continues into a string that a server may parse as JSON before binding it."""

    def __init__(self, path: str) -> None:
        ValueError.__init__(self, f"{path} is a string holding JSON, which a server may read as an object")
        self.path, self.key = path, ""


def resolve(arguments: Any, segments: tuple[str, ...]) -> Any:
    """The value at ``segments`` (MISSING if absent); raises AmbiguousKey (see the module doc)."""
    current = arguments
    for depth, seg in enumerate(segments):
        if isinstance(current, Mapping):
            if seg not in current:
                _refuse_variant(current, segments, depth)
                return MISSING
            current = current[seg]
        elif isinstance(current, list) and seg.isascii() and seg.isdigit() and (seg == "0" or seg[0] != "0"):
            index = int(seg)
            if index >= len(current):
                return MISSING
            current = current[index]
        elif isinstance(current, str) and current.lstrip(" \t\n\r")[:1] in ("{", "["):
            raise JsonInString(".".join(("args", *segments[:depth])))
        else:
            return MISSING
    return current


def _refuse_variant(obj: Mapping[str, Any], segments: tuple[str, ...], depth: int) -> None:
    wanted = fold(segments[depth])
    for key in obj:
        if isinstance(key, str) and fold(key) == wanted:
            raise AmbiguousKey(".".join(("args", *segments[: depth + 1])), key)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, e: a < e, "lte": lambda a, e: a <= e, "gt": lambda a, e: a > e, "gte": lambda a, e: a >= e,
}


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(values_equal(item, expected) for item in actual)
    return False


def _exactly(op: str, actual: Any, expected: Any) -> bool:
    """The operator on the value as parsed."""
    if op in _ORDER:
        return is_number(actual) and _ORDER[op](to_decimal(actual), expected)
    if op == "eq":
        return values_equal(actual, expected)
    if op == "neq":
        return not values_equal(actual, expected)
    if op == "in":
        return any(values_equal(actual, x) for x in expected)
    if op == "not_in":
        return not any(values_equal(actual, x) for x in expected)
    if op == "regex":
        return isinstance(actual, str) and regex_found(expected, actual)
    return _contains(actual, expected)


def _as_doubles(op: str, actual: Any, expected_double: Any) -> bool:
    """The operator with both sides as a reader of doubles sees them."""
    if op in _ORDER:
        return is_number(actual) and _ORDER[op](to_decimal(as_double(actual)), to_decimal(expected_double))
    return _exactly(op, as_double(actual), expected_double)


def _loosely(op: str, actual: Any, expected_double: Any) -> bool:
    """Does some reading of ``actual`` satisfy a positive operator (eq, in, contains, an ordering, regex)?"""
    if op == "eq":
        return loosely_equal(actual, expected_double)
    if op == "in":
        return any(loosely_equal(actual, x) for x in expected_double)
    readings = (actual, *coerced(actual))
    if op == "contains":  # an array, or a string holding one, with an element a server takes for it
        return any(isinstance(r, list) and any(loosely_equal(item, expected_double) for item in r)
                   or _as_doubles(op, r, expected_double) for r in readings)
    return any(_as_doubles(op, r, expected_double) for r in readings[1:])


_DESCRIBE = {
    "eq": "must equal {v}",
    "neq": "must not equal {v}",
    "in": "must be one of {v}",
    "not_in": "must not be one of {v}",
    "lt": "must be less than {v}",
    "lte": "must be at most {v}",
    "gt": "must be greater than {v}",
    "gte": "must be at least {v}",
    "regex": "must match the pattern {v}",
    "contains": "must contain {v}",
}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    path: str
    op: str
    expected: Any
    segments: tuple[str, ...]
    optional: bool = False
    expected_double: Any = None  # ``expected`` as a reader of doubles sees it

    @classmethod
    def build(cls, cond: Condition) -> CompiledCondition:
        expected = compile_regex(cond.value) if cond.op == "regex" else normalise(cond.value)
        if cond.op in ("lt", "lte", "gt", "gte"):
            expected = to_decimal(cond.value)
        return cls(cond.path, cond.op, expected, split_path(cond.path), cond.optional, as_double(expected))

    def holds_for(self, actual: Any) -> bool:
        """Judge a value the proxy owns (a counter, an identity) as it is; MISSING when absent."""
        if self.op == "exists":
            present = actual is not MISSING and actual is not None
            return present == self.expected
        if actual is MISSING:
            return self.optional
        return _exactly(self.op, actual, self.expected)

    def passes(self, actual: Any) -> bool:
        """Judge an argument the call must pass: it holds for every reading a server could act on."""
        held = self.holds_for(actual)
        if not held or actual is MISSING or self.op == "exists":
            return held
        if self.op in _ORDER:
            return _as_doubles(self.op, actual, self.expected_double)
        if self.op == "neq":
            return not loosely_equal(actual, self.expected_double)
        if self.op == "not_in":
            return not any(loosely_equal(actual, x) for x in self.expected_double)
        return True

    def triggers(self, actual: Any) -> bool:
        """Judge an argument that makes a call denied, asked about or limited: it holds for some reading."""
        if self.holds_for(actual):
            return True
        if actual is MISSING or self.op in ("exists", "neq", "not_in"):
            return False  # a negated test that fails as parsed fails under every reading
        return _as_doubles(self.op, actual, self.expected_double) or _loosely(self.op, actual, self.expected_double)

    def describe(self) -> str:
        """What the agent must do to pass, e.g. ``args.size must be one of ["small", "large"]``."""
        if self.op == "exists":
            return f"{self.path} is required" if self.expected else f"{self.path} must not be given"
        shown = self.expected.pattern if self.op == "regex" else self.expected
        return f"{self.path} " + _DESCRIBE[self.op].format(v=_show(shown))
