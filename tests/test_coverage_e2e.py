"""Policies that name what the server does not have, against real servers: the catalogue's
Sora snippet (``Image-to-Video``) in front of the real mcp-sora, and ``validate --server``
against mcp-sora and the official-SDK test server."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, clean_env, start_mcp_server
from intercept_addon.demo import run as demo
from test_scan_e2e import sora_python

pytestmark = pytest.mark.e2e

CATALOGUE_SORA = """\
tools:
  Image-to-Video:
    rules:
      - action: allow
        rate_limit:
          max: 30
          window: 60
"""
UNMATCHED = re.compile(r"intercept: policy key \"(.*?)\" matches no tool of (\S+); closest: (.*)")


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "intercept_addon", "validate", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def wait_for_lines(proc: demo.Proc, pattern: re.Pattern[str], timeout: float = 10.0) -> list[re.Match[str]]:
    deadline = time.monotonic() + timeout
    while not (found := list(pattern.finditer(proc.output()))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


async def test_catalogue_snippet_before_the_real_mcp_sora_warns_once(tmp_path: Path) -> None:
    policy = tmp_path / "catalogue-sora.yaml"
    policy.write_text(CATALOGUE_SORA)
    stack = demo.Stack(tmp_path)
    try:
        fake_url = demo.wait_fake(stack, demo.start_fake(stack))
        sora_url = demo.wait_sora(stack, demo.start_sora(stack, sora_python(), fake_url))
        proxy = demo.start_proxy(stack, sora_url, policy=policy)
        demo.wait_proxy(stack, proxy)
        for agent in ("lister-1", "lister-2"):  # two clients, two lists each: compared once
            async with demo.agent_client(stack.proxy_url, agent) as client:
                assert set(await demo.list_tool_names(client)) == demo.ALL_TOOLS
                assert set(await demo.list_tool_names(client)) == demo.ALL_TOOLS
        assert wait_for_lines(proxy, UNMATCHED)
        time.sleep(0.5)  # a second warning would be logged by now
        warned = list(UNMATCHED.finditer(proxy.output()))

        assert [(m.group(1), m.group(2)) for m in warned] == [("Image-to-Video", sora_url)]
        assert warned[0].group(3).split(", ")[0] == "sora_generate_video_from_image"

        result = validate("--server", f"{sora_url}/mcp", str(policy))
    finally:
        stack.close()
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[1:] == [
        f"{policy} against {sora_url}/mcp (Streamable HTTP, 10 tools): 1 finding",
        f'  policy key "Image-to-Video" matches no tool of {sora_url}/mcp; '
        "closest: sora_generate_video_from_image, sora_generate_video"]


def test_validate_server_finds_a_misspelled_argument_path(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("""\
tools:
  charge:
    rules:
      - name: small charges
        action: allow
        conditions:
          - {path: args.amonut, op: lte, value: 100}
          - {path: args.currency, op: in, value: [usd, eur]}
""")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(typo.read_text().replace("amonut", "amount"))
    server, port, _ = start_mcp_server(tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        found = validate("--server", url, "--header", "Authorization: Bearer t0ken", str(typo))
        clean = validate("--server", url, str(fixed))
    finally:
        server.stop()
    assert found.returncode == 1, found.stderr
    assert found.stdout.splitlines() == [
        f"{typo}: OK (1 tools, 1 rules, 0 counters, 0 hidden, default allow)",
        f"{typo} against {url} (Streamable HTTP, 7 tools): 1 finding",
        f'  policy key "charge" rule "small charges": "args.amonut" is not an argument of charge ({url}); '
        "closest: args.amount"]
    assert "t0ken" not in found.stdout + found.stderr
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[1] == f"{fixed} against {url} (Streamable HTTP, 7 tools): " \
                                           "every policy key and argument matches"
