"""``arguments: schema`` (policy/arguments.py, proxy/published.py): the server's own schemas,
checked under their draft, with regular expressions on RE2 (a hostile server's pattern cannot
freeze the proxy), and any schema that cannot be checked denying the call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intercept_addon.policy.arguments import ArgumentSchemas, SchemaUnusable
from intercept_addon.policy.engine import Engine
from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy.published import PublishedTools

SORA = {t["name"]: t for t in json.loads((Path(__file__).parent / "fixtures" / "mcp_sora_tools.json").read_text())}
VIDEO = SORA["sora_generate_video"]["inputSchema"]


def test_sora_schemas_name_the_path_and_the_expectation():
    check = ArgumentSchemas()
    assert check.problem(VIDEO, {"prompt": "a cat"}) is None
    assert check.problem(VIDEO, {"prompt": "a cat", "duration": 7}) == "args.duration: 7 is not one of [10, 15, 25]"
    assert check.problem(VIDEO, {"duration": 10}) == "args: 'prompt' is a required property"
    assert "is not of type 'string'" in check.problem(VIDEO, {"prompt": 5})


@pytest.mark.timeout(20)
def test_a_backtracking_pattern_from_the_server_runs_in_linear_time():
    # Python's re needs about 2**60 steps here; RE2 answers at once.
    evil = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a+)+$"}},
            "patternProperties": {"^(b+)+$": {"type": "string"}}, "additionalProperties": False}
    check = ArgumentSchemas()
    assert "does not match" in check.problem(evil, {"q": "a" * 60 + "!"})
    assert "additional properties" in check.problem(evil, {"q": "a", "b" * 60 + "!": "x"})
    assert check.problem(evil, {"q": "aaa", "bbb": "x"}) is None


@pytest.mark.parametrize("schema, why", [
    ({"type": "object", "properties": {"q": {"type": "string", "pattern": "(a)\\1"}}}, "not RE2"),
    ({"type": "object", "properties": {"q": {"$ref": "https://example.invalid/s.json"}}}, "does not resolve"),
    ({"type": "objekt"}, "not valid"),
    ({"type": "object", "unevaluatedProperties": False, "patternProperties": {"a": {}}}, "unevaluatedProperties"),
    (["not", "an", "object"], "not an object"),
])
def test_a_schema_that_cannot_be_checked_is_unusable(schema, why):
    with pytest.raises(SchemaUnusable, match=why):
        ArgumentSchemas().problem(schema, {"q": "aa"})


def test_the_declared_draft_is_used():
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}}}
    assert "greater than or equal to the maximum" in ArgumentSchemas().problem(draft4, {"n": 5})


def test_a_validator_is_compiled_once_per_schema():
    check = ArgumentSchemas()
    check.problem(VIDEO, {"prompt": "a"})
    first = check.compile(VIDEO)
    assert check.compile(json.loads(json.dumps(VIDEO))) is first  # an equal schema: the same validator


def listed(*tools: dict, cursor: str | None = None) -> dict:
    result: dict = {"tools": list(tools)}
    if cursor:
        result["nextCursor"] = cursor
    return {"jsonrpc": "2.0", "id": 1, "result": result}


def test_calls_before_a_list_and_to_unknown_tools_are_denied():
    published = PublishedTools()
    assert "has not seen this server's tools/list" in published.decision("s", "sora_generate_video", {}).message
    published.observe("s", listed(SORA["sora_generate_video"], cursor="2"))  # page 1 of 2
    assert published.decision("s", "sora_generate_video", {"prompt": "a"}) is None
    assert "has not seen" in published.decision("s", "other", {}).message  # the list is not whole yet
    published.observe("s", listed(SORA["sora_get_task"]))
    assert "unknown tool" in published.decision("s", "other", {}).message
    assert published.decision("elsewhere", "sora_generate_video", {"prompt": "a"}) is not None  # per server


def test_the_top_level_and_per_tool_keys_choose_what_is_checked():
    everything = Engine(parse_policy("arguments: schema\ntools: {}\n"))
    some = Engine(parse_policy("tools:\n  sora_*:\n    arguments: schema\n  echo: {rules: []}\n"))
    assert everything.checks_arguments("anything")
    assert some.checks_arguments("sora_generate_video") and not some.checks_arguments("echo")
    assert not Engine(parse_policy("tools: {}\n")).checks_arguments("sora_generate_video")
