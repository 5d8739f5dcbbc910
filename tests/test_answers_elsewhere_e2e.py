"""A tools/list answer carried on the answer of ANOTHER request, through a real mitmdump with the
addon in front of the hostile upstream (tests/servers/hostile_upstream.py).

Clients match a response to whichever request awaits its id, whatever stream or body it came
on (the TypeScript SDK dispatches every message of every stream it reads by id). So the answer
to a ``ping``, a ``tools/call`` or a notification may carry the result of a tools/list the
client sent elsewhere (and the server answered 202). Bug: the proxy read a POST's answer only
while it owed that POST something (a counted call, a tools/list), so every one of these passed
the hidden tool on; a counted call's stream passed an answer the strict parser refuses.
"""

from __future__ import annotations

import json

import pytest

from hostile import Hostile, event, hostile_fixtures, ts_sdk_tools

pytestmark = pytest.mark.e2e

DENIED = "[INTERCEPT POLICY DENIED]"
POLICY = """\
version: "1"
description: answers elsewhere
hide: [secret_admin]
tools:
  counted:
    rules:
      - name: counted limit
        action: allow
        rate_limit: {max: 100, window: 60}
"""
LIST = ('{"tools":[{"name":"echo","inputSchema":{"type":"object"}},'
        '{"name":"secret_admin","inputSchema":{"type":"object"}}]}')
LIST_ANSWER = '{"jsonrpc":"2.0","id":3,"result":' + LIST + "}"
# Duplicate "result": the strict parser refuses it; a lenient client takes the last one.
UNPARSABLE = '{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":' + LIST + "}"
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


stack, hostile = hostile_fixtures(POLICY, "elsewhere")



def rpc(method: str, msg_id: int | None = 4, params: dict | None = None) -> str:
    body: dict = {"jsonrpc": "2.0", "method": method}
    if msg_id is not None:
        body["id"] = msg_id
    if params is not None:
        body["params"] = params
    return json.dumps(body)


REQUESTS = {
    "ping": rpc("ping"),
    "uncounted call": rpc("tools/call", params={"name": "echo", "arguments": {}}),
    "counted call": rpc("tools/call", params={"name": "counted", "arguments": {}}),
    "initialize": rpc("initialize", params={"protocolVersion": "2025-11-25", "capabilities": {},
                                            "clientInfo": {"name": "t", "version": "0"}}),
    "notification": rpc("notifications/initialized", None),
}


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "json"])
@pytest.mark.parametrize("name", REQUESTS)
def test_list_answer_on_another_requests_answer(hostile, name, sse):
    method = json.loads(REQUESTS[name])["method"]
    parts = [event(LIST_ANSWER), event('{"jsonrpc":"2.0","id":4,"result":{}}')] if sse else [LIST_ANSWER]
    hostile.answer(method, *parts, headers=SSE if sse else JSON)
    text = hostile.post(REQUESTS[name]).text
    assert "secret_admin" not in text, f"hidden tool reached the client: {text[:300]!r}"
    assert '"echo"' in text or DENIED in text, text[:300]


@pytest.mark.parametrize("name", ["uncounted call", "counted call", "ping"])
def test_unparsable_list_answer_on_another_requests_stream(hostile, name):
    method = json.loads(REQUESTS[name])["method"]
    hostile.answer(method, event(UNPARSABLE), headers=SSE)
    text = hostile.post(REQUESTS[name]).text
    assert "secret_admin" not in text, f"hidden tool reached the client: {text[:300]!r}"


def test_control_plain_answers_pass(hostile):
    """Answers that carry no tool list pass unchanged, on either content type."""
    hostile.answer("ping", event('{"jsonrpc":"2.0","id":4,"result":{}}'), headers=SSE)
    assert hostile.post(REQUESTS["ping"]).text == event('{"jsonrpc":"2.0","id":4,"result":{}}')
    answer = hostile.post(REQUESTS["counted call"])
    assert answer.status_code == 200 and answer.json()["result"]["content"][0]["text"] == "ran counted"


# -- hide_denied alone: the tools denied outright must be hidden wherever a list arrives ------

HIDE_DENIED = """\
version: "1"
description: hide_denied without a hide list
default: deny
hide_denied: true
tools:
  echo:
    rules:
      - name: echo allowed
        action: allow
"""


@pytest.fixture(scope="module")
def denied_stack(tmp_path_factory: pytest.TempPathFactory):
    hostile = Hostile(tmp_path_factory.mktemp("hide-denied"), HIDE_DENIED)
    yield hostile
    hostile.stop()


@pytest.fixture
def denied(denied_stack: Hostile) -> Hostile:
    denied_stack.reset()
    return denied_stack


def test_hide_denied_on_a_replayed_get_stream(denied):
    """Bug: a policy with ``hide_denied`` and no ``hide`` list did not count as one that changes
    tool lists, so a resumed GET stream replaying a tools/list answer the strict parser refuses
    (a lenient client reads it) passed the denied tool, as did the answer to a ping."""
    denied.answer("GET", f"id: 6\n{event(UNPARSABLE)}", headers=SSE)
    with denied.client.stream("GET", denied.url, headers={"accept": "text/event-stream",
                                                          "last-event-id": "5"}) as stream:
        text = stream.read().decode()
    assert "secret_admin" not in text, text[:300]  # cut: an answer the strict parser refuses


def test_hide_denied_on_another_requests_answer(denied):
    denied.answer("ping", event(LIST_ANSWER), headers=SSE)
    text = denied.post(REQUESTS["ping"]).text
    assert "secret_admin" not in text and '"echo"' in text, text[:300]


def test_hide_denied_control_own_answer(denied):
    assert "secret_admin" not in denied.post(rpc("tools/list", 3)).text


# -- a GET stream under another content type --------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_ts_sdk_reads_a_get_answer_of_any_type_as_events(hostile, content_type):
    """Bug: the TypeScript SDK 1.32 reads a 2xx answer to its GET as an event stream whatever its
    Content-Type (streamableHttp.js _startOrAuthSse), but the proxy read a GET's answer only when
    typed text/event-stream: the tools/list the server answered 202 arrived on the GET stream,
    typed application/json, with the hidden tool."""
    def script() -> None:
        hostile.reset()  # wait_for must see this run's tools/list
        hostile.answer("GET", {"wait_for": "tools/list"}, event('{"jsonrpc":"2.0","id":$id,"result":' + LIST + "}"),
                       headers={"content-type": content_type} if content_type else {})
        hostile.answer("tools/list", status=202)

    script()
    assert "secret_admin" in ts_sdk_tools(hostile.direct_url)  # the client takes it
    script()
    tools = ts_sdk_tools(hostile.url)
    assert "secret_admin" not in tools and "echo" in tools, tools


@pytest.mark.parametrize("accept", [None, "*/*"])
def test_hide_denied_get_stream_of_an_unnamed_caller(denied, accept):
    """Bug: the caller of a GET is learnt only when it asks for text/event-stream; a GET that did
    not (httpx sends */*) but got an event stream anyway had its lists filtered for no caller,
    so ``hide_denied`` dropped nothing. Now such a stream is refused under ``hide_denied``."""
    denied.answer("GET", event(LIST_ANSWER), headers=SSE)
    with denied.client.stream("GET", denied.url, headers={"accept": accept} if accept else {}) as stream:
        text = stream.read().decode()
    assert "secret_admin" not in text, text[:300]


def test_hide_denied_control_get_stream_that_asked(denied):
    denied.answer("GET", event(LIST_ANSWER), headers=SSE)
    with denied.client.stream("GET", denied.url, headers={"accept": "text/event-stream"}) as stream:
        text = stream.read().decode()
    assert "secret_admin" not in text and '"echo"' in text, text[:300]
