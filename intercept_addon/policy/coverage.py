"""Does a policy name what a server has? A key or argument the server does not know is a rule
that silently never applies: the catalogue's ``Image-to-Video`` limit on a server whose tool is
``sora_generate_video_from_image`` limits nothing.

:func:`compare` judges a Policy against the ``tools`` array of a tools/list result:

* every ``tools`` key and ``hide`` entry (exact or glob; ``"*"`` matches anything) that matches
  no listed tool, with the closest real names (from names, titles and descriptions);
* every ``args.`` path of a rule (``conditions``, ``when``, ``state.increment_from``) that the
  input schema of none of the tools its key matches declares, with the closest declared paths;
* every ``in``/``not_in`` value outside the values the schema lists (``enum``, ``const``).

Matching is exact, as the engine matches keys. Pure: no I/O, no mitmproxy. Server text is
untrusted: it is read in bounded amounts and every name shown is escaped.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from intercept_addon.policy.conditions import split_path
from intercept_addon.policy.model import Policy
from intercept_addon.policy.rules import Condition, Rule
from intercept_addon.policy.schemas import argument, listed_values
from intercept_addon.policy.values import is_glob, values_equal
from intercept_addon.wire.jsonrpc import fold
from intercept_addon.wire.text import shown

MAX_SUGGESTIONS = 3
MAX_NAME_CHARS = 200  # of a name or title compared with difflib (quadratic in length)
MAX_TEXT_CHARS = 4000  # of a description searched for a key's words
MAX_SHOWN_VALUES = 20
_SEPARATORS = re.compile(r"[\W_]+")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def words(text: str) -> tuple[str, ...]:
    """Case-folded words, split at every separator (``-_ ./``) and at case changes and digits."""
    out: list[str] = []
    for part in _SEPARATORS.split(unicodedata.normalize("NFKC", text)):
        out += [w.casefold() for w in (_CAMEL.findall(part) if part.isascii() else [part]) if w]
    return tuple(out)


@dataclass(frozen=True)
class ListedTool:
    """One tool of a tools/list answer, read once for every comparison."""

    name: str
    schema: Any
    name_words: tuple[str, ...]
    phrase: str  # name and title words, space-separated: " a b "
    described: str  # description words, the same way

    @classmethod
    def read(cls, tool: Any) -> ListedTool | None:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return None
        name = tool["name"]
        title = tool.get("title") if isinstance(tool.get("title"), str) else ""
        description = tool.get("description") if isinstance(tool.get("description"), str) else ""
        named = words(name[:MAX_NAME_CHARS]) + words(title[:MAX_NAME_CHARS])
        return cls(name, tool.get("inputSchema"), named, f" {' '.join(named)} ",
                   f" {' '.join(words(description[:MAX_TEXT_CHARS]))} ")


def read_tools(tools: Iterable[Any]) -> list[ListedTool]:
    return [t for t in map(ListedTool.read, tools) if t is not None]


def _matches(key: str, name: str) -> bool:
    return key == "*" or (fnmatch.fnmatchcase(name, key) if is_glob(key) else key == name)


def closest_tools(key: str, tools: Sequence[ListedTool]) -> tuple[str, ...]:
    """The listed tools ``key`` most likely meant: the key's words as a phrase in a name or title
    (3) or a description (2), the share of its words in the name (0..1), difflib's ratio of the
    two (0..1). With a phrase found, only the tools it was found in are kept; else those scoring
    at least half the best."""
    key_words = words(key.translate(str.maketrans("*?[]", "    ")))
    if not key_words:
        return ()
    phrase = f" {' '.join(key_words)} "
    scored = []
    for tool in tools:
        shared = len(set(key_words) & set(tool.name_words)) / len(set(key_words))
        ratio = difflib.SequenceMatcher(None, phrase.strip(), " ".join(tool.name_words)).ratio()
        bonus = 3 if phrase in tool.phrase else 2 if phrase in tool.described else 0
        if bonus or shared or ratio >= 0.6:
            scored.append((bonus + shared + ratio, tool.name))
    if not scored:
        return ()
    best = max(score for score, _ in scored)
    floor = 2 if best >= 2 else best / 2  # the key's words as a phrase: only those tools
    ranked = sorted((s for s in scored if s[0] >= floor), key=lambda s: (-s[0], s[1]))
    return tuple(name for _, name in ranked[:MAX_SUGGESTIONS])


# -- findings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unmatched:
    """A ``tools`` key or ``hide`` entry that matches no listed tool."""

    key: str
    hidden: bool  # a hide entry
    closest: tuple[str, ...]

    def describe(self, server: str) -> str:
        what = "hide entry" if self.hidden else "policy key"
        close = f"closest: {', '.join(map(_name, self.closest))}" if self.closest else "no tool has a similar name"
        return f"{what} {shown(self.key)} matches no tool of {server}; {close}"


@dataclass(frozen=True)
class UnknownArgument:
    """An ``args.`` path the input schema of none of the key's tools declares."""

    key: str
    rule: str
    path: str
    tools: tuple[str, ...]
    closest: tuple[str, ...]

    def describe(self, server: str) -> str:
        close = f"closest: {', '.join(self.closest)}" if self.closest else "no similar argument"
        return (f"policy key {shown(self.key)} rule {shown(self.rule)}: {shown(self.path)} is not an argument of "
                f"{_names(self.tools)} ({server}); {close}")


@dataclass(frozen=True)
class UnlistedValue:
    """An ``in``/``not_in`` value outside the values the schema lists for that argument."""

    key: str
    rule: str
    path: str
    op: str
    values: tuple[Any, ...]
    allowed: tuple[Any, ...]
    tools: tuple[str, ...]

    def describe(self, server: str) -> str:
        return (f"policy key {shown(self.key)} rule {shown(self.rule)}: {shown(self.path)} {self.op} lists "
                f"{_values(self.values)}, which {_names(self.tools)} ({server}) never accepts; "
                f"its values: {_values(self.allowed)}")


Finding = Unmatched | UnknownArgument | UnlistedValue


@dataclass(frozen=True)
class Coverage:
    findings: tuple[Finding, ...]

    @property
    def unmatched(self) -> tuple[Unmatched, ...]:
        return tuple(f for f in self.findings if isinstance(f, Unmatched))

    def lines(self, server: str) -> list[str]:
        return [f.describe(server) for f in self.findings]


def _name(name: str) -> str:
    return shown(name, MAX_NAME_CHARS)[1:-1] if name.isidentifier() else shown(name, MAX_NAME_CHARS)


def _names(names: Sequence[str]) -> str:
    shown_names = ", ".join(map(_name, names[:MAX_SUGGESTIONS]))
    return shown_names + (f" and {len(names) - MAX_SUGGESTIONS} more" if len(names) > MAX_SUGGESTIONS else "")


def _values(values: Sequence[Any]) -> str:
    text = ", ".join(shown(v) if isinstance(v, str) else repr(v) for v in values[:MAX_SHOWN_VALUES])
    return f"[{text}{', ...' if len(values) > MAX_SHOWN_VALUES else ''}]"


# -- the comparison -------------------------------------------------------------------------------


def compare(policy: Policy, tools: Iterable[Any]) -> Coverage:
    """Every finding of ``policy`` against a tools/list ``tools`` array, in policy order."""
    listed = read_tools(tools)
    findings: list[Finding] = []
    for key, hidden in [*((k, False) for k in policy.tools), *((h, True) for h in policy.hide)]:
        if key != "*" and not any(_matches(key, t.name) for t in listed):
            findings.append(Unmatched(key, hidden, closest_tools(key, listed)))
    for key, tool_policy in policy.tools.items():
        matched = [t for t in listed if _matches(key, t.name)]
        if matched:
            for i, rule in enumerate(tool_policy.rules):
                findings += _rule_findings(key, rule.name or f"rules[{i}]", rule, matched)
    return Coverage(tuple(findings))


def _argument_checks(rule: Rule) -> Iterable[tuple[str, Condition | None]]:
    for cond in (*rule.conditions, *rule.when):
        if cond.path.startswith("args."):
            yield cond.path, cond
    if rule.state is not None and rule.state.increment_from is not None:
        yield rule.state.increment_from, None


def _rule_findings(key: str, label: str, rule: Rule, tools: Sequence[ListedTool]) -> list[Finding]:
    out: list[Finding] = []
    reported: set[str] = set()
    names = tuple(t.name for t in tools)
    for path, cond in _argument_checks(rule):
        segments = split_path(path)
        walks = [argument(t.schema, segments) for t in tools]
        if all(undeclared is not None for _, undeclared in walks):
            if path not in reported:
                reported.add(path)
                out.append(UnknownArgument(key, label, path, names, _closest_paths(segments, walks)))
            continue
        if cond is None or cond.op not in ("in", "not_in") or not isinstance(cond.value, list):
            continue
        nodes = [node for reached, _ in walks for node in reached]
        allowed = [listed_values(node) for node in nodes]
        if not nodes or any(values is None for values in allowed):
            continue  # some tool takes any value there (or the schema does not say)
        accepted = [v for values in allowed for v in values]  # type: ignore[union-attr]
        unlisted = tuple(v for v in cond.value if not any(values_equal(v, a) for a in accepted))
        if unlisted:
            out.append(UnlistedValue(key, label, path, cond.op, unlisted, tuple(_unique(accepted)), names))
    return out


def _closest_paths(segments: tuple[str, ...], walks: Sequence[tuple[Any, Any]]) -> tuple[str, ...]:
    deepest = max(u.depth for _, u in walks)
    known = sorted({k for _, u in walks if u.depth == deepest for k in u.known})
    wrong = segments[deepest]
    same = [k for k in known if fold(k) == fold(wrong)]  # `Model` for `model`
    close = same or difflib.get_close_matches(wrong, known, n=MAX_SUGGESTIONS, cutoff=0.7)
    return tuple("args." + ".".join((*segments[:deepest], k)) for k in close[:MAX_SUGGESTIONS])


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(values_equal(v, seen) for seen in out):
            out.append(v)
    return out
