"""End-to-end check of the demo parts: the fake AceData API and the real mcp-sora.

Starts ``intercept_addon.demo.fake_acedata`` and the real mcp-sora (through
``intercept_addon/demo/sora_server.py`` in ``.venv-sora``) as subprocesses on
free loopback ports, then talks to mcp-sora with the official MCP SDK (2.x)
and checks, through the fake's ``/_calls`` counters, that exactly the expected
upstream requests were made. No proxy is involved here.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from intercept_addon.demo.run import ALL_TOOLS as EXPECTED_TOOLS
from intercept_addon.demo.run import SETUP_UNREACHABLE, child_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = ROOT / "scripts" / "setup-sora-venv"
SORA_PYTHON = Path(os.environ.get("VENV_SORA") or ROOT / ".venv-sora") / "bin" / "python"
SORA_LAUNCHER = ROOT / "intercept_addon" / "demo" / "sora_server.py"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _read_line(stream: IO[bytes], proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Read one line from ``stream`` within ``timeout`` seconds (or fail)."""
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no readiness line within {timeout}s (got {buf!r})")
            if not sel.select(left):
                continue
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"process exited (rc={proc.poll()}) before it was ready (got {buf!r})")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def _start(cmd: list[str], env: dict[str, str], log: Path, ready: re.Pattern[str], timeout: float):
    """Start ``cmd``; wait for a stdout line matching ``ready``; return (proc, port, seconds)."""
    with open(log, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
        )
    try:
        assert proc.stdout is not None
        line = _read_line(proc.stdout, proc, timeout)
        match = ready.search(line)
        assert match, f"unexpected readiness line {line!r}"
        return proc, int(match.group(1)), time.monotonic() - t0
    except BaseException as exc:
        _stop(proc)
        raise RuntimeError(f"{cmd[0]} failed to start: {exc}\n--- stderr ---\n{log.read_text()[-3000:]}") from exc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        return json.load(resp)


@pytest.fixture(scope="module")
def sora_venv() -> Path:
    try:
        result = subprocess.run(
            [str(SETUP_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/setup-sora-venv took more than 15 minutes")
    if result.returncode == SETUP_UNREACHABLE:
        pytest.skip(f"cannot install mcp-sora: PyPI is unreachable\n{result.stderr[-2000:]}")
    assert result.returncode == 0, f"scripts/setup-sora-venv failed:\n{result.stderr}"
    assert SORA_PYTHON.exists()
    return SORA_PYTHON


@pytest.fixture(scope="module")
def fake_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("fake") / "stderr.log"
    proc, port, _ = _start(
        [sys.executable, "-m", "intercept_addon.demo.fake_acedata", "--port", "0"],
        child_env(),
        log,
        re.compile(r"^fake-acedata listening on http://127\.0\.0\.1:(\d+)$"),
        timeout=15,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def sora_url(sora_venv: Path, fake_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("sora") / "stderr.log"
    proc, port, seconds = _start(
        [str(sora_venv), str(SORA_LAUNCHER), "--port", "0"],
        child_env(ACEDATACLOUD_API_BASE_URL=fake_api, ACEDATACLOUD_API_TOKEN="demo-token"),
        log,
        re.compile(r"^sora-mcp listening on http://127\.0\.0\.1:(\d+) "),
        timeout=60,
    )
    print(f"mcp-sora ready on port {port} after {seconds:.2f}s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx2 honours *_PROXY even for 127.0.0.1; keep these calls direct.
    for name in list(os.environ):
        if name.lower() in PROXY_VARS:
            monkeypatch.delenv(name)


async def test_lists_the_ten_sora_tools(sora_url: str) -> None:
    import mcp

    async with mcp.Client(f"{sora_url}/mcp") as client:
        result = await client.list_tools()
    tools = {tool.name: tool for tool in result.tools}
    assert set(tools) == EXPECTED_TOOLS
    assert len(result.tools) == 10

    image = tools["sora_generate_video_from_image"].input_schema
    assert image["required"] == ["prompt", "image_urls"]
    assert image["properties"]["image_urls"]["type"] == "array"
    assert image["properties"]["model"]["enum"] == ["sora-2", "sora-2-pro"]


async def test_generate_call_reaches_the_fake_api_once(sora_url: str, fake_api: str) -> None:
    import mcp

    before = _get_json(f"{fake_api}/_calls")
    async with mcp.Client(f"{sora_url}/mcp") as client:
        result = await client.call_tool("sora_generate_video", {"prompt": "a red kite over the sea"})
    after = _get_json(f"{fake_api}/_calls")

    assert not result.is_error, result
    payload = json.loads(result.content[0].text)
    assert payload["success"] is True and payload["task_id"]

    assert after["total"] == before["total"] + 1
    last = after["requests"][-1]
    assert last["path"] == "/sora/videos"
    assert last["tool"] == "sora_generate_video"
    assert last["auth"] == "Bearer demo-token"
    assert last["body"]["prompt"] == "a red kite over the sea"
    assert last["body"]["async"] is True


async def test_legacy_sse_transport(sora_url: str, fake_api: str) -> None:
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    before = _get_json(f"{fake_api}/_calls")["total"]
    async with sse_client(f"{sora_url}/sse") as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        result = await session.call_tool(
            "sora_generate_video_from_image",
            {"prompt": "the kite takes off", "image_urls": ["https://example.invalid/kite.png"]},
        )
    after = _get_json(f"{fake_api}/_calls")

    assert {tool.name for tool in listed.tools} == EXPECTED_TOOLS
    assert not result.is_error, result
    assert after["total"] == before + 1
    assert after["requests"][-1]["tool"] == "sora_generate_video_from_image"
    assert after["requests"][-1]["body"]["image_urls"] == ["https://example.invalid/kite.png"]
