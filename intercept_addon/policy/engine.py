"""The rule engine: decide one tools/call. Knows nothing of HTTP or mitmproxy.

Order of evaluation for a call to tool T:
1. T hidden (``hide``) -> denied as an unknown tool; so is a name equal to a hidden one
   ignoring case and Unicode form (a lenient server may run the hidden tool under it).
   Likewise a variant of a name that keys rules is denied rather than judged as another tool.
2. ``default: deny`` and no exact or glob key matches T -> denied.
3. Every key that matches T contributes its rules, and ALL of them must pass, in precedence
   order: the exact key, then matching globs (most literal characters first, then file order),
   then ``"*"``. Nothing shadows a less specific restriction, so a glob can carry a budget
   shared by several tools. The first failing rule gives the decision and its message.
4. Counters of all those rules are reserved in one atomic step; a counter that would pass its
   limit denies the call with the seconds until it would fit (retry_after).
The caller hands the reservation to the ledger (state/ledger.py), which decides once whether
the call spent it. ``count=False`` judges a call without reserving: the retry of a call whose
unit was already spent (a 2026-07-28 input_required round).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from intercept_addon.policy.answer_rules import CompiledAnswers
from intercept_addon.policy.conditions import AmbiguousKey, CompiledCondition, resolve, split_path
from intercept_addon.policy.model import Policy
from intercept_addon.policy.rules import RateLimit, Rule, namespace_of
from intercept_addon.policy.values import (
    CALENDAR_WINDOWS,
    GLOBAL_NAMESPACE,
    is_glob,
    is_number,
    parse_rate_shorthand,
    split_state_path,
    to_decimal,
)
from intercept_addon.state import CounterRequest, Reservation, Store, StoreError, Window, format_retry
from intercept_addon.wire.jsonrpc import fold

DecisionKind = Literal["allow", "deny", "condition", "rate_limit", "hidden", "default_deny", "error", "schema", "ask", "answer"]
MATCH_CACHE_SIZE = 4096  # tool names come from clients: bound the per-name cache


# Between a counter key's namespace, counter name and who it counts: it cannot appear in
# YAML-authored names nor in HTTP header values, so it keeps the parts apart unambiguously.
KEY_SEP = "\x1f"
# Between the server and who is counted, in the last part (a server's counters are its own,
# and a reset by tool or counter name still reaches every server's).
SERVER_SEP = "\x1e"


@dataclass(frozen=True, slots=True)
class Call:
    agent: str  # who the agent is (proxy/identity.py): the default unit of counting
    tool: str
    arguments: Mapping[str, Any]
    user: str | None = None  # the verified user's subject, never an unverified one
    claims: Mapping[str, Any] | None = None  # that user's verified claims
    mcp_session: str | None = None  # the MCP session inside the agent (scope: mcp-session)
    server: str = ""  # the server whose counters these are; "" when one policy governs every server

    def identity(self) -> dict[str, Any]:
        """What ``identity.*`` paths read: absent parts are missing, never empty."""
        view: dict[str, Any] = {"agent": self.agent}
        if self.user is not None:
            view["sub"] = self.user
            view["claims"] = self.claims or {}
        return view


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    tool: str
    kind: DecisionKind
    rule: str | None = None
    message: str | None = None
    retry_after: int | None = None
    reservation: Reservation | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CounterSpec:
    namespace: str
    name: str
    scope: str
    window: Window
    increment: Decimal | tuple[str, ...]  # fixed amount, or the argument path to read it from
    limit_op: Literal["lt", "lte"] | None
    limit: Decimal | None
    describe: str  # e.g. "30 calls per 60 s"

    def key(self, call: Call) -> str:
        if self.scope == "agent":
            part = call.agent
        elif self.scope == "user":
            part = call.user or ""  # the engine denies a user-scoped call without a user first
        elif self.scope == "mcp-session":
            part = f"{call.agent}{KEY_SEP}{call.mcp_session or ''}"
        else:
            part = ""
        if call.server:
            part = f"{call.server}{SERVER_SEP}{part}"
        return KEY_SEP.join((self.namespace, self.name, part))

    def amount(self, call: Call) -> Decimal | None:
        if isinstance(self.increment, Decimal):
            return self.increment
        value = resolve(call.arguments, self.increment)
        if not is_number(value) or not to_decimal(value).is_finite() or to_decimal(value) < 0:
            return None  # a negative amount would refund a spend cap, an infinite one poison it
        return to_decimal(value)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    key: str
    name: str
    action: str
    message: str | None
    checks: tuple[CompiledCondition, ...]  # on arguments, and on counters other than the limit
    counter: CounterSpec | None
    when: tuple[CompiledCondition, ...] = ()  # the rule applies only where all of these hold

    def outright(self, call: Call) -> bool:
        """Denies this caller whatever the arguments: a deny that applies to it by identity
        alone, or an identity condition it fails."""
        if any(not c.path.startswith("identity.") for c in self.when):
            return False
        if not all(c.holds_for(resolve(call.identity(), c.segments)) for c in self.when):
            return False
        if self.action in ("deny", "ask"):
            return self.action == "deny"  # an ask rule's conditions say when to ask, not when to deny
        return any(c.path.startswith("identity.") and not c.holds_for(resolve(call.identity(), c.segments))
                   for c in self.checks)


def _window_words(window: Window) -> str:
    for word, secs in CALENDAR_WINDOWS.items():
        if window.kind == "calendar" and secs == window.seconds:
            return f"per {word}"
    return f"per {window.seconds} s"


def _counter_of(key: str, rule: Rule) -> tuple[CounterSpec | None, set[int]]:
    """The rule's counter and the indexes of the conditions that are its limit."""
    name = rule.counter
    if name is None:
        return None, set()
    ns = namespace_of(key, rule)
    scope = rule.effective_scope
    if isinstance(rule.rate_limit, str):
        count, word = parse_rate_shorthand(rule.rate_limit)
        window = Window("calendar", CALENDAR_WINDOWS[word])
        return CounterSpec(ns, name, scope, window, Decimal(1), "lte", Decimal(count),
                           f"{count} calls {_window_words(window)}"), set()
    if isinstance(rule.rate_limit, RateLimit):
        window = Window("sliding", rule.rate_limit.seconds)
        return CounterSpec(ns, name, scope, window, Decimal(1), "lte", Decimal(rule.rate_limit.max),
                           f"{rule.rate_limit.max} calls {_window_words(window)}"), set()
    assert rule.state is not None
    window = Window("calendar", CALENDAR_WINDOWS[rule.state.window])
    increment: Decimal | tuple[str, ...] = (
        split_path(rule.state.increment_from) if rule.state.increment_from else Decimal(rule.state.increment)
    )
    limit_op, limit, limit_idx = None, None, set()
    for i, cond in enumerate(rule.conditions):
        if cond.path.startswith("state.") and split_state_path(cond.path) == (ns, name) and cond.op in ("lt", "lte"):
            if limit is None:  # the first lt/lte on its own counter is the limit, as in Intercept
                limit_op, limit, limit_idx = cond.op, to_decimal(cond.value), {i}
    what = f"{limit} for {name} {_window_words(window)}" if limit is not None else name
    return CounterSpec(ns, name, scope, window, increment, limit_op, limit, what), limit_idx


def _asked(allowed: Decision, asking: CompiledRule | None) -> Decision:
    """An allowed call that an ask rule holds for a person's answer, its counters reserved."""
    if asking is None:
        return allowed
    return dataclasses.replace(allowed, kind="ask", rule=asking.name, message=asking.message)


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Into a per-name cache, bounded: names come from clients, so a full cache starts over."""
    if len(cache) >= MATCH_CACHE_SIZE:
        cache.clear()
    cache[key] = value


def _matches_folded(tool: str, folded: tuple[set[str], list[str]]) -> bool:
    """Does ``tool`` equal a name, or match a glob, ignoring case and Unicode form?"""
    names, globs = folded
    key = fold(tool)
    return key in names or any(fnmatch.fnmatchcase(key, g) for g in globs)


class Engine:
    """A compiled policy. Building one never touches counters (hot reload keeps them)."""

    def __init__(self, policy: Policy, *, clock: Callable[[], float] = time.time, section: str = "",
                 noun: str = "tool"):
        self.policy = policy
        self.clock = clock
        self.section = section  # "resources", ...: its counters' namespaces are its own ("resources:<key>")
        self.noun = noun  # what messages call what is judged
        self._hidden_exact = {h for h in policy.hide if not is_glob(h) and h != "*"}
        self._hidden_globs = [h for h in policy.hide if is_glob(h) or h == "*"]
        self._folded_hidden = ({fold(h) for h in self._hidden_exact}, [fold(g) for g in self._hidden_globs])
        self._exact: dict[str, list[CompiledRule]] = {}
        self._globs: list[tuple[str, list[CompiledRule]]] = []
        self._star: list[CompiledRule] = []
        self._counters: dict[tuple[str, str], CounterSpec] = {}
        for key, tool in policy.tools.items():
            compiled = [self._compile(key, i, rule) for i, rule in enumerate(tool.rules)]
            if key == "*":
                self._star = compiled
            elif is_glob(key):
                self._globs.append((key, compiled))
            else:
                self._exact[key] = compiled
        # Most specific glob first: more literal characters, then file order (sort is stable).
        self._globs.sort(key=lambda g: -sum(c not in "*?[]" for c in g[0]))
        self._folded_keys = ({fold(k) for k in self._exact}, [fold(p) for p, _ in self._globs])
        self._match_cache: dict[str, tuple[bool, tuple[CompiledRule, ...]]] = {}
        self._hidden_cache: dict[str, bool] = {}  # is_hidden's answers, bounded as _match_cache
        self._answers: dict[str | None, CompiledAnswers | None] = {}
        schema_keys = [key for key, t in policy.tools.items() if t.arguments == "schema"]
        self._schema_exact = {k for k in schema_keys if not is_glob(k) and k != "*"}
        self._schema_globs = [k for k in schema_keys if is_glob(k) or k == "*"]  # fnmatch("*") matches all

    def _compile(self, key: str, index: int, rule: Rule) -> CompiledRule:
        counter, limit_idx = _counter_of(key, rule)
        if counter is not None:
            written = (counter.namespace, counter.name)  # as state.<ns>.<counter> paths name it
            if self.section:
                counter = dataclasses.replace(counter, namespace=f"{self.section}:{counter.namespace}")
            self._counters.setdefault(written, counter)
        checks = tuple(
            CompiledCondition.build(c) for i, c in enumerate(rule.conditions) if i not in limit_idx
        )
        name = rule.name if rule.name and rule.name.strip() else f"{key}.rules[{index}]"
        when = tuple(CompiledCondition.build(c) for c in rule.when)
        return CompiledRule(key, name, rule.action, rule.message, checks, counter, when)

    # -- lookups ---------------------------------------------------------------------------

    def is_hidden(self, tool: str) -> bool:
        hidden = self._hidden_cache.get(tool)
        if hidden is None:
            hidden = tool in self._hidden_exact or any(fnmatch.fnmatchcase(tool, g) for g in self._hidden_globs) \
                or bool(self._hidden_exact or self._hidden_globs) and _matches_folded(tool, self._folded_hidden)
            _remember(self._hidden_cache, tool, hidden)
        return hidden

    def _rules_for(self, tool: str) -> tuple[bool | None, tuple[CompiledRule, ...]]:
        """(is the tool listed by an exact or glob key, the rules that apply in order); listed is
        None when the name is a case/Unicode variant of a governed name and nothing else."""
        cached = self._match_cache.get(tool)
        if cached is not None:
            return cached
        exact = self._exact.get(tool)
        globs = [rules for pattern, rules in self._globs if fnmatch.fnmatchcase(tool, pattern)]
        own = [*(exact or ()), *(r for rules in globs for r in rules)]
        listed: bool | None = exact is not None or bool(globs)
        if not listed and _matches_folded(tool, self._folded_keys):
            listed = None
        result = (listed, tuple(own) + tuple(self._star))
        _remember(self._match_cache, tool, result)
        return result

    def counter(self, namespace: str, name: str) -> CounterSpec | None:
        if self.section:  # a stored key names the section's namespace
            if not namespace.startswith(f"{self.section}:"):
                return None
            namespace = namespace.removeprefix(f"{self.section}:")
        return self._counters.get((namespace, name))

    def answer_rules(self, tool: str | None) -> CompiledAnswers | None:
        """The rules on ``tool``'s results (the policy's ``answers`` and those of the keys that
        match it), compiled once per name; ``tool`` None: an answer other than a tool's."""
        if tool in self._answers:
            return self._answers[tool]
        rules = [self.policy.answers] if self.policy.answers is not None else []
        if tool is not None:
            rules += [t.answers for key, t in self.policy.tools.items() if t.answers is not None and
                      (key == tool or key == "*" or (is_glob(key) and fnmatch.fnmatchcase(tool, key)))]
        compiled = CompiledAnswers(rules) if rules else None
        _remember(self._answers, tool, compiled)
        return compiled

    def checks_arguments(self, tool: str) -> bool:
        """Are this tool's arguments checked against its server's inputSchema (``arguments: schema``
        at the top, or on a key that matches the tool)?"""
        if self.policy.arguments == "schema" or tool in self._schema_exact:
            return True
        return bool(self._schema_globs) and any(fnmatch.fnmatchcase(tool, g) for g in self._schema_globs)

    # -- evaluation ------------------------------------------------------------------------

    async def evaluate(self, call: Call, store: Store, *, count: bool = True) -> Decision:
        tool = call.tool
        if self.is_hidden(tool):
            return Decision(False, tool, "hidden", "(hidden)", f"Unknown {self.noun}: {tool}")
        listed, rules = self._rules_for(tool)
        if self.policy.default == "deny" and not listed:
            return Decision(False, tool, "default_deny", "(default deny)",
                            f'{self.noun.capitalize()} "{tool}" is not permitted by policy')
        if listed is None:
            return Decision(False, tool, "deny", "(ambiguous name)",
                            f'{self.noun.capitalize()} "{tool}" differs from a {self.noun} the policy governs only by '
                            "case or Unicode form")
        try:
            return await self._evaluate_rules(call, rules, store, count)
        except StoreError as exc:
            return Decision(False, tool, "error", "(state unavailable)",
                            f"Policy state is unavailable, so {tool} cannot be checked: {exc}")
        except AmbiguousKey as exc:
            return Decision(False, tool, "condition", "(ambiguous argument)",
                            f"Invalid arguments for {tool}: {exc}")

    async def _evaluate_rules(self, call: Call, rules: tuple[CompiledRule, ...], store: Store,
                              count: bool) -> Decision:
        tool = call.tool
        now = self.clock()
        requests: list[tuple[CompiledRule, CounterRequest]] = []
        asking: CompiledRule | None = None  # the first ask rule whose conditions hold
        for rule in rules:
            if rule.when and not all(self._reads(c, call, trigger=True) for c in rule.when):
                continue
            if rule.action == "ask":  # its conditions say when to ask; the other rules still judge
                if asking is None and all([await self._check(c, call, store, now, trigger=True) for c in rule.checks]):
                    asking = rule
                continue
            if rule.action == "deny":
                return Decision(False, tool, "deny", rule.name,
                                rule.message or f'{self.noun.capitalize()} "{tool}" is blocked by policy (rule "{rule.name}")')
            for check in rule.checks:
                if not await self._check(check, call, store, now):
                    return Decision(False, tool, "condition", rule.name,
                                    rule.message or f"Invalid arguments for {tool}: {check.describe()}")
            if rule.counter is not None:
                if rule.counter.scope == "user" and call.user is None:
                    return Decision(False, tool, "condition", rule.name,
                                    f"{tool} is limited per verified user, and this request carries no verified user")
                amount = rule.counter.amount(call)
                if amount is None:
                    path = ".".join(("args", *rule.counter.increment))
                    return Decision(False, tool, "condition", rule.name,
                                    f"Invalid arguments for {tool}: {path} must be a non-negative number")
                spec = rule.counter
                requests.append((rule, CounterRequest(spec.key(call), spec.window, amount,
                                                      spec.limit_op, spec.limit)))
        if not requests or not count:
            return _asked(Decision(True, tool, "allow"), asking)
        outcome = await store.reserve([r for _, r in requests], now)
        if not outcome.ok:
            rule, _ = requests[outcome.denied or 0]
            retry = format_retry(outcome.retry_after or 1.0)
            base = rule.message or f"Rate limit of {rule.counter.describe} reached for {tool}"
            return Decision(False, tool, "rate_limit", rule.name,
                            f"{base.rstrip('.')}. Retry after {retry} s.", retry)
        return _asked(Decision(True, tool, "allow", reservation=outcome.reservation), asking)

    @staticmethod
    def _reads(check: CompiledCondition, call: Call, *, trigger: bool = False) -> bool:
        """A condition on arguments or identity (no counter); ``trigger``: one that makes the
        rule apply (when:, ask), which holds if a server could read the argument so."""
        if check.path.startswith("identity."):
            return check.holds_for(resolve(call.identity(), check.segments))
        actual = resolve(call.arguments, check.segments)
        return check.triggers(actual) if trigger else check.passes(actual)

    def denied_outright(self, call: Call) -> bool:
        """Would every call of ``call.tool`` by this caller be denied, whatever its arguments?
        (``hide_denied``: such tools are absent from the caller's tools/list.)"""
        listed, rules = self._rules_for(call.tool)
        if listed is None or (self.policy.default == "deny" and not listed):
            return True
        return any(rule.outright(call) for rule in rules)

    async def _check(self, check: CompiledCondition, call: Call, store: Store, now: float,
                     trigger: bool = False) -> bool:
        if not check.path.startswith("state."):
            return self._reads(check, call, trigger=trigger)
        ns, name = split_state_path(check.path)
        if ns == "*":
            ns = GLOBAL_NAMESPACE
        spec = self._counters.get((ns, name))
        if spec is None:  # the validator makes this impossible; stay closed if it happens
            return False
        return check.holds_for(await store.value(spec.key(call), spec.window, now))
