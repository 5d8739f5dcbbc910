"""What a tool's ``inputSchema`` declares: the argument a dot path names, the values it lists.

Schemas come from servers: every walk is bounded in steps, ``$ref`` is followed only inside
the schema itself (``#/...``), and anything the walk cannot read counts as declared (a
finding must be a certainty, not a guess about a schema dialect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_STEPS = 256  # schema nodes visited for one path: $ref cycles and deep unions end here
_UNION = ("anyOf", "oneOf", "allOf")
_SCALAR_TYPES = frozenset({"string", "number", "integer", "boolean", "null"})


@dataclass(frozen=True)
class Undeclared:
    """``segments[depth]`` is not declared where the path reaches; ``known``: what is, there."""

    depth: int
    known: tuple[str, ...]


def listed_values(schema: Mapping[str, Any], *, nested: bool = False) -> list[Any] | None:
    """The values a parameter schema allows when it lists them: enum, const, or anyOf/oneOf of
    those (a ``{"type": "null"}`` branch allows null)."""
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    branches = schema.get("anyOf", schema.get("oneOf"))
    if nested or not isinstance(branches, list) or not branches:
        return None
    out: list[Any] = []
    for branch in branches:
        if not isinstance(branch, Mapping):
            return None
        if branch.get("type") == "null":
            out.append(None)
            continue
        values = listed_values(branch, nested=True)
        if values is None:
            return None
        out.extend(values)
    return out


class _Walk:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.steps = 0

    def _deref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 16:
            ref, seen = node["$ref"], seen + 1
            if not ref.startswith("#/"):
                return None  # an outside schema: unreadable here
            target: Any = self.root
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            node = target
        return node

    def nodes(self, node: Any, segments: tuple[str, ...]) -> tuple[list[Mapping[str, Any]], Undeclared | None]:
        """The schema nodes ``segments`` reach from ``node`` ([] with a None "unknown": the walk
        cannot tell), or the deepest point where the path is undeclared."""
        self.steps += 1
        node = self._deref(node)
        if self.steps > MAX_STEPS or not isinstance(node, Mapping):
            return [], None
        branches = [b for key in _UNION if isinstance(node.get(key), list) for b in node[key]]
        if branches:
            found: list[Mapping[str, Any]] = []
            missing: list[Undeclared] = []
            for branch in branches:
                reached, undeclared = self.nodes(branch, segments)
                if undeclared is None and not reached:
                    return [], None  # one branch the walk cannot read: it may declare the path
                found += reached
                if undeclared is not None:
                    missing.append(undeclared)
            if found or not missing:
                return found, None
            deepest = max(m.depth for m in missing)
            known = sorted({k for m in missing if m.depth == deepest for k in m.known})
            return [], Undeclared(deepest, tuple(known))
        if not segments:
            return [node], None
        return self._child(node, segments)

    def _child(self, node: Mapping[str, Any], segments: tuple[str, ...]) -> tuple[list[Mapping[str, Any]],
                                                                                    Undeclared | None]:
        head, rest = segments[0], segments[1:]
        kind = node.get("type")
        items = node.get("prefixItems", node.get("items"))
        if head.isdigit() and (items is not None or kind == "array"):
            if items is None:
                return [], None  # any item
            if isinstance(items, list):
                if int(head) >= len(items):
                    return [], None  # past the tuple's listed items: the schema may allow more
                items = items[int(head)]
            return self._deeper(items, rest)
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            if head in properties:
                return self._deeper(properties[head], rest)
            if node.get("additionalProperties", False) is False and not node.get("patternProperties"):
                return [], Undeclared(0, tuple(str(k) for k in properties))
            return [], None
        if kind == "array" or (isinstance(kind, str) and kind in _SCALAR_TYPES):
            return [], Undeclared(0, ())  # a string, a number: no parts; an array: indexes only
        return [], None

    def _deeper(self, child: Any, rest: tuple[str, ...]) -> tuple[list[Mapping[str, Any]], Undeclared | None]:
        reached, undeclared = self.nodes(child, rest)
        if undeclared is not None:
            return [], Undeclared(undeclared.depth + 1, undeclared.known)
        return reached, None


def argument(schema: Any, segments: tuple[str, ...]) -> tuple[list[Mapping[str, Any]], Undeclared | None]:
    """Where ``args.<segments>`` lands in an ``inputSchema``: the schema nodes it names (none
    when the schema does not say), or an :class:`Undeclared`. A property the schema lists counts
    as declared whether or not it is required; a schema without ``properties`` accepts anything."""
    if not isinstance(schema, Mapping):
        return [], None
    return _Walk(schema).nodes(schema, segments)
