"""mitmweb as an MCP debugger, in a real browser: a real mitmweb with the addon in front of the
test MCP server, one allowed and one denied call from the official client, then headless
Debian Chromium (driven by Playwright) filters ``~marked``, opens the denied flow and reads the
MCP view. Saves screenshots in the test's tmp directory (with UPDATE_SCREENSHOT=1 also
docs/mitmweb-denied.png, the README's).
The commands are run from mitmweb's command bar and through its HTTP API."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import urllib.request
from pathlib import Path

import mcp
import pytest

from harness import ROOT, free_port, start_mcp_server, start_mitmdump, wait_for_port
from test_addon_e2e import client

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # the browser fixture says so
    async_playwright = expect = None

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
COLUMNS = ("tls", "icon", "path", "method", "status", "time", "comment")
README_SCREENSHOT = ROOT / "docs" / "mitmweb-denied.png"


def missing(what: str) -> None:
    """Skip without the browser stack, unless CI is set: there it must be installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (scripts/install-system-deps and the test extra install it)")
    pytest.skip(what)


@pytest.fixture
def web(tmp_path: Path, policy_file: Path):
    """(mitmweb's proxy port, its UI port, its token, its process) in front of the test server."""
    server, server_port, side = start_mcp_server(tmp_path)
    web_port, token = free_port(), secrets.token_hex(16)
    columns = [f"web_columns={c}" for c in COLUMNS]
    proxy, port = start_mitmdump(tmp_path, server_port, "intercept_state=memory", "web_open_browser=false",
                                 f"web_port={web_port}", f"web_password={token}", *columns,
                                 policy=policy_file, program="mitmweb")
    try:
        wait_for_port(web_port, proxy.proc)
        yield port, web_port, token, side
    finally:
        proxy.stop()
        server.stop()


@pytest.fixture
async def browser():
    if async_playwright is None:
        missing("the playwright Python package is not installed")
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def api_command(web_port: int, token: str, name: str, *args: str) -> dict:
    """POST /commands/<name> as mitmweb's UI does: the token, and tornado's double-submit XSRF
    check (the same value as cookie and header; without them the POST is refused with 403)."""
    xsrf = secrets.token_hex(16)
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}/commands/{name}", data=json.dumps({"arguments": list(args)}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Cookie": f"_mitmproxy_xsrf={xsrf}", "X-XSRFToken": xsrf}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.load(response)


async def test_denied_call_in_mitmweb(web, browser, tmp_path: Path):
    port, web_port, token, side = web
    async with client(f"http://127.0.0.1:{port}/mcp", "legacy", agent="agent-1") as c:
        assert (await c.call_tool("echo", {"text": "hello"})).content[0].text == "hello"
        with pytest.raises(mcp.MCPError, match="Deleting everything is not allowed"):
            await c.call_tool("delete_everything", {})
    assert side.read_text().splitlines() == ['echo {"text": "hello"}']  # the denied call never ran

    page = await browser.new_page(viewport={"width": 1400, "height": 860})
    await page.goto(f"http://127.0.0.1:{web_port}/?token={token}")
    rows = page.locator("div.flow-table tbody tr.has-request")
    await expect(rows).not_to_have_count(0)
    assert await rows.count() > 2  # initialize, tools/list, the two calls, the session's end...
    await page.get_by_placeholder("Search").fill("~marked")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("DENY delete_everything [no deletes]: Deleting everything is not allowed")

    await rows.first.click()
    view = page.locator(".flow-detail .contentview")
    await view.get_by_text("tool: delete_everything").wait_for()
    assert await view.locator(".controls h5").inner_text() == "MCP"  # chosen over the JSON view
    text = await view.inner_text()
    for line in ("method: tools/call", "tool: delete_everything", "decision: deny", "rule: no deletes",
                 "message: Deleting everything is not allowed", "agent: agent-header:agent-1"):
        assert line in text
    assert f"process: python3 (pid {os.getpid()})" in text or f"(pid {os.getpid()})" in text  # found by its connection
    await page.locator("header nav a", has_text="Flow List").click()  # show the filter in the picture
    await page.screenshot(path=str(tmp_path / "mitmweb-denied.png"))
    if os.environ.get("UPDATE_SCREENSHOT"):  # a test run must not rewrite tracked files
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "mitmweb-denied.png", README_SCREENSHOT)

    await page.locator(".flow-detail nav a", has_text="Response").click()
    await view.get_by_text("[INTERCEPT POLICY DENIED] Deleting everything is not allowed").first.wait_for()
    assert "rule: no deletes" in await view.inner_text()
    assert await view.locator(".controls h5").inner_text() == "MCP"
    await page.screenshot(path=str(tmp_path / "mitmweb-denied-response.png"))

    # One tool's calls, allowed ones too. (mitmweb's filter box does not know ~meta, which
    # mitmdump and the console do.)
    await page.get_by_placeholder("Search").fill("""~bq '"name":"echo"'""")
    await expect(rows.first).not_to_contain_text("DENY")
    await expect(rows).to_have_count(1)

    # Commands from mitmweb's command bar.
    await page.locator("header nav a", has_text="Options").click()
    await page.get_by_text("Display Command Bar").click()
    command = page.get_by_placeholder("Enter command")
    await command.fill("intercept.status")
    await command.press("Enter")
    result = page.locator(".command-result")
    await result.get_by_text("decisions since start: 2 (allow 1, deny 1)").wait_for()
    assert "no deletes" in await result.inner_text()


async def test_commands_through_mitmwebs_http_api(web):
    port, web_port, token, _ = web
    async with client(f"http://127.0.0.1:{port}/mcp", "legacy", agent="agent-1") as c:
        for i in range(3):
            await c.call_tool("generate", {"prompt": f"p{i}"})
        with pytest.raises(mcp.MCPError, match="Rate limit"):
            await c.call_tool("generate", {"prompt": "p3"})

        status = api_command(web_port, token, "intercept.status")["value"]
        assert "decisions since start: 4 (allow 3, deny 1)" in status
        [counter] = [row.split() for row in status if row.startswith("generate  _rate_60s")]
        assert counter[:2] == ["generate", "_rate_60s"] and counter[2] == "agent-header:agent-1"
        assert counter[3:] == ["3", "3", "calls", "per", "60", "s"]

        reset = api_command(web_port, token, "intercept.reset", "generate", "_rate_60s")["value"]
        assert reset.startswith("reset counter _rate_60s of generate: ")
        assert (await c.call_tool("generate", {"prompt": "again"})).content[0].text == "generated again"

    assert api_command(web_port, token, "intercept.reload")["value"].endswith(" reloaded")
    assert "error" in api_command(web_port, token, "intercept.reset")  # the tool argument is required
