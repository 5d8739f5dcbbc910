"""Red-team review of server bindings (issue #15), end to end: a name the agent claims (the Host
field) for a server it sends to must not choose the policy of some other server. A real mitmdump
in regular mode, and a server that answers whatever Host it is given and logs each request
(tests/servers/redteam_target_log.py), as most servers behind no virtual hosting do."""

from __future__ import annotations

import json

import pytest

from raw_mcp import call
from test_redteam_servers_e2e import post, procs, proxy, target_log  # noqa: F401 (procs: a fixture)

pytestmark = pytest.mark.e2e


async def test_a_host_field_naming_another_server_does_not_lift_deny(tmp_path, procs):  # noqa: F811
    port, log = target_log(tmp_path, procs)
    # lax.test is a server elsewhere (on the same port, as HTTPS servers all are on 443); the
    # server at 127.0.0.1 is named by no policy, so intercept_unnamed_server=deny refuses its calls
    lax = f'servers: ["http://lax.test:{port}/*"]\ntools: {{}}\n'
    proxy_port = proxy(tmp_path, procs, {"lax.yaml": lax}, "intercept_unnamed_server=deny")
    denied = await post(proxy_port, f"http://127.0.0.1:{port}/mcp", f"127.0.0.1:{port}", call(1, "echo", {}))
    assert " 403 " in denied.split("\r\n")[0]  # holds: the unnamed server is denied
    await post(proxy_port, f"http://127.0.0.1:{port}/mcp", f"lax.test:{port}", call(2, "delete_everything", {}))
    received = [json.loads(line) for line in log.read_text().splitlines()]
    assert received == [], received
