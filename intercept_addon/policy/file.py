"""Reading policy files: YAML with positions, so every error names FILE:LINE:COL and a field path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from intercept_addon.policy.model import Policy
from intercept_addon.wire.text import shown

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class PolicyError(Exception):
    """A policy file that cannot be used; carries every problem found."""

    def __init__(self, issues: list[PolicyIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def format_loc(loc: Loc) -> str:
    """``('tools', 'a', 'rules', 0, 'op')`` -> ``tools.a.rules[0].op``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out == "" :
            out = part
        elif part and all(c.isalnum() or c in "_-*" for c in part):
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


# libyaml composes the node tree ten times faster than PyYAML's Python parser (a 10,000-tool
# policy: seconds of event loop at each reload); the nodes, and their marks, are the same.
# What libyaml refuses (a surrogate escape such as "\ud800", which scan.py writes for a
# hostile tool name) goes to the Python parser, which reads it, or names the error as before.
_COMPOSERS = (yaml.CSafeLoader, yaml.SafeLoader) if getattr(yaml, "__with_libyaml__", False) else (yaml.SafeLoader,)


def _compose(text: str) -> yaml.Node | None:
    *faster, last = _COMPOSERS
    for composer in faster:
        try:
            return _compose_with(composer, text)
        except yaml.YAMLError:
            pass
    return _compose_with(last, text)


def _compose_with(composer: type, text: str) -> yaml.Node | None:
    loader = composer(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _to_data(node: yaml.Node, loc: Loc, positions: dict[Loc, tuple[int, int]], file: str,
             issues: list[PolicyIssue], loader: yaml.SafeLoader | None = None) -> Any:
    """Build plain data from the node tree, recording where each location starts; duplicate
    keys are issues (PyYAML would silently keep the last one). ``loader``: one SafeLoader's
    constructor for the whole tree (a loader per node cost more than the parse)."""
    loader = loader or yaml.SafeLoader("")
    positions.setdefault(loc, _mark(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<) as SafeLoader would
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                line, col = _mark(key_node)
                issues.append(PolicyIssue(file, line, col, format_loc(loc), f"keys must be strings, got {key!r}"))
                continue
            child = (*loc, key)
            if key in out:
                line, col = _mark(key_node)
                issues.append(PolicyIssue(file, line, col, format_loc(child), f"duplicate key {shown(key)}"))
                continue
            positions[child] = _mark(key_node)
            out[key] = _to_data(value_node, child, positions, file, issues, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, (*loc, i), positions, file, issues, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _position(loc: Loc, positions: dict[Loc, tuple[int, int]]) -> tuple[int, int]:
    # A missing field has no position of its own: point at its nearest existing parent.
    while loc not in positions and loc:
        loc = loc[:-1]
    return positions.get(loc, (1, 1))


def parse_policy(text: str, file: str = "<policy>") -> Policy:
    """Parse and validate policy text; raise PolicyError listing every problem."""
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
        raise PolicyError([PolicyIssue(file, line, col, "", message)]) from None
    if node is None:
        raise PolicyError([PolicyIssue(file, 1, 1, "", "the policy file is empty")])
    positions: dict[Loc, tuple[int, int]] = {}
    issues: list[PolicyIssue] = []
    data = _to_data(node, (), positions, file, issues)
    if not isinstance(data, dict):
        issues.append(PolicyIssue(file, 1, 1, "", "a policy must be a mapping with version and tools"))
        raise PolicyError(issues)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line, col = _position(loc, positions)
            issues.append(PolicyIssue(file, line, col, format_loc(loc), _message(err)))
        policy = None
    if issues:
        issues.sort(key=lambda i: (i.line, i.column))
        raise PolicyError(issues)
    return policy


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the policy reference)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"got {err.get('input')!r}: {err['msg'].lower()}"
    if kind in ("string_type", "int_type", "list_type", "dict_type", "model_type", "bool_type"):
        return f"{err['msg'].lower()}, got {type(err.get('input')).__name__} {err.get('input')!r}"
    return err["msg"]


def parse_policy_bytes(raw: bytes, file: str) -> Policy:
    """Decode (UTF-8) and validate a policy file's bytes; raise PolicyError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([PolicyIssue(file, 1, 1, "", f"policy must be UTF-8: {exc.reason}")]) from None
    return parse_policy(text, file)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise PolicyError (also for an unreadable file)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(path), 1, 1, "", f"cannot read policy: {exc.strerror}")]) from None
    return parse_policy_bytes(raw, str(path))


EXTENSIONS = (".yaml", ".yml")


def files_of(spec: str) -> tuple[list[str], list[str]]:
    """(the policy files, the directories to watch for new ones) of an ``intercept_policy`` value."""
    files, dirs = [], []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        if os.path.isdir(item):
            dirs.append(item)
            files += in_dir(item)
        else:
            files.append(item)
    return list(dict.fromkeys(files)), dirs


def in_dir(directory: str) -> list[str]:
    """The policy files of a directory, by name."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names
            if n.endswith(EXTENSIONS) and not n.startswith(".") and os.path.isfile(os.path.join(directory, n))]
