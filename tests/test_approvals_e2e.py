"""action: ask in front of the real mcp-sora and its fake Sora API, answered by a person in a
real mitmweb, clicked in headless Chromium (Playwright): a long video from an image is held
until Resume is clicked (the API then receives it), the next is aborted (the agent reads the
rejection, the API never sees it), a third waits out intercept_ask_timeout, ``intercept.approve
@id 10m`` lets its repeat through without asking, and a cheap call under the same rule's
condition is never held. The same, answered from a terminal with ``intercept-addon approvals``.
The README's screenshot of a held call comes from here
(UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import ROOT
from intercept_addon.demo import run as demo
from test_mitmweb_browser import api_command, browser  # noqa: F401 (the fixture)
from test_scan_e2e import sora_python

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips
    expect = None

pytestmark = pytest.mark.e2e

TOOL = "sora_generate_video_from_image"
POLICY = f"""
version: "1"
hide: [sora_generate_video_v2, sora_generate_video_v2_async]
tools:
  {TOOL}:
    rules:
      - name: "long videos"
        action: ask
        conditions:
          - path: args.duration
            op: gt
            value: 10
"""
README_SCREENSHOT = ROOT / "docs" / "mitmweb-ask.png"


def video(duration: int, shot: int) -> dict:
    return {**demo.valid_image_args(shot, "ask"), "duration": duration}


def api_flows(web_port: int, token: str) -> list[dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{web_port}/flows", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        return json.load(response)


async def held_flow(web_port: int, token: str, seen: set[str], call: asyncio.Task) -> dict:
    """The next flow mitmweb shows as intercepted."""
    for _ in range(300):
        fresh = [f for f in await asyncio.to_thread(api_flows, web_port, token)
                 if f["intercepted"] and f["id"] not in seen]
        if fresh:
            seen.add(fresh[0]["id"])
            return fresh[0]
        assert not call.done(), f"the call was not held: {call.result()}"
        await asyncio.sleep(0.1)
    raise AssertionError("no held flow in mitmweb")


@pytest.fixture
def sora_web(tmp_path: Path):
    """(the stack, the fake API's URL, mitmweb's UI port, its token) with the ask policy."""
    policy = tmp_path / "ask.yaml"
    policy.write_text(POLICY)
    token = secrets.token_hex(16)
    stack = demo.Stack(tmp_path)
    try:
        fake_url = demo.wait_fake(stack, demo.start_fake(stack))
        sora_url = demo.wait_sora(stack, demo.start_sora(stack, sora_python(), fake_url))
        proxy = demo.start_proxy(stack, sora_url, policy=policy, web=True, extra_options=[
            f"web_password={token}", "intercept_ask_timeout=25",
            f"intercept_log={tmp_path / 'decisions.jsonl'}", "web_columns=method",
            "web_columns=status", "web_columns=comment"])
        demo.wait_proxy(stack, proxy)
        web_port = urllib.parse.urlsplit(stack.web_url).port
        yield stack, fake_url, web_port, token
    finally:
        stack.close()


async def test_held_calls_answered_in_mitmweb(sora_web, browser, tmp_path: Path):  # noqa: F811
    stack, fake_url, web_port, token = sora_web
    page = await browser.new_page(viewport={"width": 1400, "height": 860})
    await page.goto(f"http://127.0.0.1:{web_port}/?token={token}")
    rows = page.locator("div.flow-table tbody tr.has-request")
    held_rows = page.locator("div.flow-table tbody tr.intercepted")
    seen: set[str] = set()
    async with demo.agent_client(stack.proxy_url, "agent-ask") as client:
        await demo.list_tool_names(client)  # the MCP view then knows the tools
        cheap = await demo.call_tool(client, 1, "ask", TOOL, video(10, 1))  # the condition does not hold
        assert cheap.allowed and demo.videos_count(fake_url) == 1

        # 1. Held, then Resume clicked: the API receives it.
        call = asyncio.create_task(demo.call_tool(client, 2, "ask", TOOL, video(15, 2)))
        await held_flow(web_port, token, seen, call)
        await expect(held_rows).to_have_count(1)
        await expect(held_rows.first).to_contain_text(f"ASK {TOOL} [long videos] agent agent-header:agent-ask")
        await held_rows.first.click()
        view = page.locator(".flow-detail .contentview")
        await view.get_by_text("ask: waiting for a person,").wait_for()
        text = await view.inner_text()
        for line in (f"tool: {TOOL}", "decision: ask", "rule: long videos", "agent: agent-header:agent-ask",
                     '"duration": 15'):
            assert line in text
        await page.screenshot(path=str(tmp_path / "mitmweb-ask.png"))
        if os.environ.get("UPDATE_SCREENSHOT"):  # a test run must not rewrite tracked files
            shutil.copyfile(tmp_path / "mitmweb-ask.png", README_SCREENSHOT)
        assert demo.videos_count(fake_url) == 1  # not yet forwarded
        await page.get_by_title("[a]ccept intercepted flow").click()
        approved = await call
        assert approved.allowed, approved.message
        assert demo.videos_count(fake_url) == 2

        # 2. Held, then Abort clicked: the agent reads the rejection; the API never sees it.
        call = asyncio.create_task(demo.call_tool(client, 3, "ask", TOOL, video(15, 3)))
        await held_flow(web_port, token, seen, call)
        await held_rows.first.click()
        await page.get_by_title("kill intercepted flow [x]").click()
        killed = await call
        assert not killed.allowed and killed.kind == "ask"
        assert f"{TOOL} was rejected by a person" in killed.message
        assert demo.videos_count(fake_url) == 2

        # 3. Nobody answers: denied once the (now shorter) timeout passes.
        api_command(web_port, token, "set", "intercept_ask_timeout", "2")
        timed_out = await demo.call_tool(client, 4, "ask", TOOL, video(15, 4))
        assert not timed_out.allowed and "Nobody approved this call" in timed_out.message
        api_command(web_port, token, "set", "intercept_ask_timeout", "25")

        # 4. Approved for 10 minutes by the command: the same call again is not asked about.
        call = asyncio.create_task(demo.call_tool(client, 5, "ask", TOOL, video(15, 5)))
        flow = await held_flow(web_port, token, seen, call)
        assert api_command(web_port, token, "intercept.approve", f"@{flow['id']}", "10m")["value"] \
            == "approved 1 call(s) and their repeats for 10m"
        assert (await call).allowed
        repeat = await demo.call_tool(client, 6, "ask", TOOL, video(15, 5))
        assert repeat.allowed
        assert demo.videos_count(fake_url) == 4  # 1 cheap, the resumed one, the approved one and its repeat

    await page.locator("header nav a", has_text="Flow List").click()
    search = page.get_by_placeholder("Search")
    await search.fill("~marked")
    await expect(rows).to_have_count(2)  # the rejection and the timeout, nothing else
    # The flow list as a timeline: every MCP row says what it carried, and for which agent.
    await search.fill(f"~comment 'tools/call {TOOL}: allow'")
    await expect(rows).to_have_count(1)  # the cheap call (the approved ones say ASK ... approved)
    await expect(rows.first).to_contain_text(f"tools/call {TOOL}: allow (agent-header:agent-ask)")
    await search.fill("~comment 'tools/list: 2 hidden'")
    await expect(rows).to_have_count(1)
    await search.fill(f"~comment '{TOOL}' & ~comment agent-ask")  # one tool, one agent: all six calls
    await expect(rows).to_have_count(6)
    await search.fill("~comment 'approved by'")
    await expect(rows).to_have_count(3)  # clicked, by the command, and the repeat under its approval
    flows = api_flows(web_port, token)
    assert all(f["comment"].endswith(" (agent-header:agent-ask)") for f in flows), [f["comment"] for f in flows]
    await search.fill("~comment agent-ask")  # everything the agent did
    await expect(rows).to_have_count(len(flows))
    decisions = await logged(tmp_path / "decisions.jsonl", asked=5)
    asked = [(d["decision"], d["asked"]["by"]) for d in decisions if "asked" in d]
    assert asked[:4] == [("allow", "mitmweb"), ("deny", "mitmweb"), ("deny", "nobody (timeout)"),
                         ("allow", "intercept.approve")]
    assert asked[4][1].startswith("intercept.approve (earlier, until ")
    assert not any("asked" in d for d in decisions if d["args_sha256"] == decisions[0]["args_sha256"])


async def logged(path: Path, *, asked: int) -> list[dict]:
    """The decision log once it holds ``asked`` answered asks (it reaches its file within 0.2 s
    of a decision; at most 5 s are waited)."""
    deadline = time.monotonic() + 5
    while True:
        decisions = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if sum("asked" in d for d in decisions) >= asked or time.monotonic() > deadline:
            return decisions
        await asyncio.sleep(0.1)


def approvals_cli(web_port: int, token: str, *args: str) -> str:
    """``intercept-addon approvals ...`` in a terminal of its own (a child process)."""
    done = subprocess.run([sys.executable, "-m", "intercept_addon", "approvals", *args,
                           "--web", f"http://127.0.0.1:{web_port}/"], env={**os.environ, "MITMWEB_TOKEN": token},
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_held_calls_answered_from_a_terminal(sora_web, tmp_path: Path):
    stack, fake_url, web_port, token = sora_web
    seen: set[str] = set()
    assert approvals_cli(web_port, token).strip() == "no call waiting for approval"
    async with demo.agent_client(stack.proxy_url, "agent-cli") as client:
        await demo.list_tool_names(client)
        call = asyncio.create_task(demo.call_tool(client, 1, "cli", TOOL, video(15, 1)))
        flow = await held_flow(web_port, token, seen, call)
        listed = await asyncio.to_thread(approvals_cli, web_port, token)
        assert listed.startswith(f"{flow['id']}  {TOOL} [long videos] agent agent-header:agent-cli: until ")
        said = await asyncio.to_thread(approvals_cli, web_port, token, "reject", flow["id"][:8],
                                       "--reason", "no long videos today")
        assert said.strip() == "rejected 1 call(s)"
        rejected = await call
        assert not rejected.allowed and rejected.message.endswith("no long videos today")  # what the agent sees
        assert demo.videos_count(fake_url) == 0

        call = asyncio.create_task(demo.call_tool(client, 2, "cli", TOOL, video(15, 2)))
        flow = await held_flow(web_port, token, seen, call)
        said = await asyncio.to_thread(approvals_cli, web_port, token, "approve", flow["id"], "--for", "10m")
        assert said.strip() == "approved 1 call(s) and their repeats for 10m"
        assert (await call).allowed
        assert (await demo.call_tool(client, 3, "cli", TOOL, video(15, 2))).allowed  # not asked again
        assert demo.videos_count(fake_url) == 2
    user = f"cli:{getpass.getuser()}"
    decisions = await logged(tmp_path / "decisions.jsonl", asked=2)
    assert [d["asked"]["by"] for d in decisions if "asked" in d][:2] == [user, user]
