"""Red-team review of policies bound to servers (issue #15), end to end: a real mitmdump in
regular mode in front of the SDK test server, whose side-effect log shows what ran. Each test
states the secure behaviour; each failed before its fix (they were strict xfails until then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import httpx2
import mcp
import pytest
from mcp.client.sse import sse_client

from harness import ROOT, Process, free_port, ran, start_mcp_server, start_mitmdump, wait_for_port
from raw_mcp import ACCEPT, call

pytestmark = pytest.mark.e2e

DENY_DELETE = 'tools:\n  delete_everything:\n    rules:\n      - {action: deny, reason: "kept"}\n'


async def post(proxy_port: int, target: str, host: str, body: dict) -> str:
    """One POST through the proxy with the request target and Host exactly as given."""
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: {ACCEPT}\r\n"
                 f"MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                 .encode() + data)
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.read(), 20)).decode(errors="replace")
    finally:
        writer.close()


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in reversed(started):
        proc.stop()


def proxy(tmp: Path, procs: list, policies: dict[str, str], *options: str) -> int:
    where = tmp / "policies"
    where.mkdir()
    for name, text in policies.items():
        (where / name).write_text(text)
    proc, port = start_mitmdump(tmp, None, "intercept_state=memory", *options, policy=where, mode="regular")
    procs.append(proc)
    return port


def target_log(tmp: Path, procs: list, *extra: str) -> tuple[int, Path]:
    """tests/servers/redteam_target_log.py: logs each request's target and Host fields."""
    port, log = free_port(), tmp / "targets.jsonl"
    log.touch()
    proc = Process([sys.executable, str(ROOT / "tests/servers/redteam_target_log.py"), "--port", str(port),
                    "--log", str(log), *extra], tmp / f"target-log-{port}.log")
    procs.append(proc)
    wait_for_port(port, proc.proc)
    return port, log


def server(tmp: Path, procs: list, *extra: str, transport: str = "streamable-http") -> tuple[int, Path]:
    proc, port, side = start_mcp_server(tmp, *extra, transport=transport)
    procs.append(proc)
    return port, side


async def test_the_unspecified_address_does_not_unbind_a_loopback_server(tmp_path, procs):
    port, side = server(tmp_path, procs, "--stateless", "--json-response")
    proxy_port = proxy(tmp_path, procs, {"a.yaml": f'servers: ["http://127.0.0.1:{port}/mcp*"]\n' + DENY_DELETE})
    for host in ("127.0.0.1", "0.0.0.0", "0"):
        await post(proxy_port, f"http://{host}:{port}/mcp", f"localhost:{port}", call(1, "delete_everything", {}))
    assert ran(side) == []


async def test_a_server_named_by_hostname_is_governed_at_its_address(tmp_path, procs):
    port, side = server(tmp_path, procs, "--stateless", "--json-response")
    proxy_port = proxy(tmp_path, procs, {"a.yaml": f'servers: ["http://localhost:{port}/*"]\n' + DENY_DELETE})
    await post(proxy_port, f"http://localhost:{port}/mcp", f"localhost:{port}", call(1, "delete_everything", {}))
    assert ran(side) == []  # holds: the name as the policy spells it
    await post(proxy_port, f"http://127.0.0.1:{port}/mcp", f"127.0.0.1:{port}", call(2, "delete_everything", {}))
    assert ran(side) == []


async def test_the_fallback_budget_is_not_renewed_by_another_spelling(tmp_path, procs):
    port, side = server(tmp_path, procs, "--stateless", "--json-response")
    limited = "tools:\n  generate:\n    rules:\n      - action: allow\n        rate_limit: {max: 2, window: 60}\n"
    proxy_port = proxy(tmp_path, procs, {"a.yaml": 'servers: ["http://127.0.0.1:1/*"]\ntools: {}\n',
                                         "default.yaml": limited}, "intercept_unnamed_server=fallback")
    for i, host in enumerate(["127.0.0.1"] * 3 + ["localhost"] * 3):
        await post(proxy_port, f"http://{host}:{port}/mcp", f"{host}:{port}", call(i, "generate", {"prompt": str(i)}))
    assert ran(side) == ["generate", "generate"]


@contextlib.asynccontextmanager
async def legacy_session(url: str, proxy_url: str):
    def http_client(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=headers, auth=auth, trust_env=False, proxy=proxy_url,
                                  timeout=timeout or httpx2.Timeout(30, read=60))

    async with sse_client(url, timeout=10, httpx_client_factory=http_client) as (read, write):
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def test_a_legacy_post_is_judged_under_its_streams_policy(tmp_path, procs):
    port, side = server(tmp_path, procs, transport="sse")
    proxy_port = proxy(tmp_path, procs, {"a.yaml": f'servers: ["http://127.0.0.1:{port}/sse"]\nhide: [secret_admin]\n'
                                         + DENY_DELETE})
    async with legacy_session(f"http://127.0.0.1:{port}/sse", f"http://127.0.0.1:{proxy_port}") as session:
        assert "secret_admin" not in {t.name for t in (await session.list_tools()).tools}  # holds: the stream is bound
        with contextlib.suppress(mcp.MCPError):
            await session.call_tool("delete_everything", {})
    assert ran(side) == []


async def test_a_new_policy_file_does_not_unbind_the_policy_in_force(tmp_path, procs):
    port, side = server(tmp_path, procs, "--stateless", "--json-response")
    proxy_port = proxy(tmp_path, procs, {"main.yaml": DENY_DELETE})
    url = f"http://127.0.0.1:{port}/mcp"
    await post(proxy_port, url, f"127.0.0.1:{port}", call(1, "delete_everything", {}))
    assert ran(side) == []  # holds: one policy without servers governs every server
    (tmp_path / "policies" / "other.yaml").write_text('servers: ["http://10.9.9.9/*"]\ntools: {}\n')
    await asyncio.sleep(4)  # seen, settled and applied (POLL_SECONDS each)
    await post(proxy_port, url, f"127.0.0.1:{port}", call(2, "delete_everything", {}))
    assert ran(side) == []


async def tunnelled(proxy_port: int, connect: str, target: str, host: str, body: dict) -> str:
    """CONNECT ``connect``, then one plain HTTP/1.1 POST inside the tunnel, as given."""
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n".encode())
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    writer.write(f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: {ACCEPT}\r\n"
                 f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.read(), 20)).decode(errors="replace")
    finally:
        writer.close()


async def test_the_authority_a_server_routes_by_is_judged(tmp_path, procs):
    port, log = target_log(tmp_path, procs)
    strict = f'servers: ["http://localhost:{port}/*"]\n' + DENY_DELETE
    lax = f'servers: ["http://127.0.0.1:{port}/*"]\ntools: {{}}\n'
    proxy_port = proxy(tmp_path, procs, {"strict.yaml": strict, "lax.yaml": lax})
    await tunnelled(proxy_port, f"127.0.0.1:{port}", f"http://localhost:{port}/mcp", f"127.0.0.1:{port}",
                    call(1, "delete_everything", {}))
    received = [json.loads(line) for line in log.read_text().splitlines()]
    # what reached the server: a call addressed to the strict policy's server, judged by the lax one
    assert received == [], received



async def test_every_host_field_is_judged(tmp_path, procs):
    port, log = target_log(tmp_path, procs)
    strict = f'servers: ["http://localhost:{port}/*"]\n' + DENY_DELETE
    lax = f'servers: ["http://127.0.0.1:{port}/*"]\ntools: {{}}\n'
    proxy_port = proxy(tmp_path, procs, {"strict.yaml": strict, "lax.yaml": lax})
    await post(proxy_port, f"http://127.0.0.1:{port}/mcp", f"localhost:{port}\r\nHost: 127.0.0.1:{port}",
               call(1, "delete_everything", {}))
    received = [json.loads(line) for line in log.read_text().splitlines()]
    assert received == [], received


async def test_reverse_mode_sends_the_upstream_only_requests_for_itself(tmp_path, procs):
    port, log = target_log(tmp_path, procs)
    policy = tmp_path / "policy.yaml"
    policy.write_text(DENY_DELETE)
    proc, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy)
    procs.append(proc)
    await post(proxy_port, "http://other.example/mcp", "other.example", call(1, "echo", {"text": "x"}))
    targets = [json.loads(line)["target"] for line in log.read_text().splitlines()]
    assert targets == ["/mcp"]  # origin-form: the upstream routes by the Host field mitmproxy set
