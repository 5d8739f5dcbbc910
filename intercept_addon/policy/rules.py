"""One rule of a tool's policy and its parts: conditions, Intercept's state counters and the
catalogue's rate limits, with the cross-field checks that tie a rule's fields together."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from intercept_addon.policy.validation import StrictModel, error_at, raise_errors, reraise
from intercept_addon.policy.values import (
    Scope,
    CALENDAR_WINDOWS,
    GLOBAL_NAMESPACE,
    IDENTITY_PATHS,
    LIST_OPS,
    NUMERIC_OPS,
    OPERATORS,
    compile_regex,
    is_number,
    parse_duration,
    parse_rate_shorthand,
    shown_value,
    split_state_path,
)
from intercept_addon.wire.text import escaped, shown


class Condition(StrictModel):
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
        raise_errors("Condition", [error_at(("value",), msg, value)] if msg else [])
        return self


class StateDef(StrictModel):
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


class RateLimit(StrictModel):
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


class Rule(StrictModel):
    name: StrictStr | None = None
    action: Literal["evaluate", "deny", "allow", "ask"] = "evaluate"  # ask: held until a person answers
    conditions: list[Condition] = Field(default_factory=list)
    on_deny: StrictStr | None = None
    reason: StrictStr | None = None
    state: StateDef | None = None
    rate_limit: StrictStr | RateLimit | None = None
    scope: Scope | None = None
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
            errors.extend(_rate_limit_branch(err, data) for err in reraise(exc))
        if isinstance(data, dict):
            errors.extend(_rule_shape_errors(data))
        errors = [err for err in errors if err is not None]
        raise_errors("Rule", errors)
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
        errors.append(error_at((field,), msg, raw.get(field)))

    if raw.get("on_deny") is not None and raw.get("reason") is not None:
        fail("reason", "give either on_deny or reason (the same message), not both")
    if rate_limit is not None:
        if (has_conditions and not isinstance(rate_limit, dict)) or has_state:
            fail(
                "rate_limit",
                "rate_limit cannot be combined with conditions or state; "
                "use separate rules or the full syntax instead",
            )
        if action in ("deny", "ask"):
            fail("rate_limit", f'rate_limit cannot be used with action "{action}"')
    else:
        if action == "deny" and has_conditions:
            fail("conditions", "deny rules must not have conditions")
        if action in ("deny", "ask") and has_state:
            fail("state", f"{action} rules must not have state")
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


def namespace_of(tool_key: str, rule: Rule) -> str:
    """The ``<ns>`` of ``state.<ns>.<counter>``: the tool key, ``_global`` for "*" or global scope."""
    if tool_key == "*" or rule.scope == "global":
        return GLOBAL_NAMESPACE
    return tool_key
