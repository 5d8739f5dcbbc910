"""Rules on what comes back (our extension): ``answers:`` at the top of a policy (every tools/call
result, resources/read contents and prompts/get messages) or on a tool key (that tool's results)::

    answers:
      redact: [secrets]                 # the named set below, or some of its names
      redact_patterns: ["ACME-[0-9]{8}"]  # RE2, linear time on the server's text
      max_result_bytes: 100000          # over it: an isError result that says so
      deny_if: ["(?i)ignore (all|previous) instructions"]  # a match: an isError result

Every string value of the result is read, at any depth (text content, structured content,
resource text, prompt messages), never the keys. A redacted string keeps its place, with each
secret replaced by ``[REDACTED:<name>]``. What was done, and by which rule, is returned for the
decision log; the secret itself never is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field, PositiveInt, StrictStr, field_validator

from intercept_addon.policy.validation import StrictModel
from intercept_addon.policy.values import compile_regex, regex_found
from intercept_addon.wire.text import shown

# Common secrets, named. Anchored on their fixed prefixes or framing, so ordinary text rarely matches.
SECRETS = {
    "aws_access_key": r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    "aws_secret_key": r"(?i)\baws_?secret_?access_?key\b\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}\b",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "private_key": r"-----BEGIN (?:[A-Z0-9 ]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9 ]+ )?PRIVATE KEY-----",
    "jwt": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
    "bearer_token": r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}",
}
SETS = {"secrets": tuple(SECRETS)}


class AnswerRules(StrictModel):
    redact: list[StrictStr] = Field(default_factory=list)
    redact_patterns: list[StrictStr] = Field(default_factory=list)
    max_result_bytes: PositiveInt | None = None
    deny_if: list[StrictStr] = Field(default_factory=list)

    @field_validator("redact")
    @classmethod
    def _known_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in SECRETS and name not in SETS:
                raise ValueError(f"unknown secret set {shown(name)}; use {', '.join([*SETS, *SECRETS])}")
        return names

    @field_validator("redact_patterns", "deny_if")
    @classmethod
    def _re2(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compile_regex(pattern)
            except ValueError as exc:
                raise ValueError(f"pattern {shown(pattern)} is not RE2: {exc}") from None
        return patterns


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Any  # the result to send instead
    replaced: bool  # the whole result was replaced by an isError one
    what: str  # for the decision log: which rule, how many; never the text


class CompiledAnswers:
    """One rule set (or several merged: the policy's and the tool's), compiled once."""

    def __init__(self, rules: list[AnswerRules]) -> None:
        names = [n for r in rules for name in r.redact for n in SETS.get(name, (name,))]
        self.redactions = [(n, compile_regex(SECRETS[n])) for n in dict.fromkeys(names)]
        self.redactions += [(f"pattern {i + 1}", compile_regex(p))
                            for i, p in enumerate(p for r in rules for p in r.redact_patterns)]
        self.denials = [compile_regex(p) for r in rules for p in r.deny_if]
        limits = [r.max_result_bytes for r in rules if r.max_result_bytes is not None]
        self.max_bytes = min(limits) if limits else None

    def apply(self, result: Any, what: str) -> Outcome | None:
        """The result to send instead of ``result`` (of ``what``, e.g. ``tool sora_x``), or None."""
        if self.max_bytes is not None:
            size = len(json.dumps(result, default=str, ensure_ascii=False).encode())
            if size > self.max_bytes:
                return _replaced(f"the {what} answered {size} bytes, over max_result_bytes {self.max_bytes}",
                                 "max_result_bytes")
        for i, pattern in enumerate(self.denials):
            if _any_string(result, lambda s, p=pattern: regex_found(p, s)):
                return _replaced(f"the {what}'s answer matched a deny_if pattern of the policy", f"deny_if[{i}]")
        if not self.redactions:
            return None
        counts: dict[str, int] = {}
        redacted = _map_strings(result, lambda s: self._redact(s, counts))
        if not counts:
            return None
        return Outcome(redacted, False, "redact " + ", ".join(f"{n} x{c}" for n, c in counts.items()))

    def _redact(self, text: str, counts: dict[str, int]) -> str:
        for name, pattern in self.redactions:
            text, n = pattern.subn(f"[REDACTED:{name}]", text)
            if n:
                counts[name] = counts.get(name, 0) + n
        return text


def _replaced(message: str, rule: str) -> Outcome:
    text = f"[INTERCEPT POLICY] {message}; the answer was withheld"
    return Outcome({"content": [{"type": "text", "text": text}], "isError": True}, True, rule)


def _map_strings(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    return value


def _any_string(value: Any, test: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if test(node):
                return True
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return False
