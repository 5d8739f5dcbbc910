"""End to end through the demo stack: official MCP SDK -> mitmdump + addon -> real mcp-sora -> fake API.

The stack is started with the demo's own functions (``intercept_addon.demo.run``); the fake
AceData API's ``/_calls`` counters prove which calls reached the upstream API and which the
proxy stopped. Each test uses its own ``X-Agent-Id`` sessions, so they share one stack.
The legacy transport (/sse + /messages/) through the proxy is covered elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from intercept_addon.demo import run as demo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RATE_RULE = "image-to-video rate limit"
ARGS_RULE = "image-to-video arguments"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[demo.Stack]:
    s = demo.Stack(tmp_path_factory.mktemp("demo-stack"))
    try:
        try:
            demo.start_demo_stack(s, log=print)
        except demo.DemoError as exc:
            if exc.status == demo.SETUP_UNREACHABLE:
                pytest.skip(f"cannot install mcp-sora: {exc}")
            raise
        yield s
    finally:
        s.close()


def image_requests(stack: demo.Stack, session: str) -> int:
    """Image-to-video requests the fake API received whose prompt came from ``session``."""
    calls = demo.fake_calls(stack.fake_url or "")
    return sum(
        1 for r in calls["requests"]
        if r["path"] == demo.VIDEOS_PATH and r.get("tool") == demo.IMAGE_TOOL
        and isinstance(r.get("body"), dict) and str(r["body"].get("prompt", "")).startswith(f"{session} shot ")
    )


def videos(stack: demo.Stack) -> int:
    return demo.videos_count(stack.fake_url or "")


@dataclass
class Exhausted:
    """Session e2e-agent-1 after 31 calls: its 30 allowed ones and the 31st."""

    session: str
    allowed: list[demo.CallOutcome]
    thirty_first: demo.CallOutcome
    reached_after_30: int  # the session's requests at the fake after call 30
    reached_after_31: int  # ... and after call 31
    videos_after_30: int
    videos_after_31: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exhausted(stack: demo.Stack) -> Exhausted:
    session = "e2e-agent-1"
    assert image_requests(stack, session) == 0
    allowed = []
    async with demo.agent_client(stack.proxy_url, session) as client:
        for i in range(1, demo.RATE_LIMIT + 1):
            allowed.append(await demo.call_tool(client, i, session, demo.IMAGE_TOOL,
                                                demo.valid_image_args(i, session)))
        reached_30, videos_30 = image_requests(stack, session), videos(stack)
        last = await demo.call_tool(client, demo.RATE_LIMIT + 1, session, demo.IMAGE_TOOL,
                                    demo.valid_image_args(demo.RATE_LIMIT + 1, session))
    return Exhausted(session, allowed, last, reached_30, image_requests(stack, session), videos_30, videos(stack))


async def test_tools_list_hides_the_async_tools(stack: demo.Stack) -> None:
    async with demo.agent_client(f"{stack.sora_url}/mcp", None) as direct:
        upstream = set(await demo.list_tool_names(direct))
    async with demo.agent_client(stack.proxy_url, "e2e-lister") as client:
        proxied = await demo.list_tool_names(client)

    assert upstream == demo.ALL_TOOLS and len(upstream) == 10
    assert len(proxied) == len(set(proxied)) == 8
    assert set(proxied) == upstream - {"sora_generate_video_async", "sora_generate_video_v2_async"}


async def test_thirty_calls_reach_the_api(exhausted: Exhausted) -> None:
    not_allowed = [(c.n, c.message) for c in exhausted.allowed if not c.allowed]
    assert not not_allowed
    assert exhausted.reached_after_30 == 30


async def test_the_31st_call_is_denied_by_the_rate_limit(exhausted: Exhausted) -> None:
    c = exhausted.thirty_first
    assert not c.allowed
    assert c.code == -32600
    assert c.message.startswith("[INTERCEPT POLICY DENIED]"), c.message
    assert isinstance(c.data, dict)
    assert c.data["rule"] == RATE_RULE
    assert c.data["kind"] == "rate_limit"
    assert c.data["tool"] == demo.IMAGE_TOOL
    retry_after = c.data["retry_after"]
    assert isinstance(retry_after, (int, float)) and 0 < retry_after <= 60
    # It never reached the API.
    assert exhausted.reached_after_31 == exhausted.reached_after_30 == 30
    assert exhausted.videos_after_31 == exhausted.videos_after_30


async def test_another_session_is_not_limited(stack: demo.Stack, exhausted: Exhausted) -> None:
    session = "e2e-agent-2"
    before = videos(stack)
    async with demo.agent_client(stack.proxy_url, session) as client:
        outcomes = [await demo.call_tool(client, i, session, demo.IMAGE_TOOL, demo.valid_image_args(i, session))
                    for i in range(1, 4)]
        # ... while e2e-agent-1 is still over its limit.
    async with demo.agent_client(stack.proxy_url, exhausted.session) as client:
        again = await demo.call_tool(client, 99, exhausted.session, demo.IMAGE_TOOL,
                                     demo.valid_image_args(99, exhausted.session))

    assert [c.allowed for c in outcomes] == [True, True, True], [c.message for c in outcomes]
    assert image_requests(stack, session) == 3
    assert videos(stack) == before + 3
    assert not again.allowed and again.kind == "rate_limit"
    assert image_requests(stack, exhausted.session) == 30


@pytest.mark.parametrize("label,arguments", demo.INVALID_CALLS, ids=[label for label, _ in demo.INVALID_CALLS])
async def test_invalid_arguments_are_rejected_before_the_api(stack: demo.Stack, label: str,
                                                             arguments: dict) -> None:
    session = f"e2e-invalid-{label.replace(' ', '-')}"  # a fresh session: no rate limit involved
    before = demo.fake_calls(stack.fake_url or "")["total"]
    async with demo.agent_client(stack.proxy_url, session) as client:
        c = await demo.call_tool(client, 1, session, demo.IMAGE_TOOL, arguments)

    assert not c.allowed
    assert c.code == -32600
    assert c.message.startswith("[INTERCEPT POLICY DENIED]"), c.message
    assert c.data["rule"] == ARGS_RULE and c.data["kind"] == "condition"
    assert "retry_after" not in c.data
    assert demo.fake_calls(stack.fake_url or "")["total"] == before


def test_the_demo_command(tmp_path: Path) -> None:
    env = demo.child_env()
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "intercept_addon.demo.run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    if result.returncode == demo.SETUP_UNREACHABLE:
        pytest.skip(f"cannot install mcp-sora:\n{result.stderr[-2000:]}")
    output = result.stdout
    assert result.returncode == 0, f"{output}\n--- stderr ---\n{result.stderr}"
    assert "totals: 41 calls, allowed 33, denied 8 (5 by the rate limit, 3 by argument validation)" in output
    assert "agent-1: allowed 30, denied 8" in output
    assert "agent-2: allowed 3, denied 0" in output
    assert "POST /sora/videos received 33 (expected 33 = 30 + 3)" in output
    assert "RESULT: OK" in output
    assert "sora_generate_video_async" not in output.split("hidden by the policy")[0]
    # Everything it started is gone: its pids are printed as "(pid N".
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", output)]
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_legacy_sse_transport_is_held_to_the_same_policy(stack: demo.Stack) -> None:
    """mcp-sora also serves /sse + /messages/: switching transport must not escape the policy."""
    from test_legacy_sse import denied, session

    sse_url = f"http://127.0.0.1:{stack.proxy_port}/sse"
    before = videos(stack)
    async with session(sse_url) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert "sora_generate_video_async" not in names and "sora_generate_video_from_image" in names
        err = await denied(s, "sora_generate_video_from_image",
                           {"prompt": "legacy shot", "image_urls": ["https://x.test/a.png"], "model": "sora-9"})
        assert err.message.startswith("[INTERCEPT POLICY DENIED]") and err.data["rule"] == ARGS_RULE
        err = await denied(s, "sora_generate_video_async", {"prompt": "p", "callback_url": "https://x.test/cb"})
        assert err.message == "Unknown tool: sora_generate_video_async"
        ok = await s.call_tool("sora_generate_video_from_image",
                               {"prompt": "legacy shot", "image_urls": ["https://x.test/a.png"]})
        assert not ok.is_error
    assert videos(stack) == before + 1  # only the allowed call reached the API
