"""The ``client`` identity source: one agent per client, however many addresses it can pick.

Bug: the agent was the peer address as is, so an IPv6 client, which chooses any address in its
/64 (SLAAC privacy addresses, or simply configuring more), minted a fresh agent, and a fresh
budget, per address: 2^64 of them. Now an IPv6 client is its /64 and an IPv4-mapped address is
its IPv4 one.
"""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy.test import tflow

from intercept_addon.proxy.identity import Identities


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
