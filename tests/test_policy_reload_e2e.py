"""Policy reloads through a real mitmdump in front of the real test MCP server (official SDK):
a new policy with the old mtime (an atomic symlink swap, ``cp -p``) applies within seconds, and
a policy rewritten in place slowly never has a valid prefix of it in force (the side-effect
log proves the tool the prefix allowed never ran)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import mcp
import pytest

from conftest import TEST_POLICY
from harness import ran, start_mcp_server, start_mitmdump
from test_addon_e2e import call_denied, client

pytestmark = pytest.mark.e2e

DENY_ECHO = TEST_POLICY + "  echo:\n    rules:\n      - {name: no echo, action: deny}\n"
# Valid on its own, and it allows delete_everything (default allow): the prefix a slow
# in-place rewrite passes through.
PREFIX = 'version: "1"\ntools:\n  generate:\n    rules:\n      - {name: generate ok, action: allow}\n'


def rewritten(cycle: int) -> str:
    return (PREFIX + "  delete_everything:\n    rules:\n      - {name: no deletes, action: deny}\n"
            f'  echo:\n    rules:\n      - {{name: cycle, action: deny, on_deny: "cycle {cycle}"}}\n')


@pytest.fixture
def start(tmp_path: Path):
    procs = []

    def run(policy: Path) -> tuple[str, Path]:
        server, port, side = start_mcp_server(tmp_path)
        procs.append(server)
        proxy, proxy_port = start_mitmdump(tmp_path, port, "intercept_state=memory", policy=policy)
        procs.append(proxy)
        return f"http://127.0.0.1:{proxy_port}/mcp", side

    yield run
    for proc in reversed(procs):
        proc.stop()


def same_mtime(path: Path, like: Path) -> None:
    stat = like.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


async def seconds_until_echo_is_denied(c, limit: float = 6.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            await c.call_tool("echo", {"text": "x"})
        except mcp.MCPError as err:
            assert err.data["rule"] == "no echo"
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return float("inf")


@pytest.mark.parametrize("how", ["symlink swap", "cp -p"])
async def test_a_new_policy_with_the_old_mtime_applies(tmp_path: Path, start, how: str):
    first, second, policy = tmp_path / "first.yaml", tmp_path / "second.yaml", tmp_path / "policy.yaml"
    first.write_text(TEST_POLICY)
    if how == "symlink swap":
        policy.symlink_to(first)
    else:
        policy.write_text(TEST_POLICY)
    url, _ = start(policy)
    async with client(url, "auto") as c:
        assert (await c.call_tool("echo", {"text": "before"})).content[0].text == "before"
        second.write_text(DENY_ECHO)
        same_mtime(second, policy)  # stat() follows the link: the mtime the proxy has seen
        mtime = policy.stat().st_mtime_ns
        if how == "symlink swap":
            swap = tmp_path / "policy.yaml.new"
            swap.symlink_to(second)
            os.replace(swap, policy)
        else:
            subprocess.run(["cp", "-p", str(second), str(policy)], check=True)
        assert policy.stat().st_mtime_ns == mtime
        assert await seconds_until_echo_is_denied(c) < 3.5


async def test_a_slow_in_place_rewrite_never_applies_its_prefix(tmp_path: Path, start):
    """Each cycle truncates the policy, writes a valid prefix that allows delete_everything,
    fsyncs, pauses 0.5 s (half the proxy's 1 s poll period) and writes the rest, while an agent
    calls delete_everything without pause. A cycle starts once the previous one is in force,
    after 0, 0.25, 0.5 or 0.75 s: so the prefix is on disk at every phase of the proxy's polls,
    and watching by mtime applies it at least once."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    url, side = start(policy)
    async with client(url, "auto") as c:
        for cycle, phase in enumerate((0, 0.25, 0.5, 0.75)):
            applied = asyncio.Event()

            async def rewrite() -> None:
                await asyncio.sleep(phase)
                with policy.open("w") as f:
                    f.write(PREFIX)
                    f.flush()
                    os.fsync(f.fileno())
                    await asyncio.sleep(0.5)
                    f.write(rewritten(cycle)[len(PREFIX):])
                    f.flush()
                    os.fsync(f.fileno())

            async def hammer() -> None:
                deadline = time.monotonic() + 8
                while not applied.is_set():
                    assert time.monotonic() < deadline, f"cycle {cycle} never applied"
                    err = await call_denied(c, "delete_everything", {})  # raises if it was allowed
                    assert err.data["rule"] == "no deletes"
                    try:
                        await c.call_tool("echo", {"text": "x"})
                    except mcp.MCPError as denied:
                        if denied.message.endswith(f"cycle {cycle}"):
                            applied.set()

            await asyncio.gather(rewrite(), hammer())
    assert "delete_everything" not in ran(side)
