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

from intercept_addon.policy.readings import NOT_JSON, Unreadable, as_double, coerced, json_in, loosely_equals_any, strings_in
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
        elif isinstance(current, str) and _holds_json_container(current):
            raise JsonInString(".".join(("args", *segments[:depth])))
        else:
            return MISSING
    return current


def _holds_json_container(text: str) -> bool:
    try:
        return isinstance(json_in(text), (dict, list))
    except Unreadable:
        return True


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


def _ordered(cmp: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, e: is_number(a) and cmp(to_decimal(a), e)


# Each operator on the value as parsed.
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": values_equal,
    "neq": lambda a, e: not values_equal(a, e),
    "in": lambda a, e: any(values_equal(a, x) for x in e),
    "not_in": lambda a, e: not any(values_equal(a, x) for x in e),
    **{op: _ordered(cmp) for op, cmp in _ORDER.items()},
    "regex": lambda a, e: isinstance(a, str) and regex_found(e, a),
    "contains": _contains,
}


def _as_doubles(op: str, actual: Any, expected_double: Any) -> bool:
    """An ordering with both sides as a reader of doubles sees them."""
    return is_number(actual) and _ORDER[op](to_decimal(as_double(actual)), to_decimal(expected_double))


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
        return _OPS[self.op](actual, self.expected)

    def passes(self, actual: Any) -> bool:
        """Judge an argument the call must pass: it holds for every reading a server could act on."""
        held = self.holds_for(actual)
        if not held or actual is MISSING:
            return held
        try:
            return self._passes_every_reading(actual)
        except (Unreadable, RecursionError, OverflowError):
            return False  # not readable as a server may read it: not forwarded

    def triggers(self, actual: Any) -> bool:
        """Judge an argument that makes a call denied, asked about or limited: it holds for some reading."""
        if self.holds_for(actual):
            return True
        if actual is MISSING or self.op in ("neq", "not_in"):
            return False  # a negated test that fails as parsed fails under every reading
        try:
            return self._triggers_on_some_reading(actual)
        except (Unreadable, RecursionError, OverflowError):
            return True  # not readable as a server may read it: the stricter outcome

    def _passes_every_reading(self, actual: Any) -> bool:
        op = self.op
        if op == "neq":
            return not loosely_equals_any(actual, (self.expected_double,))
        if op == "not_in":
            return not loosely_equals_any(actual, self.expected_double)
        if op in _ORDER:
            return _as_doubles(op, actual, self.expected_double)
        parsed = json_in(actual) if type(actual) is str else NOT_JSON
        if parsed is NOT_JSON:  # a coerced scalar ("13" for 13) is the same content: exact suffices
            return True
        if op == "regex":  # the string as itself, and every string a server parses out of it
            return parsed is not None and all(regex_found(self.expected, s) for s in strings_in(parsed))
        return self.holds_for(parsed)

    def _triggers_on_some_reading(self, actual: Any) -> bool:
        op, expected = self.op, self.expected_double
        parsed = json_in(actual) if type(actual) is str else NOT_JSON
        if parsed is not NOT_JSON and self.holds_for(parsed):
            return True
        if op == "eq":
            return loosely_equals_any(actual, (expected,), blank_is_zero=False)
        if op == "in":
            return loosely_equals_any(actual, expected, blank_is_zero=False)
        if op == "contains":  # elementwise only: String(["administrator"]) does not contain "admin"
            items = actual if isinstance(actual, list) else parsed if isinstance(parsed, list) else ()
            same = type(self.expected)  # such items were compared exactly (by holds_for) already
            return any(loosely_equals_any(item, (expected,), blank_is_zero=False)
                       for item in items if type(item) is not same or as_double(item) is not item)
        readings = coerced(actual, blank_is_zero=False)
        if op == "regex":
            texts = [r for r in readings if type(r) is str]
            return any(regex_found(self.expected, t) for t in (*texts, *strings_in(parsed)))
        return op in _ORDER and any(_as_doubles(op, r, expected) for r in (actual, *readings))

    def describe(self) -> str:
        """What the agent must do to pass, e.g. ``args.size must be one of ["small", "large"]``."""
        if self.op == "exists":
            return f"{self.path} is required" if self.expected else f"{self.path} must not be given"
        shown = self.expected.pattern if self.op == "regex" else self.expected
        return f"{self.path} " + _DESCRIBE[self.op].format(v=_show(shown))
