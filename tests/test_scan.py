"""scan's policy writer, without a server: hostile names and descriptions cannot add a line of
policy, the output always validates (both styles), the risk grouping follows annotations
before names, and the suggested rules decide calls as described (run through the engine)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import free_port
from intercept_addon import cli
from intercept_addon.policy.engine import Call, Engine
from intercept_addon.policy.fingerprint import fingerprint
from intercept_addon.policy.values import is_glob
from intercept_addon.policy.file import parse_policy
from intercept_addon.scan import (
    DESTRUCTIVE,
    READ,
    STYLES,
    WRITE,
    Listing,
    classify,
    comment,
    key,
    parse_headers,
    public_url,
    render_policy,
    scalar,
    value,
)
from intercept_addon.state.memory import MemoryStore

ANY_CHAR = st.characters(exclude_categories=())  # surrogates, controls, line and paragraph separators too
NOW = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
TOP_LEVEL = {"version", "description", "default", "tools", "fingerprints"}

INJECTION = ("line one\n# not a comment any more?\nversion: 2\ntools: {x: {rules: [{action: deny}]}}\n"
             "\u2028default: allow\x85hide: ['*']\r\nfingerprints: {on_change: flag}\u2029end")
HOSTILE_NAMES = [
    "echo", "evil\ntools:\n  x: {}", "a\u2028default: allow", "nel\x85version: 2", "cr\rhide: [echo]",
    "*", "sora_*", "a[b", "?", "_global", "", "   ", "<<", "yes", "No", "null", "~", "=", "#comment",
    "- item", "key: value", '"quoted"', "back\\slash", "tab\there", "\ufeffbom", "rtl\u202eevil", "emoji😀",
    "ünïcödé", "\x00nul", "\x7fdel", "\ud800lone", "1e3", "0x10", ".inf", "2001-12-14", "@at", "`tick",
    "%pct", "!tag", "&anchor", "|", ">", "{a: 1}", "[1]", "x" * 3000, "\u00a0nbsp",
]


def tool(name: str, description: Any = None, schema: Any = None, annotations: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "inputSchema": schema if schema is not None else {"type": "object"}}
    if description is not None:
        out["description"] = description
    if annotations is not None:
        out["annotations"] = annotations
    return out


def listing(tools: list[dict[str, Any]], url: str = "http://127.0.0.1:9/mcp", server: str | None = "srv") -> Listing:
    return Listing(url, "Streamable HTTP", "2025-11-25", server, tools)


def keyable(name: str) -> bool:
    return bool(name.strip()) and name != "_global" and name != "*" and not is_glob(name)


def check_policy(text: str, tools: list[dict[str, Any]]) -> None:
    """The text loads (with our loader and plain PyYAML) to exactly what the writer means."""
    text.encode("utf-8")  # no lone surrogate reaches the file
    policy = parse_policy(text, "scan.yaml")
    assert set(yaml.safe_load(text)) == TOP_LEVEL
    first = {}
    for t in tools:
        first.setdefault(t["name"], t)
    assert policy.default == "deny" and policy.hide == []
    assert set(policy.tools) == {n for n in first if keyable(n)}
    assert policy.fingerprints is not None and policy.fingerprints.on_change == "hide"
    assert policy.fingerprints.tools == {n: fingerprint(t) for n, t in first.items()}
    for rules in policy.tools.values():
        for rule in rules.rules:  # only the kinds of rule the writer writes
            assert rule.action == "deny" or rule.rate_limit is not None or (
                rule.conditions and all(c.op == "in" for c in rule.conditions))


@pytest.mark.parametrize("style", STYLES)
def test_hostile_names_and_descriptions_cannot_add_policy(style: str) -> None:
    schema = {
        "type": "object",
        "required": ["mode\nhide: [x]"],
        "properties": {
            "mode\nhide: [x]": {"enum": ["a\n- {path: args.x, op: eq, value: 1}", "#", "yes", 1.5e16, None, True]},
            "dotted.name": {"enum": ["a", "b"]},
            "": {"enum": ["a"]},
            INJECTION: {"type": "string", "description": INJECTION, "default": INJECTION},
        },
    }
    tools = [tool(n, INJECTION + n, schema) for n in HOSTILE_NAMES]
    tools.append(tool("echo", "a second, different echo"))
    text = render_policy(listing(tools, url="http://user:secret@127.0.0.1:9/mcp?token=t0ken#frag",
                                 server=INJECTION), style=style, now=NOW)
    check_policy(text, tools)
    assert "secret" not in text and "t0ken" not in text
    assert "listed again by the server" in text
    policy = parse_policy(text)
    conditions = [c for r in policy.tools["echo"].rules for c in r.conditions]
    # The enum survives exactly; names with a "." (not a path) or empty get no condition.
    assert [(c.path, c.value, c.optional) for c in conditions] == [
        ("args.mode\nhide: [x]", ["a\n- {path: args.x, op: eq, value: 1}", "#", "yes", 1.5e16, None, True], False)]


@pytest.mark.parametrize("style", STYLES)
@settings(max_examples=40, deadline=None)
@given(tools=st.lists(st.builds(tool, st.text(ANY_CHAR, max_size=12), st.none() | st.text(ANY_CHAR, max_size=60),
                                st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
                                    st.text(ANY_CHAR, max_size=8),
                                    st.fixed_dictionaries({"enum": st.lists(st.none() | st.booleans() | st.integers()
                                                                            | st.text(ANY_CHAR, max_size=8),
                                                                            min_size=1, max_size=3)}),
                                    max_size=3)}),
                                st.none() | st.fixed_dictionaries({}, optional={
                                    "readOnlyHint": st.booleans(), "destructiveHint": st.booleans()})),
                      max_size=6))
def test_any_tool_list_gives_a_valid_policy_with_exactly_its_tools(style: str, tools: list[dict[str, Any]]) -> None:
    check_policy(render_policy(listing(tools), style=style, now=NOW), tools)


@settings(max_examples=300, deadline=None)
@given(st.text(ANY_CHAR))
def test_scalars_read_back_exactly(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}") == {"k": text}
    assert yaml.safe_load(f"k: [{scalar(text)}, x]") == {"k": [text, "x"]}
    assert yaml.safe_load(f"{key('', text)} 1") == {text: 1}


@settings(max_examples=300, deadline=None)
@given(st.text(ANY_CHAR))
def test_comments_cannot_end(text: str) -> None:
    lines = comment("  ", text, lead="  ")
    assert all(line.startswith("  # ") or line == "  #" for line in lines)
    assert yaml.safe_load("a: 1\n" + "\n".join(lines) + "\nb: 2\n") == {"a": 1, "b": 2}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(ANY_CHAR)))
def test_values_read_back_exactly(items: list[Any]) -> None:
    assert yaml.safe_load(f"k: {value(items)}") == {"k": items}


def test_long_names_use_explicit_keys() -> None:
    name = "é" * 600 + "\n" * 300  # 600 + 300 * 4 characters once escaped: past PyYAML's simple key limit
    assert yaml.safe_load(f"{key('', name)} 1") == {name: 1}
    text = render_policy(listing([tool(name)]), now=NOW)
    check_policy(text, [tool(name)])


def test_no_tools() -> None:
    text = render_policy(listing([]), now=NOW)
    check_policy(text, [])
    assert parse_policy(text).tools == {}


@pytest.mark.parametrize("name,annotations,risk", [
    ("delete_everything", None, DESTRUCTIVE),
    ("deleteRepository", None, DESTRUCTIVE),  # camelCase words
    ("remove_draft", {"readOnlyHint": False, "destructiveHint": False}, WRITE),  # annotations before the name
    ("get_queue", {"readOnlyHint": False, "destructiveHint": True}, DESTRUCTIVE),
    ("list_everything", {"destructiveHint": True}, DESTRUCTIVE),
    ("drop_cache", {"destructiveHint": False}, WRITE),
    ("lookup", {"readOnlyHint": True, "destructiveHint": True}, READ),  # destructiveHint means nothing when read-only
    ("purge", {"readOnlyHint": False}, DESTRUCTIVE),  # MCP's default: destructiveHint true
    ("create_thing", {"readOnlyHint": "yes"}, WRITE),  # a hint that is not a boolean is no hint
    ("delete_it", {"idempotentHint": True, "openWorldHint": False}, DESTRUCTIVE),  # neither hint: the name
    ("sora_get_task", None, READ),
    ("sora_generate_video", None, WRITE),
    ("get_or_create_user", None, WRITE),  # a write word beats a read word
    ("frobnicate", None, WRITE),  # nothing known: treated as a write
])
def test_risk_from_annotations_before_names(name: str, annotations: Any, risk: str) -> None:
    assert classify(name, annotations)[0] == risk


ANNOTATED = [
    tool("lookup", "Look a record up.", {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string"}, "mode": {"enum": ["exact", "fuzzy"], "default": "exact"}}},
        {"readOnlyHint": True}),
    tool("purge_archive", "Delete the whole archive.", None, {"readOnlyHint": False, "destructiveHint": True}),
    tool("archive_item", "Move an item.", {"type": "object", "required": ["tier"], "properties": {
        "tier": {"type": "string", "enum": ["cold", "warm"]},
        "size": {"anyOf": [{"enum": [1, 2]}, {"const": 3}, {"type": "null"}]}}},
        {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True}),
    tool("remove_draft", "Mark a draft removed.", None, {"readOnlyHint": False, "destructiveHint": False}),
]


@pytest.mark.parametrize("style", STYLES)
async def test_the_suggested_rules_decide_as_described(style: str) -> None:
    text = render_policy(listing(ANNOTATED), style=style, now=NOW)
    check_policy(text, ANNOTATED)
    engine = Engine(parse_policy(text), clock=lambda: 1_700_000_010.0)
    store = MemoryStore()

    async def decide(name: str, args: dict[str, Any] | None = None, session: str = "s1"):
        return await engine.evaluate(Call(session, name, args or {}), store)

    assert (await decide("lookup", {"query": "q"})).allowed  # optional enum omitted
    assert (await decide("lookup", {"query": "q", "mode": "fuzzy"})).allowed
    assert (await decide("lookup", {"query": "q", "mode": "regex"})).kind == "condition"
    denied = await decide("purge_archive")
    assert denied.kind == "deny" and denied.message == "Destructive tool: denied by policy until a person allows it"
    assert (await decide("archive_item", {"tier": "hot"})).kind == "condition"
    assert (await decide("archive_item", {})).kind == "condition"  # a required enum must be there
    assert (await decide("archive_item", {"tier": "cold", "size": None})).allowed  # anyOf with null
    assert (await decide("archive_item", {"tier": "cold", "size": 4})).kind == "condition"
    assert (await decide("new_tool")).kind == "default_deny"
    # remove_draft: a write (not idempotent) limited to 10 a minute.
    outcomes = [(await decide("remove_draft", {"draft_id": str(i)})).allowed for i in range(11)]
    assert outcomes == [True] * 10 + [False]
    assert ("rate_limit: {max: 10, window: 60}" in text) == (style == "catalogue")
    assert ("rate_limit: 30/minute" in text) == (style == "intercept")  # archive_item is idempotent


def test_comments_show_each_tool() -> None:
    text = render_policy(listing(ANNOTATED, server="demo-server"), now=NOW)
    assert text.startswith("# Starting policy for the MCP server demo-server at http://127.0.0.1:9/mcp,\n"
                           "# written by `intercept-addon scan` on 2026-01-02 03:04 UTC")
    assert "# 4 tools: 1 destructive (denied), 2 write (rate limited), 1 read-only." in text
    assert "  # lookup: read-only (annotations: readOnlyHint)\n" in text
    assert '  #   - mode (any, optional, default "exact"): one of "exact", "fuzzy"\n' in text
    assert "  #   annotations: readOnlyHint=false, destructiveHint=false, idempotentHint=true\n" in text


def test_headers_and_urls() -> None:
    assert parse_headers(["Authorization: Bearer a:b", "X-Agent-Id:scanner"]) == {
        "Authorization": "Bearer a:b", "X-Agent-Id": "scanner"}
    for bad in ("no colon", "Bad Name: x", ": empty", "X: a\r\nInjected: 1"):
        with pytest.raises(ValueError):
            parse_headers([bad])
    assert public_url("https://u:p@[::1]:8443/mcp?key=1#x") == "https://[::1]:8443/mcp"


def test_an_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp?token=hidden"
    assert cli.main(["scan", url, "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert f"cannot list the tools at {url.split('?')[0]}" in err and "hidden" not in err
    assert "Streamable HTTP:" in err and "legacy HTTP+SSE:" in err
    assert cli.main(["scan", url, "--header", "nonsense"]) == 2


def test_values_keep_float_precision() -> None:
    for number in (0.1, 1e16, 2.5e-07, -1e300, 123456789.125):
        assert yaml.safe_load(value(number)) == number and not math.isnan(number)
