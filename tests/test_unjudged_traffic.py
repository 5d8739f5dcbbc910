"""Nothing passes unjudged: traffic mitmproxy carries past the request hook (raw TCP in a tunnel,
protocol upgrades, HTTP trailers) or options it silently dropped never let the denied tool run.

Through a real mitmdump with the addon, to the real test MCP server or, where a server must be
lenient to be fooled, tests/servers/lenient_upstream.py. Every side-effect log must stay empty."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h11
import pytest
from mitmproxy import exceptions, optmanager
from mitmproxy.proxy.layers.http import _http1

from harness import ROOT, BIN, Process, clean_env, free_port, ran, start_mcp_server, start_mitmdump, wait_for_port
from intercept_addon.proxy import deferred_options, trailers
from intercept_addon.proxy.unjudged import opted_out, raw_kind
from test_transparent_mode import AGENT_GID, in_ns, netns, wait_for_log  # noqa: F401 (netns: a fixture)

DENIED = "[INTERCEPT POLICY DENIED]"
REVISION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": REVISION, "io.modelcontextprotocol/clientCapabilities": {}}


def call(tool: str, arguments: dict) -> str:
    """A 2026-07-28 call: the stateful test server runs it with no session and no initialize."""
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments, "_meta": META}})


CALL = call("delete_everything", {})
ECHO = call("echo", {"text": "hi"})


def post(host: str, port: int, body: str, *, tool: str = "delete_everything", path: str = "/mcp") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"accept: application/json, text/event-stream\r\nmcp-protocol-version: {REVISION}\r\n"
            f"mcp-method: tools/call\r\nmcp-name: {tool}\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tunnel(proxy_port: int, host: str, port: int) -> socket.socket:
    sock = connect(proxy_port)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def reply(sock: socket.socket, limit: float = 2.0) -> tuple[bytes, bool]:
    """What the peer sends within ``limit`` seconds, and whether it closed the connection."""
    sock.settimeout(limit)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        return out, False
    return out, True


def until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Everything the peer sends until it closes; fails if it keeps the connection open."""
    out, closed = reply(sock, limit)
    assert closed, f"still open after {limit} s, having sent {out!r}"
    return out


def head_and_body(raw: bytes) -> tuple[int, bytes]:
    assert raw, "closed without an answer"
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def settled(side: Path) -> list[str]:
    time.sleep(0.3)  # a forwarded call would have run by now
    return ran(side)


@pytest.fixture
def lenient(tmp_path: Path) -> tuple[int, Path]:
    port, side = free_port(), tmp_path / "lenient-side-effects.log"
    side.touch()
    proc = Process([sys.executable, str(ROOT / "tests/servers/lenient_upstream.py"), "--port", str(port),
                    "--log", str(side)], tmp_path / "lenient.log")
    wait_for_port(port, proc.proc)
    yield port, side
    proc.stop()


@pytest.fixture
def regular(tmp_path: Path, policy_file: Path):
    """mitmdump in regular mode; more --set options as arguments."""
    procs: list[Process] = []

    def start(*options: str) -> int:
        proc, port = start_mitmdump(tmp_path, None, "intercept_state=memory", *options, policy=policy_file,
                                    mode="regular")
        procs.append(proc)
        return port

    yield start
    for proc in procs:
        proc.stop()


# -- raw TCP in a CONNECT tunnel ------------------------------------------------------------


@pytest.mark.e2e
def test_first_segment_of_two_bytes_is_not_relayed_as_raw_tcp(tmp_path, regular):
    server, port, side = start_mcp_server(tmp_path)
    try:
        request = post("127.0.0.1", port, CALL)
        with tunnel(regular(), "127.0.0.1", port) as sock:
            sock.sendall(request[:2])  # "PO": too short for mitmproxy to see HTTP
            time.sleep(0.2)
            sock.sendall(request[2:])
            answer = reply(sock)
        assert settled(side) == []
        assert answer == (b"", True)  # closed unanswered
    finally:
        server.stop()


@pytest.mark.e2e
def test_leading_empty_line_is_not_relayed_as_raw_tcp(lenient, regular):
    port, side = lenient
    with tunnel(regular(), "127.0.0.1", port) as sock:
        sock.sendall(b"\r\n" + post("127.0.0.1", port, CALL))  # a lenient server skips the empty line
        answer = reply(sock)
    assert settled(side) == []
    assert answer == (b"", True)


SPLIT_AGENT = """
import socket, sys, time
port, request = int(sys.argv[1]), sys.argv[2].encode()
sock = socket.create_connection(("127.0.0.1", port), timeout=3)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.sendall(request[:2])
time.sleep(0.2)
sock.sendall(request[2:])
print(repr(sock.recv(65536)))
"""


@pytest.mark.e2e
def test_first_segment_of_two_bytes_is_refused_in_transparent_mode(netns, tmp_path, policy_file):
    """The agent's connection to the server is redirected by the kernel (see test_transparent_mode)."""
    server_port, proxy_port, side = free_port(), free_port(), tmp_path / "side-effects.log"
    side.touch()
    procs: list[Process] = []
    try:
        procs.append(server := Process(in_ns(netns, sys.executable, str(ROOT / "tests/servers/mcp_server.py"),
                                             "--port", str(server_port), "--log", str(side)), tmp_path / "server.log"))
        procs.append(proxy := Process(in_ns(
            netns, str(BIN / "mitmdump"), "--mode", "transparent", "--listen-host", "127.0.0.1", "-p", str(proxy_port),
            "-s", str(ROOT / "intercept_addon.py"), "--set", f"confdir={tmp_path / 'mitmproxy'}",
            "--set", f"intercept_policy={policy_file}", "--set", "intercept_state=memory"), tmp_path / "mitmdump.log"))
        wait_for_log(server, "Uvicorn running on")
        wait_for_log(proxy, "listening at")
        subprocess.run(in_ns(netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1",
                             "--dport", str(server_port), "-m", "owner", "--gid-owner", str(AGENT_GID),
                             "-j", "REDIRECT", "--to-ports", str(proxy_port)), check=True)
        agent = subprocess.run(in_ns(netns, "setpriv", f"--regid={AGENT_GID}", "--clear-groups", sys.executable, "-c",
                                     SPLIT_AGENT, str(server_port), post("127.0.0.1", server_port, CALL).decode()),
                               capture_output=True, text=True, timeout=30, env=clean_env())
        assert settled(side) == []
        assert agent.stdout.strip() == "b''", agent.stderr  # closed unanswered
        assert "raw TCP to 127.0.0.1 refused" in proxy.output()
    finally:
        for proc in reversed(procs):
            proc.stop()


# -- protocol upgrades ----------------------------------------------------------------------

WS_KEY = base64.b64encode(os.urandom(16)).decode()


def ws_frame(text: str) -> bytes:
    """A masked client text frame."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


SHORT_CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "delete_everything", "arguments": {}}})
UPGRADES = {
    "websocket, no subprotocol offered": f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                                         "Sec-WebSocket-Version: 13\r\n",
    "websocket, mcp subprotocol": f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mcp\r\n",
    "a made-up protocol": "Upgrade: mcp-lines\r\nConnection: Upgrade\r\n",
    "H2C in capitals": "Upgrade: H2C\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIA\r\n",
    "websocket the server switches to unasked": f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n",
}


def try_upgrade(sock: socket.socket, target: str, host: str, fields: str) -> tuple[int, bytes]:
    """Ask for an upgrade on ``sock`` (closed after); if the proxy lets it through, make the denied
    call over it."""
    with sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n".encode())
        sock.settimeout(5)
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536) or pytest.fail(f"closed after {raw!r}")
        status, body = head_and_body(raw)
        if status != 101:
            return status, body + until_closed(sock)  # refusals close the connection
        sock.sendall(ws_frame(SHORT_CALL) if b"websocket" in raw.lower() else SHORT_CALL.encode() + b"\n")
        return status, sock.recv(65536)


def assert_refused(status: int, body: bytes, expected: int) -> None:
    assert status == expected
    error = json.loads(body)["error"]
    assert error["code"] == -32600 and error["message"].startswith(DENIED)
    assert "intercept_unjudged_hosts" in error["message"]


@pytest.mark.e2e
@pytest.mark.parametrize("case", UPGRADES)
def test_upgrade_is_refused_in_reverse_mode(tmp_path, policy_file, lenient, case):
    port, side = lenient
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
    try:
        status, body = try_upgrade(connect(proxy_port), "/ws", f"127.0.0.1:{port}", UPGRADES[case])
    finally:
        proxy.stop()
    assert settled(side) == []
    assert_refused(status, body, 502 if "unasked" in case else 403)


@pytest.mark.e2e
def test_websocket_without_subprotocol_is_refused_in_regular_mode(lenient, regular):
    port, side = lenient
    proxy_port = regular()
    fields = UPGRADES["websocket, no subprotocol offered"]
    absolute = try_upgrade(connect(proxy_port), f"http://127.0.0.1:{port}/ws", f"127.0.0.1:{port}", fields)
    tunnelled = try_upgrade(tunnel(proxy_port, "127.0.0.1", port), "/ws", f"127.0.0.1:{port}", fields)
    assert settled(side) == []
    assert_refused(*absolute, 403)
    assert_refused(*tunnelled, 403)


@pytest.mark.e2e
def test_opted_out_hosts_pass_unjudged_and_only_they(lenient, regular):
    port, side = lenient
    proxy_port = regular("intercept_unjudged_hosts=LOCAL*")
    fields = UPGRADES["websocket, no subprotocol offered"]
    status, body = try_upgrade(connect(proxy_port), f"http://localhost:{port}/ws", f"localhost:{port}", fields)
    assert status == 101 and json.loads(body[2:])["result"]["content"][0]["text"] == "ran delete_everything"
    with tunnel(proxy_port, "localhost", port) as sock:
        sock.sendall(b"\r\n" + post("localhost", port, CALL))
        assert b'"ran delete_everything"' in sock.recv(65536)
    assert settled(side) == ["delete_everything"] * 2
    # 127.0.0.1 is the same server, but not an opted-out name.
    status, body = try_upgrade(connect(proxy_port), f"http://127.0.0.1:{port}/ws", f"127.0.0.1:{port}", fields)
    assert_refused(status, body, 403)
    with tunnel(proxy_port, "127.0.0.1", port) as sock:
        sock.sendall(b"\r\n" + post("127.0.0.1", port, CALL))
        assert reply(sock) == (b"", True)
    assert settled(side) == ["delete_everything"] * 2


# -- trailers ---------------------------------------------------------------------------------


def chunked_with_trailer(host: str, port: int, body: str, path: str = "/mcp") -> bytes:
    head = post(host, port, body, tool="echo", path=path).split(b"\r\n\r\n")[0]
    head = head.replace(f"content-length: {len(body)}".encode(), b"transfer-encoding: chunked")
    return head + b"\r\n\r\n" + b"%x\r\n%s\r\n0\r\nx-checksum: 1\r\n\r\n" % (len(body), body.encode())


@pytest.mark.e2e
def test_request_trailers_get_a_400_and_are_never_forwarded(tmp_path, policy_file):
    server, port, side = start_mcp_server(tmp_path)
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
    try:
        with connect(proxy_port) as sock:
            start = time.monotonic()
            sock.sendall(chunked_with_trailer("127.0.0.1", port, ECHO))
            status, body = head_and_body(until_closed(sock))  # answered, then closed: no hang
            assert time.monotonic() - start < 2
        assert status == 400 and json.loads(body)["error"]["message"].startswith(DENIED)
        assert "trailers" in json.loads(body)["error"]["message"]
        assert settled(side) == []
    finally:
        proxy.stop()
        server.stop()


def h2_post_with_trailer(port: int, body: str) -> tuple[int, bytes]:
    """An HTTP/2 (TLS) POST whose body ends with a trailer field."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with context.wrap_socket(connect(port), server_hostname="localhost") as sock:
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":path", "/mcp"), (":scheme", "https"), (":authority", "localhost"),
                              ("content-type", "application/json"), ("accept", "application/json, text/event-stream"),
                              ("mcp-protocol-version", REVISION), ("mcp-method", "tools/call"), ("mcp-name", "echo")])
        conn.send_data(1, body.encode())
        conn.send_headers(1, [("x-checksum", "1")], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while chunk := sock.recv(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return status, data
            sock.sendall(conn.data_to_send())
    return status, data


@pytest.mark.e2e
def test_http2_request_trailers_get_a_400_and_are_never_forwarded(tmp_path, policy_file):
    server, port, side = start_mcp_server(tmp_path)
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
    try:
        status, body = h2_post_with_trailer(proxy_port, ECHO)
        assert settled(side) == []  # before: forwarded without its trailer, then mitmproxy crashed
        assert status == 400 and "trailers" in json.loads(body)["error"]["message"]
    finally:
        proxy.stop()
        server.stop()


@pytest.mark.e2e
def test_response_trailers_get_a_502_instead_of_a_hang(tmp_path, policy_file, lenient):
    port, _ = lenient
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
    try:
        with connect(proxy_port) as sock:
            sock.sendall(post("127.0.0.1", port, ECHO, tool="echo", path="/trailers"))
            status, body = head_and_body(until_closed(sock))
        assert status == 502 and b"trailers" in body
    finally:
        proxy.stop()


# -- options mitmproxy dropped -----------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("options, message", [
    (["intercept_max_body=abc"], "intercept_max_body was not applied: Failed to parse option intercept_max_body: "
                                 "not an integer: abc"),
    (["intercept_policy=POLICY", "intercept_policy=POLICY"], "intercept_policy was not applied: Received multiple "
                                                               "values for intercept_policy"),
    (["intercept_polcy=POLICY"], "intercept_polcy is not an option of this addon"),
])
def test_dropped_options_stop_mitmdump_before_anything_is_forwarded(tmp_path, policy_file, options, message):
    server, port, side = start_mcp_server(tmp_path)
    proxy_port = free_port()
    args = [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "-p", str(proxy_port), "-s",
            str(ROOT / "intercept_addon.py"), "--set", f"confdir={tmp_path / 'mitmproxy'}",
            "--mode", f"reverse:http://127.0.0.1:{port}"]
    for option in options:
        args += ["--set", option.replace("POLICY", str(policy_file))]
    proxy = Process(args, tmp_path / "mitmdump.log", env=clean_env())
    try:
        deadline = time.monotonic() + 10
        while proxy.proc.poll() is None and time.monotonic() < deadline:
            try:  # whenever the port is open, try the denied call
                with connect(proxy_port) as sock:
                    sock.sendall(post("127.0.0.1", port, CALL))
                    sock.recv(65536)
            except OSError:
                time.sleep(0.02)
        assert proxy.proc.poll() not in (None, 0), proxy.output()
        assert message in proxy.output()
        assert settled(side) == []
    finally:
        proxy.stop()
        server.stop()


# -- pure parts -------------------------------------------------------------------------------


def test_host_globs_match_case_insensitively():
    assert opted_out("API.Example.com", ("*.example.com",))
    assert opted_out("localhost", ("local*",))
    assert not opted_out("example.com", ("*.example.com",))
    assert not opted_out("127.0.0.1", ())


def test_raw_layers_are_found_under_tls_and_ignored_ones_pass():
    from mitmproxy.options import Options
    from mitmproxy.proxy import layers, tunnel
    from mitmproxy.proxy.context import Context
    from mitmproxy.proxy.layers.http import HTTPMode
    from mitmproxy.test.tflow import tclient_conn, tserver_conn

    def stack(*make) -> object:
        context = Context(tclient_conn(), Options())
        context.server = tserver_conn()
        layer_stack = tunnel.LayerStack()
        for m in make:
            layer_stack /= m(context)
        return layer_stack[0]

    tls = (layers.ServerTLSLayer, layers.ClientTLSLayer)
    assert raw_kind(stack(layers.TCPLayer)) == "raw TCP"
    assert raw_kind(stack(*tls, layers.TCPLayer)) == "raw TCP"
    assert raw_kind(stack(layers.UDPLayer)) == "UDP"
    assert raw_kind(stack(layers.DNSLayer)) == "DNS"
    assert raw_kind(stack(lambda c: layers.TCPLayer(c, ignore=True))) is None  # --ignore-hosts
    assert raw_kind(stack(*tls, lambda c: layers.HttpLayer(c, HTTPMode.transparent))) is None
    assert raw_kind(None) is None


def options_with(*specs: str) -> optmanager.OptManager:
    opts = optmanager.OptManager()
    opts.set(*specs, defer=True)
    opts.add_option("intercept_max_body", int, 1, "")
    opts.add_option("intercept_policy", str, "", "")
    opts.add_option("other", int, 1, "")
    return opts


def test_unapplied_options_name_the_value_that_failed():
    opts = options_with("intercept_max_body=abc", "intercept_policy=p.yaml")
    with pytest.raises(exceptions.OptionsError):
        opts.process_deferred()
    assert deferred_options.unapplied(opts, "intercept_") == [
        "intercept_max_body was not applied: Failed to parse option intercept_max_body: not an integer: abc"]


def test_unapplied_options_blame_another_option_of_the_batch():
    opts = options_with("other=x", "intercept_policy=p.yaml")
    with pytest.raises(exceptions.OptionsError):
        opts.process_deferred()
    [line] = deferred_options.unapplied(opts, "intercept_")
    assert line.startswith("intercept_policy was not applied, because another option of the batch failed")
    assert "other: Failed to parse option other: not an integer: x" in line


def test_applied_and_unknown_options():
    opts = options_with("intercept_policy=p.yaml", "intercept_polcy=q.yaml", "unrelated=1")
    opts.process_deferred()
    assert opts.intercept_policy == "p.yaml"
    assert deferred_options.unapplied(opts, "intercept_") == []
    assert deferred_options.unknown(opts, "intercept_") == [
        "intercept_polcy is not an option of this addon (a typo?); it was never applied"]


def test_trailers_reader_refuses_trailers_only():
    from h11._receivebuffer import ReceiveBuffer

    trailers.install()
    try:
        for raw, refused in [(b"2\r\n{}\r\n0\r\n\r\n", False), (b"2\r\n{}\r\n0\r\nx-checksum: 1\r\n\r\n", True)]:
            reader, buf = _http1.make_body_reader(None), ReceiveBuffer()
            buf += raw
            assert isinstance(reader(buf), h11.Data)
            if refused:
                with pytest.raises(trailers.TrailersRefused):
                    reader(buf)
            else:
                assert isinstance(reader(buf), h11.EndOfMessage)
    finally:
        trailers.uninstall()


# -- header fields a server may read otherwise -------------------------------------------------

SMUGGLED = (b"0\r\n\r\n" + post("127.0.0.1", 1, CALL))  # under chunked framing: an empty body, then a call


def with_field(field: bytes, body: bytes = SMUGGLED) -> bytes:
    """A POST of a non-MCP body (no policy judges text/plain) carrying ``field``."""
    return (b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: text/plain\r\nconnection: close\r\n" + field
            + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.e2e
@pytest.mark.parametrize("field", [b"x-a: b\r\n transfer-encoding: chunked", b"x-a: b\r\n\ttransfer-encoding: chunked",
                                   b"x-a: b\rtransfer-encoding: chunked", b"x-a: b\0transfer-encoding: chunked"],
                         ids=["obs-fold", "obs-fold-tab", "bare-cr", "nul"])
def test_fields_with_line_breaks_get_a_400_and_nothing_is_smuggled(tmp_path, policy_file, lenient, field):
    """Bug: mitmproxy framed the body by Content-Length and forwarded the folded line as it came;
    the lenient server read `` transfer-encoding: chunked`` as a field of its own, took the body
    for an empty chunked one, and ran the denied call that followed it as a request of its own."""
    port, side = lenient
    proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy_file)
    try:
        with connect(proxy_port) as sock:
            sock.sendall(with_field(field))
            status, body = head_and_body(until_closed(sock))
        with connect(proxy_port) as sock:  # the same body without the field: passes, as before
            sock.sendall(with_field(b"x-a: b", b"{}"))
            assert head_and_body(until_closed(sock))[0] == 200
    finally:
        proxy.stop()
    assert settled(side) == []
    assert status == 400 and json.loads(body)["error"]["message"].startswith(DENIED)
    assert "line break or NUL" in json.loads(body)["error"]["message"]
