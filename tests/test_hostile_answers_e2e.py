"""Answers a hostile upstream (tests/servers/hostile_upstream.py) shapes so that the proxy reads
them differently from the SDK clients, through a real mitmdump with the addon.

The policy hides ``secret_admin``: whatever the answer looks like, a client must never see it in
a tools/list answer. Each case is one the Python or the TypeScript SDK client accepts as the
answer to its tools/list (shown with the real clients where noted). Acceptable outcomes: the
answer arrives with the hidden tool removed, or it is refused (a 502 or an error event carrying
``[INTERCEPT POLICY DENIED]``). Each family has a well-formed control that passes unchanged.

One upstream and one mitmdump serve the whole module; every test resets the upstream's queued
answers and log first."""

from __future__ import annotations

import json

import pytest

from hostile import Hostile, event, hostile_fixtures, python_sdk_tools, ts_sdk_tools

pytestmark = pytest.mark.e2e

DENIED = "[INTERCEPT POLICY DENIED]"
POLICY = """\
version: "1"
description: hostile answers
hide: [secret_admin]
tools:
  refund:
    rules:
      - name: small refunds
        conditions:
          - {path: args.amount, op: lte, value: 500, optional: true}
        on_deny: "Refunds above 500 are not allowed"
  deploy:
    rules:
      - name: no forced deploys
        conditions:
          - {path: args.force, op: exists, value: false}
        on_deny: "Forced deploys are not allowed"
"""
ECHO = '{"name":"echo","inputSchema":{"type":"object"}}'
SECRET = '{"name":"secret_admin","inputSchema":{"type":"object"}}'
LIST = '{"tools":[' + ECHO + "," + SECRET + "]}"
JSON_TYPE = {"content-type": "application/json"}
SSE_TYPE = {"content-type": "text/event-stream"}


stack, hostile = hostile_fixtures(POLICY, "hostile")


def tools_list(msg_id: int = 3) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/list"})


def result(id_json: str, result_json: str = LIST) -> str:
    return '{"jsonrpc":"2.0","id":' + id_json + ',"result":' + result_json + "}"



def assert_withheld(text: str) -> None:
    """The hidden tool did not reach the client: filtered out, or the answer refused."""
    assert "secret_admin" not in text, f"hidden tool reached the client: {text[:300]!r}"
    assert '"echo"' in text or DENIED in text, f"neither a filtered list nor a denial: {text[:300]!r}"


def assert_absent(text: str) -> None:
    """For GET streams: the hidden tool did not reach the client. A GET stream owes no id the
    proxy knows of, so a stream cut for safety may end without an error event."""
    assert "secret_admin" not in text, f"hidden tool reached the client: {text[:300]!r}"


def assert_not_listed(tools: set[str] | list[str] | str) -> None:
    """What an SDK client listed (or the error it raised) lacks the hidden tool."""
    assert "secret_admin" not in tools and ("echo" in tools or DENIED in tools), tools


def assert_filtered(text: str) -> None:
    """A control: the answer passed, minus the hidden tool."""
    assert "secret_admin" not in text and '"echo"' in text, text[:300]


# -- 1. loose ids: the answer's id is another spelling of the request's -----------------------

# Spellings of id 3 that a client takes for request 3, each checked with the real client. Python
# SDK 2.3.0: ids are strict int | str (mcp_types/jsonrpc.py:32, so 3.0 is refused), and a str
# is matched as int(str) (mcp/shared/dispatcher.py:56 coerce_request_id): whitespace, "+", "_",
# any Unicode digits. TypeScript SDK 1.32.2: ids are string | integer (types.js:110; 3.0 is an
# integer in JavaScript) matched as Number(id) (shared/protocol.js:478): whitespace, exponents,
# fractions, 0x/0o/0b, doubles that round to 3, and U+FEFF counts as whitespace.
LOOSE_IDS = {
    '"3"': "both", '3.0': "TS", '" 3"': "both", '"03"': "both", '"+3"': "both", '"3e0"': "TS",
    '"0x3"': "TS", '"0b11"': "TS", '"0o3"': "TS", '"3.0"': "TS", '"30e-1"': "TS", '3e0': "TS",
    '30e-1': "TS", '3.0000000000000001': "TS", '"2.9999999999999999"': "TS",
    '"0_3"': "Python", '"\\u0663"': "Python", '"\\uff13"': "Python", '"\\u00a03"': "both",
    '"\\ufeff3"': "TS", '"3."': "TS",
}


@pytest.mark.parametrize("id_json", LOOSE_IDS, ids=[f"{k} ({v})" for k, v in LOOSE_IDS.items()])
def test_loose_id_json_answer(hostile, id_json):
    hostile.answer("tools/list", result(id_json), headers=JSON_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


@pytest.mark.parametrize("id_json", LOOSE_IDS, ids=[f"{k} ({v})" for k, v in LOOSE_IDS.items()])
def test_loose_id_sse_answer(hostile, id_json):
    hostile.answer("tools/list", event(result(id_json)), headers=SSE_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


# The Python SDK takes the first response on a POST's event stream as the answer, whatever its
# id (streamable_http.py replaces it by the request's id).
@pytest.mark.parametrize("id_json", ["4", '"x"', '""', '"3 "'])
def test_any_id_on_a_post_stream(hostile, id_json):
    hostile.answer("tools/list", event(result(id_json)), headers=SSE_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


async def test_python_sdk_takes_a_string_id_json(hostile):
    answer = result('"$n"')  # the request's id as a string
    hostile.answer("tools/list", answer, headers=JSON_TYPE)
    hostile.answer("tools/list", answer, headers=JSON_TYPE)
    assert "secret_admin" in await python_sdk_tools(hostile.direct_url)  # the client accepts it
    assert_not_listed(await python_sdk_tools(hostile.url))


async def test_python_sdk_takes_any_id_on_a_stream(hostile):
    answer = event(result('"not-the-id"'))
    hostile.answer("tools/list", answer, headers=SSE_TYPE)
    hostile.answer("tools/list", answer, headers=SSE_TYPE)
    assert "secret_admin" in await python_sdk_tools(hostile.direct_url)
    assert_not_listed(await python_sdk_tools(hostile.url))


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
def test_control_exact_id_is_filtered(hostile, sse):
    body = event(result("3")) if sse else result("3")
    hostile.answer("tools/list", body, headers=SSE_TYPE if sse else JSON_TYPE)
    assert_filtered(hostile.post(tools_list(3)).text)


# -- 2. event-stream answers the strict parser refuses -------------------------------------------

SCHEMA_DEFECTS = {
    "duplicate key": '{"type":"object","type":"object"}',
    "x and X": '{"type":"object","x":1,"X":2}',
    "70-digit integer": '{"type":"object","maxLength":' + "9" * 70 + "}",
    "NaN": '{"type":"object","minimum":NaN}',
    "nesting 600": '{"type":"object","default":' + "[" * 600 + "]" * 600 + "}",
}


def defective_list(schema: str) -> str:
    return '{"tools":[' + ECHO + ',{"name":"secret_admin","inputSchema":' + schema + "}]}"


@pytest.mark.parametrize("defect", SCHEMA_DEFECTS)
def test_unparsable_sse_answer_is_not_forwarded(hostile, defect):
    hostile.answer("tools/list", event(result("3", defective_list(SCHEMA_DEFECTS[defect]))), headers=SSE_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


def test_duplicate_tools_key_sse(hostile):
    # Last key wins in JSON.parse and pydantic: the client reads the second, full list.
    hostile.answer("tools/list", event(result("3", '{"tools":[' + ECHO + '],"tools":[' + ECHO + "," + SECRET + "]}")),
                   headers=SSE_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


async def test_python_sdk_takes_a_duplicate_key_on_a_stream(hostile):
    answer = event(result("$id", defective_list(SCHEMA_DEFECTS["duplicate key"])))
    hostile.answer("tools/list", answer, headers=SSE_TYPE)
    hostile.answer("tools/list", answer, headers=SSE_TYPE)
    assert "secret_admin" in await python_sdk_tools(hostile.direct_url)
    assert_not_listed(await python_sdk_tools(hostile.url))


def test_control_unparsable_json_answer_is_refused(hostile):
    hostile.answer("tools/list", result("3", defective_list(SCHEMA_DEFECTS["duplicate key"])), headers=JSON_TYPE)
    resp = hostile.post(tools_list(3))
    assert resp.status_code == 502 and DENIED in resp.text and "secret_admin" not in resp.text


def test_control_well_formed_sse_answer_is_filtered(hostile):
    hostile.answer("tools/list", event(result("3")), headers=SSE_TYPE)
    assert_filtered(hostile.post(tools_list(3)).text)


def test_filtered_sse_answer_sent_with_content_length(hostile):
    # Not a leak but a hang: filtering shortens the event, so the upstream's Content-Length
    # must not reach the client (it would wait for bytes that never come).
    body = event(result("3"))
    hostile.answer("tools/list", body, headers={**SSE_TYPE, "content-length": str(len(body))})
    assert_filtered(hostile.post(tools_list(3), timeout=2).text)


# -- 3. a decoy message carrying only the tracked id, then the real answer --------------------

DECOYS = {
    "id only": '{"jsonrpc":"2.0","id":3}',
    "result not an object": '{"jsonrpc":"2.0","id":3,"result":"pending"}',
    "no jsonrpc member": '{"id":3,"result":{"tools":[]}}',
}


@pytest.mark.parametrize("decoy", DECOYS)
def test_decoy_then_answer_sse(hostile, decoy):
    hostile.answer("tools/list", event(DECOYS[decoy]), event(result("3")), headers=SSE_TYPE)
    assert_withheld(hostile.post(tools_list(3)).text)


def test_ts_sdk_skips_the_decoy(hostile):
    # The TypeScript client skips a message its schema refuses and takes the next one.
    answer = [event('{"jsonrpc":"2.0","id":$id}'), event(result("$id"))]
    hostile.answer("tools/list", *answer, headers=SSE_TYPE)
    hostile.answer("tools/list", *answer, headers=SSE_TYPE)
    assert "secret_admin" in ts_sdk_tools(hostile.direct_url)
    assert_not_listed(ts_sdk_tools(hostile.url))


def test_control_notification_then_answer_sse(hostile):
    progress = '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'
    hostile.answer("tools/list", event(progress), event(result("3")), headers=SSE_TYPE)
    assert_filtered(hostile.post(tools_list(3)).text)


# -- 4. media types: a JSON answer whose Content-Type mentions text/event-stream --------------

# Both SDKs read the first as JSON (TS: the parsed media type; Python: startswith
# "application/json"); the Python SDK reads the other two as JSON too.
JSON_READ_AS_JSON = ['application/json; profile="text/event-stream"', "application/json, text/event-stream",
                     "application/json;text/event-stream"]


@pytest.mark.parametrize("content_type", JSON_READ_AS_JSON)
def test_json_answer_mentioning_event_stream(hostile, content_type):
    hostile.answer("tools/list", result("3"), headers={"content-type": content_type})
    assert_withheld(hostile.post(tools_list(3)).text)


async def test_python_sdk_reads_a_profile_parameter_as_json(hostile):
    ctype = {"content-type": JSON_READ_AS_JSON[0]}
    hostile.answer("tools/list", result("$id"), headers=ctype)
    hostile.answer("tools/list", result("$id"), headers=ctype)
    assert "secret_admin" in await python_sdk_tools(hostile.direct_url)
    assert_not_listed(await python_sdk_tools(hostile.url))


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", 'text/event-stream; x="application/json"'])
def test_control_media_types_read_alike(hostile, content_type):
    # No SDK client reads the second as JSON: both proxy and clients read an event stream.
    body = event(result("3")) if content_type.startswith("text/") else result("3")
    hostile.answer("tools/list", body, headers={"content-type": content_type})
    assert_filtered(hostile.post(tools_list(3)).text)


# -- 5. an `endpoint` event on a Streamable HTTP GET stream -----------------------------------

def get_stream_with_answer(hostile: Hostile, *first: str) -> str:
    """Open GET /mcp (an event stream), POST tools/list id 3 (answered 202 upstream), and read
    the GET stream, on which the upstream sends ``first`` and then the tools/list result."""
    hostile.answer("GET", *first, {"wait_for": "tools/list"}, event(result("$id")), headers=SSE_TYPE)
    hostile.answer("tools/list", status=202)
    with hostile.client.stream("GET", hostile.url, headers={"accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert hostile.post(tools_list(3)).status_code == 202
        return stream.read().decode()


def test_endpoint_event_on_a_get_stream(hostile):
    text = get_stream_with_answer(hostile, event("/messages/?session_id=hostile", name="endpoint"))
    assert_absent(text)
    assert [b.get("method") for b in hostile.received()] == ["tools/list"]


def test_ts_sdk_takes_an_answer_on_the_get_stream(hostile):
    # The TypeScript client opens GET /mcp after initialize, ignores the endpoint event, and
    # takes the tools/list result there for the request the server answered 202.
    def script() -> None:
        hostile.reset()  # wait_for must see this run's tools/list
        hostile.answer("GET", event("/messages/?session_id=hostile", name="endpoint"), {"wait_for": "tools/list"},
                       event(result("$id")), headers=SSE_TYPE)
        hostile.answer("tools/list", status=202)

    script()
    assert "secret_admin" in ts_sdk_tools(hostile.direct_url)
    script()
    tools = ts_sdk_tools(hostile.url)  # a cut GET stream leaves the request to time out (10 s)
    assert "secret_admin" not in tools, tools


def test_control_get_stream_answer_is_filtered(hostile):
    assert_filtered(get_stream_with_answer(hostile, ": opened\n\n"))


# -- 6. a resumed GET stream replaying a tools/list answer ------------------------------------

def replay(hostile: Hostile, result_json: str) -> str:
    hostile.answer("GET", event(result("3", result_json), event_id="6"), headers=SSE_TYPE)
    with hostile.client.stream("GET", hostile.url, headers={"accept": "text/event-stream",
                                                            "last-event-id": "5"}) as stream:
        return stream.read().decode()


@pytest.mark.parametrize("defect", ["duplicate key", "x and X"])
def test_replayed_unparsable_answer(hostile, defect):
    assert_absent(replay(hostile, defective_list(SCHEMA_DEFECTS[defect])))


def test_control_replayed_answer_is_filtered(hostile):
    assert_filtered(replay(hostile, LIST))


# -- 7. lone case-variant argument keys -------------------------------------------------------

def call(tool: str, args: dict) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": args}})


# A server binding argument names case-insensitively (Go's encoding/json) reads these as the
# real argument: the condition must not pass them as "absent".
@pytest.mark.parametrize("tool, args", [("refund", {"Amount": 9000}), ("deploy", {"FORCE": True}),
                                        ("deploy", {"Force": False})])
def test_case_variant_argument_is_denied(hostile, tool, args):
    resp = hostile.post(call(tool, args))
    assert DENIED in resp.text, resp.text
    assert [b for b in hostile.received() if b.get("method") == "tools/call"] == []


@pytest.mark.parametrize("tool, args, allowed", [
    ("refund", {"amount": 100}, True), ("refund", {}, True), ("refund", {"amount": 9000}, False),
    ("deploy", {}, True), ("deploy", {"force": True}, False)])
def test_control_exact_argument_keys(hostile, tool, args, allowed):
    resp = hostile.post(call(tool, args))
    forwarded = [b["params"]["arguments"] for b in hostile.received() if b.get("method") == "tools/call"]
    if allowed:
        assert f"ran {tool}" in resp.text and forwarded == [args]
    else:
        assert DENIED in resp.text and forwarded == []
