"""Intercept's own policy corpus loads unchanged and is judged as Intercept judges it.

The corpus (53 catalogue templates and Intercept's test fixtures, Apache-2.0) is read in place
from ``../shared`` beside the clone and never copied into the repository. A clone without it
skips this module with one line; under CI (which has it) a missing corpus fails every test
here. The features these files exercise are covered without them by ``tests/fixtures``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from intercept_addon.policy.engine import Engine
from intercept_addon.policy.file import PolicyError, load_policy
from intercept_addon.policy.values import OPERATORS

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "compat" / "intercept-policies"
MISSING = f"Intercept's policy corpus is not beside the clone (no {CORPUS})"

if not CORPUS.is_dir() and not os.environ.get("CI"):
    pytest.skip(MISSING, allow_module_level=True)

CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
VALID = {"testdata_valid_policy.yaml", "testdata_default_deny_policy.yaml"}
INVALID = {"testdata_invalid_policy.yaml", "testdata_invalid_schema.yaml"}


@pytest.fixture(autouse=True)
def corpus_present() -> None:
    # Reached without the corpus only under CI, where it must be there.
    if not CORPUS.is_dir():
        pytest.fail(MISSING, pytrace=False)


def test_corpus_is_present():
    # Guards the parametrised test below against an empty glob passing vacuously.
    assert len([f for f in CORPUS_FILES if f.name.startswith("policies_")]) == 53
    assert {f.name for f in CORPUS_FILES} >= VALID | INVALID


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_judged_as_intercept_does(path: Path):
    if path.name.startswith("policies_") or path.name in VALID:
        policy = load_policy(path)
        assert policy.version == "1"
        Engine(policy)
    elif path.name in INVALID:
        with pytest.raises(PolicyError) as exc:
            load_policy(path)
        assert exc.value.issues
        assert all(i.file == str(path) and i.line >= 1 and i.column >= 1 for i in exc.value.issues)
    else:
        pytest.fail(f"unclassified corpus file {path.name}")


def test_corpus_default_deny_fixture_reads_as_deny():
    policy = load_policy(CORPUS / "testdata_default_deny_policy.yaml")
    assert policy.default == "deny"
    assert set(policy.tools) == {"read_file", "create_issue", "delete_customer", "*"}


def test_corpus_invalid_yaml_names_its_line():
    with pytest.raises(PolicyError) as exc:
        load_policy(CORPUS / "testdata_invalid_policy.yaml")
    (issue,) = exc.value.issues
    assert issue.message.startswith("YAML syntax error")
    assert issue.path == ""
    # The string opened on line 5 is never closed; the parser trips where the next quote
    # turns `args.x"` into a stray scalar.
    assert (issue.line, issue.column) == (7, 20)


INVALID_SCHEMA_EXPECTED = [
    (1, "version", 'version must be "1", got "2"'),
    (6, "tools.some_tool.rules[0].name", "rule must have a name"),
    (9, "tools.some_tool.rules[0].conditions[0].op", 'unknown operator "unknown_op"'),
    (14, "tools.some_tool.rules[1].conditions[0].path", 'got "foo.bar"'),
    (22, "tools.some_tool.rules[2].conditions[0].value", 'operator "in" requires a list value, got "not_a_list"'),
    (28, "tools.some_tool.rules[3].conditions[0].value", 'operator "lt" requires a numeric value, got "not_a_number"'),
    (34, "tools.some_tool.rules[4].conditions[0].value", 'invalid regex "[invalid("'),
    (38, "tools.some_tool.rules[5].conditions", "deny rules must not have conditions"),
    (43, "tools.some_tool.rules[6].conditions", "evaluate rules must have at least one condition"),
    (49, "tools.rate_limit_tool.rules[0].rate_limit", 'rate_limit count must be a positive integer, got "five"'),
    (52, "tools.rate_limit_tool.rules[1].rate_limit", "rate_limit cannot be combined with conditions or state"),
    (59, "tools.rate_limit_tool.rules[2].rate_limit", "rate_limit cannot be combined with conditions or state"),
    (65, "tools.rate_limit_tool.rules[3].rate_limit", 'rate_limit count must be a positive integer, got "0"'),
    (68, "tools.rate_limit_tool.rules[4].rate_limit", 'rate_limit window must be "minute", "hour", or "day", got "week"'),
    (72, "tools.rate_limit_tool.rules[5].rate_limit", 'rate_limit cannot be used with action "deny"'),
]


def test_corpus_invalid_schema_every_error_with_line_and_path():
    path = CORPUS / "testdata_invalid_schema.yaml"
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    got = exc.value.issues
    assert [(i.line, i.path) for i in got] == [(line, p) for line, p, _ in INVALID_SCHEMA_EXPECTED]
    for issue, (_, _, message) in zip(got, INVALID_SCHEMA_EXPECTED):
        assert message in issue.message, str(issue)
    # The unknown-operator error names the valid ones.
    assert all(op in got[2].message for op in OPERATORS)


def test_corpus_valid_fixtures_through_the_cli():
    files = [CORPUS / "testdata_valid_policy.yaml", CORPUS / "testdata_default_deny_policy.yaml"]
    result = subprocess.run([sys.executable, "-m", "intercept_addon", "validate", *map(str, files)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"{files[0]}: OK (5 tools, 8 rules, 4 counters, 0 hidden, default allow)",
        f"{files[1]}: OK (4 tools, 3 rules, 2 counters, 0 hidden, default deny)",
    ]
