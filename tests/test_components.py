"""Unit tests of the addon's components on their own interfaces (no taddons needed)."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from intercept_addon.proxy.continuations import MAX_CREDITS, Continuations, retry_state
from intercept_addon.proxy.legacy_streams import LegacyStreams
from intercept_addon.wire.jsonrpc import ProtocolError
from intercept_addon.wire.legacy import variant_path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_credit_is_taken_once_by_the_same_agent_tool_arguments_and_state():
    clock = Clock()
    credits = Continuations(clock)
    credits.grant("a", "charge", "args", {"resultType": "input_required", "requestState": "s1"})
    assert not credits.take("b", "charge", "args", "s1") and not credits.take("a", "other", "args", "s1")
    assert not credits.take("a", "charge", "args", "s2")
    assert not credits.take("a", "charge", "other args", "s1")  # a retry with other arguments is another call
    assert credits.take("a", "charge", "args", "s1")
    assert not credits.take("a", "charge", "args", "s1")  # one retry per interim answer


def test_credits_expire_and_are_bounded():
    clock = Clock()
    credits = Continuations(clock)
    credits.grant("a", "t", "", {"requestState": "old"})
    clock.now = 601
    assert not credits.take("a", "t", "", "old")
    for i in range(MAX_CREDITS + 5):
        credits.grant("a", "t", "", {"requestState": str(i)})
    assert len(credits._credits) == MAX_CREDITS and not credits.take("a", "t", "", "0")


@pytest.mark.parametrize(("params", "expected"), [
    ({"name": "t"}, (False, None)), ({"inputResponses": {}}, (True, None)),
    ({"requestState": "x"}, (True, "x")), ({"requestState": 5}, (True, None)), (None, (False, None)),
])
def test_retry_state(params, expected):
    assert retry_state(params) == expected


def get(url: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make("GET", url, b"", {"accept": "text/event-stream"})
    return flow


def post(url: str) -> http.Request:
    return http.Request.make("POST", url, b"{}", {"content-type": "application/json"})


def test_posts_are_tied_to_a_stream_only_by_the_announced_spelling():
    streams = LegacyStreams()
    flow = get("http://127.0.0.1:8000/sse")
    stream = streams.opened(flow)
    streams.announce(stream, "/messages/?session_id=d75e2989a789448181bccf914d2fe653")
    assert streams.for_post(post("http://127.0.0.1:8000/messages/?session_id=d75e2989a789448181bccf914d2fe653")) is stream
    for variant in ("/messages/?session_id=D75E2989A789448181BCCF914D2FE653",
                    "/messages/?session_id=d75e2989-a789-4481-81bc-cf914d2fe653", "/messages?session_id=x",
                    "/%6Dessages/?session_id=d75e2989a789448181bccf914d2fe653", "/Messages/", "//messages/"):
        with pytest.raises(ProtocolError):
            streams.for_post(post("http://127.0.0.1:8000" + variant))
    assert streams.for_post(post("http://127.0.0.1:8001/messages/?session_id=x")) is None  # another origin
    assert streams.for_post(post("http://127.0.0.1:8000/mcp")) is None  # another endpoint
    streams.closed(flow)
    assert streams.for_post(post("http://127.0.0.1:8000/Messages/")) is None and streams.endpoints == 0


def test_variant_path_folds_what_routers_fold():
    assert variant_path("/%254Dessages//x/") == variant_path("/messages/x") == "/messages/x"
