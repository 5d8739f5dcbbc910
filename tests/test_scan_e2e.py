"""``python -m intercept_addon scan`` against real servers: the official SDK test server
(annotated tools, paged tool lists, both transports), the same server behind mitmdump with the
addon, and the real mcp-sora. The policies written must load, and the fingerprints they pin must
be the ones the addon computes on the wire (nothing is flagged when nothing changed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT, clean_env, start_mcp_server, start_mitmdump
from intercept_addon.demo import run as demo
from intercept_addon.policy.model import Policy
from intercept_addon.policy.file import load_policy
from test_addon_e2e import call_denied, client

pytestmark = pytest.mark.e2e

ANNOTATED_TOOLS = 12  # the test server's 7 tools and its 5 annotated ones
CHANGED = "tool definition changed since it was pinned"


def run_scan(url: str, output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line; fails the test unless it succeeds."""
    result = subprocess.run([sys.executable, "-m", "intercept_addon", "scan", url, "-o", str(output), "--force", *args],
                            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result


def scanned(url: str, output: Path, *args: str) -> tuple[Policy, str]:
    """(the policy written, scan's summary line)."""
    result = run_scan(url, output, *args)
    return load_policy(output), result.stderr


def pins(policy: Policy) -> dict[str, str]:
    assert policy.fingerprints is not None
    return policy.fingerprints.tools


def test_scan_follows_pages_and_groups_by_annotations(tmp_path: Path) -> None:
    server, port, side = start_mcp_server(tmp_path, "--annotated-tools", "--page-size", "3")
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        catalogue, summary = scanned(url, tmp_path / "catalogue.yaml", "--header", "Authorization: Bearer s3cret")
        intercept, _ = scanned(url, tmp_path / "intercept.yaml", "--style", "intercept")
    finally:
        server.stop()

    assert "Streamable HTTP (MCP 2026-07-28), 12 tools: 3 destructive (denied), 7 write (rate limited), " \
           "2 read-only" in summary
    assert len(pins(catalogue)) == ANNOTATED_TOOLS  # four pages of three
    assert pins(intercept) == pins(catalogue)
    assert catalogue.default == "deny" and set(catalogue.tools) == set(pins(catalogue))
    for policy in (catalogue, intercept):
        actions = {name: [r.action for r in tool.rules] for name, tool in policy.tools.items()}
        assert actions["purge_archive"] == actions["get_queue"] == actions["delete_everything"] == ["deny"]
        assert actions["lookup"] == (["evaluate"] if policy is intercept else ["allow"])  # its enum
        assert policy.tools["remove_draft"].rules[0].rate_limit is not None  # annotations beat the name
        tier = policy.tools["archive_item"].rules[1].conditions[0]
        assert (tier.path, tier.op, tier.value, tier.optional) == ("args.tier", "in", ["cold", "warm"], False)
    assert "s3cret" not in (tmp_path / "catalogue.yaml").read_text()
    assert side.read_text() == ""  # listing ran no tool


def test_scan_falls_back_to_legacy_sse_with_the_same_fingerprints(tmp_path: Path) -> None:
    streamable, port, _ = start_mcp_server(tmp_path, "--annotated-tools")
    legacy, legacy_port, _ = start_mcp_server(tmp_path, "--annotated-tools", transport="sse")
    try:
        modern, _ = scanned(f"http://127.0.0.1:{port}/mcp", tmp_path / "modern.yaml")
        old, summary = scanned(f"http://127.0.0.1:{legacy_port}/sse", tmp_path / "old.yaml")
    finally:
        legacy.stop()
        streamable.stop()
    assert "legacy HTTP+SSE (MCP 2025-11-25)" in summary
    assert pins(old) == pins(modern) and len(pins(old)) == ANNOTATED_TOOLS


async def test_scan_through_the_proxy_and_the_pins_hold_there(stack_factory, tmp_path: Path) -> None:
    """Through mitmdump (policy hiding secret_admin, pages re-serialised by the addon) the pins are
    the direct ones; then a proxy enforcing the scanned policy flags nothing and applies its rules."""
    stack = stack_factory("--annotated-tools", "--page-size", "3")
    direct, _ = scanned(f"http://127.0.0.1:{stack.server_port}/mcp", tmp_path / "direct.yaml")
    proxied, _ = scanned(stack.url, tmp_path / "proxied.yaml")
    assert pins(proxied) == {k: v for k, v in pins(direct).items() if k != "secret_admin"}

    proxy, proxy_port = start_mitmdump(tmp_path, stack.server_port, "intercept_state=memory",
                                       policy=tmp_path / "direct.yaml")
    try:
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        for mode in ("auto", "legacy"):
            async with client(url, mode) as c:
                assert len((await c.list_tools()).tools) == 3  # first page
                assert (await c.call_tool("echo", {"text": "pinned"})).content[0].text == "pinned"
                err = await call_denied(c, "purge_archive", {"confirm": True})
                assert err.data["rule"] == "purge_archive.rules[0]" and "Destructive tool" in err.message
                err = await call_denied(c, "archive_item", {"item_id": "1", "tier": "hot"})
                assert err.data["kind"] == "condition"
        assert "intercept: policy" in proxy.output() and CHANGED not in proxy.output()
    finally:
        proxy.stop()


def sora_python() -> Path:
    python = Path(os.environ.get("VENV_SORA") or ROOT / ".venv-sora") / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{python} is missing (scripts/setup-sora-venv creates it)")
        pytest.skip(f"{python} is missing (scripts/setup-sora-venv creates it)")
    return python


async def test_scan_of_the_real_mcp_sora(tmp_path: Path) -> None:
    stack = demo.Stack(tmp_path)
    try:
        demo.wait_sora(stack, demo.start_sora(stack, sora_python(), "http://127.0.0.1:9"))  # no API call is made
        modern, summary = scanned(f"{stack.sora_url}/mcp", tmp_path / "sora.yaml")
        legacy, legacy_summary = scanned(f"{stack.sora_url}/sse", tmp_path / "sora-sse.yaml")
        assert "Streamable HTTP (MCP 2025-11-25), 10 tools: 0 destructive (denied), 6 write (rate limited), " \
               "4 read-only" in summary
        assert "legacy HTTP+SSE" in legacy_summary
        assert pins(legacy) == pins(modern) and set(pins(modern)) == demo.ALL_TOOLS
        conditions = {(c.path, tuple(c.value), c.optional)
                      for r in modern.tools["sora_generate_video"].rules for c in r.conditions}
        assert conditions == {("args.model", ("sora-2", "sora-2-pro"), True), ("args.size", ("small", "large"), True),
                              ("args.duration", (10, 15, 25), True),
                              ("args.orientation", ("landscape", "portrait"), True)}
        assert modern.tools["sora_get_task"].rules == []

        # mcp-sora behind the proxy with the scanned policy: its pins hold on the wire.
        demo.wait_proxy(stack, demo.start_proxy(stack, stack.sora_url, policy=tmp_path / "sora.yaml"))
        async with demo.agent_client(stack.proxy_url, "scanner") as c:
            assert set(await demo.list_tool_names(c)) == demo.ALL_TOOLS
            outcome = await demo.call_tool(c, 1, "scanner", "sora_generate_video", {"prompt": "p", "duration": 7})
            assert not outcome.allowed and outcome.kind == "condition"
        through, _ = scanned(stack.proxy_url, tmp_path / "through.yaml")
        assert pins(through) == pins(modern)
        assert CHANGED not in stack.procs[-1].output()
    finally:
        stack.close()
