"""The policy file format: one pydantic model family is its single definition.

Two dialects live side by side in one file, rule by rule:

* Intercept's v1 form (POLICY.md of PolicyLayer Intercept): ``action: evaluate|deny``,
  ``conditions``, ``on_deny``, ``state`` counters on calendar-aligned UTC windows, and the
  ``rate_limit: "5/hour"`` shorthand.
* The catalogue form: ``action: allow|deny``, ``reason``, and
  ``rate_limit: {max: 30, window: 60}``, a sliding window per agent session. Argument
  validation uses the same ``conditions`` list.

Every check lives in the models (field and model validators raising errors located at the
offending field), so ``Policy.model_validate`` rejects exactly what the validator CLI reports.
This module holds the policy as a whole (tools, hide, fingerprints); a rule and its parts are
in rules.py, the values they share in values.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from intercept_addon.policy.answer_rules import AnswerRules
from intercept_addon.policy.fingerprint import PATTERN as FINGERPRINT
from intercept_addon.policy.rules import Rule, namespace_of
from intercept_addon.policy.sections import Section
from intercept_addon.policy.servers import ServerPattern, parse_pattern
from intercept_addon.policy.validation import StrictModel, error_at, raise_errors, reraise
from intercept_addon.policy.values import GLOBAL_NAMESPACE, is_glob, split_state_path
from intercept_addon.wire.text import escaped, shown


def _valid_rules(raw_rules: Any) -> list[tuple[int, Rule]]:
    """The rules of a raw list that are valid by themselves: cross-rule checks still judge them
    when a sibling is invalid, so that every error is reported at once."""
    out = []
    for i, raw in enumerate(raw_rules if isinstance(raw_rules, list) else ()):
        try:
            out.append((i, Rule.model_validate(raw)))
        except ValidationError:
            pass
    return out


class ToolPolicy(StrictModel):
    rules: list[Rule] = Field(default_factory=list)
    # Our extension: check this tool's arguments against the inputSchema its server published.
    arguments: Literal["schema"] | None = None
    # Our extension: rules on this tool's results (policy/answer_rules.py).
    answers: AnswerRules | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _unique_counters(cls, data: Any, handler: Any) -> ToolPolicy:
        errors: list[InitErrorDetails] = []
        try:
            tool = handler(data)
            rules = list(enumerate(tool.rules))
        except ValidationError as exc:
            tool = None
            errors.extend(reraise(exc))
            rules = _valid_rules(data.get("rules") if isinstance(data, dict) else None)
        seen: dict[str, int] = {}
        for i, rule in rules:
            counter = rule.counter
            if counter is None:
                continue
            if counter in seen:
                errors.append(
                    error_at(
                        ("rules", i),
                        f"duplicate state counter {shown(counter)} (also used by rules[{seen[counter]}])",
                        counter,
                    )
                )
            else:
                seen[counter] = i
        raise_errors("ToolPolicy", errors)
        return tool


def _sha256(value: str) -> str:
    if not FINGERPRINT.fullmatch(value):
        raise PydanticCustomError(
            "policy", 'fingerprint must be "sha256:" and 64 lower-case hex digits, got {v}', {"v": shown(value)}
        )
    return value


class Fingerprints(StrictModel):
    """Our extension (written by ``scan``): pinned tool definitions, see fingerprint.py.

    A pinned tool served with another definition flags the tools/list flow, and then
    ``flag``: nothing more; ``deny``: its calls are denied; ``hide``: it is also removed from
    tools/list answers, until the pins change.
    """

    on_change: Literal["flag", "deny", "hide"] = "hide"
    tools: dict[StrictStr, Annotated[StrictStr, AfterValidator(_sha256)]] = Field(default_factory=dict)


class Policy(StrictModel):
    version: Any = "1"  # omitted means "1": the catalogue's snippets have no version line
    description: StrictStr | None = None
    default: Any = "allow"
    hide: list[StrictStr] = Field(default_factory=list)
    # Our extension: a tool denied outright for a caller is absent from that caller's tools/list.
    hide_denied: StrictBool = False
    # Our extension: the denial form for this policy's calls, over the intercept_deny_as option
    # (some clients hide a JSON-RPC error's text from the model; see the README's table).
    deny_as: Literal["error", "result"] | None = None
    tools: dict[StrictStr, ToolPolicy]
    fingerprints: Fingerprints | None = None
    # Our extension: every call's arguments checked against its server's inputSchema (policy/arguments.py).
    arguments: Literal["schema"] | None = None
    # Our extension: rules on every answer of tools/call, resources/read, prompts/get (policy/answer_rules.py).
    answers: AnswerRules | None = None
    # Our extension: rules for resources/read, prompts/get, completion/complete, and the server's
    # sampling/createMessage and elicitation/create (policy/sections.py).
    resources: Section | None = None
    prompts: Section | None = None
    completion: Section | None = None
    sampling: Section | None = None  # requests the server sends the client
    elicitation: Section | None = None
    # Our extension: the servers this policy governs (policy/servers.py); None: the fallback.
    servers: list[ServerPattern] | None = None

    @field_validator("servers", mode="before")
    @classmethod
    def _server_patterns(cls, servers: Any) -> list[ServerPattern]:
        if not isinstance(servers, list) or not servers:
            raise PydanticCustomError("policy", "servers must be a non-empty list of URL patterns, got {v}",
                                      {"v": shown(_as_written(servers))})
        errors, patterns, seen = [], [], set()
        for i, text in enumerate(servers):
            try:
                if not isinstance(text, str):
                    raise ValueError(f"server pattern must be a string, got {shown(_as_written(text))}")
                pattern = parse_pattern(text)
                if pattern.canonical in seen:
                    raise ValueError(f"duplicate server pattern {shown(text)}")
            except ValueError as exc:
                errors.append(error_at((i,), str(exc), text))
                continue
            seen.add(pattern.canonical)
            patterns.append(pattern)
        raise_errors("servers", errors)
        return patterns

    @field_validator("version", mode="before")
    @classmethod
    def _version_one(cls, version: Any) -> str:
        # Go's YAML decoder reads `version: 1` into a string too, so Intercept accepts it
        # (but not `1.0`, which it reads as the string "1.0").
        if type(version) is int and version == 1:
            version = "1"
        if version != "1":
            raise PydanticCustomError("policy", 'version must be "1", got {v}', {"v": shown(_as_written(version))})
        return version

    @field_validator("default", mode="before")
    @classmethod
    def _posture(cls, default: Any) -> str:
        if default not in ("allow", "deny"):
            raise PydanticCustomError(
                "policy", 'default must be "allow" or "deny", got {d}', {"d": shown(_as_written(default))}
            )
        return default

    @field_validator("hide")
    @classmethod
    def _hide_entries(cls, hide: list[str]) -> list[str]:
        errors = []
        seen = set()
        for i, name in enumerate(hide):
            if not name.strip():
                errors.append(error_at((i,), f"entry must not be empty, got {shown(name)}", name))
            elif name in seen:
                errors.append(error_at((i,), f"duplicate entry {shown(name)}", name))
            seen.add(name)
        raise_errors("hide", errors)
        return hide

    @field_validator("tools")
    @classmethod
    def _tool_keys(cls, tools: dict[str, ToolPolicy]) -> dict[str, ToolPolicy]:
        errors = []
        for key in tools:
            if not key.strip():
                errors.append(error_at((key,), f"tool name must not be empty, got {shown(key)}", key))
            elif key == GLOBAL_NAMESPACE:
                errors.append(error_at((key,), f'"{GLOBAL_NAMESPACE}" is reserved for "*" counters', key))
            elif is_glob(key):
                try:
                    _glob_check(key)
                except ValueError as exc:
                    errors.append(error_at((key,), str(exc), key))
        raise_errors("tools", errors)
        return tools

    @model_validator(mode="wrap")
    @classmethod
    def _state_references(cls, data: Any, handler: Any) -> Policy:
        """A condition on state.<ns>.<counter> must name a counter some rule keeps."""
        errors: list[InitErrorDetails] = []
        try:
            policy = handler(data)
            tools = {key: list(enumerate(tool.rules)) for key, tool in policy.tools.items()}
            kept = {(namespace_of(key, rule), rule.counter) for key, rules in tools.items() for _, rule in rules}
        except ValidationError as exc:
            # Judge the rules that are valid by themselves; a counter named by an invalid rule's
            # state block still counts as kept (no second error for one mistake).
            policy = None
            errors.extend(reraise(exc))
            raw_tools = data.get("tools") if isinstance(data, dict) else None
            raw_tools = {k: v for k, v in raw_tools.items() if isinstance(v, dict)} if isinstance(raw_tools, dict) else {}
            tools = {key: _valid_rules(tool.get("rules")) for key, tool in raw_tools.items()}
            kept = {(namespace_of(key, rule), rule.counter) for key, rules in tools.items() for _, rule in rules}
            for key, tool in raw_tools.items():
                for raw in tool.get("rules") if isinstance(tool.get("rules"), list) else ():
                    state = raw.get("state") if isinstance(raw, dict) else None
                    if isinstance(state, dict) and isinstance(state.get("counter"), str):
                        ns = GLOBAL_NAMESPACE if key == "*" or raw.get("scope") == "global" else key
                        kept.add((ns, state["counter"]))
        for key, rules in tools.items():
            for i, rule in rules:
                for j, cond in enumerate(rule.conditions):
                    if not cond.path.startswith("state."):
                        continue
                    ns, counter = split_state_path(cond.path)
                    if (ns, counter) not in kept:
                        errors.append(
                            error_at(
                                ("tools", key, "rules", i, "conditions", j, "path"),
                                f"condition references {escaped(cond.path)} but no matching state block found",
                                cond.path,
                            )
                        )
        raise_errors("Policy", errors)
        return policy


def _as_written(value: Any) -> str:
    """A scalar as the author wrote it in YAML, read as Go reads it into a string (Intercept
    quotes it: ``got "2"`` for ``version: 2``); pydantic would print True as "1"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _glob_check(key: str) -> None:
    depth = 0
    for ch in key:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    if depth != 0:
        raise ValueError(f'unbalanced "[" in tool pattern {shown(key)}')

