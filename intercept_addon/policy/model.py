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
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from intercept_addon.policy.fingerprint import PATTERN as FINGERPRINT
from intercept_addon.wire.text import DEFAULT_LIMIT, escaped, shown

OPERATORS = ("eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists")
NUMERIC_OPS = frozenset({"lt", "lte", "gt", "gte"})
LIST_OPS = frozenset({"in", "not_in"})
CALENDAR_WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}
# What a counter counts per: the agent (the catalogue form's default; "session" is its old
# name), the verified user, the MCP session inside an agent, the tool key, or one shared counter.
SCOPES = ("agent", "session", "user", "mcp-session", "tool", "global")
IDENTITY_PATHS = ("identity.agent", "identity.sub")  # and identity.claims.<name>[.<name>...]
GLOBAL_NAMESPACE = "_global"  # Intercept's counter namespace for "*" rules
MAX_WINDOW_SECONDS = 31 * 86400

_RATE_SHORTHAND = re.compile(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*$")
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GLOB_CHARS = frozenset("*?[")


def _fail(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("policy", message), loc=loc, input=value
    )


def _raise(title: str, errors: list[InitErrorDetails]) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def is_number(value: Any) -> bool:
    """JSON/YAML numbers; bool is not a number here (True == 1 in Python), nor is NaN (it
    compares with nothing, and Decimal's ordering raises on it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return False
    return not (value.is_nan() if isinstance(value, Decimal) else value != value)


def compile_regex(pattern: str) -> Any:
    """RE2 (Go's dialect, as in Intercept): linear time on agent-controlled input."""
    options = re2.Options()
    options.log_errors = False  # errors are reported by the validator, not printed by RE2
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None


def split_state_path(path: str) -> tuple[str, str]:
    """``state.<ns>.<counter>`` -> (ns, counter); tool names may themselves contain dots."""
    ns, _, counter = path.removeprefix("state.").rpartition(".")
    return ns, counter


def is_glob(key: str) -> bool:
    return key != "*" and any(c in GLOB_CHARS for c in key)


def parse_rate_shorthand(text: str) -> tuple[int, str]:
    """``"5/hour"`` -> (5, "hour"); raises ValueError with Intercept's messages."""
    m = _RATE_SHORTHAND.match(text)
    if not m:
        raise ValueError(f'rate_limit must look like "<count>/<minute|hour|day>", got {shown(text)}')
    count, window = m.groups()
    if not count.isdigit() or int(count) <= 0:
        raise ValueError(f"rate_limit count must be a positive integer, got {shown(count)}")
    if window not in CALENDAR_WINDOWS:
        raise ValueError(f'rate_limit window must be "minute", "hour", or "day", got {shown(window)}')
    return int(count), window


def parse_duration(value: int | str) -> int:
    """Seconds from ``60``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``, or a window name."""
    if isinstance(value, str):
        if value in CALENDAR_WINDOWS:
            return CALENDAR_WINDOWS[value]
        m = _DURATION.match(value)
        if not m:
            raise ValueError(
                f'window must be seconds (e.g. 60) or a duration like "90s", "5m", "1h", "1d", got {shown(value)}'
            )
        value = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if value <= 0 or value > MAX_WINDOW_SECONDS:
        raise ValueError(f"window must be between 1 second and 31 days, got {value}")
    return value


class _Strict(BaseModel):
    # Unknown keys (typos like `on_deney`) are errors, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One check; all conditions of a rule are ANDed."""

    path: StrictStr
    op: StrictStr
    value: Any = None
    # Our extension: a missing argument passes (checks an optional argument only when given).
    optional: StrictBool = False

    @field_validator("path")
    @classmethod
    def _path_prefix(cls, path: str) -> str:
        if not path.startswith(("args.", "state.", "identity.")):
            raise PydanticCustomError(
                "policy", 'path must start with "args.", "state." or "identity.", got {path}', {"path": shown(path)}
            )
        if path.startswith("identity.") and path not in IDENTITY_PATHS and not (
                path.startswith("identity.claims.") and "" not in path.split(".")):
            raise PydanticCustomError(
                "policy", 'identity paths are identity.agent, identity.sub and identity.claims.<name>, got {path}',
                {"path": shown(path)})
        if path.startswith("state.") and not all(split_state_path(path)):
            raise PydanticCustomError(
                "policy", 'state paths look like "state.<tool|_global>.<counter>", got {path}', {"path": shown(path)}
            )
        if path.startswith("args.") and any(part == "" for part in path.split(".")):
            raise PydanticCustomError("policy", "path has an empty segment: {path}", {"path": shown(path)})
        return path

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in OPERATORS:
            raise PydanticCustomError(
                "policy",
                "unknown operator {op} (use one of: {ops})",
                {"op": shown(op), "ops": ", ".join(OPERATORS)},
            )
        return op

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        op, value = self.op, self.value
        msg = None
        if op in LIST_OPS and not isinstance(value, list):
            msg = f'operator "{op}" requires a list value, got {shown_value(value)}'
        elif op in NUMERIC_OPS and not is_number(value):
            msg = f'operator "{op}" requires a numeric value, got {shown_value(value)}'
        elif op == "exists" and not isinstance(value, bool):
            msg = f'operator "exists" requires a boolean value, got {shown_value(value)}'
        elif op == "regex":
            if not isinstance(value, str):
                msg = f"regex value must be a string, got {shown_value(value)}"
            else:
                try:
                    compile_regex(value)
                except ValueError as exc:
                    msg = f"invalid regex {shown(value)}: {escaped(str(exc))}"
        elif op == "contains" and value is None:
            msg = 'operator "contains" requires a value, got null'
        if self.optional and not self.path.startswith("args."):
            msg = f"optional applies to args paths only, got {shown(self.path)}"
        _raise("Condition", [_fail(("value",), msg, value)] if msg else [])
        return self


class StateDef(_Strict):
    """Intercept's counter: calendar-aligned UTC window, fixed or argument-driven increment."""

    counter: StrictStr
    window: StrictStr
    increment: StrictInt = 1
    increment_from: StrictStr | None = None

    @field_validator("counter")
    @classmethod
    def _counter_named(cls, counter: str) -> str:
        if not counter.strip():
            raise PydanticCustomError("policy", "counter must not be empty, got {c}", {"c": shown(counter)})
        if "." in counter:
            raise PydanticCustomError("policy", 'counter must not contain ".", got {c}', {"c": shown(counter)})
        return counter

    @field_validator("window")
    @classmethod
    def _calendar_window(cls, window: str) -> str:
        if window not in CALENDAR_WINDOWS:
            raise PydanticCustomError(
                "policy", 'window must be "minute", "hour", or "day", got {w}', {"w": shown(window)}
            )
        return window

    @field_validator("increment")
    @classmethod
    def _positive_increment(cls, increment: int) -> int:
        if increment <= 0:
            raise PydanticCustomError("policy", "increment must be a positive integer, got {i}", {"i": increment})
        return increment

    @field_validator("increment_from")
    @classmethod
    def _args_path(cls, path: str | None) -> str | None:
        if path is not None and (not path.startswith("args.") or "" in path.split(".")):
            raise PydanticCustomError(
                "policy", 'increment_from must start with "args.", got {p}', {"p": shown(path)}
            )
        return path


class RateLimit(_Strict):
    """The catalogue form: at most ``max`` calls in any ``window`` seconds (sliding)."""

    max: StrictInt
    window: StrictInt | StrictStr

    @field_validator("max")
    @classmethod
    def _positive_max(cls, value: int) -> int:
        if value <= 0:
            raise PydanticCustomError("policy", "max must be a positive integer, got {v}", {"v": value})
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: int | str) -> int | str:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("policy", str(exc)) from None
        return value

    @property
    def seconds(self) -> int:
        return parse_duration(self.window)


class Rule(_Strict):
    name: StrictStr | None = None
    action: Literal["evaluate", "deny", "allow"] = "evaluate"
    conditions: list[Condition] = Field(default_factory=list)
    on_deny: StrictStr | None = None
    reason: StrictStr | None = None
    state: StateDef | None = None
    rate_limit: StrictStr | RateLimit | None = None
    scope: Literal["agent", "session", "user", "mcp-session", "tool", "global"] | None = None
    # Our extension: the rule applies only to calls for which all of these hold (args, identity).
    when: list[Condition] = Field(default_factory=list)

    @field_validator("rate_limit")
    @classmethod
    def _shorthand(cls, value: str | RateLimit | None) -> str | RateLimit | None:
        if isinstance(value, str):
            try:
                parse_rate_shorthand(value)
            except ValueError as exc:
                raise PydanticCustomError("policy", str(exc)) from None
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: Any) -> Rule:
        # A wrap validator so that cross-field errors are reported together with the
        # field errors of the same rule (every error at once), not only once the fields pass.
        errors: list[InitErrorDetails] = []
        rule = None
        try:
            rule = handler(data)
        except ValidationError as exc:
            errors.extend(_rate_limit_branch(err, data) for err in _reraise(exc))
        if isinstance(data, dict):
            errors.extend(_rule_shape_errors(data))
        errors = [err for err in errors if err is not None]
        _raise("Rule", errors)
        return rule

    @property
    def message(self) -> str | None:
        return self.on_deny if self.on_deny is not None else self.reason

    @property
    def counter(self) -> str | None:
        """The counter this rule keeps: its state counter, or the one a rate_limit implies."""
        if self.state is not None:
            return self.state.counter
        if isinstance(self.rate_limit, str):
            return f"_rate_{parse_rate_shorthand(self.rate_limit)[1]}"
        if isinstance(self.rate_limit, RateLimit):
            return f"_rate_{self.rate_limit.seconds}s"
        return None

    @property
    def effective_scope(self) -> str:
        """Catalogue limits are per agent; Intercept's counters are per tool."""
        if self.scope is not None:
            return "agent" if self.scope == "session" else self.scope
        return "agent" if isinstance(self.rate_limit, RateLimit) else "tool"


def _reraise(exc: ValidationError) -> list[InitErrorDetails]:
    """Turn a child's errors back into error details, keeping their locations."""
    out = []
    for err in exc.errors():
        if err["type"] == "policy":
            kind: Any = PydanticCustomError("policy", err["msg"])
            out.append(InitErrorDetails(type=kind, loc=err["loc"], input=err.get("input")))
        else:
            details = InitErrorDetails(type=err["type"], loc=err["loc"], input=err.get("input"))
            if "ctx" in err:
                details["ctx"] = err["ctx"]
            out.append(details)
    return out


def _rate_limit_branch(err: InitErrorDetails, raw: Any) -> InitErrorDetails | None:
    """``rate_limit`` is a string or a mapping: report the form the author wrote, at its own
    field (``rate_limit.max``), not pydantic's union branches (``rate_limit.RateLimit.max``
    beside a spurious "input should be a valid string")."""
    loc = tuple(err["loc"])
    if loc[:1] != ("rate_limit",) or len(loc) < 2 or loc[1] not in ("str", "RateLimit"):
        return err
    wrote_mapping = isinstance(raw, dict) and isinstance(raw.get("rate_limit"), dict)
    if (loc[1] == "RateLimit") != wrote_mapping:
        return None
    return {**err, "loc": ("rate_limit", *loc[2:])}


def _rule_shape_errors(raw: dict) -> list[InitErrorDetails]:
    """Intercept's cross-field rules, judged on the raw mapping (field types are checked apart)."""
    action = raw.get("action", "evaluate")
    name = raw.get("name")
    has_conditions = bool(raw.get("conditions"))
    has_state = raw.get("state") is not None
    rate_limit = raw.get("rate_limit")
    errors = []

    def fail(field: str, msg: str) -> None:
        errors.append(_fail((field,), msg, raw.get(field)))

    if raw.get("on_deny") is not None and raw.get("reason") is not None:
        fail("reason", "give either on_deny or reason (the same message), not both")
    if rate_limit is not None:
        if (has_conditions and not isinstance(rate_limit, dict)) or has_state:
            fail(
                "rate_limit",
                "rate_limit cannot be combined with conditions or state; "
                "use separate rules or the full syntax instead",
            )
        if action == "deny":
            fail("rate_limit", 'rate_limit cannot be used with action "deny"')
    else:
        if action == "deny" and has_conditions:
            fail("conditions", "deny rules must not have conditions")
        if action == "deny" and has_state:
            fail("state", "deny rules must not have state")
        if action == "evaluate" and not has_conditions:
            fail("conditions", "evaluate rules must have at least one condition")
        # Intercept's rules are named; catalogue rules (allow, or deny with a reason) may not be.
        needs_name = action == "evaluate" or (action == "deny" and raw.get("reason") is None)
        if needs_name and not (isinstance(name, str) and name.strip()):
            fail("name", "rule must have a name" + (f", got {shown_value(name)}" if name is not None else ""))
    if raw.get("scope") is not None and rate_limit is None and not has_state:
        fail("scope", "scope applies to a rule's counter (rate_limit or state); this rule has none")
    when = raw.get("when")
    if isinstance(when, list) and any(isinstance(c, dict) and str(c.get("path", "")).startswith("state.") for c in when):
        fail("when", "when conditions read args and identity, not state")
    state = raw.get("state")
    if isinstance(state, dict) and state.get("increment_from") is not None and "increment" in state:
        fail("state", "give either increment or increment_from, not both")
    return errors



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


class ToolPolicy(_Strict):
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _unique_counters(cls, data: Any, handler: Any) -> ToolPolicy:
        errors: list[InitErrorDetails] = []
        try:
            tool = handler(data)
            rules = list(enumerate(tool.rules))
        except ValidationError as exc:
            tool = None
            errors.extend(_reraise(exc))
            rules = _valid_rules(data.get("rules") if isinstance(data, dict) else None)
        seen: dict[str, int] = {}
        for i, rule in rules:
            counter = rule.counter
            if counter is None:
                continue
            if counter in seen:
                errors.append(
                    _fail(
                        ("rules", i),
                        f"duplicate state counter {shown(counter)} (also used by rules[{seen[counter]}])",
                        counter,
                    )
                )
            else:
                seen[counter] = i
        _raise("ToolPolicy", errors)
        return tool


def _sha256(value: str) -> str:
    if not FINGERPRINT.fullmatch(value):
        raise PydanticCustomError(
            "policy", 'fingerprint must be "sha256:" and 64 lower-case hex digits, got {v}', {"v": shown(value)}
        )
    return value


class Fingerprints(_Strict):
    """Our extension (written by ``scan``): pinned tool definitions, see fingerprint.py.

    A pinned tool served with another definition flags the tools/list flow, and then
    ``flag``: nothing more; ``deny``: its calls are denied; ``hide``: it is also removed from
    tools/list answers, until the pins change.
    """

    on_change: Literal["flag", "deny", "hide"] = "hide"
    tools: dict[StrictStr, Annotated[StrictStr, AfterValidator(_sha256)]] = Field(default_factory=dict)


class Policy(_Strict):
    version: Any = "1"  # omitted means "1": the catalogue's snippets have no version line
    description: StrictStr | None = None
    default: Any = "allow"
    hide: list[StrictStr] = Field(default_factory=list)
    # Our extension: a tool denied outright for a caller is absent from that caller's tools/list.
    hide_denied: StrictBool = False
    tools: dict[StrictStr, ToolPolicy]
    fingerprints: Fingerprints | None = None

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
                errors.append(_fail((i,), f"entry must not be empty, got {shown(name)}", name))
            elif name in seen:
                errors.append(_fail((i,), f"duplicate entry {shown(name)}", name))
            seen.add(name)
        _raise("hide", errors)
        return hide

    @field_validator("tools")
    @classmethod
    def _tool_keys(cls, tools: dict[str, ToolPolicy]) -> dict[str, ToolPolicy]:
        errors = []
        for key in tools:
            if not key.strip():
                errors.append(_fail((key,), f"tool name must not be empty, got {shown(key)}", key))
            elif key == GLOBAL_NAMESPACE:
                errors.append(_fail((key,), f'"{GLOBAL_NAMESPACE}" is reserved for "*" counters', key))
            elif is_glob(key):
                try:
                    _glob_check(key)
                except ValueError as exc:
                    errors.append(_fail((key,), str(exc), key))
        _raise("tools", errors)
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
            errors.extend(_reraise(exc))
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
                            _fail(
                                ("tools", key, "rules", i, "conditions", j, "path"),
                                f"condition references {escaped(cond.path)} but no matching state block found",
                                cond.path,
                            )
                        )
        _raise("Policy", errors)
        return policy


def _as_written(value: Any) -> str:
    """A scalar as the author wrote it in YAML, read as Go reads it into a string (Intercept
    quotes it: ``got "2"`` for ``version: 2``); pydantic would print True as "1"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown_value(value: Any) -> str:
    """A policy value in an error message, its type visible: strings quoted and escaped,
    true/false/null and numbers as YAML writes them, lists and mappings as JSON (escaped, cut)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):  # as YAML spells them
        return ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    text = json.dumps(value, ensure_ascii=False, default=str)  # dates and the like as strings
    more = f"... ({len(text) - DEFAULT_LIMIT} more characters)" if len(text) > DEFAULT_LIMIT else ""
    return escaped(text[:DEFAULT_LIMIT]) + more


def namespace_of(tool_key: str, rule: Rule) -> str:
    """The ``<ns>`` of ``state.<ns>.<counter>``: the tool key, ``_global`` for "*" or global scope."""
    if tool_key == "*" or rule.scope == "global":
        return GLOBAL_NAMESPACE
    return tool_key


def _glob_check(key: str) -> None:
    depth = 0
    for ch in key:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    if depth != 0:
        raise ValueError(f'unbalanced "[" in tool pattern {shown(key)}')

