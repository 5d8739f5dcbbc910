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
* A server may read a value otherwise (as a double, or coercing ``"13"`` to 13: see
  :mod:`readings`): ``lt``/``lte``/``gt``/``gte`` hold only if they hold for the value's double
  as well, and ``neq``/``not_in`` fail if any reading equals a forbidden value.
* ``contains``: substring on strings, element equality on arrays, false otherwise.
* ``regex``: RE2 search (unanchored, Go's dialect), strings only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from intercept_addon.policy.readings import as_double, coerced
from intercept_addon.policy.rules import Condition
from intercept_addon.policy.values import compile_regex, is_number, regex_found
from intercept_addon.wire.jsonrpc import fold
from intercept_addon.wire.text import shown

MISSING: Any = object()


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the literal the author wrote, not its binary expansion
    return Decimal(value)


def normalise(value: Any) -> Any:
    """Policy literals as the engine compares them: YAML floats become exact Decimals."""
    if isinstance(value, float):
        return to_decimal(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


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


def split_path(path: str) -> tuple[str, ...]:
    """``args.a.b`` -> ``("a", "b")``."""
    return tuple(path.split(".")[1:])


class AmbiguousKey(ValueError):
    """A named key is absent but a case/Unicode variant of it is present."""

    def __init__(self, path: str, key: str) -> None:
        super().__init__(f"argument key {shown(key)} differs from {path} only by case or Unicode form")
        self.path = path
        self.key = key


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
        else:
            return MISSING
    return current


def _refuse_variant(obj: Mapping[str, Any], segments: tuple[str, ...], depth: int) -> None:
    wanted = fold(segments[depth])
    for key in obj:
        if isinstance(key, str) and fold(key) == wanted:
            raise AmbiguousKey(".".join(("args", *segments[: depth + 1])), key)


def _numeric(cmp: Callable[[Decimal, Decimal], bool]) -> Callable[[Any, Any, Any], bool]:
    def check(actual: Any, expected: Decimal, expected_double: Any) -> bool:
        if not is_number(actual) or not cmp(to_decimal(actual), expected):
            return False
        double = as_double(actual)
        return double is actual or cmp(to_decimal(double), to_decimal(expected_double))

    return check


def _any_reading_equals(actual: Any, forbidden_doubles: Any) -> bool:
    """Does any reading of ``actual`` equal one of the forbidden values (as doubles: exact
    equality implies equality of the doubles, so comparing those covers both readings)?"""
    if type(actual) is str and all(type(f) is str for f in forbidden_doubles):
        return actual in forbidden_doubles  # a string's coerced readings are numbers and booleans
    for reading in (actual, *coerced(actual)):
        double = as_double(reading)
        if any(values_equal(double, f) for f in forbidden_doubles):
            return True
    return False


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(values_equal(item, expected) for item in actual)
    return False


# Each test gets (actual, expected, expected as a reader of doubles sees it).
_OPS: dict[str, Callable[[Any, Any, Any], bool]] = {
    "eq": lambda a, e, _: values_equal(a, e),
    "neq": lambda a, _, d: not _any_reading_equals(a, (d,)),
    "in": lambda a, e, _: any(values_equal(a, x) for x in e),
    "not_in": lambda a, _, d: not _any_reading_equals(a, d),
    "lt": _numeric(lambda a, e: a < e),
    "lte": _numeric(lambda a, e: a <= e),
    "gt": _numeric(lambda a, e: a > e),
    "gte": _numeric(lambda a, e: a >= e),
    "regex": lambda a, e, _: isinstance(a, str) and regex_found(e, a),
    "contains": lambda a, e, _: _contains(a, e),
}

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
        double = None if cond.op == "regex" else as_double(expected)
        return cls(cond.path, cond.op, expected, split_path(cond.path), cond.optional, double)

    def holds_for(self, actual: Any) -> bool:
        """Judge an already resolved value (MISSING when the path does not exist)."""
        if self.op == "exists":
            present = actual is not MISSING and actual is not None
            return present == self.expected
        if actual is MISSING:
            return self.optional
        return _OPS[self.op](actual, self.expected, self.expected_double)

    def describe(self) -> str:
        """What the agent must do to pass, e.g. ``args.size must be one of ["small", "large"]``."""
        if self.op == "exists":
            return f"{self.path} is required" if self.expected else f"{self.path} must not be given"
        shown = self.expected.pattern if self.op == "regex" else self.expected
        return f"{self.path} " + _DESCRIBE[self.op].format(v=_show(shown))
