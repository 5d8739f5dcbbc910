"""Red-team review of server bindings (issue #15), end to end: the address the proxy judges must
be the address mitmproxy connects to. A rebinding DNS name (tests/servers/redteam_rebinding_dns.py,
loaded into the real mitmdump) answers the proxy's lookup with an unnamed address and
mitmproxy's connect with the governed one; the server logs what reached it
(tests/servers/redteam_target_log.py)."""

from __future__ import annotations

import json

import pytest

from harness import ROOT, start_mitmdump
from raw_mcp import call
from test_redteam_servers_e2e import DENY_DELETE, post, procs, target_log  # noqa: F401 (procs: a fixture)

pytestmark = pytest.mark.e2e


async def test_the_address_judged_is_the_address_connected(tmp_path, procs):  # noqa: F811
    port, log = target_log(tmp_path, procs)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.yaml").write_text(f'servers: ["http://127.0.0.1:{port}/*"]\n' + DENY_DELETE)
    proc, proxy_port = start_mitmdump(tmp_path, None, "intercept_state=memory", policy=policies, mode="regular",
                                      scripts=[ROOT / "tests/servers/redteam_rebinding_dns.py"])
    procs.append(proc)
    await post(proxy_port, f"http://rebind.test:{port}/mcp", f"rebind.test:{port}", call(1, "delete_everything", {}))
    received = [json.loads(line) for line in log.read_text().splitlines()]
    assert received == [], received  # it reached 127.0.0.1, which a.yaml governs, unjudged by a.yaml
