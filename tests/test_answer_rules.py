"""answers: rules (policy/answer_rules.py) as a policy writes them: the named secrets, custom
RE2 patterns, size and deny_if, merged from the policy and the tool's key."""

from __future__ import annotations

import pytest

from intercept_addon.policy.answer_rules import AnswerRules, CompiledAnswers
from intercept_addon.policy.engine import Engine
from intercept_addon.policy.file import PolicyError, parse_policy

SECRETS = {
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "a" * 36,
    "gitlab_token": "glpat-" + "b" * 20,
    "slack_token": "xoxb-1234567890-abcdef",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXZhbHVl",
    "bearer_token": "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
}


@pytest.mark.parametrize("name", SECRETS)
def test_each_named_secret_is_redacted_wherever_it_sits(name):
    rules = CompiledAnswers([AnswerRules(redact=["secrets"])])
    result = {"content": [{"type": "text", "text": f"x {SECRETS[name]} y"}],
              "structuredContent": {"deep": [{"v": SECRETS[name]}]}}
    outcome = rules.apply(result, "tool t")
    assert outcome is not None and not outcome.replaced
    assert SECRETS[name] not in str(outcome.result) and f"[REDACTED:{name}]" in str(outcome.result)
    assert f"{name} x2" in outcome.what


def test_ordinary_text_is_left_alone():
    text = "The AKIA prefix is documented; tokens start with ghp_ and JWTs with eyJ."
    assert CompiledAnswers([AnswerRules(redact=["secrets"])]).apply({"content": [{"text": text}]}, "tool t") is None


def test_the_policy_and_the_tool_key_merge():
    engine = Engine(parse_policy("answers: {redact: [jwt]}\ntools:\n  big_*:\n    answers: {max_result_bytes: 50}\n"))
    big = engine.answer_rules("big_report")
    assert big is not None and big.max_bytes == 50 and [n for n, _ in big.redactions] == ["jwt"]
    assert engine.answer_rules("other").max_bytes is None
    assert Engine(parse_policy("tools: {}\n")).answer_rules("any") is None


@pytest.mark.parametrize("answers, message", [
    ("{redact: [passwords]}", 'unknown secret set "passwords"'),
    ("{redact_patterns: ['(a)\\1']}", "is not RE2"),
    ("{max_result_bytes: 0}", "greater than 0"),
])
def test_bad_rules_name_the_value(answers, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(f"answers: {answers}\ntools: {{}}\n")
