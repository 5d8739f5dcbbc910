"""Resource limits through a real mitmdump: no client or server makes the proxy hold memory
without bound, hang, or stop serving others.

Memory is the mitmdump process's resident set (VmRSS in /proc/PID/status), sampled while a
scenario runs; each scenario gets a fresh proxy so earlier ones cannot hide its growth.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from conftest import TEST_POLICY
from harness import Process, ran, start_mitmdump
from intercept_addon.wire.encodings import BODY_BUFFER_LIMIT

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
GROWTH_LIMIT = 60 * MB  # the 100 MB bodies below must not come near it
DENIED = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything","arguments":{}}}'
HEAD = ("POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "accept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\n")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@contextmanager
def peak_growth(proc: Process) -> Iterator[list[int]]:
    """Yields a list that holds, after the block, the peak RSS growth of ``proc`` during it."""
    pid, result, done = proc.proc.pid, [], threading.Event()
    base = peak = rss(pid)

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.append(max(peak, rss(pid)) - base)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.settimeout(30)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (Content-Length framed), or (0, b"") if closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return 0, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return int(head.split()[1]), body


def send_until_answered(sock: socket.socket, pieces: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Send ``pieces`` until the proxy answers (it may well answer before the body is complete,
    then stop reading it); returns (status, body, bytes sent)."""
    sent = 0
    sock.settimeout(2)  # a send blocked this long: the proxy has stopped reading
    for piece in pieces:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break  # the proxy stopped reading: its answer is waiting
        sent += len(piece)
    sock.settimeout(30)
    return *read_response(sock), sent


@pytest.fixture
def stack(stack_factory):
    return stack_factory("--json-response", "--stateless", options=("intercept_state=memory", "tcp_timeout=3"))


# -- huge request bodies ------------------------------------------------------------------------

def test_100mb_body_with_content_length_is_refused_before_it_is_read(stack):
    sock = connect(stack.proxy_port)
    with peak_growth(stack.proxy) as growth:
        sock.sendall(HEAD.encode() + f"content-length: {100 * MB}\r\n\r\n".encode())
        status, body, sent = send_until_answered(sock, (b" " * MB for _ in range(100)))
    sock.close()
    assert status == 413
    assert sent < 50 * MB, "the proxy read on after it knew the body was too large"
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB"


def test_100mb_chunked_body_is_cut_at_the_buffer_limit(stack):
    sock = connect(stack.proxy_port)
    chunk = b" " * MB
    with peak_growth(stack.proxy) as growth:
        sock.sendall(HEAD.encode() + b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(DENIED), DENIED))
        status, _, sent = send_until_answered(sock, (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(100)))
    sock.close()
    assert status == 413
    assert sent < 60 * MB
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB"
    assert "delete_everything" not in ran(stack.side_log)


def test_decompression_bomb_is_refused_without_being_expanded(stack):
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    bomb = packer.compress(DENIED[:-1] + b" " * (256 * MB) + b"}") + packer.flush()  # 250 KB -> 256 MB
    with peak_growth(stack.proxy) as growth:
        resp = httpx2.post(stack.url, content=bomb, timeout=60, trust_env=False,
                           headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert resp.status_code == 413 and "error" in resp.json()
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB"


# -- slow clients -------------------------------------------------------------------------------

def test_slow_loris_gets_its_answer_while_others_are_served(stack):
    """One byte every 20 ms, its last byte held back until the others are served: the slow
    client ends up with its denial; meanwhile other clients' calls are answered (each within
    the client timeout) as if it were not there. Holding the last byte makes "meanwhile" hold
    by construction, however slow the machine; a proxy that waited for the slow request would
    time the other calls out."""
    sock = connect(stack.proxy_port)
    sock.sendall(HEAD.encode() + f"content-length: {len(DENIED)}\r\n\r\n".encode())
    dripped = 0
    others_served = threading.Event()

    def drip() -> None:
        nonlocal dripped
        for i in range(len(DENIED)):
            if i == len(DENIED) - 1:
                others_served.wait(120)
            sock.sendall(DENIED[i : i + 1])
            dripped += 1
            time.sleep(0.02)

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        call = DENIED.replace(b"delete_everything", b"echo").replace(b"{}}", b'{"text":"fast"}}')
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2025-11-25"}
        for _ in range(10):
            resp = httpx2.post(stack.url, content=call, headers=headers, timeout=10, trust_env=False)
            assert resp.status_code == 200 and "fast" in resp.text
        assert dripped > 0, "the slow client had not begun its body"
    finally:
        others_served.set()
        dripper.join()
    status, body = read_response(sock)
    sock.close()
    assert status == 200 and json.loads(body)["error"]["data"]["rule"] == "no deletes"
    assert ran(stack.side_log).count("echo") == 10 and "delete_everything" not in ran(stack.side_log)


def test_slow_loris_declaring_100mb_is_refused_at_once(stack):
    sock = connect(stack.proxy_port)
    sock.sendall(HEAD.encode() + f"content-length: {100 * MB}\r\n\r\n".encode() + b"{")
    status, _ = read_response(sock)  # no more bytes are sent: the answer cannot wait for them
    sock.close()
    assert status == 413


def test_stalled_client_is_disconnected(stack):
    """Half a body, then silence: the proxy closes the connection after tcp_timeout (3 s here)
    and nothing reaches the server."""
    sock = connect(stack.proxy_port)
    sock.sendall(HEAD.encode() + f"content-length: {len(DENIED)}\r\n\r\n".encode() + DENIED[:40])
    status, _ = read_response(sock)
    sock.close()
    assert status == 0  # closed without a response: there is no request to answer
    assert "delete_everything" not in ran(stack.side_log)


# -- hostile upstream event streams ------------------------------------------------------------------

SSE_HEADERS = b"content-type: text/event-stream\r\n"


class ScriptedUpstream(socketserver.ThreadingTCPServer):
    """An upstream that answers any POST with an event stream made of ``pieces()`` (one HTTP
    chunk each, ``pause`` seconds apart), and records each request body and the bytes it sent."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, pieces: Callable[[], Iterator[bytes]], pause: float = 0.0, headers: bytes = SSE_HEADERS):
        self.pieces, self.pause, self.headers = pieces, pause, headers
        self.bodies: list[bytes] = []
        self.sent: list[int] = []
        super().__init__(("127.0.0.1", 0), ScriptedHandler)


class ScriptedHandler(socketserver.StreamRequestHandler):
    server: ScriptedUpstream

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.server.bodies.append(self.rfile.read(length))
        self.wfile.write(b"HTTP/1.1 200 OK\r\n" + self.server.headers + b"transfer-encoding: chunked\r\n\r\n")
        sent = 0
        try:
            for piece in self.server.pieces():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                sent += len(piece)
                time.sleep(self.server.pause)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the proxy hung up
        self.server.sent.append(sent)


ENDLESS_TOTAL = 100 * MB


def endless_line() -> Iterator[bytes]:
    """An event whose first line never ends: ``data: xxxx...`` for 100 MB."""
    yield b"data: "
    for _ in range(ENDLESS_TOTAL // (64 * 1024)):
        yield b"x" * (64 * 1024)


@pytest.fixture
def upstream(tmp_path: Path):
    """start(pieces, pause, headers) -> (upstream, mitmdump process, proxy port); all stopped afterwards."""
    started: list[tuple[ScriptedUpstream, Process]] = []
    def start(pieces: Callable[[], Iterator[bytes]], pause: float = 0.0, headers: bytes = SSE_HEADERS,
              policy_text: str = TEST_POLICY) -> tuple[ScriptedUpstream, Process, int]:
        policy = tmp_path / f"policy-{len(started)}.yaml"
        policy.write_text(policy_text)
        server = ScriptedUpstream(pieces, pause, headers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        proxy, port = start_mitmdump(tmp_path, server.server_address[1], "intercept_state=memory", policy=policy)
        started.append((server, proxy))
        return server, proxy, port

    yield start
    for server, proxy in started:
        proxy.stop()
        server.shutdown()
        server.server_close()


def post_stream(port: int, body: bytes):  # type: ignore[no-untyped-def]
    return httpx2.stream("POST", f"http://127.0.0.1:{port}/mcp", content=body, timeout=60, trust_env=False,
                         headers={"content-type": "application/json", "accept": "application/json, text/event-stream",
                                  "mcp-protocol-version": "2025-11-25"})


def first_event_data(resp: httpx2.Response) -> tuple[dict, bytes]:
    """The JSON of the first event with data, and every byte received up to it."""
    received = b""
    for chunk in resp.iter_raw():
        received += chunk
        blocks = [b for b in received.split(b"\n\n") if b.strip()]
        if blocks and (received.rstrip(b"\r").endswith(b"\n\n") or len(blocks) > 1):
            data = b"".join(line[5:].lstrip(b" ") for line in blocks[0].split(b"\n") if line.startswith(b"data:"))
            return json.loads(data), received
    raise AssertionError(f"the stream ended without a complete event: {received[:300]!r}")


TOOLS_LIST = b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}'


def test_endless_line_in_a_tools_list_answer_is_cut_with_an_error(upstream):
    """A tools/list answer must be filtered (hidden tools), so an event too large to inspect is
    not passed on: the client gets a JSON-RPC error for its request, and the proxy stops reading
    once the client has gone."""
    server, proxy, port = upstream(endless_line)
    with peak_growth(proxy) as growth, post_stream(port, TOOLS_LIST) as resp:
        answer, received = first_event_data(resp)
    assert answer["id"] == 7 and "could not be inspected" in answer["error"]["message"]
    assert b"xxxx" not in received, "uninspected bytes of the tools/list answer reached the client"
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB"
    deadline = time.monotonic() + 30
    while not server.sent and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.sent and server.sent[0] < ENDLESS_TOTAL, "the proxy read the whole endless stream"


# A policy that neither hides nor pins tools: nothing in an answer waits to be filtered.
NOTHING_HIDDEN = TEST_POLICY.replace("hide: [secret_admin]\n", "")
CALL = b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"generate","arguments":{"prompt":"p"}}}'


def test_endless_line_in_a_call_answer_streams_through_in_bounded_memory(upstream):
    """Where nothing waits to be filtered, past the 4 MiB event cap a tools/call answer's bytes
    stream through as they come (the call's counter is kept), never held whole."""
    server, proxy, port = upstream(endless_line, policy_text=NOTHING_HIDDEN)
    with peak_growth(proxy) as growth, post_stream(port, CALL) as resp:
        received = sum(len(chunk) for chunk in resp.iter_raw())
    assert received >= ENDLESS_TOTAL
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB for {received // MB} MB streamed"
    assert server.bodies == [CALL]


def test_endless_line_in_a_call_answer_is_cut_where_tools_are_hidden(upstream):
    """Where tools are hidden, any answer may carry another request's tools/list (clients match
    answers by id on any stream), so a tools/call answer's event too large to inspect is cut too."""
    server, proxy, port = upstream(endless_line)
    with peak_growth(proxy) as growth, post_stream(port, CALL) as resp:
        answer, received = first_event_data(resp)
    assert answer["id"] == 8 and "could not be inspected" in answer["error"]["message"]
    assert growth[0] < GROWTH_LIMIT, f"mitmdump grew by {growth[0] // MB} MB"
    assert server.bodies == [CALL]


HIDDEN_IN_A_BIG_LIST = (b'event: message\ndata: {"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"secret_admin",'
                        b'"description":"' + b"d" * (5 * MB) + b'"},{"name":"echo"}]}}\n\n')


def test_hidden_tool_in_a_list_too_large_to_filter_never_reaches_the_client(upstream):
    """Before issue 5 an event over the 4 MiB cap passed unfiltered: a big tools/list answer
    showed hidden tools."""
    _, _, port = upstream(lambda: (HIDDEN_IN_A_BIG_LIST[i : i + 65536] for i in range(0, len(HIDDEN_IN_A_BIG_LIST), 65536)))
    with post_stream(port, TOOLS_LIST) as resp:
        received = b"".join(resp.iter_raw())
    assert b"secret_admin" not in received
    assert b"could not be inspected" in received


def test_event_split_across_chunks_reaches_the_client_whole(upstream):
    """Before issue 5, a chunk that ended mid-event made the proxy end the client's chunked body
    (mitmproxy writes a b"" chunk as the terminator): the answer was lost."""
    event = b'event: message\ndata: {"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"secret_admin"},{"name":"echo"}]}}\n\n'
    _, _, port = upstream(lambda: iter([event[:25], event[25:60], event[60:]]), pause=0.2)
    with post_stream(port, TOOLS_LIST) as resp:
        answer, _ = first_event_data(resp)
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"tools": [{"name": "echo"}]}}


def test_compressed_answer_bomb_is_not_expanded(upstream):
    """A server may ignore the proxy's Accept-Encoding: identity. A tools/list answer of 250 KB
    gzip that expands to 256 MB must not be decoded whole to be filtered."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = packer.compress(b'{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"secret_admin"}],"x":"'
                           + b" " * (256 * MB) + b'"}}') + packer.flush()
    _, proxy, port = upstream(lambda: iter([bomb]), headers=b"content-type: application/json\r\ncontent-encoding: gzip\r\n")
    with peak_growth(proxy) as growth, post_stream(port, TOOLS_LIST) as resp:
        body = resp.read()
    assert resp.status_code == 502 and b"could not inspect" in body
    # Decoding stops at BODY_BUFFER_LIMIT; the decoder's output buffer may hold it twice at the peak.
    bound = 2 * BODY_BUFFER_LIMIT + 16 * MB
    assert growth[0] < bound, f"mitmdump grew by {growth[0] // MB} MB"


def test_buffered_answer_with_an_object_id(upstream):
    """Found by the fuzz run: an answer whose id is an object made the addon raise (502). To a
    call, where nothing waits to be filtered, it is passed as it came; where tools are hidden it
    is refused, since the proxy cannot read it and a lenient client may still take it for a list."""
    answer = b'{"jsonrpc":"2.0","id":{"x":1},"result":{}}'
    json_type = b"content-type: application/json\r\n"
    _, _, port = upstream(lambda: iter([answer]), headers=json_type, policy_text=NOTHING_HIDDEN)
    with post_stream(port, CALL) as resp:
        assert resp.status_code == 200 and resp.read() == answer
    _, _, port = upstream(lambda: iter([answer]), headers=json_type)
    with post_stream(port, CALL) as resp:
        assert resp.status_code == 502 and b"[INTERCEPT POLICY DENIED]" in resp.read()
    with post_stream(port, TOOLS_LIST) as resp:
        assert resp.status_code == 502 and b"[INTERCEPT POLICY DENIED]" in resp.read()
