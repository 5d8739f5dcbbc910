"""The ``client`` identity source: one agent per client, however many addresses it can pick.

Bug: the agent was the peer address as is, so an IPv6 client, which chooses any address in its
/64 (SLAAC privacy addresses, or simply configuring more), minted a fresh agent, and a fresh
budget, per address: 2^64 of them. Now an IPv6 client is its /64 and an IPv4-mapped address is
its IPv4 one.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import psutil
import pytest
from mitmproxy.test import tflow

from harness import ran, start_mcp_server, start_mitmdump
from intercept_addon.proxy.identity import Identities
from raw_mcp import REVISION_2026, call_2026, headers, is_denial


def agent_of(peer: tuple) -> str:
    flow = tflow.tflow()
    flow.client_conn.peername = peer
    who = asyncio.run(Identities().of(flow, {}, ("client",), "x-agent-id", None))
    return who.agent


def test_ipv6_addresses_of_one_slash64_are_one_agent():
    one = agent_of(("2001:db8:1:2::1", 40000, 0, 0))
    assert one == "client:2001:db8:1:2::/64"
    assert agent_of(("2001:db8:1:2:dead:beef:0:7", 40001, 0, 0)) == one
    assert agent_of(("2001:DB8:1:2:0:0:0:1", 40002, 0, 0)) == one  # another spelling


def test_other_slash64s_and_ipv4_stay_apart():
    assert agent_of(("2001:db8:1:3::1", 40000, 0, 0)) != agent_of(("2001:db8:1:2::1", 40000, 0, 0))
    assert agent_of(("192.0.2.7", 40000)) == "client:192.0.2.7"
    assert agent_of(("192.0.2.8", 40000)) == "client:192.0.2.8"


@pytest.mark.parametrize("peer", [("::ffff:192.0.2.7", 40000, 0, 0), ("::ffff:c000:207", 40000, 0, 0)])
def test_ipv4_mapped_is_the_ipv4_client(peer):
    assert agent_of(peer) == "client:192.0.2.7"


def test_scoped_link_local_is_its_slash64():
    assert agent_of(("fe80::1%eth0", 40000, 0, 3)) == agent_of(("fe80::2%eth0", 40000, 0, 3)) == "client:fe80::/64"


# Bug: a client on this machine chose its agent by choosing its source address: any of 127/8
# (16 million), ::1, or an interface's own address. With the ``client`` source (where the
# process is unknown: another user's agent, without root) each was a fresh agent and budget.

def own_addresses() -> list[str]:
    return [a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)]


@pytest.mark.parametrize("peer", [("127.0.0.1", 1), ("127.0.0.2", 1), ("127.200.3.4", 1), ("::1", 1, 0, 0),
                                  ("::ffff:127.0.0.9", 1, 0, 0)])
def test_loopback_addresses_are_this_machine(peer):
    assert agent_of(peer) == "client:this-machine"


def test_own_interface_addresses_are_this_machine():
    for address in own_addresses():
        assert agent_of((address, 1, 0, 0) if ":" in address else (address, 1)) == "client:this-machine", address


def limit_one(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: "1"\ndescription: one call\ntools:\n  generate:\n    rules:\n'
                      '      - name: one\n        action: allow\n        rate_limit: {max: 1, window: 60}\n')
    return policy


def post_from(source: str, port: int, msg_id: int) -> dict:
    """A tools/call sent from a socket bound to ``source``; its JSON-RPC answer."""
    body = call_2026(msg_id, "generate", {"prompt": f"p{msg_id}"})
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers(revision=REVISION_2026, body=body).items())
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\nConnection: close\r\n"
                     f"{head}\r\n".encode() + data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.e2e
def test_a_local_client_cannot_pick_fresh_budgets_by_source_address(tmp_path):
    server, server_port, side = start_mcp_server(tmp_path)
    try:
        proxy, port = start_mitmdump(tmp_path, server_port, "intercept_state=memory", "intercept_identity=client",
                                     policy=limit_one(tmp_path))
        try:
            sources = ["127.0.0.1", "127.0.0.2", "127.45.6.7"] + [a for a in own_addresses()
                                                                   if "." in a and a != "127.0.0.1"]
            answers = [post_from(source, port, i) for i, source in enumerate(sources)]
        finally:
            proxy.stop()
    finally:
        server.stop()
    assert "result" in answers[0]
    assert all(is_denial(a) and "Rate limit" in a["error"]["message"] for a in answers[1:]), answers
    assert ran(side) == ["generate"]
