"""Red-team review of policies bound to servers (issue #15): ways the proxy and the server could
read one request as addressed to different servers or paths. Each test states the secure
behaviour; each failed before its fix (they were strict xfails until then).
"""

from __future__ import annotations

import pytest
from mitmproxy.test import tflow

from intercept_addon.policy.servers import path_refusal
from intercept_addon.wire.jsonrpc import ProtocolError
from test_servers import FALLBACK, bindings, request, source_of

STRICT = 'servers: ["https://strict.example/*"]\ntools: {}\n'
LAX = 'servers: ["https://lax.example/*"]\ntools: {}\n'
LOCAL = 'servers: ["http://127.0.0.1:8000/*"]\ntools: {}\n'


async def refused(lists, flow: tflow.HTTPFlow) -> bool:
    try:
        await lists.servers.of(flow)
    except ProtocolError as exc:
        return exc.status in (400, 403)
    return False


async def test_the_unspecified_address_is_a_spelling_of_loopback():
    lists = bindings(LOCAL)
    for host in ("0.0.0.0", "0", "::ffff:0.0.0.0"):
        assert await source_of(lists, request(host, 8000, host_header="localhost:8000")) == "p0.yaml", host


async def test_a_hostname_pattern_governs_the_address_it_names():
    lists = bindings('servers: ["http://localhost:8000/*"]\ntools: {}\n')
    assert await source_of(lists, request("127.0.0.1", 8000)) == "p0.yaml"


async def test_the_absolute_form_authority_inside_a_tunnel_is_a_name_too():
    lists = bindings(STRICT, LAX)
    flow = request("lax.example", 443, host_header="lax.example")
    flow.request.authority = "strict.example"
    assert await refused(lists, flow)


async def test_every_host_field_is_a_name():
    lists = bindings(STRICT, LAX)
    flow = request("lax.example", 443, host_header="lax.example")
    flow.request.headers.add("Host", "strict.example")
    assert await refused(lists, flow)


async def test_the_fallback_counts_one_server_under_one_name():
    lists = bindings(LOCAL, FALLBACK, unnamed="fallback")
    by_name = await lists.servers.of(request("localhost", 9000))
    by_address = await lists.servers.of(request("127.0.0.1", 9000))
    assert by_name.governed is by_address.governed is not None
    assert by_name.server == by_address.server


@pytest.mark.parametrize("path", ["/lax/..;/strict", "/lax/..;v=1/strict", "/mcp#x"])
def test_segments_a_java_server_reads_as_dot_segments_are_refused(path):
    assert path_refusal(path) is not None


async def test_an_ipv6_zone_id_is_a_spelling_of_the_address():
    lists = bindings('servers: ["http://[::1]:8000/*"]\ntools: {}\n')
    assert await source_of(lists, request("::1%1", 8000, host_header="[::1]:8000")) == "p0.yaml"


async def test_the_host_field_does_not_pick_the_counters():
    lists = bindings('servers: ["http://localhost:8000/*", "http://*.internal:8000/*"]\ntools: {}\n')
    plain = await lists.servers.of(request("localhost", 8000))
    assert plain.governed is not None and plain.server == "http://localhost:8000/*"
    # a Host field naming another of the policy's patterns, not where the call goes: refused
    assert await refused(lists, request("localhost", 8000, host_header="any.internal:8000"))

