"""intercept_addon.stdio.router: which HTTP event stream carries each message a stdio server
writes (pure; the processes are in test_stdio_e2e.py). Also the server's name in the path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from intercept_addon.stdio.router import BACKLOG, END, Router, Stream
from intercept_addon.stdio.run import server_name


def request(id: Any, method: str = "tools/call", token: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "t"}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def send(router: Router, message: dict[str, Any]) -> bytes:
    raw = json.dumps(message).encode()
    router.route(message, raw)
    return raw


def drained(stream: Stream) -> list[bytes | None]:
    items = []
    while not stream.queue.empty():
        items.append(stream.queue.get_nowait())
    return items


def test_an_answer_goes_to_its_request_stream_which_then_ends() -> None:
    router = Router()
    one, two = router.requests_sent([request(1)]), router.requests_sent([request("b")])
    assert one is not None and two is not None
    answer_b = send(router, {"jsonrpc": "2.0", "id": "b", "result": {}})
    answer_1 = send(router, {"jsonrpc": "2.0", "id": 1, "result": {}})
    assert drained(one) == [answer_1, END] and drained(two) == [answer_b, END]


def test_ids_match_as_clients_match_them() -> None:
    router = Router()
    stream = router.requests_sent([request(3)])
    assert stream is not None
    answer = send(router, {"jsonrpc": "2.0", "id": "3", "result": {}})  # "3" is 3 to the SDKs
    assert drained(stream) == [answer, END]


def test_progress_follows_its_token_even_with_several_requests_open() -> None:
    router = Router()
    slow, other = router.requests_sent([request(1, token="tok")]), router.requests_sent([request(2)])
    assert slow is not None and other is not None
    progress = send(router, {"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": "tok", "progress": 1}})
    done = send(router, {"jsonrpc": "2.0", "id": 1, "result": {}})
    assert drained(slow) == [progress, done, END] and drained(other) == []


def test_a_server_request_joins_the_one_open_request_in_order() -> None:
    router = Router()
    stream = router.requests_sent([request(1)])
    assert stream is not None
    sampling = send(router, {"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage", "params": {}})
    assert router.requests_sent([{"jsonrpc": "2.0", "id": 0, "result": {}}]) is None  # the agent's answer
    answer = send(router, {"jsonrpc": "2.0", "id": 1, "result": {}})
    assert drained(stream) == [sampling, answer, END]


def test_with_no_or_several_requests_open_the_get_stream_carries_it_and_holds_it_until_opened() -> None:
    router = Router()
    early = send(router, {"jsonrpc": "2.0", "id": 0, "method": "roots/list"})
    a, b = router.requests_sent([request(1)]), router.requests_sent([request(2)])
    changed = send(router, {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    standalone = router.open_standalone()
    later = send(router, {"jsonrpc": "2.0", "method": "notifications/message", "params": {}})
    assert drained(standalone) == [early, changed, later]
    assert a is not None and b is not None and drained(a) == drained(b) == []


def test_a_newer_get_stream_ends_the_older() -> None:
    router = Router()
    old = router.open_standalone()
    new = router.open_standalone()
    router.closed(old)  # the old one's handler leaving does not unhook the new one
    note = send(router, {"jsonrpc": "2.0", "method": "notifications/message", "params": {}})
    assert drained(old) == [END] and drained(new) == [note]


def test_the_backlog_is_bounded() -> None:
    router = Router()
    for i in range(BACKLOG + 5):
        send(router, {"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": i}})
    held = drained(router.open_standalone())
    assert len(held) == BACKLOG and json.loads(held[0])["params"]["n"] == 5  # the oldest went first


def test_a_cancelled_request_ends_its_stream_and_a_late_answer_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    router = Router()
    stream = router.requests_sent([request(9)])
    assert stream is not None
    assert router.requests_sent([{"jsonrpc": "2.0", "method": "notifications/cancelled",
                                  "params": {"requestId": 9}}]) is None
    send(router, {"jsonrpc": "2.0", "id": 9, "result": {}})
    assert drained(stream) == [END]
    assert "an answer to no open request" in capsys.readouterr().err


def test_a_client_that_left_frees_its_requests(capsys: pytest.CaptureFixture[str]) -> None:
    router = Router()
    stream = router.requests_sent([request(1)])
    assert stream is not None
    router.closed(stream)
    send(router, {"jsonrpc": "2.0", "id": 1, "result": {}})
    assert "an answer to no open request" in capsys.readouterr().err
    other = router.requests_sent([request(2)])
    note = send(router, {"jsonrpc": "2.0", "method": "notifications/message", "params": {}})
    assert other is not None and drained(other) == [note]  # the one left is the only open stream


def test_a_batch_stream_ends_after_its_last_answer() -> None:
    router = Router()
    stream = router.requests_sent([request(1), request(2), {"jsonrpc": "2.0", "method": "notifications/x"}])
    assert stream is not None
    first = send(router, {"jsonrpc": "2.0", "id": 2, "result": {}})
    assert drained(stream) == [first]
    second = send(router, {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "m"}})
    assert drained(stream) == [second, END]


@pytest.mark.parametrize(("command", "name"), [
    (["mcp-sora"], "mcp-sora"),
    (["/opt/bin/mcp-sora", "--transport", "stdio"], "mcp-sora"),
    (["npx", "-y", "@modelcontextprotocol/server-everything"], "server-everything"),
    (["uvx", "mcp-sora@2026.10.8.0"], "mcp-sora"),
    (["python3", "-m", "weather_server"], "weather_server"),
    (["python3", "-c", "import x; x.run()"], "python3"),
    (["docker", "run", "-i", "image"], "docker"),  # --name says more
])
def test_server_name(command: list[str], name: str) -> None:
    assert server_name(command) == name
