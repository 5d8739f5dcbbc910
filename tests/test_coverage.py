"""policy/coverage.py: a policy compared with a server's tools/list, on mcp-sora's real list
(``fixtures/mcp_sora_tools.json``: the ``tools`` array mcp-sora 2026.10.8.0 serves, captured
through the official SDK) and on small hand-written schemas."""

from __future__ import annotations

import json
from pathlib import Path

from intercept_addon.policy.coverage import Unmatched, UnknownArgument, UnlistedValue, compare, words
from intercept_addon.policy.file import load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[1]
SORA_TOOLS = json.loads((ROOT / "tests" / "fixtures" / "mcp_sora_tools.json").read_text())
SERVER = "http://127.0.0.1:8000"
CATALOGUE_SORA = """\
tools:
  Image-to-Video:
    rules:
      - action: allow
        rate_limit: {max: 30, window: 60}
"""


def sora_rule(*conditions: str, key: str = "sora_generate_video_from_image", extra: str = "") -> str:
    lines = "\n".join(f"          - {c}" for c in conditions)
    return f"""tools:
  {key}:
    rules:
      - name: checks
        action: allow
        conditions:
{lines}
{extra}"""


def findings(text: str, tools: list | None = None) -> list:
    return list(compare(parse_policy(text, "<test>"), SORA_TOOLS if tools is None else tools).findings)


def test_words_split_case_separators_and_digits():
    assert words("Image-to-Video") == ("image", "to", "video")
    assert words("sora_generate_video_from_image") == ("sora", "generate", "video", "from", "image")
    assert words("getHTTPResponse2x") == ("get", "http", "response", "2", "x")
    assert words("Ｉｍａｇｅ.Video") == ("image", "video")  # NFKC first


def test_catalogue_key_suggests_the_tool_whose_description_names_it():
    [item] = findings(CATALOGUE_SORA)
    # Both descriptions say "Image-to-Video" (sora_generate_video's sends the reader to the other);
    # the one whose name shares the key's words comes first.
    assert item == Unmatched("Image-to-Video", False, ("sora_generate_video_from_image", "sora_generate_video"))
    assert item.describe(SERVER) == ('policy key "Image-to-Video" matches no tool of http://127.0.0.1:8000; '
                                     "closest: sora_generate_video_from_image, sora_generate_video")


def test_the_shipped_sora_policy_matches_the_real_server():
    assert compare(load_policy(ROOT / "policies" / "mcp-sora.yaml"), SORA_TOOLS).findings == ()


def test_misspelled_keys_globs_and_hide_entries_are_unmatched_with_suggestions():
    items = findings("""\
hide: [sora_generate_video_asnyc, "sora_*_async", "*"]
tools:
  sora_get_tsk: {}
  Sora_Get_Task: {}
  "sora_genrate_*": {}
  "sora_get_*": {}
  "*": {}
""")
    assert [(i.key, i.hidden, i.closest[0]) for i in items] == [
        ("sora_get_tsk", False, "sora_get_task"),
        ("Sora_Get_Task", False, "sora_get_task"),  # the engine matches keys exactly
        ("sora_genrate_*", False, "sora_generate_video"),
        ("sora_generate_video_asnyc", True, "sora_generate_video_async"),
    ]
    assert all(len(i.closest) <= 3 for i in items)
    assert items[3].describe(SERVER).startswith('hide entry "sora_generate_video_asnyc" matches no tool')


def test_nothing_similar_says_so():
    [item] = findings("tools:\n  zzqx: {}\n")
    assert item.closest == ()
    assert item.describe(SERVER).endswith("; no tool has a similar name")


def test_misspelled_argument_paths_suggest_declared_ones():
    items = findings(sora_rule("{path: args.modle, op: in, value: [sora-2]}",
                               "{path: args.Size, op: exists, value: true}",
                               "{path: args.image_urls.0, op: regex, value: '^https://'}",
                               "{path: args.image_urls.first, op: exists, value: true}",
                               "{path: args.prompt.text, op: exists, value: true}",
                               "{path: args.prompt, op: exists, value: true}"))
    assert [(i.path, i.closest) for i in items] == [
        ("args.modle", ("args.model",)), ("args.Size", ("args.size",)),
        ("args.image_urls.first", ()), ("args.prompt.text", ())]
    assert all(isinstance(i, UnknownArgument) and i.rule == "checks" for i in items)
    assert items[0].describe(SERVER) == (
        'policy key "sora_generate_video_from_image" rule "checks": "args.modle" is not an argument of '
        "sora_generate_video_from_image (http://127.0.0.1:8000); closest: args.model")


def test_when_and_increment_from_paths_are_checked_too():
    items = findings("""\
tools:
  sora_generate_video_from_image:
    rules:
      - name: budget
        when: [{path: args.modl, op: eq, value: sora-2-pro}]
        state: {counter: seconds, window: day, increment_from: args.durration}
        conditions: [{path: state.sora_generate_video_from_image.seconds, op: lte, value: 600}]
""")
    assert [(i.rule, i.path, i.closest) for i in items] == [
        ("budget", "args.modl", ("args.model",)), ("budget", "args.durration", ("args.duration",))]


def test_in_values_outside_the_enum_are_reported():
    items = findings(sora_rule("{path: args.model, op: in, value: [sora-2, sora-3]}",
                               "{path: args.duration, op: not_in, value: [15.0, 20]}",
                               "{path: args.size, op: in, value: [small, large]}"))
    assert items == [
        UnlistedValue("sora_generate_video_from_image", "checks", "args.model", "in", ("sora-3",),
                      ("sora-2", "sora-2-pro"), ("sora_generate_video_from_image",)),
        UnlistedValue("sora_generate_video_from_image", "checks", "args.duration", "not_in", (20,),
                      (10, 15, 25), ("sora_generate_video_from_image",)),  # 15.0 is 15
    ]
    assert items[0].describe(SERVER) == (
        'policy key "sora_generate_video_from_image" rule "checks": "args.model" in lists ["sora-3"], which '
        'sora_generate_video_from_image (http://127.0.0.1:8000) never accepts; its values: ["sora-2", "sora-2-pro"]')


def test_a_glob_needs_only_one_of_its_tools_to_declare_a_path():
    # image_urls: only some generate tools have it; nothing is reported for a path one declares.
    assert findings(sora_rule("{path: args.image_urls, op: exists, value: true}", key='"sora_generate_*"')) == []
    [item] = findings(sora_rule("{path: args.image_url, op: exists, value: true}", key='"sora_generate_*"'))
    assert item.closest == ("args.image_urls",) and len(item.tools) == 6
    assert "sora_generate_video, sora_generate_video_from_image, sora_generate_video_with_character and 3 more" \
        in item.describe(SERVER)


def tool(schema: object, name: str = "t") -> dict:
    return {"name": name, "inputSchema": schema}


REFS = {
    "type": "object",
    "$defs": {"Card": {"type": "object", "properties": {"number": {"type": "string"},
                                                         "brand": {"enum": ["visa", "amex"]}}}},
    "properties": {
        "card": {"anyOf": [{"$ref": "#/$defs/Card"}, {"type": "null"}]},
        "meta": {"type": "object", "additionalProperties": {"type": "string"}},
        "extra": {"type": "object", "properties": {"a": {}}, "additionalProperties": True},
        "loop": {"$ref": "#/properties/loop"},
        "remote": {"$ref": "https://example.invalid/schema.json"},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"enum": [1, 2]}]},
    },
}


def test_schema_refs_unions_and_open_objects():
    ok = ["card.number", "card.brand", "meta.anything", "extra.b", "loop.x", "remote.x", "pair.1", "pair.5"]
    bad = {"card.numbr": ("args.card.number",), "cardd": ("args.card",), "pair.x": ()}
    conditions = [f"{{path: args.{p}, op: exists, value: true}}" for p in [*ok, *bad]]
    items = findings(sora_rule(*conditions, key="t"), [tool(REFS)])
    assert [(i.path, i.closest) for i in items] == [(f"args.{p}", c) for p, c in bad.items()]
    values = findings(sora_rule("{path: args.card.brand, op: in, value: [visa, mastercard]}",
                                "{path: args.pair.1, op: in, value: [1, 3]}",
                                "{path: args.meta.x, op: in, value: [anything]}", key="t"), [tool(REFS)])
    assert [(v.path, v.values, v.allowed) for v in values] == [
        ("args.card.brand", ("mastercard",), ("visa", "amex")), ("args.pair.1", (3,), (1, 2))]


def test_schemas_that_say_nothing_accept_every_path():
    for schema in (None, "junk", {}, {"type": "object"}, {"properties": "junk"}, {"anyOf": [{}, {"type": "null"}]}):
        assert findings(sora_rule("{path: args.x.y, op: exists, value: true}", key="t"), [tool(schema)]) == []


def test_hostile_lists_are_read_in_bounded_amounts():
    deep: dict = {"type": "object", "properties": {}}
    node = deep
    for _ in range(1000):  # a schema deeper than the walk goes
        node["properties"]["a"] = {"type": "object", "properties": {}}
        node = node["properties"]["a"]
    junk = [None, 3, {"name": 7}, {"name": "x" * 100_000, "description": "image to video " * 50_000}]
    items = findings(sora_rule("{path: args." + ".".join(["a"] * 999) + ".b, op: exists, value: true}",
                               key="t"), [tool(deep), *junk])
    assert items == []  # past the walk's bound nothing is claimed
    [item] = findings(CATALOGUE_SORA, junk)
    assert len(item.describe(SERVER)) < 400  # a 100 000-character name is cut when shown
