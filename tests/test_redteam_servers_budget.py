"""Red-team review of server bindings (issue #15): which name a server's counters go under.
A name the agent picks must never open a fresh budget."""

from __future__ import annotations

from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy.toollists import ToolLists
from intercept_addon.wire.jsonrpc import ProtocolError
from test_servers import FALLBACK, request

LOCAL = 'servers: ["http://127.0.0.1:8000/*"]\ntools: {}\n'


async def test_the_host_field_does_not_pick_the_fallback_budget():
    """An unnamed server under the fallback is counted under one name: a Host field naming some
    other address (a server that ignores Host still answers) must not open a fresh budget."""
    lists = ToolLists()
    lists.servers.configure("fallback", False)
    lists.use({"a.yaml": parse_policy(LOCAL, "a.yaml"), "f.yaml": parse_policy(FALLBACK, "f.yaml")})
    names = set()
    for host in (None, "0.0.0.1:9000", "0.0.0.2:9000", "[::2]:9000"):
        try:
            names.add((await lists.servers.of(request("127.0.0.1", 9000, host_header=host))).server)
        except ProtocolError as exc:  # refused: a Host field naming another address opens nothing either
            assert exc.status == 400 and host is not None
    assert names == {"http://127.0.0.1:9000"}, names
