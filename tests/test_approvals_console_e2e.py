"""action: ask answered in mitmproxy's console: a real ``mitmproxy`` (in a tmux of its own, on its
own socket) with the addon in front of the real mcp-sora; a held call shows ✋ in the flow list,
and the console's own key binding ``a`` (flow.resume @focus) lets it through to the fake API;
``:intercept.approve @focus 10m`` at its command prompt lets the next one and its repeat through."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from intercept_addon.demo import run as demo
from test_approvals_e2e import POLICY, TOOL, video
from test_scan_e2e import sora_python

pytestmark = pytest.mark.e2e


class Tmux:
    """A tmux server of the test's own (``-L``): stopping it touches no other session."""

    def __init__(self) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (apt-get install tmux)")
        self.socket = f"intercept-test-{secrets.token_hex(4)}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


async def test_console_resumes_a_held_call(tmp_path: Path):
    policy = tmp_path / "ask.yaml"
    policy.write_text(POLICY)
    log = tmp_path / "decisions.jsonl"
    stack, tmux = demo.Stack(tmp_path), Tmux()
    try:
        fake_url = demo.wait_fake(stack, demo.start_fake(stack))
        sora_url = demo.wait_sora(stack, demo.start_sora(stack, sora_python(), fake_url))
        stack.proxy_port = demo.free_port()
        tmux.run("new-session", "-d", "-s", "console", "-x", "160", "-y", "40", "--",
                 str(demo.BIN / "mitmproxy"), "--listen-host", "127.0.0.1", "-p", str(stack.proxy_port),
                 "--mode", f"reverse:{sora_url}", "-s", str(demo.ADDON_SCRIPT),
                 "--set", f"confdir={tmp_path / 'mitmproxy'}", "--set", "connection_strategy=lazy",
                 "--set", f"intercept_policy={policy}", "--set", "intercept_state=memory",
                 "--set", f"intercept_log={log}", "--set", "intercept_ask_timeout=25",
                 "--set", "console_focus_follow=true")  # the newest flow, the held one, has the focus
        deadline = time.monotonic() + demo.START_TIMEOUT
        while "127.0.0.1" not in tmux.screen() and time.monotonic() < deadline:  # the status bar's listen address
            await asyncio.sleep(0.2)
        async with demo.agent_client(stack.proxy_url, "agent-console") as client:
            await demo.list_tool_names(client)
            call = asyncio.create_task(demo.call_tool(client, 1, "console", TOOL, video(15, 1)))
            while "✋" not in tmux.screen():  # the held call's mark in the flow list
                assert not call.done(), call.result()
                assert time.monotonic() < deadline + 20, tmux.screen()
                await asyncio.sleep(0.2)
            assert demo.videos_count(fake_url) == 0
            tmux.run("send-keys", "-t", "console", "a")  # the console's own "accept intercepted flow"
            approved = await call
            assert approved.allowed, approved.message
            assert demo.videos_count(fake_url) == 1

            # The command at the console's prompt, with a while: the repeat is not asked about.
            call = asyncio.create_task(demo.call_tool(client, 2, "console", TOOL, video(15, 2)))
            while tmux.screen().count("✋") < 1 or demo.videos_count(fake_url) != 1:
                assert not call.done(), call.result()
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # the focus follows the new flow
            tmux.run("send-keys", "-t", "console", ":")
            tmux.run("send-keys", "-t", "console", "-l", "intercept.approve @focus 10m")
            tmux.run("send-keys", "-t", "console", "Enter")
            assert (await call).allowed
            assert (await demo.call_tool(client, 3, "console", TOOL, video(15, 2))).allowed
        assert demo.videos_count(fake_url) == 3
        deadline = time.monotonic() + 10
        while (not log.exists() or not log.read_text()) and time.monotonic() < deadline:  # flushed within 0.2 s
            await asyncio.sleep(0.2)
        while len(log.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        asked = [json.loads(line)["asked"]["by"] for line in log.read_text().splitlines()]
        assert asked[:2] == ["console", "intercept.approve"] and asked[2].startswith("intercept.approve (earlier")
    finally:
        tmux.stop()
        stack.close()
