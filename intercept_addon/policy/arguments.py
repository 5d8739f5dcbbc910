"""``arguments: schema``: a call's arguments checked against the ``inputSchema`` its server published.

The check is the ``jsonschema`` library's, under the draft the schema declares (2020-12 when it
declares none). The schema comes from the server, which may be hostile, so:

- regular expressions (``pattern``, ``patternProperties`` and the ``additionalProperties``
  that depends on them) run on RE2, in linear time: a server cannot freeze the proxy with a
  pattern that backtracks on the agent's input. A pattern RE2 cannot compile, a schema that is
  not valid under its draft, or a reference that does not resolve, makes the schema unusable,
  and the call is denied rather than waved through;
- ``unevaluatedProperties`` next to ``patternProperties`` is refused as unusable for the same
  reason (the library would match those patterns with Python's backtracking ``re``).

Arguments holding a number a reader of doubles sees otherwise (a long fraction, an integer past
2**53) are checked twice, as parsed and as doubles, and must pass both: ``exclusiveMaximum: 100``
does not let ``99.99999999999999999`` through to a server that reads 100.

A validator is compiled once per distinct schema (by its canonical JSON) and kept in a bounded
cache, not per call.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError, exceptions, validators
from referencing.exceptions import Unresolvable

from intercept_addon.policy.readings import as_double
from intercept_addon.policy.values import regex_found
from intercept_addon.wire.text import escaped, shown

MAX_VALIDATORS = 1024  # distinct schemas compiled (a server publishes a few dozen)
MAX_SHOWN = 200  # characters of the library's message in a denial
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class SchemaUnusable(Exception):
    """The server's schema cannot be checked against: the call is denied."""


def _compiled(pattern: Any) -> Any:
    if not isinstance(pattern, str):
        raise SchemaUnusable(f"pattern {shown(str(pattern))} is not a string")
    try:
        return _regex_cache(pattern)
    except re2.error as exc:
        raise SchemaUnusable(f"pattern {shown(pattern)} is not RE2: {exc}") from None


_PATTERNS: OrderedDict[str, Any] = OrderedDict()


def _regex_cache(pattern: str) -> Any:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re2.compile(pattern, options=_RE2_OPTIONS)
        if len(_PATTERNS) > MAX_VALIDATORS:
            _PATTERNS.popitem(last=False)
    return found


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not regex_found(_compiled(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _compiled(pattern)
        for key, value in instance.items():
            if regex_found(regex, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = [_compiled(p) for p in schema.get("patternProperties", {})]
    extras = [k for k in instance if k not in declared and not any(regex_found(r, k) for r in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        yield ValidationError(f"additional properties are not allowed ({', '.join(repr(e) for e in sorted(extras))})")


RE2_KEYWORDS = {"pattern": _pattern, "patternProperties": _pattern_properties,
                "additionalProperties": _additional_properties}


_DRAFTS: dict[Any, Any] = {}


def _on_re2(draft: Any) -> Any:
    """The draft's validator class with its regular expressions on RE2 (one class per draft)."""
    if draft not in _DRAFTS:
        _DRAFTS[draft] = validators.extend(draft, RE2_KEYWORDS)
    return _DRAFTS[draft]


def _uses_both(schema: Any) -> bool:
    """Does any subschema have unevaluatedProperties while some subschema has patternProperties?"""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(k for k in ("unevaluatedProperties", "patternProperties") if k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return len(found) == 2


def check(validator: Any, arguments: Mapping[str, Any]) -> str | None:
    """The denial text for ``arguments`` under a compiled validator, or None; raises SchemaUnusable."""
    exact = dict(arguments)
    doubles = as_double(exact)
    read_as = ""
    try:
        error = exceptions.best_match(validator.iter_errors(exact))
        if error is None and doubles is not exact:
            error = exceptions.best_match(validator.iter_errors(doubles))
            read_as = " (as a server reading numbers as doubles sees it)"
    except Unresolvable as exc:
        raise SchemaUnusable(f"a reference does not resolve: {exc}") from None
    if error is None:
        return None
    where = "args" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message if len(error.message) <= MAX_SHOWN else error.message[:MAX_SHOWN] + "…"
    message += read_as
    return f"{escaped(where)}: {escaped(message)}"


class ArgumentSchemas:
    """Validators compiled once per distinct schema (by its canonical JSON). Callers that keep a
    schema keep its ``compile(schema)`` too and ``check`` with it: the cache key costs more
    than the check."""

    def __init__(self) -> None:
        self._validators: OrderedDict[str, Any] = OrderedDict()

    def problem(self, schema: Any, arguments: Mapping[str, Any]) -> str | None:
        return check(self.compile(schema), arguments)

    def compile(self, schema: Any) -> Any:
        """The validator of ``schema``; raises SchemaUnusable."""
        if not isinstance(schema, dict):
            raise SchemaUnusable("the tool's inputSchema is not an object")
        key = json.dumps(schema, sort_keys=True, default=str)
        validator = self._validators.get(key)
        if validator is not None:
            self._validators.move_to_end(key)
            return validator
        if _uses_both(schema):
            raise SchemaUnusable("unevaluatedProperties with patternProperties is not checked")
        draft = validators.validator_for(schema, default=Draft202012Validator)
        try:
            draft.check_schema(schema)
        except exceptions.SchemaError as exc:
            raise SchemaUnusable(f"the tool's inputSchema is not valid: {shown(exc.message[:MAX_SHOWN])}") from None
        validator = _on_re2(draft)(schema)
        self._validators[key] = validator
        if len(self._validators) > MAX_VALIDATORS:
            self._validators.popitem(last=False)
        return validator
