"""Transparent mode, as on a developer machine: the agent is not configured at all; the kernel
redirects its connections to the proxy. All of it runs in a network namespace this test
creates (its own loopback, its own iptables rules), so the machine's firewall is untouched.

In the namespace: the test MCP server on 127.0.0.1:S, mitmdump --mode transparent on
127.0.0.1:P, and one nat rule: TCP to 127.0.0.1:S from the agent's group goes to P. The agent
(the official SDK client, run with that group) believes it talks to the server directly; the
proxy, in its own group, reaches the real server past the rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from harness import BIN, ROOT, Process, clean_env, free_port, ran

pytestmark = pytest.mark.e2e

AGENT_GID = 65534  # nogroup: the agent's processes, and only they, are redirected
AGENT = """
import asyncio, json, sys
import httpx2, mcp
from mcp.client.streamable_http import streamable_http_client

async def main(url):
    out = {}
    http = httpx2.AsyncClient(trust_env=False, headers={"x-agent-id": "transparent"})
    async with http, mcp.Client(streamable_http_client(url, http_client=http)) as c:
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["echo"] = (await c.call_tool("echo", {"text": "through the kernel"})).content[0].text
        try:
            await c.call_tool("delete_everything", {})
        except mcp.MCPError as exc:
            out["denied"] = exc.message
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace, iptables)"
    for tool in ("ip", "iptables", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture
def netns():
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    name = f"intercept-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]  # ip execs the command: the PID is the command's


def wait_for_log(proc: Process, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.output():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in the log:\n{proc.output()[-2000:]}")
        time.sleep(0.1)


def test_agent_redirected_by_the_kernel_is_policed(netns, tmp_path, policy_file):
    # Ports are chosen outside the namespace; its loopback is empty, so they are free there too.
    server_port, proxy_port = free_port(), free_port()
    side = tmp_path / "side-effects.log"
    side.touch()
    procs: list[Process] = []
    try:
        procs.append(server := Process(in_ns(netns, sys.executable, str(ROOT / "tests/servers/mcp_server.py"),
                                             "--port", str(server_port), "--log", str(side)),
                                       tmp_path / "server.log"))
        wait_for_log(server, "Uvicorn running on")
        procs.append(proxy := Process(in_ns(
            netns, str(BIN / "mitmdump"), "--mode", "transparent", "--listen-host", "127.0.0.1",
            "-p", str(proxy_port), "-s", str(ROOT / "intercept_addon.py"),
            "--set", f"confdir={tmp_path / 'mitmproxy'}", "--set", f"intercept_policy={policy_file}",
            "--set", "intercept_state=memory"), tmp_path / "mitmdump.log"))
        wait_for_log(proxy, "listening at")
        subprocess.run(in_ns(netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1",
                             "--dport", str(server_port), "-m", "owner", "--gid-owner", str(AGENT_GID),
                             "-j", "REDIRECT", "--to-ports", str(proxy_port)), check=True)

        agent = tmp_path / "agent.py"
        agent.write_text(AGENT)
        result = subprocess.run(
            in_ns(netns, "setpriv", f"--regid={AGENT_GID}", "--clear-groups",
                  sys.executable, str(agent), f"http://127.0.0.1:{server_port}/mcp"),
            capture_output=True, text=True, timeout=60, env=clean_env(PYTHONDONTWRITEBYTECODE="1"))
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for proc in reversed(procs):
            proc.stop()

    assert out["echo"] == "through the kernel"
    assert "secret_admin" not in out["tools"] and "echo" in out["tools"]
    assert out["denied"] == "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
    assert ran(side) == ["echo"]
    # The agent never named the proxy: mitmdump saw its flows only through the redirect.
    assert "intercept: deny tool=delete_everything" in proxy.log_path.read_text()
