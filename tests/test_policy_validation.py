"""Policy validation: the project's policies, Intercept's corpus, every documented error with
its line and field path, and the ``validate`` command line."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from intercept_addon.policy import file as policy_file
from intercept_addon.policy.engine import Engine
from intercept_addon.policy.model import Policy
from intercept_addon.policy.values import OPERATORS
from intercept_addon.policy.file import PolicyError, PolicyIssue, load_policy, parse_policy
from intercept_addon.wire.text import shown

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
FIXTURES = ROOT / "tests" / "fixtures"  # our own policies; Intercept's corpus: test_intercept_corpus.py

PROJECT_FILES = sorted(POLICIES.glob("*.yaml"))
VALID_FIXTURE = FIXTURES / "valid_policy.yaml"
DEFAULT_DENY_FIXTURE = FIXTURES / "default_deny_policy.yaml"
INVALID_YAML_FIXTURE = FIXTURES / "invalid_yaml_policy.yaml"
INVALID_SCHEMA_FIXTURE = FIXTURES / "invalid_schema_policy.yaml"


def issues(text: str) -> list[PolicyIssue]:
    """The issues of a policy text (which must be rejected)."""
    with pytest.raises(PolicyError) as exc:
        parse_policy(textwrap.dedent(text), "p.yaml")
    assert exc.value.issues, "a PolicyError must carry its issues"
    return exc.value.issues


def where(text: str) -> list[tuple[int, str]]:
    return [(i.line, i.path) for i in issues(text)]


def only_issue(text: str) -> PolicyIssue:
    found = issues(text)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def ok(text: str) -> Policy:
    return parse_policy(textwrap.dedent(text), "p.yaml")


# -- files on disk -------------------------------------------------------------------------


def test_project_policies_are_present():
    # Guards the parametrised test below against an empty glob passing vacuously.
    assert len(PROJECT_FILES) >= 3


@pytest.mark.parametrize("path", PROJECT_FILES, ids=lambda p: p.name)
def test_project_policies_validate(path: Path):
    policy = load_policy(path)
    assert policy.tools, "a shipped policy governs at least one tool"
    Engine(policy)  # compiles: regexes, counters, globs


@pytest.mark.parametrize("path", [VALID_FIXTURE, DEFAULT_DENY_FIXTURE], ids=lambda p: p.name)
def test_valid_fixtures_load_and_compile(path: Path):
    policy = load_policy(path)
    assert policy.version == "1"
    Engine(policy)


def test_valid_fixture_has_every_v1_feature():
    # What test_engine.py judges through this file: the fixture must keep holding all of it.
    tools = load_policy(VALID_FIXTURE).tools
    rules = [rule for tool in tools.values() for rule in tool.rules]
    assert {rule.action for rule in rules} == {"evaluate", "deny"}
    assert {c.op for rule in rules for c in rule.conditions} >= {"lte", "lt", "in", "regex"}
    assert any(rule.state and rule.state.increment_from for rule in rules)
    assert any(isinstance(rule.rate_limit, str) for rule in rules)
    assert tools["*"].rules[0].state.counter == "minute_calls"


def test_default_deny_fixture_reads_as_deny():
    policy = load_policy(DEFAULT_DENY_FIXTURE)
    assert policy.default == "deny"
    assert set(policy.tools) == {"read_notes", "open_ticket", "purge_account", "*"}
    assert policy.tools["read_notes"].rules == []
    assert policy.tools["*"].rules[0].rate_limit == "30/minute"


def test_invalid_yaml_names_its_line():
    with pytest.raises(PolicyError) as exc:
        load_policy(INVALID_YAML_FIXTURE)
    (issue,) = exc.value.issues
    assert issue.message.startswith("YAML syntax error")
    assert issue.path == ""
    # The flow mapping opened on line 9 is never closed: the parser trips on the next rule's "-".
    assert (issue.line, issue.column) == (10, 7)


INVALID_SCHEMA_EXPECTED = [
    (3, "version", 'version must be "1", got "3"'),
    (8, "tools.update_record.rules[0].name", 'rule must have a name, got "   "'),
    (10, "tools.update_record.rules[0].conditions[0].op", 'unknown operator "startswith"'),
    (14, "tools.update_record.rules[1].conditions[0].path", 'path must start with "args."'),
    (18, "tools.update_record.rules[2].conditions[0].value",
     'operator "not_in" requires a list value, got "archived"'),
    (22, "tools.update_record.rules[3].conditions[0].value",
     'operator "gte" requires a numeric value, got "large"'),
    (26, "tools.update_record.rules[4].conditions[0].value", 'invalid regex "rec_(\\\\d+": '),
    (30, "tools.update_record.rules[5].conditions", "deny rules must not have conditions"),
    (33, "tools.update_record.rules[6].conditions", "evaluate rules must have at least one condition"),
    (39, "tools.throttled_export.rules[0].rate_limit", 'rate_limit count must be a positive integer, got "ten"'),
    (42, "tools.throttled_export.rules[1].rate_limit", "rate_limit cannot be combined with conditions or state"),
    (47, "tools.throttled_export.rules[2].rate_limit", "rate_limit cannot be combined with conditions or state"),
    (51, "tools.throttled_export.rules[3].rate_limit", 'rate_limit count must be a positive integer, got "0"'),
    (54, "tools.throttled_export.rules[4].rate_limit",
     'rate_limit window must be "minute", "hour", or "day", got "year"'),
    (58, "tools.throttled_export.rules[5].rate_limit", 'rate_limit cannot be used with action "deny"'),
]


def test_invalid_schema_every_error_with_line_and_path():
    with pytest.raises(PolicyError) as exc:
        load_policy(INVALID_SCHEMA_FIXTURE)
    got = exc.value.issues
    assert [(i.line, i.path) for i in got] == [(line, p) for line, p, _ in INVALID_SCHEMA_EXPECTED]
    for issue, (_, _, message) in zip(got, INVALID_SCHEMA_EXPECTED):
        assert message in issue.message, str(issue)
    assert all(i.file == str(INVALID_SCHEMA_FIXTURE) and i.column >= 1 for i in got)
    # The unknown-operator error names the valid ones.
    assert all(op in got[2].message for op in OPERATORS)


# -- every error of Intercept's reference, with its line -------------------------------------


def test_hide_empty_entry():
    issue = only_issue("""\
        version: "1"
        hide:
          - delete_repo
          - "  "
        tools: {}
        """)
    assert (issue.line, issue.path, issue.message) == (4, "hide[1]", 'entry must not be empty, got "  "')


def test_hide_duplicate_entry():
    issue = only_issue("""\
        version: "1"
        hide:
          - a
          - b
          - a
        tools: {}
        """)
    assert (issue.line, issue.path) == (5, "hide[2]")
    assert issue.message == 'duplicate entry "a"'


@pytest.mark.parametrize(
    ("line", "shown"),
    [('version: "2"', '"2"'), ("version: 2", '"2"'), ("version: 1.0", '"1.0"'), ('version: ""', '""'),
     ("version: true", '"true"')],
)
def test_version_must_be_one(line: str, shown: str):
    issue = only_issue(f"description: d\n{line}\ntools: {{}}\n")
    assert (issue.line, issue.path) == (2, "version")
    assert issue.message == f'version must be "1", got {shown}'


def test_version_omitted_means_one():
    # The catalogue's snippets have no version line (Intercept itself requires one).
    assert ok("description: no version\ntools: {}\n").version == "1"


def test_version_given_empty_is_still_an_error():
    issue = only_issue("version:\ntools: {}\n")
    assert (issue.line, issue.path) == (1, "version")
    assert issue.message == 'version must be "1", got ""'


@pytest.mark.parametrize("text", ['version: "1"', "version: 1"])
def test_version_one_accepted(text: str):
    assert ok(f"{text}\ntools: {{}}\n").version == "1"


def test_default_posture_value():
    issue = only_issue('version: "1"\ndefault: block\ntools: {}\n')
    assert (issue.line, issue.path) == (2, "default")
    assert issue.message == 'default must be "allow" or "deny", got "block"'


@pytest.mark.parametrize(("name_line", "got"), [("", ""), ('        name: ""\n', ', got ""'),
                                                 ('        name: "   "\n', ', got "   "')])
def test_rule_must_have_a_name(name_line: str, got: str):
    text = (
        'version: "1"\ntools:\n  t:\n    rules:\n      - action: evaluate\n'
        + name_line
        + "        conditions: [{path: args.x, op: eq, value: 1}]\n"
    )
    issue = only_issue(text)
    assert issue.message == "rule must have a name" + got
    assert issue.path == "tools.t.rules[0].name"
    assert issue.line == (5 if not name_line else 6)


def test_action_value():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                action: block
        """)
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].action")
    assert "'block'" in issue.message and "'evaluate'" in issue.message and "'deny'" in issue.message


def test_deny_with_conditions():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                action: deny
                conditions:
                  - {path: args.x, op: eq, value: 1}
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].conditions")
    assert issue.message == "deny rules must not have conditions"


@pytest.mark.parametrize("action", ["", "        action: evaluate\n", "        conditions: []\n"])
def test_evaluate_without_conditions(action: str):
    issue = only_issue('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n' + action)
    assert issue.message == "evaluate rules must have at least one condition"
    assert issue.path == "tools.t.rules[0].conditions"
    assert issue.line == (6 if "conditions" in action else 5)  # no conditions key: the rule itself


@pytest.mark.parametrize("path", ["foo.bar", "arguments.x", "args", "state", "x"])
def test_path_prefix(path: str):
    issue = only_issue(f"""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - path: "{path}"
                    op: eq
                    value: 1
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].conditions[0].path")
    assert issue.message == f'path must start with "args.", "state." or "identity.", got "{path}"'


@pytest.mark.parametrize("path", ["identity.claims", "identity.claims.", "identity.user", "identity.claims..x"])
def test_identity_paths(path: str):
    issue = only_issue(f"""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - {{path: "{path}", op: eq, value: 1}}
        """)
    assert issue.message.startswith("identity paths are identity.agent, identity.sub and identity.claims.<name>")


def test_identity_paths_and_when_validate():
    policy = ok("""\
        version: "1"
        hide_denied: true
        tools:
          t:
            rules:
              - name: admins only
                conditions: [{path: identity.claims.role, op: in, value: [admin]}, {path: identity.sub, op: exists, value: true}]
              - action: allow
                rate_limit: {max: 3, window: 60}
                scope: user
                when: [{path: identity.claims.tier, op: eq, value: free}, {path: args.size, op: gt, value: 10}]
        """)
    assert policy.hide_denied and policy.tools["t"].rules[1].effective_scope == "user"
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                rate_limit: {max: 3, window: 60}
                when: [{path: state.t.x, op: lt, value: 1}]
        """)
    assert issue.message == "when conditions read args and identity, not state"


def test_unknown_operator_lists_valid_ones():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - path: args.x
                    op: equals
                    value: 1
        """)
    assert (issue.line, issue.path) == (8, "tools.t.rules[0].conditions[0].op")
    assert issue.message.startswith('unknown operator "equals"')
    listed = re.search(r"use one of: (.*)\)", issue.message).group(1).split(", ")
    assert listed == list(OPERATORS)
    assert len(OPERATORS) == 11


def cond_issue(op: str, value: str) -> PolicyIssue:
    return only_issue(f"""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - path: args.x
                    op: {op}
                    value: {value}
        """)


@pytest.mark.parametrize("op", ["in", "not_in"])
@pytest.mark.parametrize(("value", "got"), [('"usd"', '"usd"'), ("5", "5"), ("{a: 1}", '{"a": 1}'), ("null", "null")])
def test_in_needs_a_list(op: str, value: str, got: str):
    issue = cond_issue(op, value)
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].conditions[0].value")
    assert issue.message == f'operator "{op}" requires a list value, got {got}'


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte"])
@pytest.mark.parametrize(("value", "got"), [('"5"', '"5"'), ("true", "true"), ("null", "null"), ("[1]", "[1]"),
                                            (".nan", ".nan")])
def test_numeric_ops_need_a_number(op: str, value: str, got: str):
    issue = cond_issue(op, value)
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].conditions[0].value")
    assert issue.message == f'operator "{op}" requires a numeric value, got {got}'


@pytest.mark.parametrize("value", ["5", "1.5", "-3", "1.0e+3", ".inf", "100000000000000000000000000000000"])
def test_numeric_ops_accept_numbers(value: str):
    policy = ok(f'version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n'
                f"        conditions: [{{path: args.x, op: lte, value: {value}}}]\n")
    assert policy.tools["t"].rules[0].conditions[0].op == "lte"


@pytest.mark.parametrize(("value", "got"), [('"true"', '"true"'), ("1", "1"), ("null", "null"), ('"yes"', '"yes"')])
def test_exists_needs_a_bool(value: str, got: str):
    issue = cond_issue("exists", value)
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].conditions[0].value")
    assert issue.message == f'operator "exists" requires a boolean value, got {got}'


@pytest.mark.parametrize(("value", "got"), [("5", "5"), ("[a]", '["a"]'), ("null", "null"), ("true", "true")])
def test_regex_must_be_a_string(value: str, got: str):
    issue = cond_issue("regex", value)
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].conditions[0].value")
    assert issue.message == f"regex value must be a string, got {got}"


@pytest.mark.parametrize(
    "pattern",
    ["[invalid(", "(unclosed", "a{2,1}",
     # Perl features RE2 (and so Go, and so Intercept) does not have:
     "(?=lookahead)", "(a)\\1", "(?<!x)y"],
)
def test_invalid_regex(pattern: str):
    issue = cond_issue("regex", f"'{pattern}'")
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].conditions[0].value")
    quoted = shown(pattern)  # JSON-style, as Go's %q: a backslash doubled
    assert issue.message.startswith(f"invalid regex {quoted}: ")
    assert len(issue.message) > len(f"invalid regex {quoted}: ")  # carries RE2's reason


def test_contains_needs_a_value():
    issue = cond_issue("contains", "null")
    assert issue.path == "tools.t.rules[0].conditions[0].value"
    assert issue.message == 'operator "contains" requires a value, got null'


def state_issue(state_body: str) -> list[PolicyIssue]:
    """A rule whose state block (from line 9 on) is ``state_body``."""
    head = (
        'version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions:\n'
        "          - {path: args.x, op: eq, value: 1}\n        state:\n"
    )
    return issues(head + textwrap.indent(state_body, " " * 10))


@pytest.mark.parametrize("counter", ['""', '"   "'])
def test_counter_empty(counter: str):
    (issue,) = state_issue(f"counter: {counter}\nwindow: hour\n")
    assert (issue.line, issue.path) == (9, "tools.t.rules[0].state.counter")
    assert issue.message == f"counter must not be empty, got {counter}"


@pytest.mark.parametrize("window", ["week", "Hour", "60", "1h"])
def test_state_window_value(window: str):
    (issue,) = state_issue(f"counter: c\nwindow: \"{window}\"\n")
    assert (issue.line, issue.path) == (10, "tools.t.rules[0].state.window")
    assert issue.message == f'window must be "minute", "hour", or "day", got "{window}"'


@pytest.mark.parametrize("source", ["amount", "state.t.c", "argsamount", "args."])
def test_increment_from_prefix(source: str):
    (issue,) = state_issue(f'counter: c\nwindow: day\nincrement_from: "{source}"\n')
    assert (issue.line, issue.path) == (11, "tools.t.rules[0].state.increment_from")
    assert issue.message == f'increment_from must start with "args.", got "{source}"'


def test_state_path_without_counter_same_tool():
    issue = only_issue("""\
        version: "1"
        tools:
          create_issue:
            rules:
              - name: hourly
                conditions:
                  - path: state.create_issue.hourly_count
                    op: lte
                    value: 5
        """)
    assert (issue.line, issue.path) == (7, "tools.create_issue.rules[0].conditions[0].path")
    assert issue.message == (
        "condition references state.create_issue.hourly_count but no matching state block found"
    )


def test_state_path_counter_name_must_match():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - {path: state.t.count, op: lt, value: 5}
                state: {counter: calls, window: hour}
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].conditions[0].path")
    assert "state.t.count" in issue.message


CROSS_TOOL = """\
    version: "1"
    tools:
      reader:
        rules:
          - name: only while writes are few
            conditions:
              - {path: state.writer.writes, op: lt, value: 10}
      writer:
        rules:
          - name: count writes
            conditions:
              - {path: args.x, op: exists, value: true}
            state: {counter: writes, window: day}
    """


def test_state_path_across_tools_is_valid():
    assert ok(CROSS_TOOL).tools["reader"].rules[0].conditions[0].path == "state.writer.writes"


def test_state_path_across_tools_needs_that_tools_counter():
    issue = only_issue(CROSS_TOOL.replace("state.writer.writes", "state.writer.deletes"))
    assert (issue.line, issue.path) == (7, "tools.reader.rules[0].conditions[0].path")
    assert "state.writer.deletes" in issue.message


def test_state_path_across_tools_unknown_tool():
    issue = only_issue(CROSS_TOOL.replace("state.writer.writes", "state.nobody.writes"))
    assert (issue.line, issue.path) == (7, "tools.reader.rules[0].conditions[0].path")


GLOBAL = """\
    version: "1"
    tools:
      "*":
        rules:
          - name: global rate limit
            conditions:
              - {path: state._global.calls_per_minute, op: lt, value: 60}
            state: {counter: calls_per_minute, window: minute}
      t:
        rules:
          - name: quiet hours
            conditions:
              - {path: state._global.calls_per_minute, op: lt, value: 30}
    """


def test_global_state_path_kept_by_star_rule():
    assert ok(GLOBAL).tools["t"].rules[0].conditions[0].path == "state._global.calls_per_minute"


def test_global_state_path_without_star_counter():
    text = GLOBAL.replace("state: {counter: calls_per_minute, window: minute}", "state: {counter: calls, window: minute}")
    found = issues(text)
    assert [(i.line, i.path) for i in found] == [
        (7, "tools.*.rules[0].conditions[0].path"),
        (13, "tools.t.rules[0].conditions[0].path"),
    ]
    assert all("state._global.calls_per_minute but no matching state block found" in i.message for i in found)


def test_global_state_path_not_kept_by_a_plain_tool():
    # A tool's own counter lives in its namespace, not in _global.
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - {path: state._global.c, op: lt, value: 5}
                state: {counter: c, window: minute}
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].conditions[0].path")


def test_global_state_path_kept_by_global_scope():
    policy = ok("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - {path: state._global.c, op: lt, value: 5}
                state: {counter: c, window: minute}
                scope: global
        """)
    assert policy.tools["t"].rules[0].effective_scope == "global"


def rate_limit_issues(rule_body: str) -> list[PolicyIssue]:
    return issues('version: "1"\ntools:\n  t:\n    rules:\n      - name: r\n'
                  + textwrap.indent(textwrap.dedent(rule_body), " " * 8))


@pytest.mark.parametrize(("value", "count"), [("five/hour", "five"), ("0/hour", "0"), ("-1/hour", "-1"),
                                              ("1.5/hour", "1.5")])
def test_rate_limit_count(value: str, count: str):
    (issue,) = rate_limit_issues(f'rate_limit: "{value}"\n')
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")
    assert issue.message == f'rate_limit count must be a positive integer, got "{count}"'


@pytest.mark.parametrize("window", ["week", "hours", "Hour", "60s"])
def test_rate_limit_window(window: str):
    (issue,) = rate_limit_issues(f'rate_limit: "5/{window}"\n')
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")
    assert issue.message == f'rate_limit window must be "minute", "hour", or "day", got "{window}"'


@pytest.mark.parametrize("value", ["5", "5/", "/hour", "5/hour/day"])
def test_rate_limit_shape(value: str):
    (issue,) = rate_limit_issues(f'rate_limit: "{value}"\n')
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")
    assert "rate_limit" in issue.message


def test_rate_limit_with_conditions():
    (issue,) = rate_limit_issues("""\
        conditions:
          - {path: args.x, op: eq, value: 1}
        rate_limit: 5/hour
        """)
    assert (issue.line, issue.path) == (8, "tools.t.rules[0].rate_limit")
    assert issue.message == (
        "rate_limit cannot be combined with conditions or state; use separate rules or the full syntax instead"
    )


def test_rate_limit_with_state():
    (issue,) = rate_limit_issues("""\
        rate_limit: 5/hour
        state: {counter: c, window: hour}
        """)
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")
    assert issue.message.startswith("rate_limit cannot be combined with conditions or state")


def test_rate_limit_with_deny():
    (issue,) = rate_limit_issues("""\
        action: deny
        rate_limit: 5/hour
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].rate_limit")
    assert issue.message == 'rate_limit cannot be used with action "deny"'


def test_duplicate_state_counters():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - name: a
                conditions: [{path: state.t.c, op: lt, value: 5}]
                state: {counter: c, window: hour}
              - name: b
                conditions: [{path: args.x, op: exists, value: true}]
                state: {counter: c, window: day}
        """)
    assert (issue.line, issue.path) == (8, "tools.t.rules[1]")
    assert issue.message == 'duplicate state counter "c" (also used by rules[0])'


def test_duplicate_counters_two_rate_limits_same_window():
    found = issues("""\
        version: "1"
        tools:
          t:
            rules:
              - name: a
                rate_limit: 5/hour
              - name: b
                rate_limit: 10/minute
              - name: c
                rate_limit: 50/hour
        """)
    assert [(i.line, i.path, i.message) for i in found] == [
        (9, "tools.t.rules[2]", 'duplicate state counter "_rate_hour" (also used by rules[0])')
    ]


def test_same_counter_name_on_two_tools_is_fine():
    policy = ok("""\
        version: "1"
        tools:
          a:
            rules: [{name: r, rate_limit: 5/hour}]
          b:
            rules: [{name: r, rate_limit: 5/hour}]
        """)
    assert policy.tools["a"].rules[0].counter == policy.tools["b"].rules[0].counter == "_rate_hour"


def test_catalogue_rate_limits_with_the_same_window_in_seconds_collide():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - {action: allow, rate_limit: {max: 5, window: 60}}
              - {action: allow, rate_limit: {max: 9, window: 1m}}
        """)
    assert (issue.line, issue.path) == (6, "tools.t.rules[1]")
    assert '"_rate_60s"' in issue.message


# -- unknown keys, wrong types, YAML duplicates ----------------------------------------------


def test_unknown_key_typo_on_deney():
    issue = only_issue("""\
        version: "1"
        tools:
          delete_repo:
            rules:
              - name: block
                action: deny
                on_deney: "Never delete repositories"
        """)
    assert (issue.line, issue.column, issue.path) == (7, 9, "tools.delete_repo.rules[0].on_deney")
    assert issue.message.startswith("unknown key")


@pytest.mark.parametrize(
    ("text", "line", "path"),
    [
        ('version: "1"\ntool: {}\ntools: {}\n', 2, "tool"),
        ('version: "1"\ntools:\n  t:\n    rule: []\n', 4, "tools.t.rule"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions:\n'
         '          - {path: args.x, op: in, values: [1]}\n', 7, "tools.t.rules[0].conditions[0].values"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions: [{path: args.x, op: eq, value: 1}]\n'
         '        state:\n          counter: c\n          windw: hour\n', 9, "tools.t.rules[0].state.windw"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - action: allow\n        rate_limit:\n'
         '          max: 3\n          window: 60\n          burst: 5\n', 9, "tools.t.rules[0].rate_limit.burst"),
    ],
)
def test_unknown_keys_anywhere(text: str, line: int, path: str):
    found = issues(text)
    unknown = [i for i in found if i.message.startswith("unknown key")]
    assert [(i.line, i.path) for i in unknown] == [(line, path)]


@pytest.mark.parametrize(
    ("text", "line", "path", "type_word"),
    [
        ('version: "1"\nhide: delete_repo\ntools: {}\n', 2, "hide", "list"),
        ('version: "1"\ntools: []\n', 2, "tools", "dictionary"),
        ('version: "1"\ntools:\n  t:\n    rules: block\n', 4, "tools.t.rules", "list"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions: {path: args.x}\n',
         6, "tools.t.rules[0].conditions", "list"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        on_deny: 5\n'
         '        conditions: [{path: args.x, op: eq, value: 1}]\n', 6, "tools.t.rules[0].on_deny", "string"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions:\n'
         '          - {path: args.x, op: in, value: [a], optional: "yes"}\n', 7,
         "tools.t.rules[0].conditions[0].optional", "boolean"),
        ('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions: [{path: args.x, op: eq, value: 1}]\n'
         '        state:\n          counter: c\n          window: hour\n          increment: "2"\n', 10,
         "tools.t.rules[0].state.increment", "integer"),
    ],
)
def test_wrong_types_with_their_line(text: str, line: int, path: str, type_word: str):
    found = [i for i in issues(text) if i.path == path]
    assert found, f"no issue at {path}"
    assert found[0].line == line
    assert type_word in found[0].message


def test_yaml_duplicate_tool_key():
    issue = only_issue("""\
        version: "1"
        tools:
          create_issue:
            rules: []
          create_issue:
            rules:
              - {name: block, action: deny}
        """)
    assert (issue.line, issue.path) == (5, "tools.create_issue")
    assert issue.message == 'duplicate key "create_issue"'


def test_yaml_duplicate_rule_field():
    found = issues("""\
        version: "1"
        tools:
          t:
            rules:
              - name: n
                action: deny
                action: evaluate
        """)
    assert (7, "tools.t.rules[0].action") in [(i.line, i.path) for i in found]
    assert any(i.message == 'duplicate key "action"' for i in found)


def test_yaml_duplicate_top_level_key():
    found = issues('version: "1"\ntools: {}\nversion: "1"\n')
    assert [(i.line, i.path, i.message) for i in found] == [(3, "version", 'duplicate key "version"')]


def test_empty_file_and_non_mapping():
    assert only_issue("").message == "the policy file is empty"
    assert "mapping" in only_issue("- a\n- b\n").message


# -- the catalogue form ----------------------------------------------------------------------


CATALOGUE_OK = """\
    version: "1"
    tools:
      sora_generate_video:
        rules:
          - name: limit
            action: allow
            rate_limit: {max: 30, window: 60}
            reason: "30 per minute"
          - action: allow
            rate_limit: {max: 100, window: 1h}
            scope: global
          - action: allow
            conditions:
              - {path: args.size, op: in, value: [small, large], optional: true}
      delete_video:
        rules:
          - action: deny
            reason: "Deleting is for humans"
    """


def test_catalogue_form_validates():
    policy = ok(CATALOGUE_OK)
    rules = policy.tools["sora_generate_video"].rules
    assert rules[0].rate_limit.seconds == 60 and rules[0].effective_scope == "agent"
    assert rules[1].rate_limit.seconds == 3600 and rules[1].effective_scope == "global"
    assert policy.tools["delete_video"].rules[0].message == "Deleting is for humans"


@pytest.mark.parametrize("value", [0, -1])
def test_catalogue_max_must_be_positive(value: int):
    issue = only_issue(f"""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                rate_limit:
                  max: {value}
                  window: 60
        """)
    # At the max key itself, with the path as written (no pydantic union branch names).
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].rate_limit.max")
    assert issue.message == f"max must be a positive integer, got {value}"


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("0", "window must be between 1 second and 31 days, got 0"),
        ("-5", "window must be between 1 second and 31 days, got -5"),
        ("2678401", "window must be between 1 second and 31 days, got 2678401"),
        ("32d", "window must be between 1 second and 31 days, got 2764800"),
        ("2y", 'window must be seconds (e.g. 60) or a duration like "90s", "5m", "1h", "1d", got "2y"'),
        ('"60"', 'window must be seconds (e.g. 60) or a duration like "90s", "5m", "1h", "1d", got "60"'),
        ("0s", 'window must be seconds (e.g. 60) or a duration like "90s", "5m", "1h", "1d", got "0s"'),
    ],
)
def test_catalogue_window(window: str, message: str):
    issue = only_issue(f"""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                rate_limit:
                  max: 3
                  window: {window}
        """)
    assert (issue.line, issue.path) == (8, "tools.t.rules[0].rate_limit.window")
    assert issue.message == message


def test_catalogue_rate_limit_of_the_wrong_type():
    issue = only_issue('version: "1"\ntools:\n  t:\n    rules:\n      - action: allow\n        rate_limit: 5\n')
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")


def test_catalogue_missing_max():
    issue = only_issue('version: "1"\ntools:\n  t:\n    rules:\n      - action: allow\n        rate_limit: {window: 60}\n')
    assert issue.path == "tools.t.rules[0].rate_limit.max"
    assert issue.message == "required field is missing"
    assert issue.line == 6


def test_catalogue_scope_without_counter():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                conditions: [{path: args.x, op: exists, value: true}]
                scope: global
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].scope")
    assert issue.message.startswith("scope applies to a rule's counter")


def test_catalogue_scope_value():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                rate_limit: {max: 3, window: 60}
                scope: person
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].scope")
    assert "'person'" in issue.message or "person" in issue.message


def test_catalogue_reason_and_on_deny():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - action: deny
                on_deny: "No"
                reason: "No"
        """)
    assert (issue.line, issue.path) == (7, "tools.t.rules[0].reason")
    assert issue.message == "give either on_deny or reason (the same message), not both"


def test_catalogue_rate_limit_with_state():
    issue = only_issue("""\
        version: "1"
        tools:
          t:
            rules:
              - action: allow
                rate_limit: {max: 3, window: 60}
                state: {counter: c, window: hour}
        """)
    assert (issue.line, issue.path) == (6, "tools.t.rules[0].rate_limit")


def test_increment_and_increment_from_together():
    found = state_issue('counter: c\nwindow: day\nincrement: 2\nincrement_from: "args.amount"\n')
    assert [(i.line, i.path) for i in found] == [(8, "tools.t.rules[0].state")]
    assert found[0].message == "give either increment or increment_from, not both"


@pytest.mark.parametrize("value", ["0", "-2"])
def test_increment_must_be_positive(value: str):
    (issue,) = state_issue(f"counter: c\nwindow: day\nincrement: {value}\n")
    assert (issue.line, issue.path) == (11, "tools.t.rules[0].state.increment")


def test_tool_key_reserved_and_glob_check():
    found = issues("""\
        version: "1"
        tools:
          _global:
            rules: []
          "create_[abc":
            rules: []
        """)
    assert [(i.line, i.path) for i in found] == [(3, "tools._global"), (5, "tools['create_[abc']")]


# -- every error at once ---------------------------------------------------------------------


def test_all_errors_reported_together_across_levels():
    """A bad top-level field must not hide a rule's missing state block, nor a bad rule hide
    a duplicate counter elsewhere (Intercept reports every error in one run)."""
    found = issues("""\
        version: "2"
        tools:
          t:
            rules:
              - name: n
                conditions:
                  - {path: state.t.c, op: lt, value: 1}
          u:
            rules:
              - {name: a, rate_limit: 5/hour}
              - {name: b, rate_limit: 6/hour}
              - {name: c, rate_limit: 6/hourz}
        """)
    assert [(i.line, i.path) for i in found] == [
        (1, "version"),
        (7, "tools.t.rules[0].conditions[0].path"),
        (11, "tools.u.rules[1]"),
        (12, "tools.u.rules[2].rate_limit"),
    ]


def test_counter_of_an_invalid_rule_still_counts_as_kept():
    # One mistake, one error: the invalid rule's counter is still known to its readers.
    found = issues("""\
        version: "1"
        tools:
          t:
            rules:
              - name: keeps
                conditions: [{path: args.x, op: exists, value: true}]
                state: {counter: c, window: week}
              - name: reads
                conditions: [{path: state.t.c, op: lt, value: 1}]
        """)
    assert [(i.line, i.path) for i in found] == [(7, "tools.t.rules[0].state.window")]


def test_issues_sorted_by_position_and_formatted():
    found = issues('version: "3"\ndefault: maybe\ntools: {}\n')
    assert [str(i) for i in found] == [
        'p.yaml:1:1: version: version must be "1", got "3"',
        'p.yaml:2:1: default: default must be "allow" or "deny", got "maybe"',
    ]


# -- the command line ------------------------------------------------------------------------


ISSUE_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?:(?P<path>[^ :]+): )?(?P<msg>.+)$")

BAD_POLICY = """\
version: "1"
hide:
  - ""
tools:
  create_issue:
    rules:
      - name: hourly
        rate_limit: 5/week
        on_deney: "typo"
      - name: labels
        conditions:
          - path: args.labels
            op: contains_all
            value: [agent]
  create_charge:
    rules:
      - name: cap
        conditions:
          - {path: state.create_charge.spend, op: lt, value: "lots"}
        state: {counter: spend, window: day, increment_from: amount}
"""

BAD_EXPECTED = [
    (3, "hide[0]", "entry must not be empty"),
    (8, "tools.create_issue.rules[0].rate_limit", 'rate_limit window must be "minute", "hour", or "day", got "week"'),
    (9, "tools.create_issue.rules[0].on_deney", "unknown key"),
    (13, "tools.create_issue.rules[1].conditions[0].op", 'unknown operator "contains_all"'),
    (19, "tools.create_charge.rules[0].conditions[0].value", 'operator "lt" requires a numeric value'),
    (20, "tools.create_charge.rules[0].state.increment_from", 'increment_from must start with "args.", got "amount"'),
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intercept_addon", "validate", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_cli_bad_file_lists_every_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    result = run_cli(str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(BAD_EXPECTED), result.stderr
    for text, (line, path, message) in zip(lines, BAD_EXPECTED):
        m = ISSUE_LINE.match(text)
        assert m, f"not FILE:LINE:COL: path: message: {text!r}"
        assert m["file"] == str(bad)
        assert int(m["line"]) == line and int(m["col"]) >= 1
        assert m["path"] == path
        assert message in m["msg"]


def test_cli_good_files_ok_summary():
    files = [*PROJECT_FILES, VALID_FIXTURE, DEFAULT_DENY_FIXTURE]
    result = run_cli(*map(str, files))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    for line, path in zip(lines, files):
        assert re.fullmatch(
            re.escape(str(path)) + r": OK \(\d+ tools, \d+ rules, \d+ counters, \d+ hidden, default (allow|deny)\)",
            line,
        ), line
    assert lines[-2].endswith("OK (5 tools, 8 rules, 4 counters, 0 hidden, default allow)")
    assert lines[-1].endswith("OK (4 tools, 3 rules, 2 counters, 0 hidden, default deny)")


def test_cli_mixed_files_exit_1_but_report_each(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        action: nope\n')
    good = VALID_FIXTURE
    result = run_cli(str(good), str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{good}: OK (")
    assert result.stderr.startswith(f"{bad}:6:9: tools.t.rules[0].action: ")


def test_cli_yaml_syntax_error_and_missing_file(tmp_path: Path):
    result = run_cli(str(INVALID_YAML_FIXTURE), str(tmp_path / "absent.yaml"))
    assert result.returncode == 1
    first, second = result.stderr.splitlines()
    assert first.startswith(f"{INVALID_YAML_FIXTURE}:10:7: YAML syntax error")
    assert second.startswith(f"{tmp_path / 'absent.yaml'}:1:1: cannot read policy")


# Mcp Sora's entry in the Intercept catalogue, as it ships: no version, no rule name.
CATALOGUE_SORA = """\
tools:
  Image-to-Video:
    rules:
      - action: allow
        rate_limit:
          max: 30
          window: 60
"""


def test_cli_catalogue_snippet_validates_as_it_is(tmp_path: Path):
    path = tmp_path / "sora.yaml"
    path.write_text(CATALOGUE_SORA)
    result = run_cli(str(path))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: OK (1 tools, 1 rules, 1 counters, 0 hidden, default allow)\n"
    rule = load_policy(path).tools["Image-to-Video"].rules[0]
    assert (rule.action, rule.name, rule.rate_limit.max, rule.rate_limit.seconds) == ("allow", None, 30, 60)


@pytest.mark.parametrize(("line", "got"), [('version: "2"', '"2"'), ("version: 2", '"2"'), ('version: ""', '""'),
                                           ("version: 1.0", '"1.0"')])
def test_cli_catalogue_snippet_with_an_unknown_version_fails(tmp_path: Path, line: str, got: str):
    path = tmp_path / "sora.yaml"
    path.write_text(f"{line}\n{CATALOGUE_SORA}")
    result = run_cli(str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f'{path}:1:1: version: version must be "1", got {got}\n'


@pytest.mark.parametrize(
    ("field", "written", "message"),
    [
        ("op", '"has\\u001b[2J"', 'unknown operator "has\\u001b[2J" (use one of: '),
        ("path", '"ar\\u202egs.name"', 'got "ar\\u202egs.name"'),
        ("path", '"env.\\nforged: line"', 'got "env.\\nforged: line"'),
        ("value", '"a\\u0007b"', 'operator "in" requires a list value, got "a\\u0007b"'),
    ],
)
def test_messages_escape_the_values_they_show(field: str, written: str, message: str):
    cond = {"path": '"args.x"', "op": "in", "value": "[1]"} | {field: written}
    text = f'version: "1"\ntools:\n  t:\n    rules:\n      - name: n\n        conditions: [{{path: {cond["path"]}, op: {cond["op"]}, value: {cond["value"]}}}]\n'
    (issue,) = [i for i in issues(text) if i.path.endswith(f".{field}")]
    assert message in issue.message
    assert issue.message.isprintable()


def test_duplicate_key_is_escaped():
    found = issues('version: "1"\ntools:\n  "a\\ez": {rules: []}\n  "a\\ez": {rules: []}\n')
    assert [(i.line, i.message) for i in found] == [(4, 'duplicate key "a\\u001bz"')]


def test_a_long_value_is_cut():
    issue = cond_issue("lt", '"' + "9" * 500 + '"')
    assert issue.message == f'operator "lt" requires a numeric value, got "{"9" * 120}"... (380 more characters)'


def test_cli_needs_a_file():
    result = run_cli()
    assert result.returncode == 2
    assert "FILE" in result.stderr


# -- libyaml composes, the Python parser where libyaml refuses: both read a policy alike -------

def _read_with(composer: type, text: str):  # type: ignore[no-untyped-def]
    positions: dict = {}
    issues: list = []
    data = policy_file._to_data(policy_file._compose_with(composer, text), (), positions, "p.yaml", issues)
    return data, positions, issues


_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "compat" / "intercept-policies"


@pytest.mark.parametrize("path", PROJECT_FILES + sorted(FIXTURES.glob("*.yaml")) + sorted(_CORPUS.glob("*.yaml")),
                         ids=lambda p: p.name)
def test_libyaml_reads_every_known_policy_as_the_python_parser_does(path):
    text = path.read_text()
    try:
        python = _read_with(yaml.SafeLoader, text)
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            _read_with(yaml.CSafeLoader, text)
        return
    assert _read_with(yaml.CSafeLoader, text) == python  # the data, every position, every issue


def test_what_libyaml_refuses_is_read_by_the_python_parser():
    policy = parse_policy('version: "1"\ndefault: allow\ntools:\n  "odd\\ud800name":\n    rules: []\n', "p.yaml")
    assert list(policy.tools) == ["odd\ud800name"]  # libyaml refuses a surrogate escape; PyYAML reads it
